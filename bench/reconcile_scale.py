"""Benchmark 3, reconciliation at scale: a nightly window of N contacts (10% drifted, 2% without
email) reconciled against sandboxes with no limits, in a worker process.

Measured beside their references: API calls against the floor the issue states,
``ceil(N/5000)`` contact pages + ``ceil(N/300)`` lead lookups + ``ceil(drifted/300)`` writes (+
account queries: none, the accounts come ``$expand``-ed with their page); wall time against the
2-minute goal; the worker's peak RSS against the same process before the first page (Airflow and
the hooks loaded) and against the 300 MB goal; and, over several sizes, the peak against the
smallest size's, which shows whether memory grows with N.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.harness import (
    Progress,
    Sandboxes,
    add_sizes_argument,
    peak_rss_mb,
    prepare_worker,
    ratio,
    run_in_worker,
    running_sandboxes,
    save_results,
    table,
)

NAME = "reconcile"
SUMMARY = "3. reconciliation at scale (no limits)"
SIZES = (20_000, 100_000)
PAGE = 5_000  # Dataverse's page size (the hook's maximum)
BATCH = 300  # Marketo's values per lookup and records per Sync Leads call
WALL_GOAL_S = 120.0
RSS_GOAL_MB = 300.0
CALLS_GOAL = 1.05  # × the floor

# The night reconciled, and a moment inside it for every contact.
SINCE, UNTIL = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC)
INSIDE = "2025-03-01T12:00:00Z"
CONTACT_ID_FIELD = "dynamicsContactId"  # include/mappings/settings.yaml
SEED_CHUNK = 10_000

# Every 10th contact (n % 10 == 1) drifted, every 50th (n % 50 == 0) without email: disjoint sets.
DRIFT_EVERY, NO_EMAIL_EVERY = 10, 50
# Nine contacts in ten have a parent account, a hundred contacts per account.
CONTACTS_PER_ACCOUNT = 100

# The sandbox and the client without limits: this benchmark measures the work, not the waiting.
NO_LIMITS = {"rate_limit_calls": None, "concurrency_limit": None, "daily_quota": None}
UNLIMITED_CLIENT = {"rate_limit_calls": 1_000_000, "rate_limit_window_s": 1, "max_concurrent": 10}


@dataclass(frozen=True)
class Dataset:
    contacts: int
    drifted: int
    without_email: int

    @property
    def floor(self) -> dict[str, int]:
        """The fewest API calls the reconciliation can make, per kind (the issue's formula)."""
        return {
            "contact pages": math.ceil(self.contacts / PAGE),
            "lead lookups": math.ceil(self.contacts / BATCH),
            "lead writes": math.ceil(self.drifted / BATCH),
        }


def _ids(n: int) -> tuple[str, str]:
    """(contact id, account id) of contact ``n``: predictable, so leads can be linked to them."""
    return f"00000000-0000-4000-8000-{n:012d}", f"00000000-0000-4000-9000-{n:012d}"


def _records(numbers: range, accounts: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Contacts ``numbers`` and the leads of those with an email, in sync but for the drifted."""
    contacts, leads = [], []
    for n in numbers:
        contact_id = _ids(n)[0]
        account = n % accounts if n % 10 else None
        contact: dict[str, Any] = {
            "contactid": contact_id,
            "firstname": f"First{n}",
            "lastname": f"Last{n}",
            "modifiedon": INSIDE,
        }
        if account is not None:
            contact["_parentcustomerid_value"] = _ids(account)[1]
        if n % NO_EMAIL_EVERY:
            contact["emailaddress1"] = f"person{n}@example.com"
            leads.append(
                {
                    "email": f"person{n}@example.com",
                    "firstName": f"First{n}",
                    "lastName": f"Last{n}",
                    CONTACT_ID_FIELD: contact_id,
                    # The contact has no job title: the reconciliation must clear this one.
                    **({"title": "Drifted"} if n % DRIFT_EVERY == 1 else {}),
                    **({"company": f"Account {account}"} if account is not None else {}),
                }
            )
        contacts.append(contact)
    return contacts, leads


def seed(sandboxes: Sandboxes, contacts: int) -> Dataset:
    """``contacts`` contacts in Dataverse and their leads in Marketo, seeded in chunks."""
    accounts = max(1, contacts // CONTACTS_PER_ACCOUNT)
    sandboxes.add_lead_field(CONTACT_ID_FIELD)
    sandboxes.dataverse.seed(
        contacts=[],
        accounts=[{"accountid": _ids(a)[1], "name": f"Account {a}"} for a in range(accounts)],
    )
    progress = Progress("seeding contacts and leads", contacts)
    for start in range(0, contacts, SEED_CHUNK):
        numbers = range(start, min(start + SEED_CHUNK, contacts))
        chunk, leads = _records(numbers, accounts)
        sandboxes.dataverse.seed(contacts=chunk, accounts=[])
        sandboxes.marketo.database.seed_leads(leads)
        progress.advance(len(numbers))
    return Dataset(
        contacts=contacts,
        drifted=len(range(1, contacts, DRIFT_EVERY)),
        without_email=len(range(0, contacts, NO_EMAIL_EVERY)),
    )


def reconcile_in_worker(env: Mapping[str, str], contacts: int) -> dict[str, Any]:
    """Runs in the spawned worker: one reconciliation of the night, timed, with its peak RSS."""
    prepare_worker(env)
    # Imported here: they load Airflow, which the benchmark's own process never needs.
    from contact_sync.hooks.dynamics import DynamicsHook
    from contact_sync.hooks.marketo import MarketoHook
    from contact_sync.mapping import load_mappings
    from contact_sync.reconcile import Window, reconcile

    class ProgressDynamics(DynamicsHook):
        """The hook, reporting each page once the reconciliation is done with it."""

        def iter_contact_pages(self, **query: Any) -> Iterator[list[dict[str, Any]]]:
            progress = Progress("reconciling contacts", contacts)
            for page in super().iter_contact_pages(**query):
                yield page
                progress.advance(len(page))

    # The progress line replaces the hooks' per-call log lines (and the ids of rejected contacts).
    logging.getLogger("contact_sync").setLevel(logging.ERROR)
    mappings = load_mappings()
    dynamics, marketo = ProgressDynamics(), MarketoHook()
    baseline = peak_rss_mb()
    started = time.monotonic()
    report = reconcile(dynamics, marketo, Window(since=SINCE, until=UNTIL), mappings)
    wall = time.monotonic() - started
    summary = report.to_dict()
    del summary["rejected"]  # ids only, but thousands of them
    return {"wall_s": wall, "rss_baseline_mb": baseline, "rss_peak_mb": peak_rss_mb(), **summary}


def measure(
    sandboxes: Sandboxes,
    contacts: int,
    *,
    marketo_settings: Mapping[str, Any],
    marketo_client: Mapping[str, Any],
) -> dict[str, Any]:
    """Seed fresh sandboxes with ``contacts`` and reconcile them once in a worker."""
    print(f"\n{contacts:,} contacts", flush=True)
    sandboxes.reset(marketo_settings=marketo_settings)
    dataset = seed(sandboxes, contacts)
    env = sandboxes.connection_env(marketo_extra=marketo_client)
    run = run_in_worker(reconcile_in_worker, env, contacts)
    calls = sandboxes.api_calls()
    dataverse, marketo = calls["dataverse"]["by_endpoint"], calls["marketo"]["by_endpoint"]
    contacts_calls = dataverse.get("GET /api/data/v9.2/contacts", 0)
    accounts_calls = dataverse.get("GET /api/data/v9.2/accounts", 0)
    lookups = marketo.get("GET /rest/v1/leads.json", 0)
    writes = marketo.get("POST /rest/v1/leads.json", 0)
    # Every contact ends created, updated, unchanged or rejected for having no email: anything
    # else (a Marketo refusal, a contact never read) is a failed record.
    rejected = run["counts"]["rejected"]
    failed = (dataset.contacts - run["total"]) + (rejected - dataset.without_email)
    return {
        "dataset": {
            "contacts": dataset.contacts,
            "drifted": dataset.drifted,
            "without_email": dataset.without_email,
        },
        "floor": dataset.floor,
        "calls": {
            "contact pages": contacts_calls,
            "account queries": accounts_calls,
            "lead lookups": lookups,
            "lead writes": writes,
        },
        "failed_records": failed,
        "sandbox_calls": calls,
        **run,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sizes_argument(parser, SIZES)


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return run(args.contacts)


def run(sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    """Benchmark 3 at each size; prints the summary table and saves the results."""
    with running_sandboxes() as sandboxes:
        runs = [
            measure(sandboxes, size, marketo_settings=NO_LIMITS, marketo_client=UNLIMITED_CLIENT)
            for size in sizes
        ]
    smallest = min(runs, key=lambda r: r["dataset"]["contacts"])
    rows = []
    for result in runs:
        floor, calls = sum(result["floor"].values()), sum(result["calls"].values())
        rows += [
            (f"{result['dataset']['contacts']:,} contacts", "", "", ""),
            ("  API calls / floor", calls, floor, ratio(calls, floor)),
            (
                "  wall time s / goal",
                result["wall_s"],
                WALL_GOAL_S,
                ratio(result["wall_s"], WALL_GOAL_S),
            ),
            (
                "  peak RSS MB / before the first page",
                result["rss_peak_mb"],
                result["rss_baseline_mb"],
                ratio(result["rss_peak_mb"], result["rss_baseline_mb"]),
            ),
            (
                "  peak RSS MB / goal",
                result["rss_peak_mb"],
                RSS_GOAL_MB,
                ratio(result["rss_peak_mb"], RSS_GOAL_MB),
            ),
            (
                f"  peak RSS MB / at {smallest['dataset']['contacts']:,}",
                result["rss_peak_mb"],
                smallest["rss_peak_mb"],
                ratio(result["rss_peak_mb"], smallest["rss_peak_mb"]),
            ),
            ("  failed records", result["failed_records"], 0, ""),
        ]
    results = {
        "goals": {"wall_s": WALL_GOAL_S, "rss_mb": RSS_GOAL_MB, "calls_x_floor": CALLS_GOAL},
        "runs": runs,
    }
    path = save_results(NAME, results)
    print("\nReconciliation at scale (no limits)")
    print(table(("measure", "value", "reference", "ratio"), rows))
    print(f"\nSaved {path}")
    return results
