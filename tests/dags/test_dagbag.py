"""Every DAG in ``dags/`` parses with no I/O, and declares what the project's practices ask.

The DagBag is built the way the DAG processor builds it, with Connection and Variable lookups
and any network connection made to fail (and be recorded), so a DAG that reaches for them while
being parsed shows up as an import error and a recorded attempt.
"""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowNotFoundException

from contact_sync.errors import (
    CredentialsError,
    DailyQuotaError,
    RateLimitError,
    TransientError,
    TransportError,
)
from contact_sync.mapping import MappingError
from tests.support import REALTIME_TASK_IDS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = PROJECT_ROOT / "dags"
DAG_FILES = sorted(DAGS_FOLDER.glob("*.py"))
# Tasks for which retrying is not safe, with the reason: (dag_id, task_id) → why.
NOT_RETRIED: dict[tuple[str, str], str] = {}


class ParseTimeAccess(RuntimeError):
    """A DAG file reached for a Connection, a Variable or the network while being parsed."""


def guarded_dagbag(folder: Path) -> tuple[Any, list[str]]:
    """A DagBag of ``folder`` parsed with lookups and network refused; and what was attempted."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Connection, Variable

    attempts: list[str] = []

    def refuse(what: str):
        def fail(*args: Any, **kwargs: Any) -> Any:
            attempts.append(what)
            raise ParseTimeAccess(f"{what} while parsing DAGs")

        return fail

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseHook, "get_connection", classmethod(refuse("connection lookup")))
        patch.setattr(Connection, "get", classmethod(refuse("connection lookup")))
        patch.setattr(Variable, "get", staticmethod(refuse("variable lookup")))
        patch.setattr(socket.socket, "connect", refuse("network connection"))
        patch.setattr(socket.socket, "connect_ex", refuse("network connection"))
        patch.setattr(socket, "create_connection", refuse("network connection"))
        return DagBag(dag_folder=folder, safe_mode=False), attempts


@pytest.fixture(scope="module")
def parsed() -> tuple[Any, list[str]]:
    return guarded_dagbag(DAGS_FOLDER)


@pytest.fixture(scope="module")
def dagbag(parsed) -> Any:
    return parsed[0]


def test_the_guard_catches_a_dag_that_looks_up_a_connection_at_import(tmp_path):
    (tmp_path / "greedy.py").write_text(
        "from airflow.sdk import BaseHook, dag\nBaseHook.get_connection('marketo_default')\n"
    )

    bag, attempts = guarded_dagbag(tmp_path)

    assert attempts == ["connection lookup"]
    assert list(bag.import_errors) == [str(tmp_path / "greedy.py")]


def test_every_dag_file_imports_without_errors_or_lookups(parsed):
    dagbag, attempts = parsed
    assert dagbag.import_errors == {}
    assert attempts == []
    assert {Path(dag.fileloc) for dag in dagbag.dags.values()} == set(DAG_FILES)


def test_the_realtime_dag_is_there(dagbag):
    assert "dynamics_contact_to_marketo" in dagbag.dag_ids


def test_every_dag_has_tags_a_doc_and_a_tz_aware_start(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert (dag.doc_md or "").strip(), dag.dag_id
        assert dag.start_date is not None, dag.dag_id
        assert dag.start_date.tzinfo is not None, dag.dag_id
        assert isinstance(dag.catchup, bool), dag.dag_id


def test_every_task_retries_at_least_twice_unless_listed(dagbag):
    too_few = [
        (dag.dag_id, task.task_id, task.retries)
        for dag in dagbag.dags.values()
        for task in dag.tasks
        if task.retries < 2 and (dag.dag_id, task.task_id) not in NOT_RETRIED
    ]
    assert too_few == []


NEVER_RETRIED = [
    pytest.param(CredentialsError("bad client secret", service="entra"), id="credentials"),
    pytest.param(MappingError("settings.yaml: company_mode must be one of ..."), id="mapping"),
    pytest.param(DailyQuotaError("Daily quota reached", service="marketo", code="607"), id="607"),
    pytest.param(AirflowNotFoundException("marketo_default"), id="missing connection"),
]


@pytest.mark.parametrize("error", NEVER_RETRIED)
def test_every_task_of_both_dags_fails_at_once_on_what_retrying_cannot_fix(dagbag, error):
    from airflow.sdk import RetryAction

    retried = [
        f"{dag.dag_id}.{task.task_id}"
        for dag in dagbag.dags.values()
        for task in dag.tasks
        if task.retry_policy is None
        or task.retry_policy.evaluate(error, try_number=1, max_tries=task.retries).action
        != RetryAction.FAIL
    ]
    assert retried == []


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(RateLimitError("429", service="dataverse", status=429), id="rate limit"),
        pytest.param(TransientError("503", service="marketo", status=503), id="outage"),
        pytest.param(TransportError("connection refused", service="dataverse"), id="transport"),
    ],
)
def test_outages_and_rate_limits_are_retried(dagbag, error):
    from airflow.sdk import RetryAction

    decisions = {
        task.retry_policy.evaluate(error, try_number=1, max_tries=task.retries).action
        for dag in dagbag.dags.values()
        for task in dag.tasks
    }
    assert decisions == {RetryAction.DEFAULT}


def _dag_calls(tree: ast.AST) -> list[ast.Call]:
    """``@dag(...)`` decorators and ``DAG(...)`` constructor calls in a module."""
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("dag", "DAG"):
                calls.append(node)
    return calls


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda path: path.name)
def test_schedule_start_and_catchup_are_decided_in_the_file(path):
    # Airflow defaults schedule to None and catchup to a config value: only the source shows
    # whether they were decided on purpose.
    calls = _dag_calls(ast.parse(path.read_text(encoding="utf-8")))
    assert calls, f"{path.name} defines no DAG"
    for call in calls:
        keywords = {keyword.arg for keyword in call.keywords}
        assert {"schedule", "start_date", "catchup"} <= keywords, path.name


def test_no_task_splits_its_return_value_into_extra_xcoms(dagbag):
    # A dict return would be pushed once whole and once per key: contact fields stored twice.
    split = [
        f"{dag.dag_id}.{task.task_id}"
        for dag in dagbag.dags.values()
        for task in dag.tasks
        if getattr(task, "multiple_outputs", False)
    ]
    assert split == []


def test_the_realtime_dag_validates_its_conf_and_pools_marketo(dagbag):
    dag = dagbag.dags["dynamics_contact_to_marketo"]
    assert set(dag.params) == {
        "events",
        "webhookRequest",
        "contact_ids",
        "account_ids",
        "dry_run",
    }
    assert tuple(task.task_id for task in dag.topological_sort()) == REALTIME_TASK_IDS
    marketo_tasks = {task.task_id for task in dag.tasks if task.pool == "marketo_api"}
    assert marketo_tasks == {"sync_contacts"}


def test_ruff_air3_rules_pass_on_dags_and_plugins():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "AIR3", "dags", "plugins"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
