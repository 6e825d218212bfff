"""The relay as a process between the Dataverse sandbox and a live Airflow running the real DAG:
one run per webhook batch, with ids only in the conf; redeliveries, bursts, a SIGKILLed relay and an
Airflow outage neither lose nor double an event.

Webhooks are the sandbox's own (a contact created through its Web API fires Create), except where
a test must send the very same body several times.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devenv.airflow import LocalAirflow
from tests.fixtures import WEBHOOK_FIXTURE
from tests.relay.conftest import (
    DAG_ID,
    LIVE_POLL_SECONDS,
    WEBHOOK_KEY,
    create_contacts,
    delivered_once,
    email,
    wait_until,
)

pytestmark = pytest.mark.e2e
# Only the first test lets its run go through the DAG; later runs are created but held queued.
on_hold = pytest.mark.usefixtures("runs_on_hold")
# Airflow's API is polled four times a second, not a hundred.
wait_for = functools.partial(wait_until, poll=LIVE_POLL_SECONDS)

SUCCEEDED = 30  # asyncoperation statuscode of a delivery Dataverse counts as done


def delivered(dataverse: Any, count: int) -> list[dict[str, Any]]:
    """The sandbox's first ``count`` deliveries once finished; each must have been acknowledged."""
    deliveries = dataverse.admin.wait_for_deliveries(count, timeout=60)
    assert [d["statuscode"] for d in deliveries] == [SUCCEEDED] * count, deliveries
    return deliveries


def all_sent(relay: Any) -> bool:
    health = relay.health()
    return health["spool_pending"] == 0 and health["failed_events"] == 0


def test_a_webhook_becomes_one_run_with_ids_only(
    airflow_live: LocalAirflow, start_live_relay, dataverse, marketo
):
    start_live_relay()

    [contact_id] = create_contacts(dataverse, 1, "single")

    [delivery] = delivered(dataverse, 1)
    [run_id] = wait_for(lambda: delivered_once(airflow_live, [contact_id]), timeout=30, what="run")
    [run] = [run for run in airflow_live.dag_runs(DAG_ID) if run["dag_run_id"] == run_id]
    assert run_id.startswith("relay__")
    [event] = run["conf"]["events"]
    assert {k: v for k, v in event.items() if k != "occurred_at"} == {
        "message": "Create",
        "entity": "contact",
        "id": contact_id,
        # The sandbox, like Dataverse, names the system job after the operation.
        "operation_id": delivery["asyncoperationid"],
        "correlation_id": delivery["correlationid"],
    }
    occurred = datetime.fromisoformat(event["occurred_at"])
    assert abs((occurred - datetime.fromisoformat(delivery["createdon"])).total_seconds()) < 5
    assert "@" not in json.dumps(run)  # no email in the conf, the note or anywhere in the run
    # The run really syncs: the contact is now a Marketo lead.
    assert airflow_live.wait_for_run(DAG_ID, run_id, timeout=120) == "success"
    [lead] = marketo.admin.leads(email=email("single", 0))
    assert lead["dynamicsContactId"] == contact_id


