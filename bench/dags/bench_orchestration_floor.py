"""
# The orchestration floor (benchmark 1)

The real-time DAG's seven tasks, wired the same way (same ids, edges, pool, XComs between them),
doing nothing. A webhook relayed to it costs what Airflow costs for seven tasks and nothing else:
the latency benchmark measures the real DAG beside it. Not part of the product: only the
benchmark's own Airflow loads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import dag, task

MARKETO_POOL = "marketo_api"  # as in dags/dynamics_contact_to_marketo.py


@dag(
    dag_id="bench_orchestration_floor",
    description="Seven no-op tasks shaped like the real-time DAG: the latency benchmark's floor",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["benchmark"],
)
def bench_orchestration_floor() -> None:
    @task(multiple_outputs=False)
    def parse_events() -> dict[str, Any]:
        return {}

    @task(multiple_outputs=False)
    def fetch_contacts(request: dict[str, Any]) -> dict[str, Any]:
        return {}

    @task(multiple_outputs=False)
    def check_accounts(fetched: dict[str, Any]) -> dict[str, Any]:
        return {}

    @task(multiple_outputs=False)
    def map_to_leads(
        request: dict[str, Any], fetched: dict[str, Any], accounts: dict[str, Any]
    ) -> dict[str, Any]:
        return {}

    @task(pool=MARKETO_POOL)
    def find_leads(mapped: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    @task(pool=MARKETO_POOL)
    def upsert_leads(mapped: dict[str, Any], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return []

    @task
    def report(
        request: dict[str, Any], mapped: dict[str, Any], written: list[dict[str, Any]]
    ) -> None:
        return None

    request = parse_events()
    fetched = fetch_contacts(request)
    accounts = check_accounts(fetched)
    mapped = map_to_leads(request, fetched, accounts)
    found = find_leads(mapped)
    written = upsert_leads(mapped, found)
    report(request, mapped, written)


bench_orchestration_floor()
