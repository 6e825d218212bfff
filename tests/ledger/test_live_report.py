"""On a live Airflow (scheduler, API server, DAG processor, the project's plugins): the real-time
DAG's ``report`` task writes the ledger the deployment defines, and the plugin's listener, run by
the scheduler, appends the outcome to the run's note, keeping the note the run was triggered with
(as the relay triggers runs). Read back through Airflow's REST API and the ledger file."""

from __future__ import annotations

from typing import Any

import pytest

from devenv.airflow import LocalAirflow
from devenv.demo import CONTACT_ID_FIELD, SYNC_DAG_ID
from devenv.pytest_plugin import ledger_of
from tests.pipeline.records import contact, events
from tests.support import sandbox_airflow_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GOOD = "7e57a000-0000-4000-8000-000000000001"
NO_EMAIL = "7e57a000-0000-4000-8000-000000000002"
RELAY_NOTE = "relay: 2 event(s) from Dataverse"


@pytest.fixture(scope="module")
def airflow_env(sandbox_servers: Any) -> dict[str, str]:
    # The same env as the other live modules: they share one Airflow.
    return sandbox_airflow_env(sandbox_servers)


@pytest.fixture(scope="module")
def airflow_dag_ids() -> list[str]:
    return [SYNC_DAG_ID]


def test_a_live_run_is_in_the_ledger_and_its_note_shows_the_outcome(
    sandbox_servers: Any, airflow_live: LocalAirflow
):
    dataverse, marketo = sandbox_servers.dataverse, sandbox_servers.marketo
    dataverse.service.reset()
    marketo.service.reset()
    marketo.admin.add_field(CONTACT_ID_FIELD)
    dataverse.admin.seed(contacts=[contact(GOOD, "live.good@example.com"), contact(NO_EMAIL, None)])
    path = f"/api/v2/dags/{SYNC_DAG_ID}/dagRuns"
    body = {
        "logical_date": None,
        "conf": events(GOOD, NO_EMAIL),
        "note": RELAY_NOTE,
    }
    run_id = airflow_live.request("POST", path, json=body).json()["dag_run_id"]

    assert airflow_live.wait_for_run(SYNC_DAG_ID, run_id, timeout=300) == "failed"

    run = airflow_live.request("GET", f"{path}/{run_id}").json()
    assert run["note"] == f"{RELAY_NOTE}\nOutcome: 1 created, 1 rejected: no email"
    ledger = ledger_of(airflow_live)
    try:
        entries = {e.contact_id: e for e in ledger.run_entries(SYNC_DAG_ID, run_id)}
        assert {cid: e.outcome for cid, e in entries.items()} == {
            GOOD: "created",
            NO_EMAIL: "rejected",
        }
        assert {e.source for e in entries.values()} == {"webhook"}
        assert [e.contact_id for e in ledger.open_rejections()] == [NO_EMAIL]
    finally:
        ledger.close()
