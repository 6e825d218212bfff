"""Contact events: what a Dataverse webhook says happened, reduced to ids.

A Dataverse webhook body is a serialized ``RemoteExecutionContext``. The relay turns it into a
:class:`ContactEvent` with :func:`event_from_webhook` and puts ``event.to_conf()`` into the DAG
run's ``conf``; the DAG reads it back with :meth:`ContactEvent.from_conf`. An event carries ids only
(no email, no names) because Airflow stores the conf and shows it in the UI. The DAG always re-reads
the record from Dataverse: an Update webhook carries only the changed columns, and a payload over
256 KB arrives stripped of ``InputParameters``, images and ``ParentContext``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "ACTED_ON",
    "RUN_CONF_PARAM_SCHEMAS",
    "ContactEvent",
    "EventError",
    "Refusal",
    "SyncRequest",
    "event_from_webhook",
    "format_utc",
    "normalize_guid",
    "parse_dotnet_date",
    "parse_iso_utc",
    "parse_run_conf",
    "refusal_reason",
]


class EventError(ValueError):
    """An event, webhook body or run conf breaks the contract; the message says where and why."""


_GUID_BODY = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Dataverse tools sometimes write GUIDs in braces ("{6D81...}"); the braces are not part of the id.
_GUID_PATTERN = rf"^\{{?{_GUID_BODY}\}}?$"
_GUID_RE = re.compile(rf"^\{{?({_GUID_BODY})\}}?$")
_EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
# DataContractJsonSerializer: milliseconds since the Unix epoch in UTC; the optional offset only
# records the serializer's local zone and does not shift the instant. The backslashes appear when
# the JSON escape "\/" was not decoded (e.g. a value copied from a raw payload).
_DOTNET_DATE_RE = re.compile(r"^\\?/Date\((-?\d+)([+-]\d{4})?\)\\?/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Values shown in error messages must not leak an email address or a long payload into logs.
_SAFE_VALUE_RE = re.compile(r"^[\w\-{}:.+ ]{0,64}$")


def describe_value(value: Any) -> str:
    """A short, PII-safe rendering of a bad value for an error message."""
    if isinstance(value, str) and _SAFE_VALUE_RE.match(value):
        return repr(value)
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return f"a {type(value).__name__}"


def normalize_guid(value: Any, *, what: str) -> str:
    """Return ``value`` as a lower-case GUID without braces, or raise :class:`EventError`."""
    if not isinstance(value, str):
        raise EventError(f"{what} must be a GUID string, got {describe_value(value)}")
    match = _GUID_RE.match(value.strip())
    if not match:
        raise EventError(f"{what} is not a GUID: {describe_value(value)}")
    return match.group(1).lower()


def format_utc(moment: datetime) -> str:
    """ISO-8601 UTC with ``Z``, to the millisecond (Dataverse's precision), shown only when set."""
    moment = moment.astimezone(UTC).replace(tzinfo=None)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds") + "Z"


def parse_dotnet_date(value: str) -> datetime:
    """Parse a WCF JSON date (``"/Date(1506409448000-0700)/"``) into an aware UTC datetime.

    The number is milliseconds since the Unix epoch in UTC, whatever the offset says.
    """
    match = _DOTNET_DATE_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise EventError(f"not a /Date(ms)/ value: {describe_value(value)}")
    try:
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    except OverflowError:
        raise EventError(f"date out of range: {describe_value(value)}") from None


def parse_iso_utc(value: Any, *, what: str) -> datetime:
    """Parse an ISO-8601 timestamp that states its offset; naive times are refused as ambiguous."""
    if not isinstance(value, str):
        raise EventError(f"{what} must be an ISO-8601 string, got {describe_value(value)}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise EventError(f"{what} is not an ISO-8601 timestamp: {describe_value(value)}") from None
    if moment.tzinfo is None:
        raise EventError(f"{what} has no UTC offset: {describe_value(value)}")
    return moment.astimezone(UTC)


def _optional_guid(value: Any, *, what: str) -> str | None:
    return None if value is None else normalize_guid(value, what=what)


def _required_name(value: Any, *, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"{what} must be a non-empty string, got {describe_value(value)}")
    return value.strip()


@dataclass(frozen=True)
class ContactEvent:
    """One Dataverse change of one record, by id.

    Construction validates and normalises: ``id`` and the operation/correlation ids become
    lower-case GUIDs, ``entity`` a lower-case logical name, ``occurred_at`` ISO-8601 UTC with ``Z``.
    ``message`` is kept as Dataverse sent it (callers decide which messages they act on).
    """

    message: str
    entity: str
    id: str
    operation_id: str | None = None
    correlation_id: str | None = None
    occurred_at: str | None = None

    def __post_init__(self) -> None:
        normalised = {
            "message": _required_name(self.message, what="message"),
            # Dataverse logical names are lower case by definition; callers compare with "contact".
            "entity": _required_name(self.entity, what="entity").lower(),
            "id": normalize_guid(self.id, what="id"),
            "operation_id": _optional_guid(self.operation_id, what="operation_id"),
            "correlation_id": _optional_guid(self.correlation_id, what="correlation_id"),
            "occurred_at": None
            if self.occurred_at is None
            else format_utc(parse_iso_utc(self.occurred_at, what="occurred_at")),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def to_conf(self) -> dict[str, str | None]:
        """The event as the six JSON keys of the DAG run conf."""
        return {
            "message": self.message,
            "entity": self.entity,
            "id": self.id,
            "operation_id": self.operation_id,
            "correlation_id": self.correlation_id,
            "occurred_at": self.occurred_at,
        }

    @classmethod
    def from_conf(cls, data: Mapping[str, Any]) -> ContactEvent:
        """Read an event back from a run conf; unknown keys are refused (they are usually typos)."""
        if not isinstance(data, Mapping):
            raise EventError(f"an event must be a JSON object, got {describe_value(data)}")
        unknown = sorted(str(key) for key in data if key not in _CONF_KEYS)
        if unknown:
            allowed = ", ".join(_CONF_KEYS)
            raise EventError(f"unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
        missing = [key for key in ("message", "entity", "id") if key not in data]
        if missing:
            raise EventError(f"missing key(s): {', '.join(missing)}")
        return cls(**{key: data.get(key) for key in _CONF_KEYS})


_CONF_KEYS = ("message", "entity", "id", "operation_id", "correlation_id", "occurred_at")


def _parameter(parameters: Any, key: str) -> Any:
    """Value of ``key`` in a Dataverse ``[{"key": ..., "value": ...}]`` list, or None."""
    if isinstance(parameters, list):
        for item in parameters:
            if isinstance(item, Mapping) and item.get("key") == key:
                return item.get("value")
    return None


def _primary_id(body: Mapping[str, Any]) -> str:
    primary = normalize_guid(body.get("PrimaryEntityId"), what="PrimaryEntityId")
    if primary != _EMPTY_GUID:
        return primary
    # A Create seen before the record exists (PreOperation) has the empty GUID as primary id; the
    # new id then sits in OutputParameters or on the Target. Neither exists in a stripped payload.
    target = _parameter(body.get("InputParameters"), "Target")
    for candidate in (
        _parameter(body.get("OutputParameters"), "id"),
        target.get("Id") if isinstance(target, Mapping) else None,
    ):
        if candidate is not None:
            found = normalize_guid(candidate, what="the record id")
            if found != _EMPTY_GUID:
                return found
    raise EventError("PrimaryEntityId is the empty GUID and the payload names no other record id")


def event_from_webhook(body: Mapping[str, Any]) -> ContactEvent:
    """The event in a Dataverse webhook body (a ``RemoteExecutionContext``, full or stripped).

    Only ``MessageName``, ``PrimaryEntityName`` and ``PrimaryEntityId`` are required, which is what
    survives the > 256 KB stripping. Entities and messages are not filtered here.
    """
    if not isinstance(body, Mapping):
        raise EventError(f"a RemoteExecutionContext is a JSON object, got {describe_value(body)}")
    missing = [
        key for key in ("MessageName", "PrimaryEntityName", "PrimaryEntityId") if key not in body
    ]
    if missing:
        raise EventError(f"not a RemoteExecutionContext: missing {', '.join(missing)}")
    created_on = body.get("OperationCreatedOn")
    try:
        occurred_at = None if created_on is None else format_utc(parse_dotnet_date(created_on))
    except EventError as error:
        raise EventError(f"OperationCreatedOn: {error}") from None
    return ContactEvent(
        message=_required_name(body["MessageName"], what="MessageName"),
        entity=_required_name(body["PrimaryEntityName"], what="PrimaryEntityName"),
        id=_primary_id(body),
        operation_id=_optional_guid(body.get("OperationId"), what="OperationId"),
        correlation_id=_optional_guid(body.get("CorrelationId"), what="CorrelationId"),
        occurred_at=occurred_at,
    )


# --- The DAG's run conf --------------------------------------------------------------------------

#: What the sync acts on, as (entity, message) in lower case: a contact's Create and Update (sync
#: it), its Delete (the ``on_contact_removed`` policy decides what happens to its lead), and an
#: account's Update (sync every active contact whose parent it is). Anything else is refused.
ACTED_ON: frozenset[tuple[str, str]] = frozenset(
    {("contact", "create"), ("contact", "update"), ("contact", "delete"), ("account", "update")}
)
_CONF_FORMS = ("events", "webhookRequest", "contact_ids", "account_ids")
#: Run conf keys that are DAG params, not forms (``dry_run``); the DAG reads them from its params.
RUN_PARAMS = ("dry_run",)

_NAME = {"type": "string", "minLength": 1}
_OPTIONAL_GUID = {"type": ["string", "null"], "pattern": _GUID_PATTERN}
_GUID_LIST = {
    "type": ["array", "null"],
    "minItems": 1,
    "items": {"type": "string", "pattern": _GUID_PATTERN},
}

#: One JSON Schema per conf key, for the DAG's ``params={key: Param(None, **schema)}``: Airflow
#: validates each param on its own, so a malformed REST trigger is answered with 400.
RUN_CONF_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "events": {
        "type": ["array", "null"],
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["message", "entity", "id"],
            "additionalProperties": False,
            "properties": {
                "message": _NAME,
                "entity": _NAME,
                "id": {"type": "string", "pattern": _GUID_PATTERN},
                "operation_id": _OPTIONAL_GUID,
                "correlation_id": _OPTIONAL_GUID,
                "occurred_at": {"type": ["string", "null"], "minLength": 1},
            },
        },
    },
    "webhookRequest": {
        "type": ["object", "null"],
        "required": ["MessageName", "PrimaryEntityName", "PrimaryEntityId"],
        "properties": {
            "MessageName": _NAME,
            "PrimaryEntityName": _NAME,
            "PrimaryEntityId": {"type": "string", "pattern": _GUID_PATTERN},
        },
    },
    "contact_ids": _GUID_LIST,
    "account_ids": _GUID_LIST,
}


@dataclass(frozen=True)
class Refusal:
    """A conf item the run does not act on (other entity or message), kept so the run reports it."""

    item: str  # where in the conf, e.g. "events[3]"
    id: str | None
    reason: str


@dataclass(frozen=True)
class SyncRequest:
    """What one run must do, by id, each id once in order of first mention.

    ``contact_ids``: contacts to sync (created or updated, or named on demand). ``deleted_ids``:
    contacts deleted in Dynamics (their leads get the ``on_contact_removed`` policy); a contact both
    updated and deleted in one batch counts as deleted. ``account_ids``: accounts whose active
    contacts must be synced (an account edit changes their leads' company fields).
    """

    source: str  # one of "events", "webhookRequest", "contact_ids", "account_ids"
    contact_ids: tuple[str, ...] = ()
    events: tuple[ContactEvent, ...] = ()
    refused: tuple[Refusal, ...] = ()
    account_ids: tuple[str, ...] = ()
    deleted_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for XCom (ids only)."""
        return {
            "source": self.source,
            "contact_ids": list(self.contact_ids),
            "account_ids": list(self.account_ids),
            "deleted_ids": list(self.deleted_ids),
            "events": [event.to_conf() for event in self.events],
            "refused": [vars(refusal) for refusal in self.refused],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyncRequest:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            source=data["source"],
            contact_ids=tuple(data.get("contact_ids", ())),
            account_ids=tuple(data.get("account_ids", ())),
            deleted_ids=tuple(data.get("deleted_ids", ())),
            events=tuple(ContactEvent.from_conf(event) for event in data.get("events", ())),
            refused=tuple(Refusal(**refusal) for refusal in data.get("refused", ())),
        )


def refusal_reason(event: ContactEvent) -> str | None:
    """Why the sync does not act on ``event``, or None when it does (see :data:`ACTED_ON`)."""
    message = event.message.casefold()
    if (event.entity, message) in ACTED_ON:
        return None
    if event.entity == "account" and message == "create":
        return "account Create: no contact has this account as parent yet, so nothing to write"
    if event.entity not in {entity for entity, _ in ACTED_ON}:
        return f"entity {event.entity!r} is not synced (only contact and account)"
    acted = sorted(m.capitalize() for entity, m in ACTED_ON if entity == event.entity)
    return f"{event.entity} {event.message!r} is not synced (only {', '.join(acted)})"


def _non_empty_list(conf: Mapping[str, Any], key: str) -> list[Any]:
    value = conf[key]
    if not isinstance(value, list):
        raise EventError(f"{key} must be a list, got {describe_value(value)}")
    if not value:
        raise EventError(f"{key} is empty")
    return value


def _events_of(conf: Mapping[str, Any], form: str) -> list[tuple[str, ContactEvent]]:
    if form == "webhookRequest":
        try:
            return [(form, event_from_webhook(conf[form]))]
        except EventError as error:
            raise EventError(f"{form}: {error}") from None
    located = []
    for index, item in enumerate(_non_empty_list(conf, form)):
        try:
            located.append((f"{form}[{index}]", ContactEvent.from_conf(item)))
        except EventError as error:
            raise EventError(f"{form}[{index}]: {error}") from None
    return located


def parse_run_conf(conf: Mapping[str, Any] | None) -> SyncRequest:
    """Validate a run conf into a :class:`SyncRequest`.

    Events the sync does not act on (:data:`ACTED_ON`) are refused with their reason, not raised:
    the run reports them. Keys set to ``null`` count as absent (Airflow fills unset params with
    defaults).
    """
    if not isinstance(conf, Mapping):
        raise EventError(f"the run conf must be a JSON object, got {describe_value(conf)}")
    unknown = sorted(str(key) for key in conf if key not in (*_CONF_FORMS, *RUN_PARAMS))
    if unknown:
        raise EventError(
            f"unknown conf key(s) {', '.join(unknown)}; expected one of {', '.join(_CONF_FORMS)}"
        )
    forms = [form for form in _CONF_FORMS if conf.get(form) is not None]
    if len(forms) != 1:
        found = ", ".join(forms) or "none"
        raise EventError(f"the run conf needs exactly one of {', '.join(_CONF_FORMS)}; got {found}")
    (form,) = forms

    if form in ("contact_ids", "account_ids"):
        ids = [
            normalize_guid(value, what=f"{form}[{index}]")
            for index, value in enumerate(_non_empty_list(conf, form))
        ]
        return SyncRequest(source=form, **{form: tuple(dict.fromkeys(ids))})

    accepted: list[ContactEvent] = []
    refused: list[Refusal] = []
    for where, event in _events_of(conf, form):
        reason = refusal_reason(event)
        if reason is None:
            accepted.append(event)
        else:
            refused.append(Refusal(item=where, id=event.id, reason=reason))
    deleted = {e.id for e in accepted if e.entity == "contact" and e.message.casefold() == "delete"}
    return SyncRequest(
        source=form,
        contact_ids=_unique(
            e.id for e in accepted if e.entity == "contact" and e.id not in deleted
        ),
        account_ids=_unique(e.id for e in accepted if e.entity == "account"),
        deleted_ids=_unique(e.id for e in accepted if e.id in deleted),
        events=tuple(accepted),
        refused=tuple(refused),
    )


def _unique(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))
