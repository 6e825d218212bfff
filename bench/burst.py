"""Benchmark 2, burst: 1,000 contacts created in Dataverse within a few seconds (a bulk import) →
the time until all of them are leads in Marketo, and the API calls, DAG runs and task instances it
took; beside per-event mode (batching off: one DAG run per webhook, the paid recipe's shape) on 200
contacts, compared per contact.

Both modes run the product as the demo does, but with Airflow's metadata database on PostgreSQL as
deployed (``--sqlite`` for the demo's SQLite, whose one writer at a time made the scheduler exit
on "database is locked" in 2 of 5 bursts of 5,000): Dataverse webhooks on contact Create → relay →
real-time DAG, the sandboxes enforcing Dataverse's and Marketo's documented limits, the hooks at
their production settings. Batched mode is the relay's production setting (the first event at
once, then at most one partial batch a second, at most 300 events per run); per-event mode is the
same relay with one event per run and no window. The contacts are created through the Web API by
8 concurrent clients. A lead counts from its ``createdAt`` in Marketo (the end of that whole
second); API calls are the sandboxes'
own count, less the benchmark's own Creates. Printed too, to find the bottleneck: when the first
lead showed, when the runs started, how long each task ran.

Goals: all leads in Marketo within 60 s of the first Create on a 2-core machine (also for
``--contacts 5000``); at most 5% of per-event mode's API
calls per contact; no answer 606 or 615 (Marketo's rate and concurrency limits).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.harness import Progress, marketo_calls, percentile, save_results, table
from bench.latency import warm_up
from bench.live import (
    LiveStack,
    WebApiWriter,
    contact_bodies,
    running_stack,
    sync_calls,
    timestamp,
)
from devenv.demo import CONTACT_ID_FIELD, SYNC_DAG_ID, contact_ids_of, wait_for_contacts
from devenv.relay import LocalRelay

NAME = "burst"
SUMMARY = "2. burst: 1,000 contacts → Marketo, beside per-event mode"
CONTACTS = 1_000
PER_EVENT_CONTACTS = 200
WALL_GOAL_S = 60.0
CALLS_GOAL = 0.05  # × per-event mode's calls per contact
# Relay settings of each mode, over the production defaults.
MODES: dict[str, dict[str, Any]] = {
    "batched": {},
    "per-event": {"batch_max_events": 1, "batch_window_seconds": 0.0},
}
NO_HOLD = {"batch_max_wait_seconds": 0.0}
TIMEOUT_PER_CONTACT_S = 10.0  # generous: per-event mode takes a few seconds a contact
EVENT_TIMEOUT_S = 120.0  # listing the runs once they all ended
WAIT_POLL_S = 1.0
FORWARDED = "relay_events_forwarded_total"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--contacts",
        type=int,
        default=CONTACTS,
        metavar="N",
        help=f"contacts in the batched burst (default {CONTACTS})",
    )
    parser.add_argument(
        "--create-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="spread the Creates evenly over S seconds, a slow import (default: as fast as "
        "Dataverse answers, a few seconds for 1,000)",
    )
    parser.add_argument(
        "--no-hold",
        action="store_true",
        help="batched relay without holding partial batches while Airflow is busy "
        "(RELAY_BATCH_MAX_WAIT_SECONDS=0), to compare",
    )
    parser.add_argument(
        "--sqlite",
        action="store_true",
        help="Airflow's metadata database on SQLite, as in the demo (default: PostgreSQL, as "
        "deployed)",
    )
    parser.add_argument(
        "--per-event-contacts",
        type=int,
        default=PER_EVENT_CONTACTS,
        metavar="N",
        help=f"contacts in per-event mode (default {PER_EVENT_CONTACTS}; 0 skips it)",
    )


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return run(
        args.contacts,
        args.per_event_contacts,
        create_seconds=args.create_seconds,
        hold=not args.no_hold,
        postgres=not args.sqlite,
    )


def run(
    contacts: int = CONTACTS,
    per_event_contacts: int = PER_EVENT_CONTACTS,
    *,
    create_seconds: float = 0.0,
    hold: bool = True,
    postgres: bool = True,
) -> dict[str, Any]:
    """Benchmark 2; prints progress and the summary table, saves the results. ``create_seconds``
    paces the batched burst's Creates over that long (per-event mode's too, in proportion);
    ``hold=False`` turns off the relay's holding of partial batches while Airflow is busy;
    ``postgres=False`` keeps Airflow's metadata on SQLite."""
    sizes = {"batched": contacts, "per-event": per_event_contacts}
    print(
        f"\nBenchmark 2, burst: {contacts:,} contacts batched, "
        f"{per_event_contacts:,} in per-event mode"
    )
    measured: dict[str, dict[str, Any]] = {}
    with running_stack(NAME, postgres=postgres) as stack:
        for mode, count in sizes.items():
            if count:
                spread = create_seconds * count / contacts if contacts else 0.0
                relay = MODES[mode] if hold else {**MODES[mode], **NO_HOLD}
                measured[mode] = measure(stack, mode, count, relay, create_seconds=spread)
                stack.reset()
    return _report(measured)


