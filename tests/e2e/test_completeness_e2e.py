"""Issue 12 end to end on a live Airflow with the relay as a process and the sandbox: an account
edited through the Dataverse Web API fires its Update webhook, the relay triggers the real-time
DAG, and every lead of the account's contacts shows the new company name; a contact deleted
through the Web API fires its Delete webhook and, under ``on_contact_removed: flag`` (the demo's
mappings, through ``CONTACT_SYNC_MAPPINGS_DIR``), its lead gets the Boolean flag."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devenv.airflow import DEFAULT_RELAY, LocalAirflow
from devenv.demo import (
    CONTACT_ID_FIELD,
    RECONCILIATION_DAG_ID,
    REMOVED_FLAG_FIELD,
    SAMPLE_CONTACTS,
    SYNC_DAG_ID,
    SampleRecords,
    create_sample_records,
    wait_for_contacts,
    wait_for_new_runs,
    write_demo_mappings,
)
from devenv.relay import LocalRelay
from relay.settings import RelaySettings
from tests.support import sandbox_airflow_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WEBHOOK_KEY = "e2e-completeness-key"
ACCOUNT_COLUMNS = ("name", "address1_city", "telephone1")


@pytest.fixture(scope="module")
def mappings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_mappings(tmp_path_factory.mktemp("completeness") / "mappings")


@pytest.fixture(scope="module")
def airflow_env(sandbox_servers: Any, mappings_dir: Path) -> dict[str, str]:
    return {**sandbox_airflow_env(sandbox_servers), "CONTACT_SYNC_MAPPINGS_DIR": str(mappings_dir)}


@pytest.fixture(scope="module")
def airflow_dag_ids() -> list[str]:
    return [SYNC_DAG_ID, RECONCILIATION_DAG_ID]


@pytest.fixture(scope="module")
def relay(
    airflow_live: LocalAirflow, start_local_relay: Callable[[RelaySettings], LocalRelay]
) -> LocalRelay:
    return start_local_relay(
        RelaySettings(
            airflow_url=airflow_live.url,
            airflow_username=DEFAULT_RELAY.username,
            airflow_password=DEFAULT_RELAY.password,
            webhook_keys=(WEBHOOK_KEY,),
            spool_path=airflow_live.home / "completeness-relay-spool.sqlite3",
            port=0,
            accept_contact_delete=True,
        )
    )


@pytest.fixture(scope="module")
def records(sandbox_servers: Any, airflow_live: LocalAirflow, relay: LocalRelay) -> SampleRecords:
    dataverse, marketo = sandbox_servers.dataverse, sandbox_servers.marketo
    dataverse.service.reset()
    marketo.service.reset()
    marketo.admin.add_field(CONTACT_ID_FIELD)
    marketo.admin.add_field(REMOVED_FLAG_FIELD, data_type="boolean")
    dataverse.admin.register_webhook(relay.webhook_url, "WebhookKey", WEBHOOK_KEY)
    dataverse.admin.register_webhook(
        relay.webhook_url,
        "WebhookKey",
        WEBHOOK_KEY,
        messages=("Update",),
        entity="account",
        filtering_attributes=ACCOUNT_COLUMNS,
    )
    dataverse.admin.register_webhook(
        relay.webhook_url, "WebhookKey", WEBHOOK_KEY, messages=("Delete",)
    )
    created = create_sample_records(dataverse.admin)
    wait_for_contacts(airflow_live, created.contact_ids.values(), timeout=240)
    return created


def lead_of(sandbox_servers: Any, contact_id: str) -> dict[str, Any] | None:
    leads = sandbox_servers.marketo.admin.leads(**{CONTACT_ID_FIELD: contact_id})
    return leads[0] if leads else None


def seen_runs(airflow: LocalAirflow) -> set[str]:
    return {run["dag_run_id"] for run in airflow.dag_runs(SYNC_DAG_ID)}


def test_an_account_edit_reaches_every_lead_of_its_contacts(
    sandbox_servers: Any, airflow_live: LocalAirflow, records: SampleRecords
):
    admin = sandbox_servers.dataverse.admin
    before = seen_runs(airflow_live)
    with admin.api_session() as session:
        session.patch(
            f"{admin.api_url}/accounts({records.account_id})",
            json={"name": "Fourth Coffee Roasters"},
            timeout=10,
        ).raise_for_status()

    runs = wait_for_new_runs(airflow_live, records.account_id, before, timeout=240)

    (run,) = runs
    assert run["conf"]["events"][0]["entity"] == "account"
    for contact in SAMPLE_CONTACTS:
        lead = lead_of(sandbox_servers, records.contact_ids[contact.label])
        if contact.with_account and contact.email:
            assert lead is not None
            assert lead["company"] == "Fourth Coffee Roasters"
        elif lead is not None:
            assert lead.get("company") is None  # a contact of no account is untouched


def test_a_contact_delete_flags_its_lead(
    sandbox_servers: Any, airflow_live: LocalAirflow, records: SampleRecords
):
    contact_id = records.contact_ids["no account"]
    admin = sandbox_servers.dataverse.admin
    before = seen_runs(airflow_live)
    with admin.api_session() as session:
        session.delete(f"{admin.api_url}/contacts({contact_id})", timeout=10).raise_for_status()

    (run,) = wait_for_new_runs(airflow_live, contact_id, before, timeout=240)

    assert run["state"] == "success"
    assert run["conf"]["events"][0]["message"] == "Delete"
    lead = lead_of(sandbox_servers, contact_id)
    assert lead is not None
    assert lead[REMOVED_FLAG_FIELD] is True
