"""The product end to end on a live Airflow (API server, scheduler, DAG processor) with the relay as
a process and the sandbox: contacts created through the Dataverse Web API fire real webhooks, the
relay triggers the real-time DAG, and the Marketo leads, runs and task states are read back (runs
and tasks through Airflow's REST API). Then the reconciliation DAG, triggered through the REST API,
repairs a lead broken on purpose, and the last test stops everything and proves nothing is left.

The sample records are the demo's (``devenv.demo``); what each lead must hold is derived here from
those records and the field maps of ``include/mappings/`` (the recipe's maps), field by field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest

from devenv.airflow import DEFAULT_RELAY, LocalAirflow
from devenv.demo import (
    CONTACT_ID_FIELD,
    RECONCILIATION_DAG_ID,
    REPORT_TASK_ID,
    SAMPLE_ACCOUNT,
    SAMPLE_CONTACTS,
    SUMMARY_XCOM_KEY,
    SYNC_DAG_ID,
    TERMINAL_STATES,
    SampleContact,
    SampleRecords,
    contact_ids_of,
    create_sample_records,
    wait_for_contacts,
)
from devenv.relay import LocalRelay
from relay.settings import RelaySettings
from tests.sandbox.marketo_rest import MarketoRest
from tests.support import REALTIME_TASK_IDS, sandbox_airflow_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WEBHOOK_KEY = "e2e-webhook-key"
# The recipe's "contact → lead" map, as include/mappings/ ships it (the address lines are joined
# with a newline, the maps' default separator).
CONTACT_TO_LEAD = {
    "email": "emailaddress1",
    "firstName": "firstname",
    "lastName": "lastname",
    "phone": "telephone1",
    "fax": "fax",
    "mobilePhone": "mobilephone",
    "address": ("address1_line1", "address1_line2", "address1_line3"),
    "city": "address1_city",
    "state": "address1_stateorprovince",
    "country": "address1_country",
    "postalCode": "address1_postalcode",
    "mktoPersonNotes": "description",
    "title": "jobtitle",
}
# The recipe's "parent account → company fields" map, as include/mappings/ ships it.
ACCOUNT_TO_COMPANY = {
    "company": "name",
    "billingStreet": ("address1_line1", "address1_line2", "address1_line3"),
    "billingCity": "address1_city",
    "billingState": "address1_stateorprovince",
    "billingCountry": "address1_country",
    "billingPostalCode": "address1_postalcode",
    "mainPhone": "telephone1",
    "sicCode": "sic",
    "mktoCompanyNotes": "description",
    "annualRevenue": "revenue",
    "numberOfEmployees": "numberofemployees",
    "website": "websiteurl",
}


def expected_fields(
    mapping: dict[str, str | tuple[str, ...]], row: dict[str, Any]
) -> dict[str, Any]:
    """What the lead should hold for ``row`` under ``mapping``: absent columns give None."""
    expected = {}
    for marketo_field, column in mapping.items():
        if isinstance(column, tuple):
            lines = [row[c] for c in column if row.get(c)]
            expected[marketo_field] = "\n".join(lines) or None
        else:
            expected[marketo_field] = row.get(column)
    return expected


def sample(label: str) -> SampleContact:
    return next(contact for contact in SAMPLE_CONTACTS if contact.label == label)


@pytest.fixture(scope="module")
def airflow_env(sandbox_servers: Any) -> dict[str, str]:
    return sandbox_airflow_env(sandbox_servers)


@pytest.fixture(scope="module")
def airflow_dag_ids() -> list[str]:
    return [SYNC_DAG_ID, RECONCILIATION_DAG_ID]


@pytest.fixture(scope="module")
def baseline_children() -> set[int]:
    """Child processes of this test process before the module started anything."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def relay(
    baseline_children: set[int],
    airflow_live: LocalAirflow,
    start_local_relay: Callable[[RelaySettings], LocalRelay],
) -> LocalRelay:
    return start_local_relay(
        RelaySettings(
            airflow_url=airflow_live.url,
            airflow_username=DEFAULT_RELAY.username,
            airflow_password=DEFAULT_RELAY.password,
            webhook_keys=(WEBHOOK_KEY,),
            spool_path=airflow_live.home / "e2e-relay-spool.sqlite3",
            port=0,
        )
    )


