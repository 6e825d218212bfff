"""Test-only DAG for the live-Airflow tests: the first task returns the run's conf as its XCom,
the second consumes it, so one run proves conf delivery and XCom passing between tasks."""

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="e2e_conf_echo",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["e2e"],
)
def e2e_conf_echo():
    @task
    def echo_conf() -> dict[str, Any]:
        return dict(get_current_context()["dag_run"].conf or {})

    @task
    def count_keys(run_conf: dict[str, Any]) -> int:
        return len(run_conf)

    count_keys(echo_conf())


e2e_conf_echo()
