"""The sync pipeline: read contacts and accounts, map, look leads up, write; one outcome per id.

One pipeline, two triggers, no Airflow import (the hooks come in as arguments: anything with the
methods of :class:`ContactReader` / :class:`LeadWriter`). The real-time DAG runs
:func:`sync_ids` for the ids of its run conf inside one task (``contact_sync.tasks``); the nightly
reconciliation runs :func:`sync_contacts` per page of contacts it read. Contact field values stay
inside these calls: what comes out is :class:`~contact_sync.models.Outcome` (ids, statuses,
reasons, changed field names).

Call order and API economy for a batch of ≤ 300 contacts::

    contacts, not_found = fetch_contacts(dynamics, ids, mappings)      # 1 Dataverse query
    accounts = fetch_accounts(dynamics, contacts, mappings)             # ≤ 1 Dataverse query
    drafts, rejections = map_to_leads(ids, contacts, accounts, mappings)
    found = find_leads(marketo, drafts, mappings)                       # 1 lookup, ≤ 2
    outcomes = upsert_leads(marketo, drafts, found, mappings,           # the writes needed
                            contact_ids=ids, rejections=rejections)     # one per id, in order

(The hooks split larger inputs: ids by URL length, lookups and writes by 300.)

**Lookups: by email first, by contact id only where needed** (the email-change rule of
:mod:`contact_sync.decide`: a lead linked to the contact by the contact-id field wins, whatever its
email). A contact whose email lookup already returned a lead linked to it *with that same email*
needs nothing more: every lead with its email was found, so ``decide`` would pick that lead (or an
equal one) even knowing every lead linked to it. For every other contact (new ones, changed
emails, leads not linked yet) the contact-id lookup runs, so an email change still updates the old
lead instead of creating a duplicate. Once leads are linked, a batch costs ``ceil(n/300)`` lookups.

Every step is safe to repeat (task retries, cleared tasks): writes are decided against what Marketo
holds, creates are ``createOnly`` and fall back to an update when the lead appeared meanwhile.
Log lines carry counts and ids, never an email address or field values.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from contact_sync.decide import (
    decide,
    email_key,
    final_outcomes,
    guid_key,
    lead_lookups,
    merge_results,
    plan_writes,
)
from contact_sync.errors import ConfigurationError, RequestRejectedError
from contact_sync.events import Refusal, SyncRequest, normalize_guid
from contact_sync.mapping import EMAIL_FIELD, Mappings, map_contacts, parent_account_id
from contact_sync.models import CompanyDraft, Decision, LeadDraft, Outcome, Rejection
from contact_sync.ownership import Claimant, duplicate_email_rejections
from contact_sync.removal import Cause, Removal, RemovalPlan, plan_removal, removal_of

__all__ = [
    "STATE_COLUMNS",
    "ContactReader",
    "LeadWriter",
    "RequestResult",
    "contact_columns",
    "fetch_accounts",
    "fetch_contacts",
    "find_leads",
    "map_to_leads",
    "remove_contacts",
    "sync_account_contacts",
    "sync_contacts",
    "sync_ids",
    "sync_request",
    "upsert_leads",
]

log = logging.getLogger(__name__)

#: Where a contact fetched with ``$expand`` carries its parent account.
_EXPANDED_ACCOUNT = "parentcustomerid_account"
#: Contact columns read besides the mapped ones: whether it is live (``statecode``; ``merged`` and
#: ``_masterid_value`` after a Merge) and its age (``createdon``, for duplicate emails).
STATE_COLUMNS = ("statecode", "createdon", "merged", "_masterid_value")
#: How many account ids one contacts-of-accounts query names (keeps the URL short).
_ACCOUNTS_PER_QUERY = 100


class ContactReader(Protocol):
    """What the pipeline needs of ``DynamicsHook``."""

    def get_contacts(
        self,
        ids: Iterable[str],
        *,
        select: Sequence[str],
        account_select: Sequence[str] | None = None,
        filter: str | None = None,
    ) -> dict[str, dict[str, Any]]: ...

    def get_contacts_by_email(
        self, emails: Iterable[str], *, select: Sequence[str], active_only: bool = True
    ) -> list[dict[str, Any]]: ...

    def iter_contact_pages(
        self,
        *,
        filter: str,
        select: Sequence[str],
        orderby: str = ...,
        page_size: int = ...,
        account_select: Sequence[str] | None = None,
    ) -> Iterable[list[dict[str, Any]]]: ...

    def get_accounts(
        self, ids: Iterable[str], *, select: Sequence[str]
    ) -> dict[str, dict[str, Any]]: ...


class _RecordResult(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def reasons(self) -> Sequence[Any]: ...


class LeadWriter(Protocol):
    """What the pipeline needs of ``MarketoHook``."""

    def find_leads(
        self, filter_type: str, values: Iterable[str], *, fields: Sequence[str]
    ) -> list[dict[str, Any]]: ...

    def sync_leads(
        self, leads: Sequence[Mapping[str, Any]], *, action: str, lookup_field: str
    ) -> Sequence[Any]: ...

    def sync_companies(self, companies: Sequence[Mapping[str, Any]]) -> Sequence[_RecordResult]: ...

    def delete_leads(self, lead_ids: Sequence[int]) -> Sequence[_RecordResult]: ...


# --- Dataverse -----------------------------------------------------------------------------------


def fetch_contacts(
    dynamics: ContactReader, contact_ids: Sequence[str], mappings: Mappings
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The contacts by id (lower-case GUID) in one query, and the ids Dataverse does not have.

    Always a fresh read: an Update webhook carries only the changed columns, and a large payload
    arrives stripped, so nothing from the event is trusted but the id.
    """
    if not contact_ids:
        return {}, []
    contacts = dynamics.get_contacts(
        contact_ids, select=mappings.contact_select, account_select=None
    )
    not_found = [contact_id for contact_id in contact_ids if contact_id not in contacts]
    log.info(
        "Read %d of %d contact(s); not found: %s",
        len(contacts),
        len(contact_ids),
        not_found or "none",
    )
    return contacts, not_found