@dataclass(frozen=True)
class Scenario:
    records: SampleRecords
    runs: list[dict[str, Any]]
    leads: dict[str, dict[str, Any]]  # contact id → lead, as Marketo shows it

    def contact_id(self, label: str) -> str:
        return self.records.contact_ids[label]

    def run_of(self, label: str) -> dict[str, Any]:
        (run,) = [run for run in self.runs if self.contact_id(label) in contact_ids_of(run)]
        return run


@pytest.fixture(scope="module")
def scenario(sandbox_servers: Any, airflow_live: LocalAirflow, relay: LocalRelay) -> Scenario:
    """The demo's records created through the Web API, synced through webhooks → relay → DAG."""
    dataverse, marketo = sandbox_servers.dataverse, sandbox_servers.marketo
    dataverse.service.reset()
    marketo.service.reset()
    marketo.admin.add_field(CONTACT_ID_FIELD)
    dataverse.admin.register_webhook(relay.webhook_url, "WebhookKey", WEBHOOK_KEY)

    records = create_sample_records(dataverse.admin)
    runs = wait_for_contacts(airflow_live, records.contact_ids.values(), timeout=180)

    leads = {lead.get(CONTACT_ID_FIELD): lead for lead in marketo.admin.leads()}
    return Scenario(records, runs, leads)


def test_contact_with_an_account_becomes_a_lead_with_its_company_fields(scenario: Scenario):
    contact = sample("with account")
    lead = scenario.leads[scenario.contact_id(contact.label)]

    expected = {
        **expected_fields(CONTACT_TO_LEAD, dict(contact.columns)),
        **expected_fields(ACCOUNT_TO_COMPANY, SAMPLE_ACCOUNT),
    }
    assert {name: lead.get(name) for name in expected} == expected


def test_contact_without_an_account_gets_no_company_fields(scenario: Scenario):
    contact = sample("no account")
    lead = scenario.leads[scenario.contact_id(contact.label)]

    expected = expected_fields(CONTACT_TO_LEAD, dict(contact.columns))
    assert {name: lead.get(name) for name in expected} == expected
    assert {name: lead.get(name) for name in ACCOUNT_TO_COMPANY} == dict.fromkeys(
        ACCOUNT_TO_COMPANY
    )


def test_contact_without_email_is_rejected_and_its_run_failed_with_the_reason(
    scenario: Scenario, airflow_live: LocalAirflow
):
    contact_id = scenario.contact_id("no email")
    run_id = scenario.run_of("no email")["dag_run_id"]

    assert contact_id not in scenario.leads
    assert len(scenario.leads) == len(SAMPLE_CONTACTS) - 1
    assert scenario.run_of("no email")["state"] == "failed"
    summary = airflow_live.xcom(SYNC_DAG_ID, run_id, REPORT_TASK_ID, SUMMARY_XCOM_KEY)
    assert {r["contact_id"]: r["reason"] for r in summary["rejected"]} == {contact_id: "no email"}
    log_text = _task_log(airflow_live, SYNC_DAG_ID, run_id, REPORT_TASK_ID)
    assert contact_id in log_text
    assert "no email" in log_text


def test_runs_and_task_states_read_back_through_the_rest_api(
    scenario: Scenario, airflow_live: LocalAirflow
):
    tasks = list(REALTIME_TASK_IDS)
    rejected_id = scenario.contact_id("no email")
    for run in scenario.runs:
        states = {
            ti["task_id"]: ti["state"]
            for ti in airflow_live.task_instances(SYNC_DAG_ID, run["dag_run_id"])
        }
        has_rejected = rejected_id in contact_ids_of(run)
        # Only the report fails, after the good records were written.
        expected = {task: "success" for task in tasks}
        if has_rejected:
            expected["report"] = "failed"
        assert states == expected
        assert run["state"] == ("failed" if has_rejected else "success")
        # The relay's conf carries ids only: nothing that could be an email address.
        assert "@" not in json.dumps(run["conf"])


