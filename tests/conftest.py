"""Shared fixtures: the sandbox (``dataverse``, ``marketo``) from ``sandbox.testing``, a live
Airflow (``airflow_live``) from ``devenv.pytest_plugin``, and in-process DAG runs (``dag.test``)
of the project's DAGs: ``airflow_db``, ``project_dags`` and :class:`DagTestRun`, the one setup
the DAG tests of ``tests/pipeline`` and ``tests/reconcile`` share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["sandbox.testing", "devenv.pytest_plugin"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A fresh metadata DB and the project's DAG folder for this process's Airflow.

    The ORM is re-configured, so it works whichever test imported Airflow first; the
    ``marketo_api`` pool is created as devenv/ and docker-compose create it.
    """
    from airflow import settings
    from airflow.models.pool import Pool
    from airflow.utils.db import initdb

    from contact_sync.tasks import MARKETO_POOL

    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db")
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
        patch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        patch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(home / "logs"))
        settings.configure_vars()
        settings.reconfigure_orm()
        try:
            initdb()
            Pool.create_or_update_pool(
                MARKETO_POOL, slots=2, description="Marketo REST calls", include_deferred=False
            )
            yield
        finally:
            settings.dispose_orm()
    settings.configure_vars()
    settings.reconfigure_orm()


@pytest.fixture(scope="session")
def project_dags(airflow_db: None) -> dict[str, Any]:
    """The DAGs of ``dags/`` by id, as the DAG processor loads them."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(PROJECT_ROOT / "dags")
    assert not bag.import_errors, bag.import_errors
    return bag.dags


@dataclass
class DagTestRun:
    """A run of ``dag.test()`` to its end: its state, each task's state and tries, its XComs."""

    dag_run: Any

    @classmethod
    def of(cls, dag: Any, conf: dict[str, Any], **kwargs: Any) -> DagTestRun:
        return cls(dag.test(run_conf=conf, **kwargs))

    @property
    def state(self) -> str:
        return str(self.dag_run.state)

    @property
    def task_states(self) -> dict[str, str]:
        """Task id (``id[map index]`` for mapped ones) → state."""
        return {self._name(ti): str(ti.state) for ti in self.dag_run.get_task_instances()}

    @property
    def tries(self) -> dict[str, int]:
        """Task id (``id[map index]`` for mapped ones) → the try it ended on."""
        return {self._name(ti): ti.try_number for ti in self.dag_run.get_task_instances()}

    def xcom_keys(self) -> list[str]:
        """Every XCom of the run as ``task[map index].key``."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = XComModel.get_many(run_id=self.dag_run.run_id, dag_ids=self.dag_run.dag_id)
            return sorted(f"{r.task_id}[{r.map_index}].{r.key}" for r in session.scalars(query))

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = XComModel.get_many(
                run_id=self.dag_run.run_id,
                key=key,
                dag_ids=self.dag_run.dag_id,
                task_ids=task_id,
                map_indexes=map_index,
            )
            row = session.execute(query.with_only_columns(XComModel.value)).first()
            return None if row is None else XComModel.deserialize_value(row)

    @staticmethod
    def _name(ti: Any) -> str:
        return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
