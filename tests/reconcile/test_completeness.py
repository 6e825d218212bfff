"""Issue 12 in the nightly reconciliation, against both sandboxes: accounts modified in the window
reach their contacts' leads, inactive contacts get the removal policy, and ``sync_filter`` applies
(leads of contacts outside it get the policy too). Assertions read the sandboxes."""

from __future__ import annotations

import dataclasses

import pytest

from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import MarketoHook
from contact_sync.reconcile import reconcile
from tests.reconcile.conftest import (
    BEFORE,
    INSIDE,
    NIGHT,
    account_id,
    contact,
    contact_id,
    lead,
)

FLAG = "removedFromCrm"


@pytest.fixture
def reconcile_with(sandboxes):
    """``reconcile_with(**settings)``: one night with these settings changed; its report."""

    def run(**changes):
        mappings = dataclasses.replace(
            sandboxes.mappings,
            settings=dataclasses.replace(sandboxes.mappings.settings, **changes),
        )
        return reconcile(DynamicsHook(), MarketoHook(), NIGHT, mappings)

    return run


def test_an_account_edited_in_the_window_reaches_contacts_modified_before_it(
    sandboxes, reconcile_with
):
    sandboxes.dataverse.admin.seed(
        accounts=[{"accountid": account_id(1), "name": "Renamed Ltd", "modifiedon": INSIDE}],
        contacts=[
            contact(1, modifiedon=BEFORE, _parentcustomerid_value=account_id(1)),
            contact(2, modifiedon=INSIDE, _parentcustomerid_value=account_id(1)),
            contact(3, modifiedon=BEFORE),  # another account's, untouched
        ],
    )
    sandboxes.marketo.admin.seed_leads(
        [lead(1, company="Old Ltd"), lead(2, company="Old Ltd"), lead(3)]
    )
    dataverse_before = sandboxes.calls("dataverse").get("GET /api/data/v9.2/contacts", 0)

    report = reconcile_with()

    assert report.counts["updated"] == 2
    assert report.total == 2  # contact 2 once, though both its row and its account are new
    assert {lead.get("company") for lead in sandboxes.leads() if lead.get("company")} == {
        "Renamed Ltd"
    }
    contact_queries = sandboxes.calls("dataverse")["GET /api/data/v9.2/contacts"]
    assert contact_queries - dataverse_before == 2  # the window's page, the account's page
    assert sandboxes.calls("dataverse")["GET /api/data/v9.2/accounts"] == 1

    again = reconcile_with()
    assert again.counts["updated"] == 0
    assert again.writes == 0


def test_inactive_contacts_in_the_window_get_the_policy_and_ignore_writes_nothing(
    sandboxes, reconcile_with
):
    sandboxes.marketo.admin.add_field(FLAG, data_type="boolean")
    sandboxes.dataverse.admin.seed(contacts=[contact(4, statecode=1, statuscode=2)])
    sandboxes.marketo.admin.seed_leads([lead(4)])

    ignored = reconcile_with()
    assert ignored.counts["skipped"] == 1
    assert ignored.writes == 0
    assert not ignored.failed

    flagged = reconcile_with(on_contact_removed="flag", removed_flag_field=FLAG)
    assert flagged.counts["flagged"] == 1
    assert flagged.writes == 1  # a flag is a write to Marketo like a create or an update
    (removed,) = sandboxes.leads(dynamicsContactId=contact_id(4))
    assert removed[FLAG] is True


def test_the_filter_applies_and_a_contact_leaving_it_is_treated_as_removed(
    sandboxes, reconcile_with
):
    sandboxes.dataverse.admin.seed(
        contacts=[contact(5), contact(6, donotbulkemail=True), contact(7, donotbulkemail=True)]
    )
    sandboxes.marketo.admin.seed_leads([lead(6)])

    report = reconcile_with(sync_filter="donotbulkemail ne true", on_contact_removed="delete")

    assert report.counts["created"] == 1  # contact 5
    assert report.counts["deleted"] == 1  # contact 6's lead
    assert report.counts["skipped"] == 1  # contact 7: outside, no lead: "filtered"
    assert sandboxes.leads(dynamicsContactId=contact_id(6)) == []
    assert sandboxes.leads(dynamicsContactId=contact_id(7)) == []
