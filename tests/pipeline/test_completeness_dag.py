"""Issue 12 through the real-time DAG, in-process, against both sandboxes: removed contacts
(deleted, deactivated, merged), ``sync_filter``, account edits, duplicate emails, and the
``dry_run`` param. Every assertion reads the sandboxes (records and their own call counters) or
the run's task states and XCom."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from tests.pipeline.records import ACCOUNT, account, calls_during, contact, events, guid

FLAG = "removedFromCrm"
LOOKUP = "GET /rest/v1/leads.json"  # the sandbox counts a POST ?_method=GET lookup as a GET
WRITES = (
    "POST /rest/v1/leads.json",
    "POST /rest/v1/leads/delete.json",
    "POST /rest/v1/companies.json",
)


def marketo_writes(sandboxes) -> Counter:
    """Sync Leads and Delete Leads calls so far (the sandbox counts lookups apart)."""
    calls = sandboxes.marketo.admin.calls()["by_endpoint"]
    return Counter({k: v for k, v in calls.items() if k in WRITES})


def lead_of(sandboxes, contact_id: str) -> dict[str, Any] | None:
    leads = sandboxes.marketo.admin.leads(dynamicsContactId=contact_id)
    return leads[0] if leads else None


def dataverse(sandboxes, method: str, path: str, body: Any = None) -> None:
    admin = sandboxes.dataverse.admin
    session = admin.api_session()
    response = session.request(method, f"{admin.api_url}/{path}", json=body, timeout=10)
    response.raise_for_status()


@pytest.fixture
def flag_policy(settings_override, sandboxes):
    """``on_contact_removed: flag`` with the Boolean field created in the sandbox's Marketo."""
    sandboxes.marketo.admin.add_field(FLAG, data_type="boolean")
    settings_override(on_contact_removed="flag", removed_flag_field=FLAG)


def created(run_sync, sandboxes, *contacts: dict[str, Any]) -> None:
    sandboxes.dataverse.admin.seed(contacts=list(contacts))
    run = run_sync(events(*(c["contactid"] for c in contacts), message="Create"))
    assert set(run.outcomes().values()) == {"created"}


# --- removed contacts --------------------------------------------------------------------------


def test_a_deleted_contact_under_ignore_is_skipped_and_the_run_succeeds(run_sync, sandboxes):
    gone = guid(1)
    created(run_sync, sandboxes, contact(gone, "gone@example.com"))
    dataverse(sandboxes, "DELETE", f"contacts({gone})")

    run, calls = calls_during(sandboxes, lambda: run_sync(events(gone, message="Delete")))

    assert run.state == "success"
    synced = run.xcom("sync_contacts")["outcomes"]
    assert [(o["status"], o["reason_code"]) for o in synced] == [("skipped", "contact deleted")]
    assert "on_contact_removed is ignore" in synced[0]["reason"]
    assert lead_of(sandboxes, gone) is not None  # left as is
    assert LOOKUP not in calls["marketo"]  # ignore needs no lookup at all


def test_a_deleted_contact_under_flag_gets_its_lead_flagged_once(run_sync, sandboxes, flag_policy):
    gone, stays = guid(1), guid(2)
    created(run_sync, sandboxes, contact(gone, "gone@example.com"), contact(stays, "s@example.com"))
    dataverse(sandboxes, "DELETE", f"contacts({gone})")

    run = run_sync(events(gone, message="Delete"))

    assert run.state == "success"
    assert run.outcomes() == {gone: "flagged"}
    assert lead_of(sandboxes, gone)[FLAG] is True
    assert lead_of(sandboxes, stays).get(FLAG) in (None, False)

    again, calls = calls_during(sandboxes, lambda: run_sync(events(gone, message="Delete")))
    assert again.outcomes() == {gone: "unchanged"}
    assert calls["marketo"][LOOKUP] == 1  # the contact-id lookup; no write


def test_a_deleted_contact_under_delete_loses_its_lead(run_sync, sandboxes, settings_override):
    settings_override(on_contact_removed="delete")
    gone = guid(1)
    created(run_sync, sandboxes, contact(gone, "gone@example.com"))
    dataverse(sandboxes, "DELETE", f"contacts({gone})")

    run, calls = calls_during(sandboxes, lambda: run_sync(events(gone, message="Delete")))

    assert run.outcomes() == {gone: "deleted"}
    assert lead_of(sandboxes, gone) is None
    assert calls["marketo"]["POST /rest/v1/leads/delete.json"] == 1