def fetch_accounts(
    dynamics: ContactReader, contacts: Mapping[str, Mapping[str, Any]], mappings: Mappings
) -> dict[str, dict[str, Any]]:
    """The parent accounts of ``contacts`` by id, in one query; ``{}`` when none has one.

    A parent that is a contact is not an account: it is simply not found, and its child gets no
    company fields. Contacts read with the account expanded (the reconciliation may do so) need no
    query for it.
    """
    wanted = {
        account_id
        for contact in contacts.values()
        if not isinstance(contact.get(_EXPANDED_ACCOUNT), Mapping)
        and (account_id := parent_account_id(contact)) is not None
    }
    if not wanted:
        return {}
    accounts = dynamics.get_accounts(sorted(wanted), select=mappings.account_select)
    log.info("Read %d of %d parent account(s)", len(accounts), len(wanted))
    return accounts


# --- Mapping -------------------------------------------------------------------------------------


def map_to_leads(
    contact_ids: Sequence[str],
    contacts: Mapping[str, Mapping[str, Any]],
    accounts: Mapping[str, Mapping[str, Any]],
    mappings: Mappings,
) -> tuple[list[LeadDraft], list[Rejection]]:
    """A lead draft per contact that can go to Marketo, a rejection (with its reason) per other.

    An id missing from ``contacts`` is rejected as "contact not found".
    """
    drafts: list[LeadDraft] = []
    rejections: list[Rejection] = []
    for result in map_contacts(contact_ids, contacts, accounts, mappings):
        (drafts if isinstance(result, LeadDraft) else rejections).append(result)
    log.info(
        "Mapped %d contact(s): %d draft(s), %d rejected (%s)",
        len(contact_ids),
        len(drafts),
        len(rejections),
        dict(Counter(rejection.code for rejection in rejections)) or "none",
    )
    return drafts, rejections


# --- Marketo -------------------------------------------------------------------------------------


def find_leads(
    marketo: LeadWriter, drafts: Sequence[LeadDraft], mappings: Mappings
) -> list[dict[str, Any]]:
    """Every Marketo lead a decision may need: by email, then by the contact-id field for the
    drafts whose email lookup did not settle them (see the module docstring); each lead once."""
    lookups = lead_lookups(drafts, mappings)
    if not lookups:
        return []
    by_email, *by_contact = lookups
    leads = {
        lead["id"]: lead
        for lead in marketo.find_leads(
            by_email.filter_type, by_email.values, fields=by_email.fields
        )
    }
    contact_field = mappings.settings.contact_id_field
    if by_contact and contact_field:
        (lookup,) = by_contact
        # The same keys decide() matches leads with, so this test cannot drift from its rule.
        settled = {
            (guid_key(lead.get(contact_field)), email_key(lead.get(EMAIL_FIELD)))
            for lead in leads.values()
        }
        pending = [
            draft.contact_id
            for draft in drafts
            if (draft.contact_id, email_key(draft.email)) not in settled
        ]
        if pending:
            for lead in marketo.find_leads(lookup.filter_type, pending, fields=lookup.fields):
                leads.setdefault(lead["id"], lead)
    return list(leads.values())


