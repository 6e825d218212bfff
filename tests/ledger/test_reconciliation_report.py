"""The reconciliation's ``report`` task writes the sync ledger (source ``reconciliation``),
purges rows past the retention, and its run gets the outcome as its note (``dag.test``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contact_sync.ledger import Ledger
from contact_sync.mapping import load_mappings
from tests.conftest import DagTestRun
from tests.ledger.test_report_tasks import note_of
from tests.reconcile.conftest import contact, contact_id, lead
from tests.support import connect_dynamics, connect_marketo

DAG_ID = "dynamics_marketo_reconciliation"
# The night 2025-03-01 02:00 → 2025-03-02 02:00 UTC, as in tests/reconcile/test_dag.py.
LOGICAL_DATE = datetime.fromisoformat("2025-03-02T02:00:00+00:00")


@pytest.fixture
def night(dataverse, marketo, monkeypatch) -> tuple[Any, Any]:
    """Connections to fresh sandboxes; Marketo has the contact-id field settings.yaml names."""
    connect_dynamics(monkeypatch, dataverse.url)
    connect_marketo(monkeypatch, marketo.url)
    field = load_mappings().settings.contact_id_field
    if field:
        marketo.admin.add_field(field)
    return dataverse, marketo


@pytest.mark.slow
def test_the_reconciliation_records_writes_and_rejections_purges_old_rows_and_notes(
    night, project_dags: dict[str, Any], contact_sync_ledger: Ledger, notes
):
    dataverse, marketo = night
    inside = "2025-03-01T20:00:00Z"
    dataverse.admin.seed(
        contacts=[
            contact(1, modifiedon=inside),  # no lead: created
            contact(2, modifiedon=inside),  # in sync: unchanged, counted only
            contact(3, modifiedon=inside, emailaddress1=None),  # rejected, listed
        ]
    )
    marketo.admin.seed_leads([lead(2)])
    old = contact_id(9)
    contact_sync_ledger.record_run(
        "dynamics_contact_to_marketo",
        "manual__old",
        "on-demand",
        [{"contact_id": old, "status": "created", "lead_id": 1}],
        at=datetime.now(UTC) - timedelta(days=31),
    )

    run = DagTestRun.of(project_dags[DAG_ID], {"slices": 2}, logical_date=LOGICAL_DATE)

    assert run.state == "success", run.task_states
    entries = contact_sync_ledger.run_entries(DAG_ID, run.dag_run.run_id)
    assert {e.contact_id: e.outcome for e in entries} == {
        contact_id(1): "created",
        contact_id(3): "rejected",
    }
    assert {e.source for e in entries} == {"reconciliation"}
    summary = contact_sync_ledger.run_summary(DAG_ID, run.dag_run.run_id)
    assert summary is not None
    assert summary.counts == {"created": 1, "unchanged": 1, "rejected": 1}
    assert contact_sync_ledger.latest_run().run_id == run.dag_run.run_id
    # The 31-day-old run is gone (retention 30 days), and its outcome with it.
    assert contact_sync_ledger.history(contact_id=old) == []
    # The per-contact outcomes went to the ledger; the report's XCom keeps counts and rejections.
    report = run.xcom("report")
    assert report["outcomes"] == []
    assert report["rejected"] == [{"contact_id": contact_id(3), "reason": "no email"}]
    assert note_of(run) == "Outcome: 1 created, 1 unchanged, 1 rejected: no email"