@on_hold
def test_one_webhook_delivered_three_times_makes_one_run(
    airflow_live: LocalAirflow, start_live_relay, dataverse
):
    relay = start_live_relay()
    contact = {"firstname": "Thrice", "lastname": "Relay", "emailaddress1": email("thrice", 0)}
    [contact_id] = dataverse.admin.seed(contacts=[contact])["contacts"]  # seeding fires nothing
    body = json.loads(WEBHOOK_FIXTURE.read_text())  # Microsoft's sample Update of a contact
    body.update(PrimaryEntityId=contact_id, OperationId=str(uuid.uuid4()))
    raw = json.dumps(body).encode()

    with httpx.Client(timeout=10) as client:

        def deliver() -> str:
            response = client.post(
                relay.webhook_url,
                params={"code": WEBHOOK_KEY},
                content=raw,
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 202, response.text
            return response.json()["status"]

        # Twice at once (Dataverse's retry after a 502/503/504), then once the run exists.
        answers = [deliver(), deliver()]
        runs = wait_for(lambda: delivered_once(airflow_live, [contact_id]), timeout=30, what="run")
        answers.append(deliver())

    assert answers == ["accepted", "duplicate", "duplicate"]
    assert all_sent(relay)  # nothing left that could still become a second run
    assert delivered_once(airflow_live, [contact_id]) == runs
    assert list(runs.values()) == [[contact_id]]


BURST = 200
BURST_WINDOW_SECONDS = 1.0
BURST_MAX_EVENTS = 50


@on_hold
def test_a_burst_of_200_webhooks_makes_a_handful_of_runs(
    airflow_live: LocalAirflow, start_live_relay, dataverse
):
    start_live_relay(batch_window_seconds=BURST_WINDOW_SECONDS, batch_max_events=BURST_MAX_EVENTS)
    began = time.monotonic()

    contact_ids = create_contacts(dataverse, BURST, "burst")

    delivered(dataverse, BURST)
    burst_seconds = time.monotonic() - began
    runs = wait_for(lambda: delivered_once(airflow_live, contact_ids), timeout=60, what="runs")
    # A batch is sent full, or when its oldest event has waited a whole window; that oldest event
    # came after the previous such batch was sent. So: the full batches, plus at most one batch
    # per window of the burst, plus one.
    bound = BURST // BURST_MAX_EVENTS + math.floor(burst_seconds / BURST_WINDOW_SECONDS) + 1
    assert BURST / BURST_MAX_EVENTS <= len(runs) <= bound, (len(runs), burst_seconds)
    assert max(len(ids) for ids in runs.values()) <= BURST_MAX_EVENTS


TRICKLE = 8
TRICKLE_GAP_SECONDS = 0.5


@on_hold
def test_a_trickle_waits_while_airflow_is_busy_with_the_previous_run(
    airflow_live: LocalAirflow, start_live_relay, dataverse
):
    # The DAG is paused, so every run stays queued (active), as behind a backlog. Events come
    # slower than the window: without the hold each would be a run of its own.
    relay = start_live_relay(
        batch_window_seconds=0.3, batch_max_wait_seconds=3.0, batch_hold_active_runs=1
    )
    contact_ids = []
    for n in range(TRICKLE):
        contact_ids += create_contacts(dataverse, 1, f"trickle{n}")
        time.sleep(TRICKLE_GAP_SECONDS)

    runs = wait_for(lambda: delivered_once(airflow_live, contact_ids), timeout=60, what="runs")
    # The first event goes alone; later ones wait up to 3 s in batches while that run is active.
    assert len(runs) <= TRICKLE // 2, runs
    metrics = httpx.get(f"{relay.url}/metrics", timeout=10).text.splitlines()
    [held] = [line.split()[1] for line in metrics if line.startswith("relay_batches_held_total ")]
    assert int(held) > 0


KILLED_WINDOW_SECONDS = 5.0
KILLED_MAX_EVENTS = 10
KILLED_EVENTS = 25


def spool_states(spool_path: Path) -> Counter[str]:
    """Events per state, as committed to the spool file."""
    with sqlite3.connect(spool_path) as spool:
        return Counter(state for (state,) in spool.execute("SELECT state FROM events"))


@on_hold
def test_a_sigkilled_relay_loses_nothing_and_doubles_nothing(
    airflow_live: LocalAirflow, start_live_relay, dataverse
):
    # The window rule (no leading edge): every partial batch waits, so the kill finds work.
    relay = start_live_relay(
        batch_window_seconds=KILLED_WINDOW_SECONDS,
        batch_max_events=KILLED_MAX_EVENTS,
        batch_leading_edge=False,
    )
    contact_ids = create_contacts(dataverse, KILLED_EVENTS, "killed")
    delivered(dataverse, KILLED_EVENTS)  # every one acknowledged: the relay owns them now

    relay.kill()

    at_kill = spool_states(relay.settings.spool_path)
    assert sum(at_kill.values()) == KILLED_EVENTS
    # Full batches go at once; the rest waits for the window, so the kill interrupts work.
    assert at_kill["pending"] >= KILLED_EVENTS % KILLED_MAX_EVENTS, at_kill
    relay.restart()
    runs = wait_for(lambda: delivered_once(airflow_live, contact_ids), timeout=60, what="runs")
    assert wait_for(lambda: all_sent(relay), timeout=10, what="an empty spool")
    assert len(runs) <= math.ceil(KILLED_EVENTS / KILLED_MAX_EVENTS) + 1, runs


@on_hold
def test_events_wait_out_an_airflow_outage(
    airflow_live: LocalAirflow, airflow_dag_ids: list[str], start_live_relay, dataverse
):
    relay = start_live_relay()
    airflow_live.stop()
    try:
        contact_ids = create_contacts(dataverse, 5, "outage")
        delivered(dataverse, 5)  # accepted while Airflow is down

        health = wait_for(
            lambda: (health := relay.health())["airflow_reachable"] is False and health,
            timeout=30,
            what="a failed delivery attempt",
        )
        assert (health["spool_pending"], health["failed_events"]) == (5, 0)
    finally:
        airflow_live.start(airflow_dag_ids)

    wait_for(lambda: delivered_once(airflow_live, contact_ids), timeout=60, what="runs")
    assert wait_for(lambda: all_sent(relay), timeout=10, what="an empty spool")
    assert relay.health()["airflow_reachable"] is True