def upsert_leads(
    marketo: LeadWriter,
    drafts: Sequence[LeadDraft],
    found: Iterable[Mapping[str, Any]],
    mappings: Mappings,
    *,
    contact_ids: Sequence[str] | None = None,
    rejections: Iterable[Rejection] = (),
    dry_run: bool = False,
) -> list[Outcome]:
    """Create, update or leave each draft's lead; exactly one outcome per id of ``contact_ids``
    (default: the drafts'), in that order, ``rejections`` (of mapping) included. An id with no
    outcome is a bug and raises ``ValueError``.

    In ``company_record`` mode the companies are written first, so a lead is never linked to a
    company that does not exist; a contact whose company Marketo skipped is rejected and its lead
    not written. Leads go out ≤ 300 per Sync Leads call; a create that Marketo skips with 1005
    (the lead appeared since the lookup, e.g. on a retry) is re-sent as an update.

    ``dry_run``: no write at all; each contact gets the outcome the writes would give
    (``created`` / ``updated`` with the changed field names).
    """
    plan = decide(drafts, found, mappings)
    blocked = {} if dry_run else _sync_companies(marketo, drafts, plan.companies)
    kept = tuple(decision for decision in plan.decisions if decision.contact_id not in blocked)
    actions = Counter(decision.action for decision in kept)
    log.info(
        "Decided %d draft(s): %d create, %d update, %d unchanged, %d rejected, %d blocked",
        len(drafts),
        actions["create"],
        actions["update"],
        actions["unchanged"],
        len(plan.rejections),
        len(blocked),
    )

    written: list[Outcome] = []
    if dry_run:
        written = [_would(decision) for decision in kept if decision.action != "unchanged"]
    pending = deque([] if dry_run else plan_writes(kept))
    while pending:
        request = pending.popleft()
        results = marketo.sync_leads(
            request.records, action=request.action, lookup_field=request.lookup_field
        )
        merged = merge_results(request, results)
        written.extend(merged.outcomes)
        pending.extend(merged.follow_ups)
    return final_outcomes(
        [draft.contact_id for draft in drafts] if contact_ids is None else contact_ids,
        [*rejections, *blocked.values()],
        dataclasses.replace(plan, decisions=kept),
        written,
    )


def _would(decision: Decision) -> Outcome:
    status = "created" if decision.action == "create" else "updated"
    return Outcome(decision.contact_id, status, lead_id=decision.lead_id)


def _sync_companies(
    marketo: LeadWriter, drafts: Sequence[LeadDraft], companies: Sequence[CompanyDraft]
) -> dict[str, Rejection]:
    """Write ``companies``; the contacts whose company Marketo skipped, with the reason."""
    if not companies:
        return {}
    results = marketo.sync_companies([company.to_marketo() for company in companies])
    failed: dict[str, str] = {}
    for company, result in zip(companies, results, strict=True):
        if result.status not in ("created", "updated"):
            codes = ", ".join(str(reason.code) for reason in result.reasons) or result.status
            failed[company.external_company_id] = codes
    if failed:
        log.warning("Marketo skipped %d of %d company record(s)", len(failed), len(companies))
    return {
        draft.contact_id: Rejection(
            draft.contact_id,
            "marketo company",
            f"Marketo skipped the company of account {draft.account_id} with code "
            f"{failed[draft.account_id]}; the lead was not written",
        )
        for draft in drafts
        if draft.company is not None and draft.account_id in failed
    }


# --- Removed contacts ---------------------------------------------------------------------------


