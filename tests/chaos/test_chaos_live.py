"""One chaos scenario on the live stack, exactly accounted (``make test-chaos``, run by ``make
test``; it prints its accounting).

The product as the demo runs it (the sandbox with Dataverse's and Marketo's documented limits,
Airflow 3 with the tuned settings, on PostgreSQL as deployed, the relay behind a Dataverse webhook
on contact Create) takes a 2,000-contact import, created through the Web API over 60 s, while:

- Marketo answers 20% of its REST calls with 606, 615, 604 or 503 (5% each, seeded);
- Dataverse answers 8 bursts of three 429s (``Retry-After: 1``) to the sync's reads, 4 s or more
  apart;
- the relay is SIGKILLed twice with events in its spool, and restarted at once;
- Airflow's API server is down for 60 s (relay triggers and the tasks' Execution API calls fail).

Webhooks that reach a dead relay fail at Dataverse, which does not resend them (its asynchronous
service retries only 502/503/504): the nightly reconciliation is what repairs those, so the
scenario runs it over the import's window afterwards, as the scheduled run would. Then the books
must balance exactly: every acknowledged webhook is in the spool, every spooled event in exactly
one run, every run succeeded, the reconciliation created exactly the contacts no run had, and
Marketo holds 2,000 correct leads, each created once and never written again with the same values
(the Marketo sandbox's write log). Airflow's retries, the relay's resends and every injected
fault are counted and printed.

Then Marketo's daily quota runs out during a second import: the run that meets 607 fails at once
(one try, the reason in its log), what was written stays, and clearing the failed tasks after the
sandbox's midnight (Central time) completes the import, each lead again written once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.harness import table
from bench.live import DAG_FILES, LiveStack, WebApiWriter, contact_bodies, poll, running_stack
from devenv.demo import (
    CONTACT_ID_FIELD,
    RECONCILIATION_DAG_ID,
    SYNC_DAG_ID,
    contact_ids_of,
    wait_for_contacts,
)
from devenv.processes import wait_for
from devenv.relay import LocalRelay
from sandbox.dataverse.admin import DataverseAdmin

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        not os.environ.get("CHAOS_TEST"),
        reason="the chaos scenario runs in `make test-chaos` (a prerequisite of `make test`)",
    ),
]

CONTACTS = 2_000
IMPORT_SECONDS = 60.0
OUTAGE_SECONDS = 60.0
QUOTA_CONTACTS = 600
# 5% each: the rules are tried in order, each on what the ones before it let through.
MARKETO_FAULTS = {
    "seed": 16,
    "rules": [
        {"answer": answer, "path": "/rest/", "share": 0.05 / (1 - 0.05 * n)}
        for n, answer in enumerate(("606", "615", "604", "503"))
    ],
}
DATAVERSE_BURST = {"answer": "429", "method": "GET", "path": "/api/data/", "limit": 3}
# Under the sandbox server's 5 s keep-alive, so the admin client's connection is never one the
# server is closing.
BURST_EVERY_S = 4.0
BURSTS = 8
RECONCILIATION_DAG_FILE = DAG_FILES[0].parent / f"{RECONCILIATION_DAG_ID}.py"
# Dataverse's asyncoperation status of a webhook delivery that succeeded.
DELIVERY_SUCCEEDED = 30
CENTRAL = timedelta(hours=-6)  # Marketo's quota day, as the sandbox keeps it


@dataclass
class Kill:
    """One SIGKILL of the relay: when (s after the first Create) and what its spool held."""

    at_s: float
    pending: int
    claimed: int  # of those, in a batch already claimed (being sent)
    down_s: float  # until the restarted relay answered /healthz


@dataclass
class Import:
    """What phase one did and found."""

    began: float
    bodies: dict[str, dict[str, str]]  # contact id → what was created
    kills: list[Kill] = field(default_factory=list)
    outage_s: tuple[float, float] = (0.0, 0.0)  # API server stopped .. started again
    healthy_again_s: float = 0.0  # Airflow healthy again (the API server's start)
    deliveries: Counter[str] = field(default_factory=Counter)  # "succeeded" / "failed"
    acknowledged: set[str] = field(default_factory=set)
    spooled: Counter[str] = field(default_factory=Counter)  # contact id → events in the spool
    resends: int = 0
    runs_already_existed: int = 0
    in_runs: Counter[str] = field(default_factory=Counter)  # contact id → runs naming it
    runs: list[dict[str, Any]] = field(default_factory=list)
    run_states: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)  # task id → tries beyond the first
    realtime_counts: Counter[str] = field(default_factory=Counter)
    reconciliation: dict[str, Any] = field(default_factory=dict)
    marketo_faults: dict[str, int] = field(default_factory=dict)
    dataverse_429s: int = 0


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    """On PostgreSQL, as deployed: SQLite's one writer at a time made the scheduler exit
    ("database is locked") when the API server came back to a burst of writes."""
    dag_files = (*DAG_FILES[:1], RECONCILIATION_DAG_FILE)
    with running_stack("chaos", dag_files=dag_files, postgres=True) as live:
        yield live


@pytest.fixture(scope="module")
def relay(stack: LiveStack) -> LocalRelay:
    return stack.start_relay("relay")


@pytest.fixture(scope="module")
def imported(stack: LiveStack, relay: LocalRelay) -> Import:
    """Phase one: the import under faults, then the reconciliation of its window."""
    marketo, dataverse = stack.sandbox.marketo, stack.sandbox.dataverse
    writer = WebApiWriter(dataverse)
    bodies = contact_bodies("chaos", CONTACTS)
    marketo.set_faults(MARKETO_FAULTS)
    began = time.time()
    created: list[Any] = []
    importing = threading.Thread(
        target=lambda: created.extend(
            writer.create_many("contacts", bodies, over_seconds=IMPORT_SECONDS)
        ),
        name="import",
    )
    bursts = DataverseBursts(stack)
    result = Import(began, {})
    importing.start()
    bursts.start()
    try:
        time.sleep(3)
        result.kills.append(_kill_with_work_in_flight(relay, began))
        time.sleep(max(0.0, began + 10 - time.time()))
        down = time.time()
        stack.airflow.stop_component("api-server")
        try:
            time.sleep(25)
            result.kills.append(_kill_with_work_in_flight(relay, began))
            time.sleep(max(0.0, down + OUTAGE_SECONDS - time.time()))
        finally:
            result.outage_s = (down - began, time.time() - began)
            stack.airflow.start_component("api-server")
        result.healthy_again_s = time.time() - began
        importing.join()
        result.bodies = {record.id: body for record, body in zip(created, bodies, strict=True)}

        # Everything the relay acknowledged goes to Airflow: wait for the runs and an empty spool.
        spool_path = relay.settings.spool_path
        wait_for_contacts(stack.airflow, _spooled(spool_path), timeout=1200)
        wait_for(lambda: _all_sent(relay), timeout=120, what="an empty relay spool")
        result.spooled = _spooled(spool_path)  # late arrivals of the last batch included
        runs = wait_for_contacts(stack.airflow, result.spooled, timeout=600)
    finally:
        bursts.stop()
        importing.join()
    result.dataverse_429s = bursts.fired
    result.runs = runs
    result.resends = _resends(spool_path)
    result.runs_already_existed = relay.log_path.read_text().count("run already existed")
    for delivery in dataverse.deliveries():
        ok = delivery["statuscode"] == DELIVERY_SUCCEEDED
        result.deliveries["succeeded" if ok else "failed"] += 1
        if ok:
            result.acknowledged.add(str(delivery["regardingobjectid"]).lower())
    for run in runs:
        result.in_runs.update(contact_ids_of(run))
        result.run_states[run["state"]] += 1
        for task in stack.airflow.task_instances(SYNC_DAG_ID, run["dag_run_id"]):
            result.retries[task["task_id"]] += max(0, task["try_number"] - 1)
        if run["state"] == "success":
            summary = stack.airflow.xcom(SYNC_DAG_ID, run["dag_run_id"], "report", "summary")
            result.realtime_counts.update(summary["counts"])

    # The nightly reconciliation over the import's window, as its scheduled run would cover it.
    since = datetime.fromtimestamp(began - 60, UTC).isoformat(timespec="seconds")
    run_id = stack.airflow.trigger(RECONCILIATION_DAG_ID, {"since": since})
    state = stack.airflow.wait_for_run(RECONCILIATION_DAG_ID, run_id, timeout=600)
    assert state == "success", f"the reconciliation run {run_id} ended {state}"
    result.reconciliation = stack.airflow.xcom(RECONCILIATION_DAG_ID, run_id, "report")
    result.marketo_faults = {
        rule["answer"]: rule["fired"] for rule in marketo.get("faults")["rules"]
    }
    marketo.clear_faults()
    _print_accounting(result, stack)
    return result


def test_every_contact_is_one_correct_lead_created_once_and_never_rewritten(
    stack: LiveStack, imported: Import
):
    leads = _our_leads(stack, imported.bodies)
    writes = stack.sandbox.marketo.writes()

    assert len(imported.bodies) == CONTACTS
    assert sorted(leads) == sorted(imported.bodies)  # none lost, none doubled
    for contact_id, lead in leads.items():
        assert len(lead) == 1, f"contact {contact_id} has {len(lead)} leads"
        _assert_lead_matches(lead[0], imported.bodies[contact_id])
    doubled = {lead_id: n for lead_id, n in writes.items() if n != {"created": 1}}
    assert doubled == {}, f"leads written more than once: {doubled}"


def test_every_acknowledged_webhook_reached_one_run_and_the_reconciliation_the_rest(
    imported: Import,
):
    created = set(imported.bodies)
    spooled = set(imported.spooled)

    # Dataverse made one delivery per Create; the ones to a dead relay failed.
    assert sum(imported.deliveries.values()) == CONTACTS
    assert imported.deliveries["failed"] > 0, "no webhook met a dead relay: the kills missed"
    assert imported.acknowledged <= spooled <= created  # acknowledged ⇒ durably spooled
    assert all(count == 1 for count in imported.spooled.values())
    # Every spooled event in exactly one run, and nothing else in the runs.
    assert set(imported.in_runs) == spooled
    assert all(count == 1 for count in imported.in_runs.values()), "a contact in two runs"
    assert imported.run_states == Counter({"success": len(imported.runs)})
    assert imported.realtime_counts["created"] == len(spooled)
    # The reconciliation created exactly what no run had, and found the rest as written.
    counts = imported.reconciliation["counts"]
    assert counts["created"] == len(created - spooled)
    assert counts["unchanged"] == len(spooled)
    assert counts["updated"] == counts["rejected"] == 0


def test_the_faults_really_happened(imported: Import):
    assert [kill.pending > 0 for kill in imported.kills] == [True, True], imported.kills
    assert imported.outage_s[1] - imported.outage_s[0] >= OUTAGE_SECONDS
    assert all(imported.marketo_faults[answer] > 0 for answer in ("606", "615", "604", "503"))
    assert imported.dataverse_429s > 0
    assert imported.resends > 0  # triggers that met the API server's outage were sent again


def test_daily_quota_fails_fast_and_a_replay_after_midnight_completes_the_import(
    stack: LiveStack, relay: LocalRelay, imported: Import
):
    marketo, airflow = stack.sandbox.marketo, stack.airflow
    quota = marketo.quota()
    # Three calls left: the first run's lookup and write, and the next run's lookup.
    marketo.settings(daily_quota=quota["used"] + 3)
    writer = WebApiWriter(stack.sandbox.dataverse)
    bodies = contact_bodies("quota", QUOTA_CONTACTS)
    created = writer.create_many("contacts", bodies)
    wanted = {record.id: body for record, body in zip(created, bodies, strict=True)}
    runs = wait_for_contacts(airflow, wanted, timeout=600)

    failed = [run for run in runs if run["state"] == "failed"]
    assert failed, "no run met the daily quota"
    for run in failed:
        [sync] = [
            task
            for task in airflow.task_instances(SYNC_DAG_ID, run["dag_run_id"])
            if task["task_id"] == "sync_contacts"
        ]
        assert (sync["state"], sync["try_number"]) == ("failed", 1), sync  # failed fast
        log = _task_log(stack, run["dag_run_id"], "sync_contacts", 1)
        assert "607" in log, log[-2000:]
    written_before = _our_leads(stack, wanted)
    print(
        f"\nDaily quota: {len(failed)} of {len(runs)} runs failed at once with 607; "
        f"{len(written_before)} of {QUOTA_CONTACTS} leads written before it"
    )

    # After Marketo's midnight (Central time) the quota is fresh: clear the failed tasks.
    now = datetime.fromtimestamp(time.time(), UTC) + CENTRAL
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    marketo.advance_clock((midnight - now).total_seconds() + 60)
    assert marketo.quota()["used"] == 0
    airflow.request(
        "POST",
        f"/api/v2/dags/{SYNC_DAG_ID}/clearTaskInstances",
        json={"dry_run": False, "only_failed": True, "include_downstream": True},
    )
    # Clearing queued the runs again at once (reset_dag_runs): wait for them to end.
    runs = wait_for_contacts(airflow, wanted, timeout=600)
    assert Counter(run["state"] for run in runs) == Counter({"success": len(runs)})

    leads = _our_leads(stack, wanted)
    assert sorted(leads) == sorted(wanted)
    for contact_id, lead in leads.items():
        assert len(lead) == 1
        _assert_lead_matches(lead[0], wanted[contact_id])
    writes = stack.sandbox.marketo.writes()
    ours = {lead[0]["id"] for lead in leads.values()}
    rewritten = {lead_id: writes[lead_id] for lead_id in ours if writes[lead_id] != {"created": 1}}
    assert rewritten == {}
    print(
        f"Replay after midnight: {len(runs)} runs succeeded; {len(leads)} leads, each written once"
    )


# -- the faults ---------------------------------------------------------------------------------


class DataverseBursts(threading.Thread):
    """Up to ``BURSTS`` bursts: the next three reads of the Web API answer 429. A burst is armed
    ``BURST_EVERY_S`` after the previous one was used up, never on top of it: re-arming a burst
    every few seconds whatever happened made a lone reader, whose retries back off, meet 429 five
    times in a row on every try (a run failed all four tries)."""

    def __init__(self, stack: LiveStack) -> None:
        super().__init__(name="dataverse 429 bursts")
        # Its own client: a requests session is not for two threads.
        self.dataverse = DataverseAdmin(stack.sandbox.dataverse.base_url)
        self.bursts = 0
        self.fired = 0  # of the bursts used up; the armed one's are added at the end
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            while self.bursts < BURSTS and not self._stopping.wait(BURST_EVERY_S):
                fired = self._fired_now()
                if self.bursts == 0 or fired >= DATAVERSE_BURST["limit"]:
                    self.fired += fired
                    self.dataverse.set_faults({"rules": [DATAVERSE_BURST]})
                    self.bursts += 1
            self._stopping.wait()
        finally:
            self.fired += self._fired_now()
            self.dataverse.clear_faults()

    def stop(self) -> None:
        self._stopping.set()
        self.join()

    def _fired_now(self) -> int:
        return sum(rule["fired"] for rule in self.dataverse.get("faults")["rules"])


def _kill_with_work_in_flight(relay: LocalRelay, began: float) -> Kill:
    """SIGKILL the relay once its spool holds events not yet in Airflow; restart it."""
    states = poll(
        lambda: (states := _spool_states(relay.settings.spool_path))["pending"] and states,
        timeout=30,
        what="events pending in the relay's spool",
        every=0.05,
    )
    relay.kill()
    killed = time.time()
    relay.start(timeout=60)
    kill = Kill(killed - began, states["pending"], states["claimed"], time.time() - killed)
    print(
        f"  relay SIGKILLed at {kill.at_s:.1f} s with {kill.pending} events pending "
        f"({kill.claimed} in a batch being sent); serving again after {kill.down_s:.1f} s",
        flush=True,
    )
    return kill


# -- reading the books --------------------------------------------------------------------------


def _spool_rows(spool_path: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(spool_path) as spool:
        spool.row_factory = sqlite3.Row
        return spool.execute("SELECT entity_id, state, attempts, batch_id FROM events").fetchall()


def _spool_states(spool_path: Path) -> Counter[str]:
    rows = _spool_rows(spool_path)
    states = Counter(row["state"] for row in rows)
    states["claimed"] = sum(
        row["state"] == "pending" and row["batch_id"] is not None for row in rows
    )
    return states


def _spooled(spool_path: Path) -> Counter[str]:
    return Counter(str(row["entity_id"]).lower() for row in _spool_rows(spool_path))


def _all_sent(relay: LocalRelay) -> bool:
    health = relay.health()
    return health["spool_pending"] == health["failed_events"] == 0


def _resends(spool_path: Path) -> int:
    """Delivery attempts beyond the first, per batch (the spool counts them per event)."""
    attempts = {row["batch_id"]: row["attempts"] for row in _spool_rows(spool_path)}
    return sum(max(0, n - 1) for n in attempts.values())


def _our_leads(stack: LiveStack, bodies: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    leads: dict[str, list[dict[str, Any]]] = {}
    for lead in stack.sandbox.marketo.leads():
        contact_id = str(lead.get(CONTACT_ID_FIELD) or "").lower()
        if contact_id in bodies:
            leads.setdefault(contact_id, []).append(lead)
    return leads


def _assert_lead_matches(lead: Mapping[str, Any], body: Mapping[str, str]) -> None:
    assert str(lead["email"]).casefold() == body["emailaddress1"].casefold()
    assert (lead.get("firstName"), lead.get("lastName")) == (body["firstname"], body["lastname"])


def _task_log(stack: LiveStack, run_id: str, task_id: str, try_number: int) -> str:
    path = f"/api/v2/dags/{SYNC_DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
    content = stack.airflow.request("GET", path, params={"full_content": True}).json()["content"]
    return json.dumps(content)


def _print_accounting(result: Import, stack: LiveStack) -> None:
    created = set(result.bodies)
    spooled = set(result.spooled)
    rows = [
        ["contacts created through the Web API", CONTACTS],
        ["webhook deliveries that succeeded (relay answered 202)", result.deliveries["succeeded"]],
        [
            "webhook deliveries that failed (relay dead; Dataverse does not resend)",
            result.deliveries["failed"],
        ],
        ["events in the relay's spool", len(spooled)],
        ["  of them accepted but the answer lost to a kill", len(spooled - result.acknowledged)],
        [
            "relay SIGKILLs at s after the first Create (events pending; s until serving again)",
            ", ".join(f"{k.at_s:.0f} s ({k.pending}; {k.down_s:.1f} s)" for k in result.kills),
        ],
        ["relay resends to Airflow (attempts beyond the first)", result.resends],
        ["  of them answered 409: the run existed already", result.runs_already_existed],
        [
            "Airflow API server stopped, s after the first Create (healthy again)",
            f"{result.outage_s[0]:.0f} to {result.outage_s[1]:.0f} ({result.healthy_again_s:.0f})",
        ],
        ["real-time DAG runs (all states)", dict(result.run_states)],
        ["Airflow task retries, by task", dict(result.retries) or 0],
        ["contacts in runs (each in exactly one)", len(result.in_runs)],
        ["leads created by the real-time runs", result.realtime_counts["created"]],
        [
            "leads created by the reconciliation (webhooks lost)",
            result.reconciliation["counts"]["created"],
        ],
        ["  contacts it found unchanged", result.reconciliation["counts"]["unchanged"]],
        ["Marketo faults injected", result.marketo_faults],
        ["Dataverse 429 answers injected (bursts of 3)", result.dataverse_429s],
        ["Marketo answers, all calls of the scenario", stack.sandbox.marketo.calls()["answers"]],
        ["leads in Marketo for the import", len(_our_leads(stack, result.bodies))],
        ["lost", len(created - set(_our_leads(stack, result.bodies)))],
        [
            "doubled (a lead written twice)",
            sum(1 for n in stack.sandbox.marketo.writes().values() if n != {"created": 1}),
        ],
    ]
    print("\nChaos scenario: the accounting")
    print(table(["what", "count"], rows))
