"""The latency benchmark's floors are only floors while they keep their shapes.

``bench_product_floor`` has the real-time DAG's shape (the same tasks, edges and pools), so a
change to the real DAG that the floor does not follow fails here rather than skewing the
benchmark. ``bench_orchestration_floor`` keeps the recipe's seven-task chain: the "stock"
reference the product is measured against.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.live import DAG_FILES, FLOOR_DAG_ID, SYNC_DAG_ID
from tests.support import REALTIME_TASK_IDS

PRODUCT_FLOOR_DAG_ID = "bench_product_floor"
PRODUCT_FLOOR_FILE = DAG_FILES[-1].parent / f"{PRODUCT_FLOOR_DAG_ID}.py"
# The recipe's real-time flow, one task per step: what the stock floor stands for.
RECIPE_TASK_IDS = (
    "parse_events",
    "fetch_contacts",
    "check_accounts",
    "map_to_leads",
    "find_leads",
    "upsert_leads",
    "report",
)


def shape(dag: Any) -> dict[str, tuple[list[str], str, bool]]:
    """task id → (upstream task ids, pool, whether it is a Python task)."""
    return {
        task.task_id: (sorted(task.upstream_task_ids), task.pool, hasattr(task, "python_callable"))
        for task in dag.tasks
    }


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The DAGs, parsed as the benchmark's Airflow parses them: from one folder of links."""
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path_factory.mktemp("bench-dags")
    for path in {*DAG_FILES, PRODUCT_FLOOR_FILE}:
        (folder / path.name).symlink_to(path)
    bag = DagBag(dag_folder=folder, safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    return bag.dags


def test_the_benchmark_loads_the_real_dag_and_both_floors(dags):
    assert set(dags) == {SYNC_DAG_ID, FLOOR_DAG_ID, PRODUCT_FLOOR_DAG_ID}


def test_the_product_floor_has_the_real_dags_tasks_edges_and_pools(dags):
    real, floor = shape(dags[SYNC_DAG_ID]), shape(dags[PRODUCT_FLOOR_DAG_ID])

    assert tuple(t.task_id for t in dags[SYNC_DAG_ID].topological_sort()) == REALTIME_TASK_IDS
    assert floor == real


def test_the_stock_floor_keeps_the_recipes_seven_task_chain(dags):
    floor = dags[FLOOR_DAG_ID]

    assert tuple(task.task_id for task in floor.topological_sort()) == RECIPE_TASK_IDS
    assert {task.task_id for task in floor.tasks if task.pool == "marketo_api"} == {
        "find_leads",
        "upsert_leads",
    }
