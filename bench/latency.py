"""Benchmark 1, latency: one webhook → the lead in Marketo, p50 and p95 over single events, beside a
no-op DAG of the same task count on the same Airflow (the orchestration floor).

Both paths are the product's, end to end: a record created through the Dataverse Web API fires a
webhook to a relay (production settings, so a 1 s batch window) that triggers a DAG run. A contact
goes to the real-time DAG; an account goes, through a second relay with the same settings, to
``bench_orchestration_floor`` (``bench/dags/``): the real DAG's seven tasks, wired the same way,
doing nothing. Events alternate between the two, one at a time (each waits for the run before it
to end), after one warm-up event each that is not counted.

Measured from the Create request:

- to the lead in Marketo (polled every 50 ms), beside the end of the floor's ``upsert_leads``,
  the task that writes the lead in the real DAG. The goal is about this: p50 ≤ 1.3× the floor;
- to the end of ``upsert_leads`` and to the end of the run (all seven tasks), both DAGs;
- to the run being queued in Airflow: the relay's part (batch window and trigger call).

API calls: the sandboxes' own count over the measured events, less the benchmark's own Creates.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.harness import marketo_calls, percentile, ratio, save_results, table
from bench.live import (
    FLOOR_DAG_ID,
    LiveStack,
    WebApiWriter,
    poll,
    running_stack,
    sync_calls,
    timestamp,
)
from devenv.demo import SYNC_DAG_ID, wait_for_contacts

NAME = "latency"
SUMMARY = "1. latency: one webhook → lead, p50/p95, beside a no-op DAG"
EVENTS = 20
WARMUP = 1
GOAL = 1.3  # × the floor, p50
LEAD_TASK = "upsert_leads"
EVENT_TIMEOUT_S = 180.0
LEAD_POLL_S = 0.05


@dataclass(frozen=True)
class Sample:
    """Seconds from one Create request to each milestone of the run it caused."""

    queued: float  # the run is queued in Airflow
    lead: float  # real DAG: the lead is in Marketo; floor: its upsert_leads ended
    upsert_end: float  # upsert_leads ended
    run_end: float  # the run ended
    state: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events",
        type=int,
        default=EVENTS,
        metavar="N",
        help=f"events measured per DAG, after {WARMUP} warm-up (default {EVENTS})",
    )


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return run(args.events)


def run(events: int = EVENTS) -> dict[str, Any]:
    """Benchmark 1; prints progress and the summary table, saves the results."""
    print(f"\nBenchmark 1, latency: {events} single events per DAG, alternating")
    with running_stack(NAME) as stack:
        stack.start_relay("relay-sync")
        stack.start_relay("relay-floor", dag_id=FLOOR_DAG_ID, entity="account")
        writer = WebApiWriter(stack.sandbox.dataverse)
        samples: dict[str, list[Sample]] = {"sync": [], "floor": []}
        calls_before: dict[str, Any] = {}
        for number in range(-WARMUP, events):
            if number == 0:
                calls_before = stack.api_calls()
            sync = _sync_event(stack, writer, number)
            floor = _floor_event(stack, writer, number)
            label = "warm-up" if number < 0 else f"event {number + 1}/{events}"
            print(
                f"  {label}: lead in Marketo after {sync.lead:.2f} s (run {sync.state}), "
                f"floor's {LEAD_TASK} after {floor.lead:.2f} s",
                flush=True,
            )
            if number >= 0:
                samples["sync"].append(sync)
                samples["floor"].append(floor)
        calls = sync_calls(calls_before, stack.api_calls())
    return _report(samples, calls, events)


def _sync_event(stack: LiveStack, writer: WebApiWriter, number: int) -> Sample:
    email = f"latency-{number + WARMUP}@example.com"
    contact = {
        "firstname": f"Latency{number + WARMUP}",
        "lastname": "Bench",
        "emailaddress1": email,
    }
    created = writer.create("contacts", contact)
    poll(
        lambda: stack.sandbox.marketo.leads(email=email),
        timeout=EVENT_TIMEOUT_S,
        what="the lead",
        every=LEAD_POLL_S,
        check=stack.check_running,
    )
    lead_at = time.time()
    return _sample(stack, SYNC_DAG_ID, created.id, created.at, lead_at=lead_at)


def _floor_event(stack: LiveStack, writer: WebApiWriter, number: int) -> Sample:
    created = writer.create("accounts", {"name": f"Latency floor {number + WARMUP}"})
    return _sample(stack, FLOOR_DAG_ID, created.id, created.at, lead_at=None)


def _sample(
    stack: LiveStack, dag_id: str, record_id: str, created_at: float, lead_at: float | None
) -> Sample:
    """The milestones of the run ``record_id``'s webhook caused, once it has ended."""
    [run] = wait_for_contacts(
        stack.airflow,
        [record_id],
        timeout=EVENT_TIMEOUT_S,
        on_poll=lambda runs: stack.check_running(),
        dag_id=dag_id,
    )
    tasks = stack.airflow.task_instances(dag_id, run["dag_run_id"])
    [upsert] = [ti for ti in tasks if ti["task_id"] == LEAD_TASK]
    upsert_end = timestamp(upsert["end_date"]) - created_at
    return Sample(
        queued=timestamp(run["queued_at"]) - created_at,
        lead=upsert_end if lead_at is None else lead_at - created_at,
        upsert_end=upsert_end,
        run_end=timestamp(run["end_date"]) - created_at,
        state=run["state"],
    )


