"""In-process runs (``dag.test``) of the real-time DAG against both sandboxes.

``sandboxes`` wires the DAG's Connections to the sandboxes through ``AIRFLOW_CONN_*``, as
deployments do, and ``run_sync(conf)`` runs the DAG (the metadata DB and the DAG bag are the
session's, from ``tests/conftest.py``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from contact_sync.mapping import DEFAULT_DIRECTORY, load_mappings
from contact_sync.tasks import SUMMARY_KEY
from tests.conftest import DagTestRun
from tests.support import connect_dynamics, connect_marketo

DAG_ID = "dynamics_contact_to_marketo"


@pytest.fixture(scope="session")
def sync_dag(project_dags: dict[str, Any]) -> Any:
    """The real-time DAG as the DAG processor loads it from ``dags/``."""
    return project_dags[DAG_ID]


@dataclass
class Sandboxes:
    dataverse: Any
    marketo: Any

    def calls(self) -> dict[str, dict[str, int]]:
        """API calls per endpoint so far, per service (the sandboxes' own counters)."""
        return {
            "dataverse": self.dataverse.admin.calls()["by_endpoint"],
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
def settings_override(tmp_path, monkeypatch) -> Callable[..., Path]:
    """``settings_override(**changes)``: the sync reads a copy of the shipped mappings whose
    ``settings.yaml`` has ``changes`` (through ``CONTACT_SYNC_MAPPINGS_DIR``, as deployments)."""

    def override(**changes: Any) -> Path:
        target = tmp_path / "mappings"
        if not target.exists():
            shutil.copytree(DEFAULT_DIRECTORY, target)
        settings_path = target / "settings.yaml"
        settings = yaml.safe_load(settings_path.read_text())
        settings_path.write_text(yaml.safe_dump({**settings, **changes}))
        monkeypatch.setenv("CONTACT_SYNC_MAPPINGS_DIR", str(target))
        return target

    return override


@pytest.fixture
def company_record_mode(settings_override) -> Path:
    """The sync in ``company_mode: company_record``, through a copy of the shipped mappings."""
    return settings_override(company_mode="company_record")


class SyncRun(DagTestRun):
    """A finished run of the real-time DAG, with its report's summary and outcomes."""

    @property
    def summary(self) -> dict[str, Any]:
        return self.xcom("report", SUMMARY_KEY)

    def outcomes(self) -> dict[str, str]:
        """Contact id → outcome status, as ``sync_contacts`` returned them."""
        synced = self.xcom("sync_contacts") or {"outcomes": []}
        return {o["contact_id"]: o["status"] for o in synced["outcomes"]}


@pytest.fixture
def run_sync(sync_dag, sandboxes) -> Callable[[dict[str, Any]], SyncRun]:
    """``run_sync(conf)``: one in-process run of the DAG with that conf, to its end."""

    def run(conf: dict[str, Any]) -> SyncRun:
        # dag.test() keeps a run's conf in the session-wide DAG's params, so a dry run would leak
        # into the runs after it: every run states its dry_run.
        return SyncRun.of(sync_dag, {"dry_run": False, **conf})

    return run


@pytest.fixture
def output(capfd, caplog):
    """Everything the run printed or logged (task logs reach ``logging`` in-process)."""
    caplog.set_level(logging.INFO)

    def read() -> str:
        captured = capfd.readouterr()
        return captured.out + captured.err + caplog.text

    return read