def remove_contacts(
    marketo: LeadWriter,
    removals: Sequence[Removal],
    mappings: Mappings,
    *,
    dry_run: bool = False,
) -> list[Outcome]:
    """Carry out ``on_contact_removed`` for contacts that left the sync; one outcome each, in order.

    Policy ``ignore`` needs no Marketo call (``skipped``). Otherwise the leads are found by the
    contact-id field only (one lookup for all, ≤ 300 ids a call), then flags go out as Sync Leads
    ``updateOnly`` by id and deletions as Delete Leads (≤ 300 a call each).
    """
    if not removals:
        return []
    settings = mappings.settings
    policy = settings.on_contact_removed
    contact_field = settings.contact_id_field
    flag_field = settings.removed_flag_field
    leads: list[dict[str, Any]] = []
    if policy != "ignore":
        if not contact_field:  # load_mappings refuses this; kept for mappings built in code
            raise ConfigurationError(f"on_contact_removed: {policy} needs contact_id_field")
        fields = ("id", contact_field, *([flag_field] if flag_field else []))
        leads = marketo.find_leads(
            contact_field, [removal.contact_id for removal in removals], fields=fields
        )
    plans = [
        plan_removal(
            removal,
            leads,
            policy=policy,  # type: ignore[arg-type]
            flag_field=flag_field,
            contact_id_field=contact_field or "",
        )
        for removal in removals
    ]
    failed: dict[str, Outcome] = {}
    if not dry_run:
        failed = _write_removals(marketo, plans)
    outcomes = [failed.get(plan.contact_id) or _removal_outcome(plan) for plan in plans]
    log.info(
        "Removed contact(s) under on_contact_removed %s: %s%s",
        policy,
        dict(Counter(outcome.status for outcome in outcomes)),
        " (dry run: nothing written)" if dry_run else "",
    )
    return outcomes


def _removal_outcome(plan: RemovalPlan) -> Outcome:
    lead_ids = [*plan.delete_ids, *(record["id"] for record in plan.flag_writes)]
    return Outcome(
        plan.contact_id,
        plan.outcome,  # type: ignore[arg-type]
        lead_id=lead_ids[0] if lead_ids else None,
        reason_code=plan.code,
        reason=plan.reason,
    )


def _write_removals(marketo: LeadWriter, plans: Sequence[RemovalPlan]) -> dict[str, Outcome]:
    """Send the flags and deletions; the contacts whose write Marketo skipped, as rejections."""
    failed: dict[str, Outcome] = {}

    def check(owners: Sequence[str], results: Sequence[Any], ok: tuple[str, ...]) -> None:
        for contact_id, result in zip(owners, results, strict=True):
            codes = [str(reason.code) for reason in result.reasons]
            # 1004 on a delete: the lead is gone already, which is what was wanted
            if result.status in ok or (ok == ("deleted",) and codes == ["1004"]):
                continue
            failed[contact_id] = Outcome(
                contact_id,
                "rejected",
                reason_code=f"marketo {codes[0]}" if codes else "marketo skipped",
                reason=f"Marketo skipped the removal write with code {', '.join(codes) or '?'}",
            )

    flags = [(plan.contact_id, record) for plan in plans for record in plan.flag_writes]
    if flags:
        results = marketo.sync_leads(
            [record for _, record in flags], action="updateOnly", lookup_field="id"
        )
        check([owner for owner, _ in flags], results, ("updated",))
    deletions = [(plan.contact_id, lead_id) for plan in plans for lead_id in plan.delete_ids]
    if deletions:
        results = marketo.delete_leads([lead_id for _, lead_id in deletions])
        check([owner for owner, _ in deletions], results, ("deleted",))
    return failed


# --- Live contacts: the flag to clear, the owner of an email -------------------------------------


def _clear_flags(
    drafts: Sequence[LeadDraft], found: Sequence[Mapping[str, Any]], mappings: Mappings
) -> list[LeadDraft]:
    """Drafts whose linked lead carries the removed flag get it cleared (a reactivated contact)."""
    flag_field = mappings.settings.removed_flag_field
    contact_field = mappings.settings.contact_id_field
    if not flag_field or not contact_field:
        return list(drafts)
    flagged = {guid_key(lead.get(contact_field)) for lead in found if lead.get(flag_field) is True}
    return [
        dataclasses.replace(draft, fields={**draft.fields, flag_field: False})
        if draft.contact_id in flagged
        else draft
        for draft in drafts
    ]


