"""The DAG end to end with ``dag.test()``: a scheduled night, drift repaired, the report as XCom."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reconcile.conftest import contact, contact_id, lead

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "dynamics_marketo_reconciliation.py"
DAG_ID = "dynamics_marketo_reconciliation"
# dag.test() makes a manual run, which covers the last whole night before its logical date:
# 2025-03-01 02:00 → 2025-03-02 02:00 UTC, as the run scheduled at that night's end would.
LOGICAL_DATE = "2025-03-02T02:00:00+00:00"


def _airflow_env(home: Path) -> dict[str, str]:
    """This process's environment without its AIRFLOW_* settings, pointed at ``home``; the
    ``AIRFLOW_CONN_*`` Connections the test defined are kept."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW") or key.startswith("AIRFLOW_CONN_")
    }
    return {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
    }


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """A metadata DB of its own (SQLite), created once for the module."""
    home = tmp_path_factory.mktemp("airflow-home")
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=_airflow_env(home),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return home


def dag_test(home: Path, conf: dict) -> dict:
    """``dag.test()`` of the reconciliation DAG; the run's state, task states and XComs."""
    runner = [sys.executable, "-m", "tests.reconcile.dag_runner"]
    done = subprocess.run(
        [*runner, str(DAG_FILE), DAG_ID, LOGICAL_DATE, json.dumps(conf)],
        env=_airflow_env(home),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAG_RESULT ")]
    assert lines, f"dag.test() printed no result:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("DAG_RESULT "))


@pytest.mark.slow
def test_a_scheduled_night_repairs_drift_and_reports_it(sandboxes, airflow_home):
    night, before = "2025-03-01T20:00:00Z", "2025-02-28T20:00:00Z"
    sandboxes.dataverse.admin.seed(
        contacts=[
            contact(1, modifiedon=night),  # no lead: created
            contact(2, modifiedon=night),  # drifted lead: updated
            contact(3, modifiedon=night, emailaddress1=None),  # listed, not a failure
            contact(4, modifiedon=before),  # outside the night: left alone
        ]
    )
    sandboxes.marketo.admin.seed_leads([lead(2, firstName="Old")])

    result = dag_test(airflow_home, {"slices": 2})

    assert result["state"] == "success", result["tasks"]
    assert result["tasks"] == {
        "plan_windows[-1]": "success",
        "reconcile_window[0]": "success",
        "reconcile_window[1]": "success",
        "report[-1]": "success",
    }
    # One XCom per task (not one per key of the dict it returns)
    assert sorted(result["xcom"]) == [
        "plan_windows[-1].return_value",
        "reconcile_window[0].return_value",
        "reconcile_window[1].return_value",
        "report[-1].return_value",
    ]
    report = result["xcom"]["report[-1].return_value"]
    assert report["windows"] == [
        "2025-03-01T02:00:00Z → 2025-03-01T14:00:00Z",
        "2025-03-01T14:00:00Z → 2025-03-02T02:00:00Z",
    ]
    assert (report["scanned"], report["created"], report["updated"]) == (3, 1, 1)
    assert report["rejected_contacts"] == [{"contact_id": contact_id(3), "reason": "no email"}]
    assert report["api_calls"]["marketo"]["by_endpoint"]["POST /rest/v1/leads.json"] == 2
    linked = {found["dynamicsContactId"] for found in sandboxes.leads()}
    assert linked == {contact_id(1), contact_id(2)}
