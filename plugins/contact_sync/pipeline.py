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
from contact_sync.events import normalize_guid
from contact_sync.mapping import EMAIL_FIELD, Mappings, map_contacts, parent_account_id
from contact_sync.models import CompanyDraft, LeadDraft, Outcome, Rejection

__all__ = [
    "ContactReader",
    "LeadWriter",
    "fetch_accounts",
    "fetch_contacts",
    "find_leads",
    "map_to_leads",
    "sync_contacts",
    "sync_ids",
    "upsert_leads",
]

log = logging.getLogger(__name__)

#: Where a contact fetched with ``$expand`` carries its parent account.
_EXPANDED_ACCOUNT = "parentcustomerid_account"


class ContactReader(Protocol):
    """What the pipeline needs of ``DynamicsHook``."""

    def get_contacts(
        self, ids: Iterable[str], *, select: Sequence[str], account_select: Sequence[str] | None
    ) -> dict[str, dict[str, Any]]: ...

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
) -> list[Outcome]:
    """Create, update or leave each draft's lead; exactly one outcome per id of ``contact_ids``
    (default: the drafts'), in that order, ``rejections`` (of mapping) included. An id with no
    outcome is a bug and raises ``ValueError``.

    In ``company_record`` mode the companies are written first, so a lead is never linked to a
    company that does not exist; a contact whose company Marketo skipped is rejected and its lead
    not written. Leads go out ≤ 300 per Sync Leads call; a create that Marketo skips with 1005
    (the lead appeared since the lookup, e.g. on a retry) is re-sent as an update.
    """
    plan = decide(drafts, found, mappings)
    blocked = _sync_companies(marketo, drafts, plan.companies)
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
    pending = deque(plan_writes(kept))
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


# --- Composition and accounting -----------------------------------------------------------------


def sync_ids(
    dynamics: ContactReader, marketo: LeadWriter, contact_ids: Sequence[str], mappings: Mappings
) -> list[Outcome]:
    """Sync the contacts named by id (the real-time batch); one outcome per id, in order.

    Always a fresh read of each contact and its account: the event gave the id only.
    """
    contacts, _ = fetch_contacts(dynamics, contact_ids, mappings)
    return _sync(dynamics, marketo, contact_ids, contacts, mappings)


def sync_contacts(
    dynamics: ContactReader,
    marketo: LeadWriter,
    contacts: Sequence[Mapping[str, Any]],
    mappings: Mappings,
) -> list[Outcome]:
    """Sync contacts already read from Dataverse (a reconciliation page); one outcome each.

    The records need the columns of ``mappings.contact_select``; read with
    ``account_select=mappings.account_select`` their accounts come along and are not queried.
    """
    by_id = {normalize_guid(c["contactid"], what="contactid"): c for c in contacts}
    return _sync(dynamics, marketo, list(by_id), by_id, mappings)


def _sync(
    dynamics: ContactReader,
    marketo: LeadWriter,
    contact_ids: Sequence[str],
    contacts: Mapping[str, Mapping[str, Any]],
    mappings: Mappings,
) -> list[Outcome]:
    accounts = fetch_accounts(dynamics, contacts, mappings)
    drafts, rejections = map_to_leads(contact_ids, contacts, accounts, mappings)
    found = find_leads(marketo, drafts, mappings)
    return upsert_leads(
        marketo, drafts, found, mappings, contact_ids=contact_ids, rejections=rejections
    )
