"""
# The product's orchestration floor

The real-time DAG's three tasks (`parse_events` → `sync_contacts` → `report`), wired the same way
(same ids, edges, pool, XComs between them), doing nothing. A webhook relayed to it costs what
Airflow costs for the product's DAG shape and nothing else, so the latency benchmark can tell
Airflow's share from the sync's. `bench_orchestration_floor` keeps the recipe's seven-task chain
as the "stock" reference. Not part of the product: only the benchmark's own Airflow loads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import dag, task

from contact_sync.tasks import MARKETO_POOL


@dag(
    dag_id="bench_product_floor",
    description="Three no-op tasks shaped like the real-time DAG: the product's latency floor",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["benchmark"],
)
def bench_product_floor() -> None:
    @task(multiple_outputs=False)
    def parse_events() -> dict[str, Any]:
        return {}

    @task(pool=MARKETO_POOL, multiple_outputs=False)
    def sync_contacts(request: dict[str, Any]) -> dict[str, Any]:
        return {}

    @task
    def report(request: dict[str, Any], synced: dict[str, Any]) -> None:
        return None

    request = parse_events()
    report(request, sync_contacts(request))


bench_product_floor()
