"""What happens to the lead of a contact that leaves the sync (issue 12, ``on_contact_removed``).

A contact leaves when it is deleted in Dynamics, deactivated (``statecode`` 1), merged into
another contact (Dynamics deactivates the subordinate with ``merged`` true and ``masterid`` set:
the "Merge" action, https://learn.microsoft.com/power-apps/developer/data-platform/webapi/
reference/merge), or falls outside ``sync_filter``. Pure decisions: no I/O, no Airflow.

The caller finds the contact's leads by the contact-id field (never by email alone: another live
contact may own that email) and carries out the plan: Sync Leads with the ``flag_writes``, or
Delete Leads with the ``delete_ids`` (the "Delete" section of Adobe's Leads page,
https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/leads).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, cast

from contact_sync.events import normalize_guid

__all__ = [
    "Cause",
    "Removal",
    "RemovalPlan",
    "live_contact_fields",
    "plan_removal",
    "removal_of",
]

Policy = Literal["ignore", "flag", "delete"]
PlanAction = Literal["flag", "delete", "unchanged", "skip"]


class Cause(StrEnum):
    """Why a contact left the sync."""

    DELETED = "deleted"
    DEACTIVATED = "deactivated"
    MERGED = "merged"
    FILTERED = "filtered"


@dataclass(frozen=True)
class Removal:
    """A contact that left the sync; ``master_id`` is the surviving contact of a merge."""

    contact_id: str
    cause: Cause
    master_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "contact_id", normalize_guid(self.contact_id, what="contact id"))
        if self.cause is Cause.MERGED:
            if self.master_id is None:
                raise ValueError("a merged contact needs the master contact's id")
            object.__setattr__(self, "master_id", normalize_guid(self.master_id, what="masterid"))
        elif self.master_id is not None:
            raise ValueError(f"only a merged contact has a master (cause {self.cause})")

    @property
    def reason(self) -> str:
        """Words for the run report; ids only, never an email."""
        if self.cause is Cause.DELETED:
            return "contact deleted in Dynamics 365"
        if self.cause is Cause.DEACTIVATED:
            return "contact inactive in Dynamics 365 (statecode 1)"
        if self.cause is Cause.MERGED:
            return f"contact merged into contact {self.master_id}"
        return "contact outside sync_filter"


def removal_of(record: Mapping[str, Any]) -> Removal | None:
    """The removal a contact row shows (``statecode``, ``merged``, ``_masterid_value``), or None
    for an active contact. A row without ``statecode`` counts as active: the caller must select
    it (a Delete or the filter is known from elsewhere, not from the row)."""
    contact_id = record.get("contactid")
    state = record.get("statecode")
    if state in (None, 0):
        return None
    if state != 1:
        raise ValueError(f"contact {contact_id}: unknown statecode {state!r}")
    master = record.get("_masterid_value")
    if record.get("merged") is True and master:
        return Removal(str(contact_id), Cause.MERGED, str(master))
    return Removal(str(contact_id), Cause.DEACTIVATED)


@dataclass(frozen=True)
class RemovalPlan:
    """What to do with a removed contact's leads.

    ``action``: ``flag`` (write ``flag_writes``: Sync Leads records ``{"id": n, <flag>: true}``,
    updateOnly), ``delete`` (Delete Leads with ``delete_ids``), ``unchanged`` (no lead, or every
    lead already flagged) or ``skip`` (policy ``ignore``: the reason names the cause and the
    policy, nothing is written; or outside ``sync_filter`` with no lead: reason "filtered").
    A skip is not a rejection: the recipe's behaviour must not fail the run.
    ``code`` groups outcomes for counting: "filtered" or "contact <cause>".
    ``sync_also`` is the master of a merge, which the same run must sync so the surviving lead is
    right.
    """

    contact_id: str
    action: PlanAction
    reason: str
    flag_writes: tuple[dict[str, Any], ...] = ()
    delete_ids: tuple[int, ...] = ()
    sync_also: str | None = None
    code: str = ""

    @property
    def outcome(self) -> str:
        """The outcome the run reports once the plan is carried out."""
        return {
            "flag": "flagged",
            "delete": "deleted",
            "unchanged": "unchanged",
            "skip": "skipped",
        }[self.action]


def plan_removal(
    removal: Removal,
    leads: Iterable[Mapping[str, Any]],
    *,
    policy: Policy,
    flag_field: str | None,
    contact_id_field: str,
) -> RemovalPlan:
    """The plan for ``removal`` under ``policy``.

    ``leads`` are the leads found by ``contact_id_field`` (with ``id``, that field and
    ``flag_field``); any whose contact-id field names another contact is left out, so a lookup
    mistake cannot touch another contact's lead.
    """
    if policy not in ("ignore", "flag", "delete"):
        raise ValueError(f"on_contact_removed must be ignore, flag or delete, not {policy!r}")
    if policy == "flag" and not flag_field:
        raise ValueError("on_contact_removed: flag needs removed_flag_field")
    contact_id = removal.contact_id
    sync_also = removal.master_id
    own = sorted(
        (lead for lead in leads if _links(lead, contact_id_field, contact_id)),
        key=lambda lead: lead["id"],
    )

    code = Cause.FILTERED.value if removal.cause is Cause.FILTERED else f"contact {removal.cause}"

    def plan(action: PlanAction, reason: str, **details: Any) -> RemovalPlan:
        return RemovalPlan(contact_id, action, reason, sync_also=sync_also, code=code, **details)

    if removal.cause is Cause.FILTERED and (policy == "ignore" or not own):
        return plan("skip", Cause.FILTERED.value)
    if policy == "ignore":
        left = "on_contact_removed is ignore: its lead is left as is"
        return plan("skip", f"{removal.reason}; {left}")
    if not own:
        return plan("unchanged", f"{removal.reason}; no lead has its contact id")
    if policy == "delete":
        ids = tuple(lead["id"] for lead in own)
        return plan("delete", removal.reason, delete_ids=ids)
    flag = cast(str, flag_field)  # a flag policy without a field was refused above
    pending = [lead for lead in own if lead.get(flag) is not True]
    if not pending:
        return plan("unchanged", f"{removal.reason}; its lead is already flagged")
    writes = tuple({"id": lead["id"], flag: True} for lead in pending)
    return plan("flag", removal.reason, flag_writes=writes)


def live_contact_fields(lead: Mapping[str, Any] | None, flag_field: str | None) -> dict[str, Any]:
    """The fields a live (active, in-filter) contact's lead draft adds: the flag cleared
    (``false``) when its lead carries it, so a reactivated contact's lead is live again. Nothing
    otherwise, so turning the policy on writes no lead that was never flagged."""
    if flag_field and lead is not None and lead.get(flag_field) is True:
        return {flag_field: False}
    return {}


def _links(lead: Mapping[str, Any], contact_id_field: str, contact_id: str) -> bool:
    value = lead.get(contact_id_field)
    if not isinstance(value, str):
        return False
    return value.strip().strip("{}").lower() == contact_id
