"""The values that flow through the sync pipeline, from run conf to report.

All are frozen dataclasses of JSON-able fields with ``to_dict``/``from_dict``. Only the ones
without contact data may leave the task that made them (XCom, logs): :class:`Rejection` and
:class:`Outcome` hold ids, statuses, reasons and field *names*. The lead payloads bound for Marketo
(:class:`LeadDraft`, :class:`CompanyDraft`, :class:`Decision`, :class:`WriteRequest`) hold contact
field values: they live inside ``sync_contacts`` only, never in XCom or a log line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

Action = Literal["create", "update", "unchanged"]
OutcomeStatus = Literal[
    "created", "updated", "unchanged", "flagged", "deleted", "skipped", "rejected"
]
#: ``flagged`` / ``deleted``: a removed contact's lead under ``on_contact_removed`` flag / delete;
#: ``skipped``: a removed contact under ``ignore``, or one outside ``sync_filter`` ("filtered").
OUTCOME_STATUSES: tuple[OutcomeStatus, ...] = (
    "created",
    "updated",
    "unchanged",
    "flagged",
    "deleted",
    "skipped",
    "rejected",
)

#: Marketo's Lead Database batch limit: at most 300 filter values per lookup, records per page and
#: records per Sync Leads / Delete Leads call ("Lead Database", Adobe Experience League).
MAX_RECORDS_PER_CALL = 300


class _Record:
    """``to_dict``/``from_dict`` for flat dataclasses; nested ones override ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """A dict of the fields (nested dataclasses as dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


class _WithChangedNames(_Record):
    """A record whose ``changed`` tuple of field names travels through XCom as a JSON list."""

    changed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        # A list: Airflow's XCom serializer would store a tuple as a tagged object, not JSON.
        return {**super().to_dict(), "changed": list(self.changed)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**{**data, "changed": tuple(data.get("changed", ()))})


@dataclass(frozen=True)
class CompanyDraft(_Record):
    """A Marketo Company record for ``company_record`` mode, keyed by the Dynamics account id."""

    external_company_id: str
    fields: dict[str, Any]

    def to_marketo(self) -> dict[str, Any]:
        """The record for Sync Companies (dedupe field ``externalCompanyId``)."""
        return {"externalCompanyId": self.external_company_id, **self.fields}


@dataclass(frozen=True)
class LeadDraft(_Record):
    """The lead a contact should be: every mapped Marketo field, None where Dynamics is empty."""

    contact_id: str
    fields: dict[str, Any]  # Marketo REST names; includes "email" and the contact-id field
    account_id: str | None = None
    company: CompanyDraft | None = None

    @property
    def email(self) -> str:
        return self.fields["email"]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        company = data.get("company")
        return cls(
            contact_id=data["contact_id"],
            fields=dict(data["fields"]),
            account_id=data.get("account_id"),
            company=None if company is None else CompanyDraft.from_dict(company),
        )


@dataclass(frozen=True)
class Rejection(_Record):
    """A contact that is not sent to Marketo, with a reason an operator can act on."""

    contact_id: str
    code: str  # stable category for counting: "no email", "invalid email", ...
    reason: str  # the full text; never contains an email address


@dataclass(frozen=True)
class Decision(_WithChangedNames):
    """What to do in Marketo for one contact.

    ``fields`` is the payload to send: the whole draft for a create, only the changed fields for an
    update (plus ``id``), nothing when unchanged. ``changed`` names the changed fields for the log.
    """

    contact_id: str
    action: Action
    lead_id: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteRequest(_Record):
    """One Sync Leads call: ``records[i]`` is the lead of ``contact_ids[i]``."""

    action: Literal["createOnly", "updateOnly"]
    lookup_field: Literal["email", "id"]
    records: tuple[dict[str, Any], ...]
    contact_ids: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            action=data["action"],
            lookup_field=data["lookup_field"],
            records=tuple(dict(record) for record in data["records"]),
            contact_ids=tuple(data["contact_ids"]),
        )


@dataclass(frozen=True)
class Outcome(_WithChangedNames):
    """How one contact of the run ended. ``reason_code`` groups rejections for counting;
    ``changed`` names the Marketo fields written (names only, never their values)."""

    contact_id: str
    status: OutcomeStatus
    lead_id: int | None = None
    reason_code: str | None = None
    reason: str | None = None
    changed: tuple[str, ...] = ()

    @classmethod
    def rejected(cls, rejection: Rejection) -> Self:
        """The outcome of a contact rejected before any Marketo write."""
        return cls(
            contact_id=rejection.contact_id,
            status="rejected",
            reason_code=rejection.code,
            reason=rejection.reason,
        )
