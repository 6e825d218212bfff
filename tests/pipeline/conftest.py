"""In-process DAG runs (``dag.test``) against both sandboxes.

``airflow_db`` points this process's Airflow at a fresh SQLite metadata DB for the session (the
ORM is re-configured, so it works whichever test imported Airflow first) and creates the
``marketo_api`` pool the Marketo tasks run in. ``sandboxes`` wires the DAG's Connections to the
sandboxes through ``AIRFLOW_CONN_*``, as deployments do, and ``run_sync(conf)`` runs the DAG.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from contact_sync.mapping import DEFAULT_DIRECTORY, load_mappings
from tests.support import connect_dynamics, connect_marketo

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "dynamics_contact_to_marketo"


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A fresh metadata DB and the project's DAG folder for this process's Airflow."""
    from airflow import settings
    from airflow.models.pool import Pool
    from airflow.utils.db import initdb

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
            # As devenv/ and docker-compose create it; the Marketo tasks need it to run.
            Pool.create_or_update_pool(
                "marketo_api", slots=2, description="Marketo REST calls", include_deferred=False
            )
            yield
        finally:
            settings.dispose_orm()
    settings.configure_vars()
    settings.reconfigure_orm()


@pytest.fixture(scope="session")
def sync_dag(airflow_db: None) -> Any:
    """The DAG as the DAG processor loads it from ``dags/``."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(PROJECT_ROOT / "dags")
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(DAG_ID)


@dataclass
class Sandboxes:
    dataverse: Any
    marketo: Any

    def calls(self) -> dict[str, dict[str, int]]:
        """API calls per endpoint so far, per service (the sandboxes' own counters)."""
        return {
            "dynamics": self.dataverse.admin.calls()["by_endpoint"],
            "marketo": self.marketo.admin.calls()["by_endpoint"],
        }


@pytest.fixture
def sandboxes(dataverse, marketo, monkeypatch) -> Sandboxes:
    """``dynamics365_default`` and ``marketo_default`` point at fresh sandboxes; Marketo has the
    custom field ``settings.yaml`` names for the contact id (an admin creates it once)."""
    connect_dynamics(monkeypatch, dataverse.url)
    connect_marketo(monkeypatch, marketo.url)
    contact_field = load_mappings().settings.contact_id_field
    if contact_field:
        marketo.admin.add_field(contact_field)
    return Sandboxes(dataverse, marketo)


@pytest.fixture
def company_record_mode(tmp_path, monkeypatch) -> Path:
    """The sync in ``company_mode: company_record``, through a copy of the shipped mappings."""
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIRECTORY, target)
    settings_path = target / "settings.yaml"
    settings = yaml.safe_load(settings_path.read_text())
    settings_path.write_text(yaml.safe_dump({**settings, "company_mode": "company_record"}))
    monkeypatch.setenv("CONTACT_SYNC_MAPPINGS_DIR", str(target))
    return target


@dataclass
class SyncRun:
    """A finished run: its state, each task's state and its XComs."""

    dag_run: Any

    @property
    def state(self) -> str:
        return str(self.dag_run.state)

    @property
    def task_states(self) -> dict[str, str]:
        return {ti.task_id: str(ti.state) for ti in self.dag_run.get_task_instances()}

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = XComModel.get_many(
                run_id=self.dag_run.run_id, key=key, dag_ids=DAG_ID, task_ids=task_id
            )
            row = session.execute(query.with_only_columns(XComModel.value)).first()
            return None if row is None else XComModel.deserialize_value(row)

    @property
    def summary(self) -> dict[str, Any]:
        return self.xcom("report", "summary")

    def outcomes(self) -> dict[str, str]:
        """Contact id → outcome status, from the report's summary and the written outcomes."""
        written = {o["contact_id"]: o["status"] for o in self.xcom("upsert_leads") or []}
        rejected = {r["contact_id"]: "rejected" for r in self.summary["rejected"]}
        return {**written, **rejected}


@pytest.fixture
def run_sync(sync_dag, sandboxes) -> Callable[[dict[str, Any]], SyncRun]:
    """``run_sync(conf)``: one in-process run of the DAG with that conf, to its end."""

    def run(conf: dict[str, Any]) -> SyncRun:
        return SyncRun(sync_dag.test(run_conf=conf))

    return run