def measure(
    stack: LiveStack,
    mode: str,
    contacts: int,
    relay: Mapping[str, Any],
    *,
    create_seconds: float = 0.0,
) -> dict[str, Any]:
    """One burst of ``contacts`` through a relay with ``relay`` settings (over the production
    ones), until every run it caused ended."""
    print(f"\n  {mode}: relay settings {dict(relay) or 'as in production'}")
    relay_service = stack.start_relay(f"relay-{mode}", **relay)
    writer = WebApiWriter(stack.sandbox.dataverse)
    if not stack.warm:
        # As the latency benchmark does: a fresh Airflow's first tasks fail their first
        # Execution API call while the API server starts up (seen: the first two runs of a
        # burst waited 90 s for their retries, and no trigger went through for 45 s meanwhile).
        # A deployment's Airflow has long been running when an import comes.
        warm_up(stack, writer, SYNC_DAG_ID)
        stack.warm = True
    forwarded_before = relay_forwarded(relay_service)
    bodies = contact_bodies(mode, contacts)
    before = stack.api_calls()
    began = time.time()
    created = writer.create_many("contacts", bodies, over_seconds=create_seconds)
    burst = Observed(began, time.time() - began, {record.id: record.at for record in created})
    print(f"  {mode}: {contacts:,} contacts created in {burst.create_s:.1f} s", flush=True)

    wait_until_synced(
        stack,
        relay_service,
        forwarded_before + contacts,
        timeout=TIMEOUT_PER_CONTACT_S * contacts,
    )
    # Every event is in a run and every run ended: each lead is in Marketo now, or never will
    # be (a failed run, reported below). One listing of the runs and one of the leads.
    burst.runs = wait_for_contacts(stack.airflow, burst.created, timeout=EVENT_TIMEOUT_S)
    burst.seen = {
        contact_id: lead_written_at(lead)
        for lead in stack.sandbox.marketo.leads()
        if (contact_id := str(lead.get(CONTACT_ID_FIELD) or "").lower()) in burst.created
    }
    burst.calls = sync_calls(before, stack.api_calls())
    figures = _figures(stack, mode, burst)
    return {**figures, "relay_settings": dict(relay), "creates_paced_over_s": create_seconds}


def wait_until_synced(stack: LiveStack, relay: LocalRelay, events: int, *, timeout: float) -> None:
    """Return once the relay has forwarded ``events`` events in all and no run of the DAG is
    queued or running. Two small questions a second: listing every run (each with a conf of up
    to 300 events) and every lead once a second, as the demo's wait does, cost the API server
    and the sandbox more CPU than a task, in the middle of the burst they measure."""
    progress = Progress("events forwarded to Airflow, runs ended", events)
    path = f"/api/v2/dags/{SYNC_DAG_ID}/dagRuns"
    deadline = time.monotonic() + timeout
    while True:
        stack.check_running()
        forwarded = relay_forwarded(relay)
        active = stack.airflow.request(
            "GET", path, params={"state": ["queued", "running"], "limit": 1}
        ).json()["total_entries"]
        if forwarded >= events and active == 0:
            progress.advance(events - progress.done)
            return
        progress.advance(min(forwarded, events) - progress.done)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"after {timeout:.0f} s: {forwarded} of {events} events forwarded, "
                f"{active} run(s) queued or running"
            )
        time.sleep(WAIT_POLL_S)


