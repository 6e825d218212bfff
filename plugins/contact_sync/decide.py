"""Decide, plan and account for the Marketo writes of one batch of contacts.

Pipeline (the hooks do the I/O in between)::

    lookups = lead_lookups(drafts, mappings)            # → MarketoHook.find_leads(...) for each
    plan = decide(drafts, found_leads, mappings)         # create / update / unchanged per contact
    hook.sync_companies([c.to_marketo() for c in plan.companies])   # company_record mode, first
    for request in plan_writes(plan.decisions):          # ≤ 300 records per Sync Leads call
        merged = merge_results(request, hook.sync_leads(...))
        # merged.follow_ups: createOnly records Marketo skipped with 1005, to send as updates
    outcomes = final_outcomes(contact_ids, rejections, plan, write_outcomes)

Choosing the lead of a contact (documented rule, tested):

1. A lead whose contact-id field holds this contact's id wins, whatever its email: an email change
   in Dynamics updates that lead instead of creating a duplicate. Among several, the one whose
   email matches, else the lowest lead id (the oldest, which usually carries the history).
2. Otherwise a lead with the same email (case-insensitive): one not linked to any contact first,
   then the lowest id. A lead linked to a *different* contact is claimed only by the contact that
   owns the email: the pipeline first rejects the drafts that do not
   (:func:`contact_sync.ownership.duplicate_email_rejections`: the linked live contact keeps it,
   else the oldest), so a lead linked to a contact that no longer holds that email is claimed.
3. Otherwise the lead is created (``createOnly``, lookup ``email``).

Within one batch a lead is written for one contact only: the first contact (in request order) that
claims it, links first. A later contact that would write the same lead, or create the same email,
is rejected ("duplicate email") rather than have two records overwrite each other in one call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from contact_sync.errors import redact
from contact_sync.events import EventError, normalize_guid
from contact_sync.mapping import EMAIL_FIELD, EXTERNAL_COMPANY_ID, Mappings
from contact_sync.models import (
    MAX_RECORDS_PER_CALL,
    CompanyDraft,
    Decision,
    LeadDraft,
    Outcome,
    Rejection,
    WriteRequest,
)

__all__ = [
    "LeadLookup",
    "MergedWrite",
    "Plan",
    "decide",
    "email_key",
    "final_outcomes",
    "guid_key",
    "lead_lookups",
    "merge_results",
    "plan_writes",
    "same_value",
]

_LEAD_EXISTS = "1005"


# --- comparing values -----------------------------------------------------------------------------


def _normalised(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        text = value.replace("\r\n", "\n").strip()
        return text or None
    return value


def _as_decimal(value: Any) -> Any:
    try:
        return Decimal(value) if isinstance(value, str) else value
    except InvalidOperation:
        return value


def same_value(field: str, wanted: Any, current: Any) -> bool:
    """Whether Marketo's ``current`` already equals ``wanted``, up to representation.

    Whitespace around text, CRLF vs LF, null vs "", 1000 vs 1000.0 (and "1000" when the other side
    is a number), and the case of the email do not count as changes. Text that merely looks
    numeric (a postal code "01234") is compared as text.
    """
    wanted, current = _normalised(wanted), _normalised(current)
    if wanted is None or current is None:
        return wanted is current
    if isinstance(wanted, Decimal) or isinstance(current, Decimal):
        return _as_decimal(wanted) == _as_decimal(current)
    if field == EMAIL_FIELD and isinstance(wanted, str) and isinstance(current, str):
        return wanted.casefold() == current.casefold()
    return wanted == current


def email_key(value: Any) -> str | None:
    normalised = _normalised(value)
    return normalised.casefold() if isinstance(normalised, str) else None


def guid_key(value: Any) -> str | None:
    """A lead's contact-id (or external company id) value as :func:`events.normalize_guid` spells
    GUIDs, or None when it holds no GUID (empty, or something a user typed by hand)."""
    try:
        return normalize_guid(value, what="lead field")
    except EventError:
        return None


# --- lookups and decisions -----------------------------------------------------------------------


@dataclass(frozen=True)
class LeadLookup:
    """One ``MarketoHook.find_leads(filter_type, values, fields=fields)`` call."""

    filter_type: str
    values: tuple[str, ...]
    fields: tuple[str, ...]


def lead_lookups(drafts: Sequence[LeadDraft], mappings: Mappings) -> list[LeadLookup]:
    """The lookups that find every lead a decision may need: by email and by contact id."""
    if not drafts:
        return []
    fields = mappings.lead_read_fields
    lookups = [LeadLookup(EMAIL_FIELD, _distinct(draft.email for draft in drafts), fields)]
    contact_field = mappings.settings.contact_id_field
    if contact_field:
        ids = _distinct(draft.contact_id for draft in drafts)
        lookups.append(LeadLookup(contact_field, ids, fields))
    return lookups


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    """Unique ignoring case (as Marketo matches), first spelling kept, in order."""
    first: dict[str, str] = {}
    for value in values:
        first.setdefault(value.casefold(), value)
    return tuple(first.values())


@dataclass(frozen=True)
class Plan:
    """What :func:`decide` concluded: one decision or rejection per draft, and companies to sync."""

    decisions: tuple[Decision, ...]
    rejections: tuple[Rejection, ...]
    companies: tuple[CompanyDraft, ...] = ()


class _LeadIndex:
    def __init__(self, leads: Iterable[Mapping[str, Any]], contact_field: str | None) -> None:
        by_id = {int(lead["id"]): lead for lead in leads if lead.get("id") is not None}
        self.leads = [by_id[lead_id] for lead_id in sorted(by_id)]
        self.by_email: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        self.by_contact: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        self.contact_field = contact_field
        for lead in self.leads:
            email = email_key(lead.get(EMAIL_FIELD))
            if email:
                self.by_email[email].append(lead)
            linked = self.linked_contact(lead)
            if linked:
                self.by_contact[linked].append(lead)

    def linked_contact(self, lead: Mapping[str, Any]) -> str | None:
        return guid_key(lead.get(self.contact_field)) if self.contact_field else None


def _pick_linked(draft: LeadDraft, index: _LeadIndex, claimed: set[int]) -> Mapping | None:
    linked = [
        lead
        for lead in index.by_contact.get(draft.contact_id, [])
        if int(lead["id"]) not in claimed
    ]
    same_email = [
        lead for lead in linked if email_key(lead.get(EMAIL_FIELD)) == email_key(draft.email)
    ]
    return (same_email or linked or [None])[0]


def _pick_by_email(draft: LeadDraft, index: _LeadIndex) -> list[Mapping[str, Any]]:
    """Leads with the draft's email, unlinked ones first, each group by ascending id."""
    leads = index.by_email.get(email_key(draft.email) or "", [])
    return sorted(leads, key=lambda lead: index.linked_contact(lead) is not None)