def _duplicate_emails(
    dynamics: ContactReader,
    drafts: Sequence[LeadDraft],
    found: Sequence[Mapping[str, Any]],
    contacts: Mapping[str, Mapping[str, Any]],
    mappings: Mappings,
) -> list[Rejection]:
    """Drafts that do not own their email (:mod:`contact_sync.ownership`), rejected.

    Dataverse is asked for the other live contacts sharing an email ONLY for drafts that no lead
    is linked to yet (they would create a lead or claim one): in the steady state every draft's
    lead is linked to it, and this costs no call. A lead linked to a contact that is no longer a
    live holder of that email can be claimed (its link does not count).
    """
    contact_field = mappings.settings.contact_id_field
    linked = {guid_key(lead.get(contact_field)) for lead in found} if contact_field else set()
    unsettled = [draft for draft in drafts if draft.contact_id not in linked]
    if not unsettled:
        return []
    column = next(entry for entry in mappings.contact if entry.marketo == EMAIL_FIELD).columns[0]
    holders = dynamics.get_contacts_by_email(
        [draft.email for draft in unsettled], select=("contactid", column, "createdon")
    )
    claimants = {
        draft.contact_id: Claimant(
            draft.contact_id, draft.email, contacts.get(draft.contact_id, {}).get("createdon")
        )
        for draft in unsettled
    }
    for record in holders:
        holder = normalize_guid(record["contactid"], what="contactid")
        if holder not in claimants and isinstance(record.get(column), str):
            claimants[holder] = Claimant(holder, record[column], record.get("createdon"))
    leads = [
        lead
        if not contact_field or guid_key(lead.get(contact_field)) in claimants
        else {**lead, contact_field: None}
        for lead in found
    ]
    rejections = duplicate_email_rejections(
        claimants.values(), leads, contact_id_field=contact_field
    )
    mine = {draft.contact_id for draft in unsettled}
    return [rejection for rejection in rejections if rejection.contact_id in mine]


# --- Composition and accounting -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RequestResult:
    """What :func:`sync_request` did: one outcome per contact, and the account ids refused."""

    outcomes: list[Outcome]
    refused: list[Refusal]


def contact_columns(mappings: Mappings) -> tuple[str, ...]:
    """``$select`` of every contact read: the mapped columns and :data:`STATE_COLUMNS`."""
    return tuple(dict.fromkeys((*mappings.contact_select, *STATE_COLUMNS)))


def sync_request(
    dynamics: ContactReader,
    marketo: LeadWriter,
    request: SyncRequest,
    mappings: Mappings,
    *,
    dry_run: bool = False,
) -> RequestResult:
    """Everything one real-time run must do: contacts by id (updated or deleted), then accounts.

    **Contacts by id**: one query ``In(ids)`` with ``sync_filter`` ANDed in by Dataverse, which
    also reads ``statecode``, ``createdon``, ``merged`` and ``_masterid_value``. When a filter is
    set, the ids missing from that answer get ONE second query without it, for those ids only: a
    contact that exists is "outside the filter" (or inactive), one that does not is deleted (a
    Delete event) or "contact not found" (rejected). Normally there is no second query. Removed
    contacts (deleted, inactive, merged, filtered) go to :func:`remove_contacts`; the master of
    a merge is synced in the same run (read by id if it was not in the request).

    **Accounts**: one ``get_accounts`` query (ids Dataverse does not have are refused "account not
    found"), then the active contacts of the others page by page (≤ 5,000 per Dataverse query),
    each page synced like a reconciliation page. Paging rather than mapped tasks: one task start,
    pages that stream within this task with ≤ 300 Marketo records per call, and an XCom that holds
    only per-contact outcomes (ids and codes), however many contacts an account has.

    ``dry_run``: every read and lookup, no Marketo write; outcomes say what would happen.
    A ``sync_filter`` Dataverse refuses raises :class:`ConfigurationError` before any write.
    """
    ids = list(dict.fromkeys((*request.contact_ids, *request.deleted_ids)))
    outcomes = _sync_by_id(
        dynamics, marketo, ids, set(request.deleted_ids), mappings, dry_run=dry_run
    )
    refused: list[Refusal] = []
    if request.account_ids:
        done = {outcome.contact_id for outcome in outcomes}
        more, refused = _sync_accounts(
            dynamics, marketo, request.account_ids, mappings, done=done, dry_run=dry_run
        )
        outcomes += more
    return RequestResult(outcomes, refused)


