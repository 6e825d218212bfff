"""Test-only DAG whose one task sleeps for ``conf["seconds"]``: a run that is still going when the
live-Airflow tests stop Airflow, to prove task processes are ended too."""

import time
from datetime import UTC, datetime

from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="e2e_hold",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["e2e"],
)
def e2e_hold():
    @task
    def hold() -> None:
        time.sleep(float(get_current_context()["dag_run"].conf.get("seconds", 0)))

    hold()


e2e_hold()