def _update_or_unchanged(draft: LeadDraft, lead: Mapping[str, Any]) -> Decision:
    lead_id = int(lead["id"])
    changed = tuple(
        name for name, value in draft.fields.items() if not same_value(name, value, lead.get(name))
    )
    if not changed:
        return Decision(draft.contact_id, "unchanged", lead_id=lead_id)
    record = {"id": lead_id, **{name: draft.fields[name] for name in changed}}
    return Decision(draft.contact_id, "update", lead_id=lead_id, fields=record, changed=changed)


def _duplicate(draft: LeadDraft, owner: str) -> Rejection:
    return Rejection(
        draft.contact_id,
        "duplicate email",
        f"duplicate email: same Marketo lead as contact {owner} in this run",
    )


def decide(
    drafts: Sequence[LeadDraft], leads: Iterable[Mapping[str, Any]], mappings: Mappings
) -> Plan:
    """Create, update or leave each draft's lead; see the module docstring for the matching rule.

    ``leads`` are the Marketo leads found by :func:`lead_lookups` (duplicates across the lookups
    are fine). An update sends only the changed fields; nothing changed means no write.
    """
    index = _LeadIndex(leads, mappings.settings.contact_id_field)
    claimed: dict[int, str] = {}  # lead id → contact id that writes it in this run
    targets: dict[str, Mapping[str, Any] | None] = {}
    # Links are claimed before emails so an email change keeps its lead even when another contact
    # of the batch now has the old address.
    for draft in drafts:
        lead = _pick_linked(draft, index, set(claimed))
        if lead is not None:
            claimed[int(lead["id"])] = draft.contact_id
            targets[draft.contact_id] = lead

    decisions: list[Decision] = []
    rejections: list[Rejection] = []
    created: dict[str, str] = {}  # email key → contact id creating it
    for draft in drafts:
        lead = targets.get(draft.contact_id)
        if lead is None:
            candidates = _pick_by_email(draft, index)
            free = [candidate for candidate in candidates if int(candidate["id"]) not in claimed]
            if candidates and not free:
                rejections.append(_duplicate(draft, claimed[int(candidates[0]["id"])]))
                continue
            lead = free[0] if free else None
        if lead is not None:
            claimed[int(lead["id"])] = draft.contact_id
            decisions.append(_update_or_unchanged(draft, lead))
            continue
        email = email_key(draft.email) or ""
        if email in created:
            rejections.append(_duplicate(draft, created[email]))
            continue
        created[email] = draft.contact_id
        record = {name: value for name, value in draft.fields.items() if value is not None}
        decisions.append(Decision(draft.contact_id, "create", fields=record, changed=tuple(record)))
    return Plan(tuple(decisions), tuple(rejections), _companies_to_sync(drafts, index))