def _read_contacts(
    dynamics: ContactReader, ids: Sequence[str], mappings: Mappings, *, filtered: bool
) -> dict[str, dict[str, Any]]:
    sync_filter = mappings.settings.sync_filter if filtered else None
    try:
        return dynamics.get_contacts(
            ids, select=contact_columns(mappings), account_select=None, filter=sync_filter
        )
    except RequestRejectedError as error:
        if sync_filter and error.status == 400:
            raise _bad_filter(error) from None
        raise


def _bad_filter(error: RequestRejectedError) -> ConfigurationError:
    return ConfigurationError(f"sync_filter (settings.yaml) is refused by Dataverse: {error}")


def _sync_by_id(
    dynamics: ContactReader,
    marketo: LeadWriter,
    ids: Sequence[str],
    deleted: set[str],
    mappings: Mappings,
    *,
    dry_run: bool,
) -> list[Outcome]:
    if not ids:
        return []
    contacts = _read_contacts(dynamics, ids, mappings, filtered=True)
    missing = [contact_id for contact_id in ids if contact_id not in contacts]
    outside: dict[str, dict[str, Any]] = {}
    if missing and mappings.settings.sync_filter:
        outside = _read_contacts(dynamics, missing, mappings, filtered=False)
    removals: dict[str, Removal] = {}
    live: dict[str, dict[str, Any]] = {}
    order: list[str] = []  # live and not-found ids, in request order
    for contact_id in ids:
        record = contacts.get(contact_id)
        if record is not None:
            removal = removal_of(record)
            if removal is None:
                live[contact_id] = record
                order.append(contact_id)
            else:
                removals[contact_id] = removal
        elif contact_id in outside:
            removals[contact_id] = removal_of(outside[contact_id]) or Removal(
                contact_id, Cause.FILTERED
            )
        elif contact_id in deleted:
            removals[contact_id] = Removal(contact_id, Cause.DELETED)
        else:
            order.append(contact_id)  # rejected "contact not found" by the mapping
    log.info(
        "Classified %d contact id(s): %d live, %d removed (%s), %d not found",
        len(ids),
        len(live),
        len(removals),
        dict(Counter(str(removal.cause) for removal in removals.values())) or "none",
        len(order) - len(live),
    )
    masters = _masters(dynamics, removals.values(), set(ids), mappings)
    live.update(masters)
    order.extend(masters)
    synced = _sync(dynamics, marketo, order, live, mappings, dry_run=dry_run) if order else []
    removed = remove_contacts(marketo, list(removals.values()), mappings, dry_run=dry_run)
    by_id = {outcome.contact_id: outcome for outcome in (*synced, *removed)}
    return [by_id[contact_id] for contact_id in (*ids, *masters)]


def _masters(
    dynamics: ContactReader,
    removals: Iterable[Removal],
    known: set[str],
    mappings: Mappings,
) -> dict[str, dict[str, Any]]:
    """The live masters of merged contacts that are not in the batch, read by id (≤ 1 query)."""
    wanted = sorted(
        {r.master_id for r in removals if r.master_id is not None and r.master_id not in known}
    )
    if not wanted:
        return {}
    found = _read_contacts(dynamics, wanted, mappings, filtered=True)
    log.info("Syncing %d master contact(s) of merged contacts too", len(found))
    return {i: record for i, record in found.items() if removal_of(record) is None}


def _sync_accounts(
    dynamics: ContactReader,
    marketo: LeadWriter,
    account_ids: Sequence[str],
    mappings: Mappings,
    *,
    done: set[str],
    dry_run: bool,
) -> tuple[list[Outcome], list[Refusal]]:
    """The active contacts of the accounts, page by page (see :func:`sync_request`)."""
    accounts = dynamics.get_accounts(account_ids, select=("accountid",))
    refused = [
        Refusal(item="account_ids", id=account_id, reason="account not found in Dynamics 365")
        for account_id in account_ids
        if account_id not in accounts
    ]
    present = [account_id for account_id in account_ids if account_id in accounts]
    outcomes = sync_account_contacts(
        dynamics, marketo, present, mappings, done=done, dry_run=dry_run
    )
    log.info(
        "Accounts: %d synced, %d not found; %d contact(s) of theirs",
        len(present),
        len(refused),
        len(outcomes),
    )
    return outcomes, refused


