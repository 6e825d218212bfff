"""Two contacts, one email: which contact owns the lead (issue 12 item 4). Pure, no I/O.

Marketo's Sync Leads matches by email (``lookupField`` defaults to ``email``, Adobe's Leads page:
https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/leads),
so two live contacts sharing an email would take the same lead from each other on every pass.
The rule that ends it:

1. the contact already linked to the lead (its contact-id field) keeps it;
2. when no contact is linked, the oldest contact (``createdon``, then contact id) owns the email;
3. the others are rejected "duplicate email", naming the owner's contact id (never the email).

The same inputs give the same owner in any order, so reruns write nothing more for the losers.
A lead linked to a contact of the batch whose email is now another one does not keep the email:
that contact is moving its lead to its new email in the same run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contact_sync.events import normalize_guid
from contact_sync.models import Rejection

__all__ = ["DUPLICATE_EMAIL", "Claimant", "duplicate_email_rejections", "email_owners"]

DUPLICATE_EMAIL = "duplicate email"
# A contact with no createdon sorts after every dated one (it cannot prove it is older).
_UNDATED = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Claimant:
    """A live contact of the batch and the email it would sync."""

    contact_id: str
    email: str
    created_on: str | None  # Dataverse's ISO-8601 UTC ("2024-01-31T12:00:00Z")

    def __post_init__(self) -> None:
        object.__setattr__(self, "contact_id", normalize_guid(self.contact_id, what="contact id"))

    def age_key(self) -> tuple[datetime, str]:
        return (_parse(self.created_on, self.contact_id), self.contact_id)


def email_owners(
    claimants: Iterable[Claimant],
    leads: Iterable[Mapping[str, Any]],
    *,
    contact_id_field: str | None,
    email_field: str = "email",
) -> dict[str, str]:
    """Email key (case-folded) → the contact id that owns it, for every email a claimant has.

    ``leads`` are the leads the batch found (by email and by contact id), with ``email_field``
    and ``contact_id_field``. The owner may be a contact outside the batch: the one a lead
    with that email is linked to.
    """
    by_email: dict[str, list[Claimant]] = {}
    emails_of: dict[str, set[str]] = {}
    for claimant in claimants:
        key = _email_key(claimant.email)
        by_email.setdefault(key, []).append(claimant)
        emails_of.setdefault(claimant.contact_id, set()).add(key)
    linked: dict[str, set[str]] = {}
    for lead in leads:
        email = lead.get(email_field)
        contact = _linked_contact(lead, contact_id_field)
        if isinstance(email, str) and contact is not None:
            linked.setdefault(_email_key(email), set()).add(contact)
    owners = {}
    for key, group in by_email.items():
        ids = {claimant.contact_id for claimant in group}
        # a linked contact keeps the email unless it is in this batch with other emails only
        keepers = sorted(
            contact
            for contact in linked.get(key, set())
            if contact in ids or contact not in emails_of
        )
        in_batch = [claimant for claimant in group if claimant.contact_id in keepers]
        if in_batch:
            owners[key] = min(in_batch, key=Claimant.age_key).contact_id
        elif keepers:
            owners[key] = keepers[0]
        else:
            owners[key] = min(group, key=Claimant.age_key).contact_id
    return owners


def duplicate_email_rejections(
    claimants: Iterable[Claimant],
    leads: Iterable[Mapping[str, Any]],
    *,
    contact_id_field: str | None,
    email_field: str = "email",
) -> list[Rejection]:
    """The claimants that do not own their email, rejected naming the owner; by contact id."""
    claimants = list(claimants)
    owners = email_owners(
        claimants, leads, contact_id_field=contact_id_field, email_field=email_field
    )
    rejections = {
        claimant.contact_id: Rejection(
            claimant.contact_id,
            DUPLICATE_EMAIL,
            f"duplicate email: contact {owners[_email_key(claimant.email)]} owns it",
        )
        for claimant in claimants
        if owners[_email_key(claimant.email)] != claimant.contact_id
    }
    return [rejections[contact_id] for contact_id in sorted(rejections)]


def _email_key(email: str) -> str:
    # Marketo matches emails case-insensitively
    return email.strip().casefold()


def _linked_contact(lead: Mapping[str, Any], contact_id_field: str | None) -> str | None:
    if contact_id_field is None:
        return None
    value = lead.get(contact_id_field)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return normalize_guid(value, what=contact_id_field)
    except ValueError:
        return None  # not a contact id: links nothing


def _parse(created_on: str | None, contact_id: str) -> datetime:
    if created_on is None:
        return _UNDATED
    try:
        moment = datetime.fromisoformat(created_on)
    except (TypeError, ValueError):
        raise ValueError(f"contact {contact_id}: createdon is not a date: {created_on!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