def _stats(samples: Sequence[Sample], field: str) -> tuple[float, float]:
    values = [getattr(sample, field) for sample in samples]
    return percentile(values, 0.5), percentile(values, 0.95)


def _report(samples: dict[str, list[Sample]], calls: dict[str, Any], events: int) -> dict[str, Any]:
    rows: list[tuple[Any, ...]] = []
    figures: dict[str, Any] = {}
    for label, field in (
        ("run queued (relay: window + trigger)", "queued"),
        ("lead in Marketo (floor: its upsert_leads ended)", "lead"),
        (f"{LEAD_TASK} ended", "upsert_end"),
        ("run ended (7 tasks)", "run_end"),
    ):
        sync_p50, sync_p95 = _stats(samples["sync"], field)
        floor_p50, floor_p95 = _stats(samples["floor"], field)
        figures[field] = {
            "sync": {"p50": sync_p50, "p95": sync_p95},
            "floor": {"p50": floor_p50, "p95": floor_p95},
            "ratio_p50": sync_p50 / floor_p50,
            "ratio_p95": sync_p95 / floor_p95,
        }
        rows.append(
            (
                label,
                f"{sync_p50:.2f}",
                f"{sync_p95:.2f}",
                f"{floor_p50:.2f}",
                f"{floor_p95:.2f}",
                ratio(sync_p50, floor_p50),
                ratio(sync_p95, floor_p95),
            )
        )
    failed = sum(sample.state != "success" for sample in samples["sync"])
    marketo = marketo_calls(calls["marketo"])
    dataverse_calls = calls["dataverse"]["total"]
    results = {
        "events": events,
        "warmup": WARMUP,
        "goal": {"lead_p50_x_floor": GOAL},
        "figures": figures,
        "failed_runs": failed,
        "api_calls": calls,
        "samples": {dag: [asdict(sample) for sample in rows_] for dag, rows_ in samples.items()},
    }
    path = save_results(NAME, results)
    print(f"\nLatency from the Dataverse Create request, seconds ({events} events per DAG)")
    print(
        table(
            ("to", "real p50", "real p95", "floor p50", "floor p95", "ratio p50", "ratio p95"),
            rows,
        )
    )
    print(f"\nGoal: lead in Marketo p50 ≤ {GOAL}× the floor: {figures['lead']['ratio_p50']:.2f}×")
    print(
        f"Runs of the real DAG not successful: {failed}. API calls per event: "
        f"Dataverse {dataverse_calls / events:.1f}, Marketo REST {marketo['rest'] / events:.1f} "
        f"(+ {marketo['identity'] / events:.1f} token requests), refused for a limit "
        f"{marketo['refused']}"
    )
    print(f"Saved {path}")
    return results