def test_no_email_address_reaches_a_log(
    scenario: Scenario, airflow_live: LocalAirflow, relay: LocalRelay
):
    emails = [c.email.encode() for c in SAMPLE_CONTACTS if c.email]
    logs = [p for p in airflow_live.log_dir.rglob("*") if p.is_file()] + [relay.log_path]

    assert any(p.parent.name == f"task_id={REPORT_TASK_ID}" for p in logs)  # the task logs exist
    leaking = [str(p) for p in logs if any(email in p.read_bytes() for email in emails)]
    assert leaking == []


def test_reconciliation_repairs_a_lead_broken_on_purpose(
    scenario: Scenario, sandbox_servers: Any, airflow_live: LocalAirflow
):
    contact = sample("with account")
    lead = scenario.leads[scenario.contact_id(contact.label)]
    marketo = sandbox_servers.marketo
    # Broken the way a Marketo user would: an edit through the REST API.
    broken = {"id": lead["id"], "firstName": "Broken", "city": None, "company": "Wrong Corp"}
    answer = MarketoRest(marketo.url).sync([broken], action="updateOnly", lookupField="id")
    assert answer["result"][0]["status"] == "updated"
    assert marketo.admin.lead(lead["id"])["firstName"] == "Broken"

    _wait_for_earlier_runs(airflow_live, RECONCILIATION_DAG_ID)
    run_id = airflow_live.trigger(RECONCILIATION_DAG_ID, {"full_pass": True})

    assert airflow_live.wait_for_run(RECONCILIATION_DAG_ID, run_id, timeout=180) == "success"
    repaired = marketo.admin.lead(lead["id"])
    fields = [*CONTACT_TO_LEAD, *ACCOUNT_TO_COMPANY]
    assert {name: repaired.get(name) for name in fields} == {
        name: lead.get(name) for name in fields
    }
    report = airflow_live.xcom(RECONCILIATION_DAG_ID, run_id, REPORT_TASK_ID)
    # Only the broken lead is written; the other is in sync; the one without email stays out.
    assert report["counts"] == {
        "created": 0,
        "updated": 1,
        "unchanged": 1,
        "flagged": 0,
        "deleted": 0,
        "skipped": 0,
        "rejected": 1,
    }
    assert report["rejected"] == [
        {"contact_id": scenario.contact_id("no email"), "reason": "no email"}
    ]
    assert len(marketo.admin.leads()) == len(scenario.leads)


def test_teardown_leaves_no_process_behind(
    scenario: Scenario, airflow_live: LocalAirflow, relay: LocalRelay, baseline_children: set[int]
):
    started = {child.pid for child in psutil.Process().children(recursive=True)}
    assert started - baseline_children  # the relay and Airflow are children: the check can fail

    relay.stop()
    airflow_live.stop()

    assert relay.leftovers() == []
    assert airflow_live.live_processes() == []
    alive = [
        child.pid
        for child in psutil.Process().children(recursive=True)
        if child.pid not in baseline_children and child.status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []
    for url in (relay.url, airflow_live.url):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)


def _wait_for_earlier_runs(airflow: LocalAirflow, dag_id: str, timeout: float = 120.0) -> None:
    """A fresh Airflow schedules the nightly DAG's latest interval at once (catchup=False), and
    max_active_runs=1 would hold a triggered run back until that one ends: wait for it here, so a
    failure names the run that held ours back."""
    deadline = time.monotonic() + timeout
    while active := [
        run for run in airflow.dag_runs(dag_id) if run["state"] not in TERMINAL_STATES
    ]:
        states = {run["dag_run_id"]: run["state"] for run in active}
        assert time.monotonic() < deadline, f"earlier runs of {dag_id} did not end: {states}"
        time.sleep(0.5)


def _task_log(airflow: LocalAirflow, dag_id: str, run_id: str, task_id: str) -> str:
    """The task's first-try log through the REST API, as text to search."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"
    answer = airflow.request("GET", path, params={"full_content": True}).json()
    return json.dumps(answer["content"])
