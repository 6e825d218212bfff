"""The latency benchmark's floor is only a floor while it has the real-time DAG's shape: the same
tasks, the same edges, the same pools. A change to the real DAG that the floor does not follow
fails here rather than skewing the benchmark."""

from __future__ import annotations

from typing import Any

import pytest

from bench.live import DAG_FILES, FLOOR_DAG_ID, SYNC_DAG_ID
from tests.support import REALTIME_TASK_IDS


def shape(dag: Any) -> dict[str, tuple[list[str], str, bool]]:
    """task id → (upstream task ids, pool, whether it is a Python task)."""
    return {
        task.task_id: (sorted(task.upstream_task_ids), task.pool, hasattr(task, "python_callable"))
        for task in dag.tasks
    }


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both DAGs, parsed as the benchmark's Airflow parses them: from one folder of links."""
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path_factory.mktemp("bench-dags")
    for path in DAG_FILES:
        (folder / path.name).symlink_to(path)
    bag = DagBag(dag_folder=folder, safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    return bag.dags


def test_the_benchmark_loads_the_real_dag_and_the_floor(dags):
    assert set(dags) == {SYNC_DAG_ID, FLOOR_DAG_ID}


def test_the_floor_has_the_real_dags_tasks_edges_and_pools(dags):
    real, floor = shape(dags[SYNC_DAG_ID]), shape(dags[FLOOR_DAG_ID])

    assert set(real) == set(REALTIME_TASK_IDS)
    assert floor == real
