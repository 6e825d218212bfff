"""The real-time DAG run in-process (``dag.test``) against the Dataverse and Marketo sandboxes.

Every assertion reads the sandboxes (their records and their own call counters) or the run's
task states and XCom, never a value computed by the code under test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import ParamValidationError

from tests.fixtures import WEBHOOK_FIXTURE
from tests.pipeline.records import ACCOUNT, account, calls_during, contact, events, guid

SAMPLE_CONTACT = "6d81597f-0f9f-e711-8122-000d3aa2331c"  # the contact of Microsoft's sample webhook
COMPANY_FIELDS = ("company", "billingStreet", "billingCity", "billingCountry", "mainPhone")


def lead_of(sandboxes, contact_id: str) -> dict[str, Any]:
    (lead,) = sandboxes.marketo.admin.leads(dynamicsContactId=contact_id)
    return lead


# --- the scenarios --------------------------------------------------------------------


def test_microsoft_sample_webhook_syncs_its_contact(run_sync, sandboxes, output):
    sandboxes.dataverse.admin.seed(contacts=[contact(SAMPLE_CONTACT, "james.glynn@example.com")])

    run = run_sync({"webhookRequest": json.loads(WEBHOOK_FIXTURE.read_text())})

    assert run.state == "success"
    assert set(run.task_states.values()) == {"success"}
    lead = lead_of(sandboxes, SAMPLE_CONTACT)
    assert lead["email"] == "james.glynn@example.com"
    assert lead["firstName"] == "Ada"
    assert run.summary["counts"] == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "flagged": 0,
        "deleted": 0,
        "skipped": 0,
        "rejected": 0,
    }
    logs = output()
    assert "Sync report:" in logs
    assert "james.glynn@example.com" not in logs
    # XCom holds ids, statuses and field names: the contact's values stay inside sync_contacts.
    stored = json.dumps([run.xcom("parse_events"), run.xcom("sync_contacts"), run.summary])
    assert SAMPLE_CONTACT in stored
    assert "james.glynn" not in stored
    assert "Ada" not in stored


def test_create_with_an_account_gets_company_fields_and_without_one_gets_none(run_sync, sandboxes):
    with_account, alone = guid(1), guid(2)
    sandboxes.dataverse.admin.seed(
        accounts=[account()],
        contacts=[
            contact(with_account, "one@example.com", _parentcustomerid_value=ACCOUNT),
            contact(alone, "two@example.com"),
        ],
    )

    run = run_sync(events(with_account, alone, message="Create"))

    assert run.state == "success"
    assert run.outcomes() == {with_account: "created", alone: "created"}
    lead = lead_of(sandboxes, with_account)
    assert lead["company"] == "Contoso Ltd"
    assert lead["billingStreet"] == "1 Microsoft Way"
    assert lead["billingCity"] == "Redmond"
    assert lead["mainPhone"] == "+1 425 555 0100"
    lone = lead_of(sandboxes, alone)
    assert all(lone.get(name) is None for name in COMPANY_FIELDS)


def test_a_contact_without_email_is_rejected_and_fails_the_run_after_the_others_are_written(
    run_sync, sandboxes, output
):
    good, no_email, other = guid(1), guid(2), guid(3)
    sandboxes.dataverse.admin.seed(
        contacts=[
            contact(good, "good@example.com"),
            contact(no_email, None),
            contact(other, "other@example.com"),
        ]
    )

    run = run_sync(events(good, no_email, other, message="Create"))

    assert run.state == "failed"
    assert run.task_states["report"] == "failed"
    assert run.task_states["sync_contacts"] == "success"
    assert {lead["dynamicsContactId"] for lead in sandboxes.marketo.admin.leads()} == {good, other}
    assert run.summary["rejected"] == [{"contact_id": no_email, "reason": "no email"}]
    assert run.summary["counts"]["created"] == 2
    logs = output()
    assert any(no_email in line and "no email" in line for line in logs.splitlines())
    assert "@example.com" not in logs


def test_an_update_writes_only_the_changed_fields_to_the_existing_lead(run_sync, sandboxes):
    contact_id = guid(7)
    sandboxes.dataverse.admin.seed(
        contacts=[contact(contact_id, "ada@example.com", telephone1="+44 20 7946 0000")]
    )
    run_sync(events(contact_id, message="Create"))
    lead_id = lead_of(sandboxes, contact_id)["id"]
    session = sandboxes.dataverse.admin.api_session()
    session.patch(
        f"{sandboxes.dataverse.admin.api_url}/contacts({contact_id})",
        json={"telephone1": "+44 20 7946 0999", "jobtitle": "Analyst"},
        timeout=10,
    ).raise_for_status()

    run = run_sync(events(contact_id))

    assert run.state == "success"
    assert run.outcomes() == {contact_id: "updated"}
    (lead,) = sandboxes.marketo.admin.leads()
    assert (lead["id"], lead["phone"], lead["title"]) == (lead_id, "+44 20 7946 0999", "Analyst")
    (outcome,) = run.xcom("sync_contacts")["outcomes"]
    assert sorted(outcome["changed"]) == ["phone", "title"]  # the names, not the values


def test_an_unchanged_contact_is_not_written_again(run_sync, sandboxes):
    contact_id = guid(8)
    sandboxes.dataverse.admin.seed(contacts=[contact(contact_id, "same@example.com")])
    run_sync(events(contact_id, message="Create"))

    run, calls = calls_during(sandboxes, lambda: run_sync(events(contact_id)))

    assert run.state == "success"
    assert run.outcomes() == {contact_id: "unchanged"}
    assert calls["marketo"]["POST /rest/v1/leads.json"] == 0
    # The lead found by email is linked to the contact: no lookup by contact id is needed.
    assert calls["marketo"]["GET /rest/v1/leads.json"] == 1


def test_an_email_change_updates_the_same_lead_without_a_duplicate(run_sync, sandboxes):
    contact_id = guid(9)
    (lead_id,) = sandboxes.marketo.admin.seed_leads(
        [{"email": "old@example.com", "dynamicsContactId": contact_id, "firstName": "Ada"}]
    )
    sandboxes.dataverse.admin.seed(contacts=[contact(contact_id, "new@example.com")])

    run = run_sync(events(contact_id))

    assert run.outcomes() == {contact_id: "updated"}
    (lead,) = sandboxes.marketo.admin.leads()
    assert (lead["id"], lead["email"]) == (lead_id, "new@example.com")


def test_a_batch_of_300_events_takes_one_query_per_table_two_lookups_and_one_write(
    run_sync, sandboxes
):
    ids = [guid(n) for n in range(300)]
    accounts = [account(f"a0000000-0000-4000-8000-{n:012d}") for n in range(10)]
    sandboxes.dataverse.admin.seed(
        accounts=accounts,
        contacts=[
            contact(
                contact_id,
                f"person{n}@example.com",
                _parentcustomerid_value=accounts[n % 10]["accountid"] if n % 2 else None,
            )
            for n, contact_id in enumerate(ids)
        ],
    )
    conf = events(*ids, message="Create")
    conf["events"].append(conf["events"][0])  # a duplicate delivery: one write all the same

    run, calls = calls_during(sandboxes, lambda: run_sync(conf))

    assert run.state == "success"
    assert run.summary["counts"]["created"] == 300
    assert len(sandboxes.marketo.admin.leads()) == 300
    dynamics, marketo = calls["dataverse"], calls["marketo"]
    # the batch's query, + one for other live holders of the new contacts' emails (ownership of
    # a shared email; none once their leads are linked)
    assert dynamics["GET /api/data/v9.2/contacts"] == 2
    assert dynamics["GET /api/data/v9.2/accounts"] == 1
    assert marketo["GET /rest/v1/leads.json"] == 2
    assert marketo["POST /rest/v1/leads.json"] == 1
    # The report's own count, per service, agrees with what the sandboxes saw.
    reported = run.summary["api_calls"]
    assert reported["dataverse"]["total"] == sum(dynamics.values())
    assert reported["marketo"]["total"] == sum(marketo.values())


def test_company_record_mode_writes_the_company_then_links_the_lead(
    company_record_mode, run_sync, sandboxes
):
    contact_id = guid(11)
    sandboxes.dataverse.admin.seed(
        accounts=[account()],
        contacts=[contact(contact_id, "linked@example.com", _parentcustomerid_value=ACCOUNT)],
    )

    run, calls = calls_during(sandboxes, lambda: run_sync(events(contact_id, message="Create")))

    assert run.state == "success"
    (company,) = sandboxes.marketo.admin.companies()
    assert (company["externalCompanyId"], company["company"]) == (ACCOUNT, "Contoso Ltd")
    lead = lead_of(sandboxes, contact_id)
    assert lead["externalCompanyId"] == ACCOUNT
    assert lead["billingCity"] == "Redmond"  # shown from the company record
    assert calls["marketo"]["POST /rest/v1/companies.json"] == 1


def test_events_the_sync_does_not_act_on_are_refused_and_reported(run_sync, sandboxes):
    synced, assigned, lead = guid(21), guid(22), guid(23)
    sandboxes.dataverse.admin.seed(contacts=[contact(synced, "kept@example.com")])
    conf = {
        "events": [
            *events(synced)["events"],
            *events(assigned, message="Assign")["events"],
            *events(lead, entity="lead")["events"],
            *events(ACCOUNT, entity="account", message="Create")["events"],
        ]
    }

    run = run_sync(conf)

    assert run.state == "success"
    assert run.outcomes() == {synced: "created"}
    refused = {item["id"]: item["reason"] for item in run.summary["refused"]}
    assert set(refused) == {assigned, lead, ACCOUNT}
    assert "Assign" in refused[assigned]
    assert "'lead' is not synced" in refused[lead]
    assert "no contact has this account as parent yet" in refused[ACCOUNT]


# --- bad conf ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conf",
    [
        pytest.param({"events": []}, id="no events"),
        pytest.param({"events": [{"message": "Update", "entity": "contact"}]}, id="event no id"),
        pytest.param({"contact_ids": ["not-a-guid"]}, id="bad id"),
        pytest.param({"webhookRequest": {"MessageName": "Update"}}, id="not a webhook body"),
    ],
)
def test_a_malformed_conf_is_refused_before_a_run_exists(sync_dag, sandboxes, conf):
    with pytest.raises(ParamValidationError):
        sync_dag.test(run_conf=conf)
    assert sandboxes.dataverse.admin.calls()["total"] == 0


def test_a_conf_with_two_forms_fails_the_run_at_parse_events_without_any_call(run_sync, sandboxes):
    run = run_sync({**events(guid(1)), "contact_ids": [guid(2)]})

    assert run.state == "failed"
    assert run.task_states["parse_events"] == "failed"
    assert sandboxes.dataverse.admin.calls()["total"] == 0
    assert sandboxes.marketo.admin.calls()["total"] == 0


def test_a_missing_connection_fails_the_task_at_once_instead_of_retrying(
    run_sync, sandboxes, monkeypatch
):
    contact_id = guid(31)
    sandboxes.dataverse.admin.seed(contacts=[contact(contact_id, "wait@example.com")])
    monkeypatch.delenv("AIRFLOW_CONN_MARKETO_DEFAULT")

    run = run_sync(events(contact_id))

    assert run.state == "failed"
    assert run.task_states["sync_contacts"] == "failed"
    assert run.tries["sync_contacts"] == 1