def _companies_to_sync(drafts: Sequence[LeadDraft], index: _LeadIndex) -> tuple[CompanyDraft, ...]:
    """Company records whose values no found lead already shows (leads inherit company values)."""
    companies: dict[str, CompanyDraft] = {}
    for draft in drafts:
        if draft.company is not None:
            companies.setdefault(draft.company.external_company_id, draft.company)
    shown: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for lead in index.leads:
        external = guid_key(lead.get(EXTERNAL_COMPANY_ID))
        if external in companies:
            shown[external].append(lead)

    def up_to_date(company: CompanyDraft) -> bool:
        return any(
            all(same_value(name, value, lead.get(name)) for name, value in company.fields.items())
            for lead in shown.get(company.external_company_id, [])
        )

    return tuple(company for company in companies.values() if not up_to_date(company))


# --- writes and their results --------------------------------------------------------------------


def plan_writes(
    decisions: Iterable[Decision], *, chunk_size: int = MAX_RECORDS_PER_CALL
) -> list[WriteRequest]:
    """Sync Leads calls for the decisions: creates as ``createOnly`` by email (never touching an
    existing lead by accident), updates as ``updateOnly`` by id; at most ``chunk_size`` each."""
    if not 1 <= chunk_size <= MAX_RECORDS_PER_CALL:
        raise ValueError(f"chunk_size must be 1..{MAX_RECORDS_PER_CALL}, got {chunk_size}")
    requests: list[WriteRequest] = []
    for action, api_action, lookup in (
        ("create", "createOnly", "email"),
        ("update", "updateOnly", "id"),
    ):
        chosen = [decision for decision in decisions if decision.action == action]
        for start in range(0, len(chosen), chunk_size):
            chunk = chosen[start : start + chunk_size]
            requests.append(
                WriteRequest(
                    action=api_action,
                    lookup_field=lookup,
                    records=tuple(decision.fields for decision in chunk),
                    contact_ids=tuple(decision.contact_id for decision in chunk),
                )
            )
    return requests


class SyncReason(Protocol):
    """A per-record reason as the Marketo hook reports it."""

    @property
    def code(self) -> str: ...
    @property
    def message(self) -> str: ...


class SyncResult(Protocol):
    """One per-record Sync Leads result as the Marketo hook reports it (``LeadSyncResult``)."""

    @property
    def status(self) -> str: ...
    @property
    def lead_id(self) -> int | None: ...
    @property
    def reasons(self) -> Sequence[SyncReason]: ...


