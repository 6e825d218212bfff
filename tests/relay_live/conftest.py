"""A live Airflow with the real DAGs, the in-process sandbox, and relays as processes.

Airflow's connections point at the session's sandbox (``sandbox_servers``), so the runs the relay
triggers can really sync; each test gets an empty sandbox (the ``dataverse`` / ``marketo``
fixtures reset it), the Marketo field the maps need, and a relay of its own whose webhook is
registered in the Dataverse sandbox.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from devenv.airflow import DEFAULT_RELAY, LocalAirflow
from devenv.relay import LocalRelay
from relay.settings import RelaySettings
from tests.support import sandbox_airflow_env

DAG_ID = "dynamics_contact_to_marketo"
WEBHOOK_KEY = "relay-live-webhook-key"
DAG_PATH = f"/api/v2/dags/{DAG_ID}"
POLL_SECONDS = 0.25


@pytest.fixture(scope="module")
def airflow_dag_ids() -> list[str]:
    return [DAG_ID]


@pytest.fixture(scope="module")
def airflow_env(sandbox_servers: Any) -> dict[str, str]:
    return sandbox_airflow_env(sandbox_servers)


@pytest.fixture(scope="module")
def runs_on_hold(airflow_live: LocalAirflow) -> Iterator[None]:
    """Pause the DAG for tests about delivery only: Airflow still creates the runs (which is what
    they check), but they wait queued instead of running seven tasks each on a 2-core machine (and
    keeping SQLite busy while Airflow restarts). At the end the held runs are marked failed and the
    DAG unpaused, so a later module sharing this Airflow finds it as it was."""
    airflow_live.request("PATCH", DAG_PATH, json={"is_paused": True})
    yield
    for run in airflow_live.dag_runs(DAG_ID):
        if run["state"] == "queued":
            path = f"{DAG_PATH}/dagRuns/{quote(run['dag_run_id'], safe='')}"
            airflow_live.request("PATCH", path, json={"state": "failed"})
    airflow_live.request("PATCH", DAG_PATH, json={"is_paused": False})


@pytest.fixture(autouse=True)
def marketo_ready(marketo: Any) -> None:
    """The contact maps write this custom field; a reset sandbox does not have it."""
    marketo.admin.add_field("dynamicsContactId")


@pytest.fixture
def start_relay(
    airflow_live: LocalAirflow,
    dataverse: Any,
    start_local_relay: Callable[[RelaySettings], LocalRelay],
    tmp_path: Path,
) -> Iterator[Callable[..., LocalRelay]]:
    """``start_relay(**settings)``: a relay process for ``airflow_live`` with fast retries, its
    webhook registered in the Dataverse sandbox (WebhookKey); stopped after the test."""
    started: list[LocalRelay] = []

    def start(**overrides: Any) -> LocalRelay:
        settings = RelaySettings(
            airflow_url=airflow_live.url,
            airflow_username=DEFAULT_RELAY.username,
            airflow_password=DEFAULT_RELAY.password,
            webhook_keys=(WEBHOOK_KEY,),
            spool_path=tmp_path / "spool.sqlite3",
            port=0,
            batch_window_seconds=0.3,
            backoff_initial_seconds=0.2,
            backoff_max_seconds=1.0,
            airflow_probe_seconds=0.5,
            airflow_connect_timeout_seconds=2.0,
            airflow_read_timeout_seconds=15.0,
        )
        relay = start_local_relay(dataclasses.replace(settings, **overrides))
        started.append(relay)
        dataverse.admin.register_webhook(relay.webhook_url, "WebhookKey", WEBHOOK_KEY)
        return relay

    yield start
    for relay in started:
        relay.stop()


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)
    return result


def create_contacts(dataverse: Any, count: int, tag: str) -> list[str]:
    """Create contacts through the Web API (each fires the Create webhook); their ids."""
    session = dataverse.admin.api_session()
    ids = []
    for n in range(count):
        values = {"firstname": f"{tag}{n}", "lastname": "Relay", "emailaddress1": email(tag, n)}
        response = session.post(f"{dataverse.admin.api_url}/contacts", json=values)
        assert response.status_code == 204, response.text
        ids.append(response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")"))
    return ids


def email(tag: str, n: int) -> str:
    return f"{tag}-{n}@example.com"


def runs_for(airflow: LocalAirflow, contact_ids: list[str]) -> dict[str, list[str]]:
    """``run id → the ids of its events``, for every run holding an event of ``contact_ids``."""
    wanted = set(contact_ids)
    found = {}
    for run in airflow.dag_runs(DAG_ID):
        ids = [event["id"] for event in (run["conf"] or {}).get("events", [])]
        if wanted & set(ids):
            found[run["dag_run_id"]] = ids
    return found


def delivered_once(airflow: LocalAirflow, contact_ids: list[str]) -> dict[str, list[str]] | None:
    """The runs holding ``contact_ids`` once every id is in some run, else None; fails at once
    when an id is in two events (the relay doubled it)."""
    runs = runs_for(airflow, contact_ids)
    events = Counter(contact_id for ids in runs.values() for contact_id in ids)
    doubled = sorted(contact_id for contact_id, count in events.items() if count > 1)
    assert not doubled, f"events delivered twice: {doubled}"
    return runs if set(events) >= set(contact_ids) else None
