"""The reconciliation against both sandboxes: drift repaired, reruns idle, windows respected."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from contact_sync.errors import TransientError
from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.reconcile import Window, plan_windows
from tests.reconcile.conftest import (
    AFTER,
    BEFORE,
    INSIDE,
    NIGHT,
    account_id,
    contact,
    contact_id,
    lead,
)


def _lead_of(sandboxes, n: int) -> dict[str, Any]:
    [found] = sandboxes.leads(dynamicsContactId=contact_id(n))
    return found


def seed_drift(sandboxes) -> dict[str, int]:
    """One contact per kind of drift; returns the seeded lead ids by contact number."""
    sandboxes.dataverse.admin.seed(
        accounts=[
            {"accountid": account_id(1), "name": "Alpha", "revenue": 1000, "numberofemployees": 50},
            {"accountid": account_id(2), "name": "Beta", "revenue": 2500.5},
        ],
        contacts=[
            # 1: no lead yet (a lost Create webhook)
            contact(1, _parentcustomerid_value=account_id(1)),
            # 2: the lead drifted (edited in Marketo, or an Update webhook was lost)
            contact(2, telephone1="555-0102"),
            # 3: in sync, up to representation (case, whitespace, line ends, 1000 vs 1000.0)
            contact(3, description="line one\r\nline two", _parentcustomerid_value=account_id(1)),
            # 4: no email: reported, never sent
            contact(4, emailaddress1=None),
            # 5: moved to another account; the lead still shows the old company
            contact(5, _parentcustomerid_value=account_id(2)),
            # 6: email changed in Dynamics; the lead still has the old one
            contact(6, emailaddress1="renamed6@example.com"),
            # 7: drifted too, but modified before the night: not this run's business
            contact(7, modifiedon=BEFORE),
        ],
    )
    ids = sandboxes.marketo.admin.seed_leads(
        [
            lead(2, firstName="Old", phone="000"),
            lead(
                3,
                email="PERSON3@Example.COM",
                lastName=" Last3 ",
                mktoPersonNotes="line one\nline two",
                company="Alpha",
                annualRevenue=1000.0,
                numberOfEmployees=50,
            ),
            lead(5, company="Alpha", annualRevenue=1000, numberOfEmployees=50),
            lead(6),
            lead(7, firstName="Stale"),
        ]
    )
    return dict(zip((2, 3, 5, 6, 7), ids, strict=True))


def test_one_run_repairs_every_kind_of_drift(sandboxes, run):
    seeded = seed_drift(sandboxes)

    report = run()

    summary = report.to_dict()
    assert summary["total"] == 6
    assert summary["counts"] == {
        "created": 1,
        "updated": 3,
        "unchanged": 1,
        "flagged": 0,
        "deleted": 0,
        "skipped": 0,
        "rejected": 1,
    }
    assert summary["reasons"] == {"no email": 1}
    assert summary["rejected"] == [{"contact_id": contact_id(4), "reason": "no email"}]

    created = _lead_of(sandboxes, 1)
    assert (created["email"], created["company"], created["annualRevenue"]) == (
        "person1@example.com",
        "Alpha",
        1000,
    )
    drifted = _lead_of(sandboxes, 2)
    assert (drifted["id"], drifted["firstName"], drifted["phone"]) == (
        seeded[2],
        "First2",
        "555-0102",
    )
    moved = _lead_of(sandboxes, 5)
    assert (moved["id"], moved["company"], moved["annualRevenue"]) == (seeded[5], "Beta", 2500.5)
    assert moved.get("numberOfEmployees") is None  # Beta has none: the old value is cleared
    renamed = _lead_of(sandboxes, 6)
    assert (renamed["id"], renamed["email"]) == (seeded[6], "renamed6@example.com")
    assert sandboxes.leads(email="person6@example.com") == []
    assert _lead_of(sandboxes, 7)["firstName"] == "Stale"
    assert sandboxes.leads(dynamicsContactId=contact_id(4)) == []
    assert len(sandboxes.leads()) == 6  # five seeded + one created: no duplicate


def test_a_second_run_of_the_same_window_writes_nothing(sandboxes, run):
    seed_drift(sandboxes)
    run()
    _, writes_before = sandboxes.marketo_calls()

    again = run().to_dict()

    assert sandboxes.marketo_calls()[1] == writes_before
    assert again["counts"] == {
        "created": 0,
        "updated": 0,
        "unchanged": 5,
        "flagged": 0,
        "deleted": 0,
        "skipped": 0,
        "rejected": 1,
    }
    assert again["reasons"] == {"no email": 1}


def test_a_backfill_touches_only_its_range(sandboxes, run):
    sandboxes.dataverse.admin.seed(
        contacts=[
            contact(1, modifiedon=BEFORE),
            contact(2, modifiedon="2025-03-01T00:00:00Z"),  # the first second of the night
            contact(3, modifiedon=INSIDE),
            contact(4, modifiedon=AFTER),  # the night's end is exclusive
        ]
    )

    report = run(NIGHT)

    assert report.counts["created"] == 2
    linked = {found["dynamicsContactId"] for found in sandboxes.leads()}
    assert linked == {contact_id(2), contact_id(3)}


def test_a_full_pass_reads_every_active_contact_whatever_its_date(sandboxes, run):
    sandboxes.dataverse.admin.seed(
        contacts=[
            contact(1, modifiedon="2019-06-01T00:00:00Z"),
            contact(2, modifiedon=AFTER),
            contact(3, statecode=1),  # inactive
        ]
    )

    report = run(Window(active_only=True))

    assert report.total == 2
    linked = {found["dynamicsContactId"] for found in sandboxes.leads()}
    assert linked == {contact_id(1), contact_id(2)}


def test_an_email_change_updates_the_linked_lead_even_if_the_new_email_has_a_lead(sandboxes, run):
    """The email lookup finds a lead with the new address (a form fill), but the lead linked to the
    contact wins: the contact-id lookup still runs for a contact no found lead is linked to."""
    sandboxes.dataverse.admin.seed(contacts=[contact(1, emailaddress1="new1@example.com")])
    linked_id, form_fill_id = sandboxes.marketo.admin.seed_leads(
        [lead(1), {"email": "new1@example.com", "firstName": "Form"}]
    )

    run()

    assert _lead_of(sandboxes, 1)["id"] == linked_id
    assert sandboxes.marketo.admin.lead(form_fill_id)["firstName"] == "Form"


def test_pages_are_fetched_only_as_they_are_reconciled(sandboxes, run):
    """Memory is bounded by a page: page k+1 is requested only after page k went to Marketo."""
    sandboxes.dataverse.admin.seed(contacts=[contact(n) for n in range(10)])
    seen: list[tuple[int, int]] = []

    class WatchedDynamics(DynamicsHook):
        def iter_contact_pages(self, **options: Any):
            for page in super().iter_contact_pages(**options):
                pages_read = sandboxes.calls("dataverse")["GET /api/data/v9.2/contacts"]
                seen.append((pages_read, sandboxes.marketo_calls()[0]))
                yield page

    report = run(page_size=3, dynamics=WatchedDynamics())

    assert report.pages == 4
    # Each new contact costs a lookup by email and one by contact id, two calls per page; and
    # new contacts (no lead linked to them yet) one Dataverse query for the other live holders
    # of their emails (duplicate-email ownership), so page k+1 is the (2k+1)th contacts GET.
    assert seen == [(1, 0), (3, 2), (5, 4), (7, 6)]


def test_dataverse_throttling_is_waited_out(sandboxes, run):
    sandboxes.dataverse.admin.seed(contacts=[contact(n) for n in range(4)])
    sandboxes.dataverse.admin.settings(fault_retry_after_s=0)
    sandboxes.dataverse.admin.set_faults(
        {"rules": [{"answer": "429", "path": "/api/data/v9.2/contacts", "limit": 1}]}
    )

    report = run(page_size=2)

    assert report.counts["created"] == 4
    assert sandboxes.dataverse.admin.calls()["answers"]["429"] == 1
    # 2 pages + the 429 retried, + 1 duplicate-email owner query per page of new contacts
    assert report.api_calls["dataverse"]["by_endpoint"]["GET /api/data/v9.2/contacts"] == 5


def test_a_marketo_failure_that_outlasts_the_retries_fails_the_run(sandboxes, run):
    sandboxes.dataverse.admin.seed(contacts=[contact(1)])
    sandboxes.marketo.admin.set_faults({"rules": [{"answer": "611", "path": "/rest/v1/leads"}]})

    with pytest.raises(TransientError, match="611"):
        run()


def test_a_full_pass_is_sliced_from_its_oldest_active_contact(sandboxes, run):
    sandboxes.dataverse.admin.seed(
        contacts=[
            contact(1, modifiedon="2010-01-01T00:00:00Z", statecode=1),  # inactive: not counted
            contact(2, modifiedon="2020-01-01T00:00:00Z"),
            contact(3, modifiedon="2022-06-01T00:00:00Z"),
            contact(4, modifiedon="2024-12-31T23:59:59Z"),
        ]
    )
    now = datetime(2025, 1, 1, tzinfo=UTC)
    lookups_before = sandboxes.calls("dataverse").get("GET /api/data/v9.2/contacts", 0)

    slices = plan_windows(DynamicsHook(), Window(active_only=True), 3, now=now)

    assert sandboxes.calls("dataverse")["GET /api/data/v9.2/contacts"] == lookups_before + 1
    assert slices[0].since == datetime(2020, 1, 1, tzinfo=UTC)
    assert (len(slices), slices[-1].until) == (3, None)
    scanned = [run(window).total for window in slices]
    assert sum(scanned) == 3  # every active contact once, in whichever slice holds it
