"""The DAG end to end with ``dag.test()``: a scheduled night, drift repaired, the report as XCom."""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any

import pytest
import yaml

from contact_sync.mapping import DEFAULT_DIRECTORY
from tests.conftest import DagTestRun
from tests.reconcile.conftest import contact, contact_id, lead

DAG_ID = "dynamics_marketo_reconciliation"
# dag.test() makes a manual run, which covers the last whole night before its logical date:
# 2025-03-01 02:00 → 2025-03-02 02:00 UTC, as the run scheduled at that night's end would.
LOGICAL_DATE = datetime.fromisoformat("2025-03-02T02:00:00+00:00")


@pytest.fixture
def dag_test(project_dags: dict[str, Any]):
    """``dag_test(conf)``: one in-process run of the reconciliation DAG, to its end."""

    def run(conf: dict[str, Any]) -> DagTestRun:
        return DagTestRun.of(project_dags[DAG_ID], conf, logical_date=LOGICAL_DATE)

    return run


@pytest.mark.slow
def test_a_scheduled_night_repairs_drift_and_reports_it(sandboxes, dag_test):
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

    result = dag_test({"slices": 2})

    assert result.state == "success", result.task_states
    assert result.task_states == {
        "plan_windows": "success",
        "reconcile_window[0]": "success",
        "reconcile_window[1]": "success",
        "report": "success",
    }
    # One XCom per task (not one per key of the dict it returns)
    assert result.xcom_keys() == [
        "plan_windows[-1].return_value",
        "reconcile_window[0].return_value",
        "reconcile_window[1].return_value",
        "report[-1].return_value",
    ]
    report = result.xcom("report")
    assert report["windows"] == [
        "2025-03-01T02:00:00Z → 2025-03-01T14:00:00Z",
        "2025-03-01T14:00:00Z → 2025-03-02T02:00:00Z",
    ]
    assert report["total"] == 3
    assert (report["counts"]["created"], report["counts"]["updated"]) == (1, 1)
    assert report["rejected"] == [{"contact_id": contact_id(3), "reason": "no email"}]
    assert report["api_calls"]["marketo"]["by_endpoint"]["POST /rest/v1/leads.json"] == 2
    linked = {found["dynamicsContactId"] for found in sandboxes.leads()}
    assert linked == {contact_id(1), contact_id(2)}


@pytest.fixture
def broken_mapping(tmp_path, monkeypatch) -> None:
    """A copy of the shipped mappings whose settings name an unknown company mode."""
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIRECTORY, target)
    settings_path = target / "settings.yaml"
    settings = yaml.safe_load(settings_path.read_text())
    settings_path.write_text(yaml.safe_dump({**settings, "company_mode": "no_such_mode"}))
    monkeypatch.setenv("CONTACT_SYNC_MAPPINGS_DIR", str(target))


@pytest.mark.slow
def test_a_mapping_error_fails_the_slice_at_once_instead_of_retrying(
    sandboxes, dag_test, broken_mapping
):
    sandboxes.dataverse.admin.seed(contacts=[contact(1, modifiedon="2025-03-01T20:00:00Z")])

    result = dag_test({"slices": 1})

    assert result.state == "failed"
    assert result.task_states["reconcile_window[0]"] == "failed"
    # The same retry policy as the real-time DAG: a configuration error is not retried.
    assert result.tries["reconcile_window[0]"] == 1
    assert sandboxes.leads() == []