def relay_forwarded(relay: LocalRelay) -> int:
    """Events the relay has delivered to Airflow (its ``relay_events_forwarded_total``)."""
    return int(metric(httpx.get(f"{relay.url}/metrics", timeout=10.0).text, FORWARDED))


def metric(text: str, name: str) -> float:
    """An unlabelled sample of Prometheus' text format; 0 when absent (not counted yet)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return float(value)
    return 0.0


def lead_written_at(lead: Mapping[str, Any]) -> float:
    """When a lead was written (epoch seconds), from its ``createdAt``: Marketo shows whole
    seconds, so the end of that second, an upper bound. Not when the benchmark first saw it: it
    looks only after the Creates and then once a second, which put the first lead of the 5,000
    burst after the 51 s of Creates although runs wrote leads from the first seconds on."""
    return timestamp(str(lead["createdAt"])) + 1.0


@dataclass
class Observed:
    """What one burst did: when each contact was created (epoch seconds) and its lead written
    in Marketo, the runs it caused, the calls it cost."""

    began: float
    create_s: float
    created: dict[str, float]  # contact id → when its Create was sent
    seen: dict[str, float] = field(default_factory=dict)  # contact id → lead written (createdAt)
    runs: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, Any] = field(default_factory=dict)


def _figures(stack: LiveStack, mode: str, burst: Observed) -> dict[str, Any]:
    task_states: Counter[str] = Counter()
    tries = 0
    durations: dict[str, list[float]] = {}
    for run in burst.runs:
        for task in stack.airflow.task_instances(SYNC_DAG_ID, run["dag_run_id"]):
            task_states[task["state"]] += 1
            tries += task["try_number"]
            if task["start_date"] and task["end_date"]:
                seconds = timestamp(task["end_date"]) - timestamp(task["start_date"])
                durations.setdefault(task["task_id"], []).append(seconds)
    in_runs = Counter(contact_id for run in burst.runs for contact_id in contact_ids_of(run))
    seen, began, calls = burst.seen, burst.began, burst.calls
    latencies = [seen[contact_id] - burst.created[contact_id] for contact_id in seen]
    marketo = marketo_calls(calls["marketo"])
    contacts = len(burst.created)
    figures = {
        "mode": mode,
        "contacts": contacts,
        "create_s": burst.create_s,
        "leads_in_marketo": len(seen),
        "all_in_marketo_s": max(seen.values()) - began if len(seen) == contacts else None,
        # Where the time goes: when the first lead showed, when each run was queued and started
        # (seconds after the first Create), and how long each task ran (median over the runs).
        "first_lead_s": min(seen.values()) - began if seen else None,
        "runs_queued_s": sorted(timestamp(run["queued_at"]) - began for run in burst.runs),
        "runs_started_s": sorted(
            timestamp(run["start_date"]) - began for run in burst.runs if run["start_date"]
        ),
        "task_seconds_p50": {
            task_id: percentile(values, 0.5) for task_id, values in sorted(durations.items())
        },
        "last_run_ended_s": max(_ended(run) for run in burst.runs) - began,
        "contact_to_lead_p50_s": percentile(latencies, 0.5) if latencies else None,
        "contact_to_lead_p95_s": percentile(latencies, 0.95) if latencies else None,
        "runs": len(burst.runs),
        "failed_runs": sum(run["state"] != "success" for run in burst.runs),
        "contacts_in_two_runs": sum(count > 1 for count in in_runs.values()),
        "task_instances": sum(task_states.values()),
        "task_tries": tries,
        "task_states": dict(task_states),
        "dataverse_calls": calls["dataverse"]["total"],
        "marketo_rest_calls": marketo["rest"],
        "marketo_token_calls": marketo["identity"],
        "marketo_refused_606_615": marketo["refused"],
        "api_calls": calls,
    }
    figures["all_calls"] = figures["dataverse_calls"] + calls["marketo"]["total"]
    done = figures["all_in_marketo_s"]
    print(
        f"  {mode}: {len(seen):,}/{contacts:,} leads in Marketo"
        + (f" after {done:.1f} s" if done is not None else "")
        + f"; {figures['runs']:,} runs, {figures['failed_runs']} failed",
        flush=True,
    )
    if figures["first_lead_s"] is not None:
        started = figures["runs_started_s"]
        print(
            f"  {mode}: first lead after {figures['first_lead_s']:.1f} s; runs started "
            f"{started[0]:.1f} s to {started[-1]:.1f} s; task seconds p50 "
            + ", ".join(f"{t} {v:.1f}" for t, v in figures["task_seconds_p50"].items()),
            flush=True,
        )
    return figures


def _ended(run: Mapping[str, Any]) -> float:
    return timestamp(run["end_date"]) if run["end_date"] else time.time()


_ROWS = (
    ("all leads in Marketo after, s", "all_in_marketo_s"),
    ("last run ended after, s", "last_run_ended_s"),
    ("contact → lead p50, s", "contact_to_lead_p50_s"),
    ("contact → lead p95, s", "contact_to_lead_p95_s"),
    ("DAG runs", "runs"),
    ("  of which failed", "failed_runs"),
    ("task instances", "task_instances"),
    ("  tries (retries included)", "task_tries"),
    ("Dataverse calls", "dataverse_calls"),
    ("Marketo REST calls", "marketo_rest_calls"),
    ("Marketo token requests", "marketo_token_calls"),
    ("API calls, all", "all_calls"),
    ("answers 606/615", "marketo_refused_606_615"),
)
# Compared per contact: the counts, and the time to the last lead as seconds per contact.
_PER_CONTACT = (
    "all_in_marketo_s",
    "runs",
    "task_instances",
    "dataverse_calls",
    "marketo_rest_calls",
    "marketo_token_calls",
    "all_calls",
)


def _per_contact(batched: Mapping[str, Any], per_event: Mapping[str, Any], key: str) -> list[str]:
    """``key`` per contact in each mode, and batched mode's as a share of per-event mode's."""
    if key not in _PER_CONTACT or batched[key] is None or per_event[key] is None:
        return ["", "", ""]
    mine = batched[key] / batched["contacts"]
    theirs = per_event[key] / per_event["contacts"]
    return [f"{mine:.3f}", f"{theirs:.3f}", f"{mine / theirs:.1%}" if theirs else "-"]


def _report(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    batched, per_event = measured.get("batched"), measured.get("per-event")
    headers = ["measure"]
    headers += [f"{mode} ({figures['contacts']:,})" for mode, figures in measured.items()]
    if batched and per_event:
        headers += ["batched /contact", "per-event /contact", "batched ÷ per-event"]
    rows = []
    for label, key in _ROWS:
        row: list[Any] = [label]
        row += ["-" if f[key] is None else f[key] for f in measured.values()]
        if batched and per_event:
            row += _per_contact(batched, per_event, key)
        rows.append(row)
    goals = {"all_in_marketo_s": WALL_GOAL_S, "calls_x_per_event": CALLS_GOAL, "refused": 0}
    results: dict[str, Any] = {"goals": goals, "modes": measured}
    if batched and per_event:
        results["calls_per_contact_x_per_event"] = (batched["all_calls"] / batched["contacts"]) / (
            per_event["all_calls"] / per_event["contacts"]
        )
    path = save_results(NAME, results)
    print("\nBurst: batched (the product) beside per-event mode (one run per webhook)")
    print(table(headers, rows))
    if batched:
        done = batched["all_in_marketo_s"]
        print(
            f"\nGoal: all {batched['contacts']:,} in Marketo within {WALL_GOAL_S:.0f} s: "
            + ("not all arrived" if done is None else f"{done:.1f} s")
        )
    if "calls_per_contact_x_per_event" in results:
        print(
            f"Goal: API calls per contact ≤ {CALLS_GOAL:.0%} of per-event mode's: "
            f"{results['calls_per_contact_x_per_event']:.1%}"
        )
    refused = {mode: f["marketo_refused_606_615"] for mode, f in measured.items()}
    print(f"Goal: no answer 606/615: {refused}")
    print(f"Saved {path}")
    return results
