"""API economy at scale: 5,000 contacts, the calls counted by the sandboxes themselves."""

from __future__ import annotations

import math

import pytest

from tests.reconcile.conftest import account_id, contact, lead

N = 5_000
PAGE = 5_000  # Dataverse's page size
BATCH = 300  # Marketo's values per lookup and records per Sync Leads call
ACCOUNTS = 40


@pytest.fixture
def drifted_table(sandboxes) -> dict[str, int]:
    """N contacts (every tenth with a parent account): most in sync, some drifted, some missing."""
    sandboxes.dataverse.admin.seed(
        accounts=[{"accountid": account_id(a), "name": f"Account {a}"} for a in range(ACCOUNTS)],
        contacts=[
            contact(n, **({"_parentcustomerid_value": account_id(n % ACCOUNTS)} if n % 10 else {}))
            for n in range(N)
        ],
    )
    missing = set(range(0, N, 23))  # 218 lost creates
    drifted = set(range(1, N, 31)) - missing  # 162 lost updates
    sandboxes.marketo.admin.seed_leads(
        [
            lead(
                n,
                **({"company": f"Account {n % ACCOUNTS}"} if n % 10 else {}),
                **({"title": "Drifted"} if n in drifted else {}),
            )
            for n in range(N)
            if n not in missing
        ]
    )
    return {"missing": len(missing), "drifted": len(drifted)}


@pytest.mark.slow
def test_a_night_of_5000_contacts_costs_the_floor_and_a_rerun_only_the_lookups(
    sandboxes, run, drifted_table
):
    created, updated = drifted_table["missing"], drifted_table["drifted"]

    report = run().to_dict()

    assert report["total"] == N
    assert report["counts"] == {
        "created": created,
        "updated": updated,
        "unchanged": N - created - updated,
        "flagged": 0,
        "deleted": 0,
        "skipped": 0,
        "rejected": 0,
    }
    dataverse = sandboxes.calls("dataverse")
    # A query per page, + one for the other live holders of the emails of the contacts no lead
    # is linked to yet (duplicate-email ownership; none in the steady state, see the rerun).
    assert dataverse["GET /api/data/v9.2/contacts"] == math.ceil(N / PAGE) + 1
    # The accounts come $expand-ed with their contacts; the one account query is "accounts
    # modified in the window" (ids only; none here, so no page of their contacts).
    assert dataverse["GET /api/data/v9.2/accounts"] == 1
    lookups, writes = sandboxes.marketo_calls()
    # By email for all, by contact id only for the contacts whose email found no linked lead.
    assert lookups == math.ceil(N / BATCH) + math.ceil(created / BATCH)
    # createOnly and updateOnly are separate Sync Leads calls.
    assert writes == math.ceil(created / BATCH) + math.ceil(updated / BATCH)
    # The report's counts are the hooks' own, and they agree with the sandbox's.
    reported = report["api_calls"]["marketo"]["by_endpoint"]
    assert (reported["GET /rest/v1/leads.json"], reported["POST /rest/v1/leads.json"]) == (
        lookups,
        writes,
    )
    assert report["api_calls"]["dataverse"]["by_endpoint"]["GET /api/data/v9.2/contacts"] == 2

    rerun = run().to_dict()

    assert rerun["counts"] == {
        "created": 0,
        "updated": 0,
        "unchanged": N,
        "flagged": 0,
        "deleted": 0,
        "skipped": 0,
        "rejected": 0,
    }
    assert sandboxes.marketo_calls() == (lookups + math.ceil(N / BATCH), writes)
    rerun_dataverse = sandboxes.calls("dataverse")
    # steady state: one query per page and the accounts query, no ownership query
    assert rerun_dataverse["GET /api/data/v9.2/contacts"] == math.ceil(N / PAGE) + 1 + math.ceil(
        N / PAGE
    )
    assert rerun_dataverse["GET /api/data/v9.2/accounts"] == 2