@dataclass(frozen=True)
class MergedWrite:
    """Outcomes of one Sync Leads call, and the follow-up calls it needs."""

    outcomes: tuple[Outcome, ...]
    follow_ups: tuple[WriteRequest, ...] = ()


def _skipped(contact_id: str, result: SyncResult) -> Outcome:
    reasons = list(result.reasons)
    if not reasons:
        return Outcome(
            contact_id, "rejected", reason_code="marketo skipped", reason="Marketo skipped it"
        )
    first = reasons[0]
    detail = "; ".join(f"{reason.code}: {redact(reason.message)}" for reason in reasons)
    return Outcome(
        contact_id,
        "rejected",
        reason_code=f"marketo {first.code}",
        reason=f"Marketo skipped it with code {detail}",
    )


def merge_results(request: WriteRequest, results: Sequence[SyncResult]) -> MergedWrite:
    """Turn the hook's aligned results for ``request`` into outcomes.

    A ``createOnly`` record skipped with 1005 (the lead appeared between lookup and write, e.g. a
    form fill) is not an error: it comes back as a follow-up ``updateOnly`` by email carrying the
    same record, so the contact still ends ``updated``. Follow-ups never spawn follow-ups; their
    skips (1004 gone again, 1007 several leads with that email) are rejections.
    """
    if len(results) != len(request.records):
        raise ValueError(
            f"Marketo returned {len(results)} results for {len(request.records)} records"
        )
    outcomes: list[Outcome] = []
    retry: list[int] = []
    for position, (contact_id, result) in enumerate(zip(request.contact_ids, results, strict=True)):
        if result.status in ("created", "updated"):
            outcomes.append(Outcome(contact_id, result.status, lead_id=result.lead_id))
        elif (
            result.status == "skipped"
            and request.action == "createOnly"
            and any(reason.code == _LEAD_EXISTS for reason in result.reasons)
        ):
            retry.append(position)
        elif result.status == "skipped":
            outcomes.append(_skipped(contact_id, result))
        else:
            outcomes.append(
                Outcome(
                    contact_id,
                    "rejected",
                    reason_code="marketo status",
                    reason=f"Marketo answered status {result.status!r}",
                )
            )
    follow_ups = ()
    if retry:
        follow_ups = (
            WriteRequest(
                action="updateOnly",
                lookup_field="email",
                records=tuple(request.records[position] for position in retry),
                contact_ids=tuple(request.contact_ids[position] for position in retry),
            ),
        )
    return MergedWrite(tuple(outcomes), follow_ups)


def final_outcomes(
    contact_ids: Sequence[str],
    rejections: Iterable[Rejection],
    plan: Plan,
    written: Iterable[Outcome],
) -> list[Outcome]:
    """Exactly one outcome per contact id, in request order.

    ``rejections`` are those of mapping (no email, not found...), ``written`` the outcomes of
    :func:`merge_results` (follow-ups included). A contact with none is a bug, so it raises.
    """
    by_contact: dict[str, Outcome] = {}
    for rejection in (*rejections, *plan.rejections):
        by_contact[rejection.contact_id] = Outcome.rejected(rejection)
    for decision in plan.decisions:
        if decision.action == "unchanged":
            by_contact[decision.contact_id] = Outcome(
                decision.contact_id, "unchanged", lead_id=decision.lead_id
            )
    changed = {decision.contact_id: decision.changed for decision in plan.decisions}
    for outcome in written:
        if outcome.status in ("created", "updated"):
            # Names only: what the report and the run's XCom may show of a write.
            outcome = replace(outcome, changed=changed.get(outcome.contact_id, ()))
        by_contact[outcome.contact_id] = outcome
    missing = [contact_id for contact_id in contact_ids if contact_id not in by_contact]
    if missing:
        raise ValueError(f"{len(missing)} contact(s) have no outcome, e.g. {missing[0]}")
    return [by_contact[contact_id] for contact_id in contact_ids]