def sync_account_contacts(
    dynamics: ContactReader,
    marketo: LeadWriter,
    account_ids: Sequence[str],
    mappings: Mappings,
    *,
    done: set[str],
    dry_run: bool = False,
    on_page: Any = None,
) -> list[Outcome]:
    """Sync the active contacts (within ``sync_filter``) of ``account_ids``, a page of ≤ 5,000
    per Dataverse query, accounts ``$expand``-ed; contacts in ``done`` are skipped (and added).
    ``on_page(outcomes)`` is called per page (the reconciliation counts pages)."""
    present = list(account_ids)
    outcomes: list[Outcome] = []
    sync_filter = mappings.settings.sync_filter
    for start in range(0, len(present), _ACCOUNTS_PER_QUERY):
        values = ",".join(f"'{i}'" for i in present[start : start + _ACCOUNTS_PER_QUERY])
        odata = (
            f"Microsoft.Dynamics.CRM.In(PropertyName='parentcustomerid',PropertyValues=[{values}])"
            " and statecode eq 0"
        )
        if sync_filter:
            odata += f" and ({sync_filter})"
        pages = dynamics.iter_contact_pages(
            filter=odata,
            select=contact_columns(mappings),
            orderby="contactid asc",
            account_select=mappings.account_select,
        )
        try:
            for page in pages:
                page = [c for c in page if str(c["contactid"]).lower() not in done]
                synced = sync_contacts(dynamics, marketo, page, mappings, dry_run=dry_run)
                done.update(outcome.contact_id for outcome in synced)
                outcomes += synced
                if on_page is not None:
                    on_page(synced)
        except RequestRejectedError as error:
            if sync_filter and error.status == 400:
                raise _bad_filter(error) from None
            raise
    return outcomes


def sync_ids(
    dynamics: ContactReader,
    marketo: LeadWriter,
    contact_ids: Sequence[str],
    mappings: Mappings,
    *,
    dry_run: bool = False,
) -> list[Outcome]:
    """Sync the contacts named by id (the real-time batch); one outcome per id, in order, plus the
    masters of merged ones. See :func:`sync_request`."""
    request = SyncRequest(source="contact_ids", contact_ids=tuple(contact_ids))
    return sync_request(dynamics, marketo, request, mappings, dry_run=dry_run).outcomes


def sync_contacts(
    dynamics: ContactReader,
    marketo: LeadWriter,
    contacts: Sequence[Mapping[str, Any]],
    mappings: Mappings,
    *,
    dry_run: bool = False,
) -> list[Outcome]:
    """Sync contacts already read from Dataverse (a reconciliation page); one outcome each, plus
    the masters of merged ones.

    The records need the columns of :func:`contact_columns` (without ``statecode`` a record
    counts as active); read with ``account_select=mappings.account_select`` their accounts come
    along and are not queried. Inactive or merged records get the removal treatment.
    """
    live: dict[str, Mapping[str, Any]] = {}
    removals: list[Removal] = []
    for record in contacts:
        contact_id = normalize_guid(record["contactid"], what="contactid")
        removal = removal_of({**record, "contactid": contact_id})
        if removal is None:
            live[contact_id] = record
        else:
            removals.append(removal)
    masters = _masters(dynamics, removals, {*live, *(r.contact_id for r in removals)}, mappings)
    live.update(masters)
    synced = _sync(dynamics, marketo, list(live), live, mappings, dry_run=dry_run) if live else []
    return synced + remove_contacts(marketo, removals, mappings, dry_run=dry_run)


def _sync(
    dynamics: ContactReader,
    marketo: LeadWriter,
    contact_ids: Sequence[str],
    contacts: Mapping[str, Mapping[str, Any]],
    mappings: Mappings,
    *,
    dry_run: bool = False,
) -> list[Outcome]:
    accounts = fetch_accounts(dynamics, contacts, mappings)
    drafts, rejections = map_to_leads(contact_ids, contacts, accounts, mappings)
    found = find_leads(marketo, drafts, mappings)
    drafts = _clear_flags(drafts, found, mappings)
    duplicates = _duplicate_emails(dynamics, drafts, found, contacts, mappings)
    if duplicates:
        losers = {rejection.contact_id for rejection in duplicates}
        drafts = [draft for draft in drafts if draft.contact_id not in losers]
        log.info("%d contact(s) do not own their email: %s", len(losers), sorted(losers))
    return upsert_leads(
        marketo,
        drafts,
        found,
        mappings,
        contact_ids=contact_ids,
        rejections=[*rejections, *duplicates],
        dry_run=dry_run,
    )