def test_deactivation_flags_and_reactivation_clears_the_flag(run_sync, sandboxes, flag_policy):
    person = guid(3)
    created(run_sync, sandboxes, contact(person, "p@example.com"))
    dataverse(sandboxes, "PATCH", f"contacts({person})", {"statecode": 1, "statuscode": 2})

    run = run_sync(events(person))
    assert run.outcomes() == {person: "flagged"}
    assert lead_of(sandboxes, person)[FLAG] is True

    dataverse(sandboxes, "PATCH", f"contacts({person})", {"statecode": 0, "statuscode": 1})
    run = run_sync(events(person))
    assert run.outcomes() == {person: "updated"}
    assert run.xcom("sync_contacts")["outcomes"][0]["changed"] == [FLAG]
    assert lead_of(sandboxes, person)[FLAG] is False


def test_a_merged_contact_is_flagged_and_its_master_synced_in_the_same_run(
    run_sync, sandboxes, flag_policy
):
    master, subordinate = guid(4), guid(5)
    created(
        run_sync,
        sandboxes,
        contact(master, "m@example.com"),
        contact(subordinate, "s@example.com"),
    )
    dataverse(
        sandboxes,
        "POST",
        "Merge",
        {
            "Target": {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": master},
            "Subordinate": {
                "@odata.type": "Microsoft.Dynamics.CRM.contact",
                "contactid": subordinate,
            },
            "UpdateContent": {"@odata.type": "Microsoft.Dynamics.CRM.contact", "jobtitle": "CTO"},
            "PerformParentingChecks": False,
        },
    )

    run = run_sync(events(subordinate))

    assert run.state == "success"
    assert run.outcomes() == {subordinate: "flagged", master: "updated"}
    (removed,) = [o for o in run.xcom("sync_contacts")["outcomes"] if o["status"] == "flagged"]
    assert removed["reason"] == f"contact merged into contact {master}"
    assert lead_of(sandboxes, subordinate)[FLAG] is True
    assert lead_of(sandboxes, master)["title"] == "CTO"


# --- sync_filter -------------------------------------------------------------------------------


def test_a_contact_outside_the_filter_is_skipped_in_one_query_or_flagged_if_it_has_a_lead(
    run_sync, sandboxes, flag_policy, settings_override
):
    inside, outside_new, outside_old = guid(6), guid(7), guid(8)
    created(run_sync, sandboxes, contact(outside_old, "old@example.com"))
    settings_override(sync_filter="donotbulkemail ne true")
    sandboxes.dataverse.admin.seed(
        contacts=[
            contact(inside, "in@example.com"),
            contact(outside_new, "out@example.com", donotbulkemail=True),
        ]
    )
    dataverse(sandboxes, "PATCH", f"contacts({outside_old})", {"donotbulkemail": True})

    run, calls = calls_during(sandboxes, lambda: run_sync(events(inside, outside_new, outside_old)))

    assert run.state == "success"
    assert run.outcomes() == {inside: "created", outside_new: "skipped", outside_old: "flagged"}
    statuses = {o["contact_id"]: o["reason_code"] for o in run.xcom("sync_contacts")["outcomes"]}
    assert statuses[outside_new] == "filtered"
    assert lead_of(sandboxes, outside_new) is None
    # the filtered query, then ONE query for the two ids it did not return
    assert calls["dataverse"]["GET /api/data/v9.2/contacts"] <= 3  # + the duplicate-email check


def test_a_filter_dataverse_refuses_fails_before_any_write_naming_the_setting(
    run_sync, sandboxes, settings_override, output
):
    settings_override(sync_filter="nosuchcolumn eq 1")
    sandboxes.dataverse.admin.seed(contacts=[contact(guid(9), "x@example.com")])
    before = marketo_writes(sandboxes)

    run = run_sync(events(guid(9)))

    assert run.state == "failed"
    assert run.task_states["sync_contacts"] == "failed"
    assert run.tries["sync_contacts"] == 1  # a configuration error is not retried
    assert "sync_filter" in output()
    assert marketo_writes(sandboxes) == before
    assert sandboxes.marketo.admin.leads() == []


# --- dry run -----------------------------------------------------------------------------------


def test_a_dry_run_looks_up_but_writes_nothing_and_says_what_would_happen(
    run_sync, sandboxes, settings_override
):
    settings_override(on_contact_removed="delete")
    known, new, gone = guid(10), guid(11), guid(12)
    created(run_sync, sandboxes, contact(known, "k@example.com"), contact(gone, "g@example.com"))
    sandboxes.dataverse.admin.seed(contacts=[contact(new, "n@example.com")])
    dataverse(sandboxes, "PATCH", f"contacts({known})", {"jobtitle": "Engineer"})
    dataverse(sandboxes, "DELETE", f"contacts({gone})")
    before = marketo_writes(sandboxes)
    leads_before = sandboxes.marketo.admin.leads()

    conf = {
        "events": [
            {"message": "Update", "entity": "contact", "id": known},
            {"message": "Create", "entity": "contact", "id": new},
            {"message": "Delete", "entity": "contact", "id": gone},
        ],
        "dry_run": True,
    }
    run, calls = calls_during(sandboxes, lambda: run_sync(conf))

    synced = run.xcom("sync_contacts")
    assert synced["dry_run"] is True
    assert run.outcomes() == {known: "updated", new: "created", gone: "deleted"}
    assert marketo_writes(sandboxes) == before
    assert sandboxes.marketo.admin.leads() == leads_before
    assert calls["marketo"][LOOKUP] >= 1  # the lookups happen


# --- duplicates --------------------------------------------------------------------------------


def test_two_contacts_one_email_the_oldest_owns_it_and_reruns_write_nothing(run_sync, sandboxes):
    older, younger = guid(13), guid(14)
    sandboxes.dataverse.admin.seed(contacts=[contact(older, "same@example.com")])
    sandboxes.dataverse.admin.advance_clock(60)
    sandboxes.dataverse.admin.seed(contacts=[contact(younger, "same@example.com")])

    run = run_sync(events(younger, older, message="Create"))

    assert run.outcomes() == {younger: "rejected", older: "created"}
    assert run.summary["rejected"] == [
        {"contact_id": younger, "reason": f"duplicate email: contact {older} owns it"}
    ]
    for _ in range(2):
        again, calls = calls_during(sandboxes, lambda: run_sync(events(younger, older)))
        assert again.outcomes() == {younger: "rejected", older: "unchanged"}
        assert not any(k in WRITES for k in calls["marketo"])
    assert lead_of(sandboxes, older)["email"] == "same@example.com"
    assert lead_of(sandboxes, younger) is None


# --- accounts ----------------------------------------------------------------------------------


def test_an_account_edit_reaches_all_700_contacts_within_the_call_budget(run_sync, sandboxes):
    ids = [guid(1000 + n) for n in range(700)]
    sandboxes.dataverse.admin.seed(
        accounts=[account()],
        contacts=[
            contact(i, f"c{n}@example.com", _parentcustomerid_value=ACCOUNT)
            for n, i in enumerate(ids)
        ],
    )
    first = run_sync({"account_ids": [ACCOUNT]})
    assert Counter(first.outcomes().values()) == {"created": 700}
    dataverse(sandboxes, "PATCH", f"accounts({ACCOUNT})", {"name": "Contoso Pharmaceuticals"})

    run, calls = calls_during(sandboxes, lambda: run_sync(events(ACCOUNT, entity="account")))

    assert run.state == "success"
    assert Counter(run.outcomes().values()) == {"updated": 700}
    assert {lead["company"] for lead in sandboxes.marketo.admin.leads()} == {
        "Contoso Pharmaceuticals"
    }
    writes = sum(n for k, n in calls["marketo"].items() if k in WRITES)
    reads = calls["dataverse"]["GET /api/data/v9.2/contacts"]
    print(f"account edit, 700 contacts: {writes} Marketo write call(s), {reads} contact query")
    assert writes <= math.ceil(700 / 300) + 1
    assert reads <= math.ceil(700 / 5000)
    assert calls["dataverse"]["GET /api/data/v9.2/accounts"] == 1

    rerun, calls = calls_during(sandboxes, lambda: run_sync(events(ACCOUNT, entity="account")))
    assert Counter(rerun.outcomes().values()) == {"unchanged": 700}
    assert not any(k in WRITES for k in calls["marketo"])


def test_an_unknown_account_is_refused_and_the_others_synced(run_sync, sandboxes):
    unknown = "a0000000-0000-4000-8000-0000000000ff"
    member = guid(20)
    sandboxes.dataverse.admin.seed(
        accounts=[account()],
        contacts=[contact(member, "m@example.com", _parentcustomerid_value=ACCOUNT)],
    )

    run = run_sync({"account_ids": [unknown, ACCOUNT]})

    assert run.outcomes() == {member: "created"}
    refused = run.xcom("sync_contacts")["refused"]
    assert refused == [
        {"item": "account_ids", "id": unknown, "reason": "account not found in Dynamics 365"}
    ]
    # The run's report lists it with the refused conf items.
    assert run.summary["refused"] == refused


def test_an_account_ids_entry_that_is_not_a_guid_is_refused_at_trigger(sync_dag, sandboxes):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="account_ids"):
        sync_dag.test(run_conf={"account_ids": ["not-a-guid"]})


def test_a_flag_field_that_is_not_boolean_in_marketo_fails_before_any_write(
    run_sync, sandboxes, settings_override, output
):
    sandboxes.marketo.admin.add_field(FLAG, data_type="string")
    settings_override(on_contact_removed="flag", removed_flag_field=FLAG)
    sandboxes.dataverse.admin.seed(contacts=[contact(guid(30), "x@example.com")])

    run = run_sync(events(guid(30)))

    assert run.state == "failed"
    assert run.task_states["sync_contacts"] == "failed"
    assert run.tries["sync_contacts"] == 1
    assert "removed_flag_field" in output()
    assert sandboxes.marketo.admin.leads() == []
