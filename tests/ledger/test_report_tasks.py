"""Both DAGs' ``report`` tasks write the sync ledger, set the run's note and apply
``fail_run_on_rejection``; in-process runs (``dag.test``) against both sandboxes.

The ledger is the test's own SQLite file (``contact_sync_ledger`` fixture); every assertion reads
it, the sandboxes' own counters and records, or the run's states, XCom and note.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from contact_sync import tasks
from contact_sync.errors import NEVER_RETRY
from contact_sync.ledger import Ledger, LedgerUnavailableError
from contact_sync.mapping import DEFAULT_DIRECTORY
from tests.conftest import DagTestRun
from tests.pipeline.records import contact, events, guid

RECONCILIATION = "dynamics_marketo_reconciliation"
REALTIME = "dynamics_contact_to_marketo"


def settings_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """The shipped mappings with ``settings.yaml`` changed (``CONTACT_SYNC_MAPPINGS_DIR``)."""
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIRECTORY, target)
    path = target / "settings.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **changes}))
    monkeypatch.setenv("CONTACT_SYNC_MAPPINGS_DIR", str(target))


def note_of(run: DagTestRun) -> str | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.get(DagRun, run.dag_run.id).note


def seed_three(sandboxes) -> tuple[str, str, str]:
    good, no_email, other = guid(401), guid(402), guid(403)
    sandboxes.dataverse.admin.seed(
        contacts=[
            contact(good, "good@example.com"),
            contact(no_email, None),
            contact(other, "other@example.com"),
        ]
    )
    return good, no_email, other


def test_a_webhook_run_records_every_contact_and_notes_its_outcome_without_extra_calls(
    run_sync, sandboxes, contact_sync_ledger: Ledger, notes
):
    good, no_email, other = seed_three(sandboxes)

    run = run_sync(events(good, no_email, other, message="Create"))

    assert run.state == "failed"  # fail_run_on_rejection: true, the shipped default
    recorded = contact_sync_ledger.run_entries(REALTIME, run.dag_run.run_id)
    entries = {e.contact_id: e for e in recorded}
    assert {cid: e.outcome for cid, e in entries.items()} == {
        good: "created",
        no_email: "rejected",
        other: "created",
    }
    assert {e.source for e in entries.values()} == {"webhook"}
    assert not any(e.dry_run for e in entries.values())
    assert entries[no_email].reason_code == "no email"
    assert entries[good].lead_id == sandboxes.marketo.admin.leads(dynamicsContactId=good)[0]["id"]
    assert "email" in entries[good].changed_fields
    summary = contact_sync_ledger.run_summary(REALTIME, run.dag_run.run_id)
    assert summary is not None
    assert summary.counts == {"created": 2, "rejected": 1}
    assert [e.contact_id for e in contact_sync_ledger.open_rejections()] == [no_email]
    # The sandboxes served exactly the calls sync_contacts' hooks made: the report task, which
    # wrote the ledger, sent none.
    calls = run.xcom("report", tasks.SUMMARY_KEY)["api_calls"]
    assert sandboxes.dataverse.admin.calls()["total"] == calls["dataverse"]["total"]
    assert sandboxes.marketo.admin.calls()["total"] == calls["marketo"]["total"]
    assert note_of(run) == "Outcome: 2 created, 1 rejected: no email"


def test_fail_run_on_rejection_false_ends_green_with_the_rejection_in_the_ledger(
    run_sync, sandboxes, contact_sync_ledger: Ledger, notes, tmp_path, monkeypatch
):
    settings_with(tmp_path, monkeypatch, fail_run_on_rejection=False)
    good, no_email, other = seed_three(sandboxes)

    run = run_sync({"contact_ids": [good, no_email, other]})

    assert run.state == "success", run.task_states
    assert run.task_states["report"] == "success"
    assert [e.contact_id for e in contact_sync_ledger.open_rejections()] == [no_email]
    summary = contact_sync_ledger.run_summary(REALTIME, run.dag_run.run_id)
    assert summary is not None
    assert summary.source == "on-demand"
    assert note_of(run) == "Outcome: 2 created, 1 rejected: no email"


def test_a_later_run_that_syncs_the_contact_takes_it_off_the_errors_list(
    run_sync, sandboxes, contact_sync_ledger: Ledger
):
    (cid,) = [guid(410)]
    sandboxes.dataverse.admin.seed(contacts=[contact(cid, None)])
    assert run_sync({"contact_ids": [cid]}).state == "failed"
    assert [e.contact_id for e in contact_sync_ledger.open_rejections()] == [cid]

    # Someone adds the email in Dynamics, through the Web API as a client would.
    api = sandboxes.dataverse.admin
    api.api_session().patch(
        f"{api.api_url}/contacts({cid})", json={"emailaddress1": "fixed@example.com"}
    ).raise_for_status()
    assert run_sync({"contact_ids": [cid]}).state == "success"

    assert contact_sync_ledger.open_rejections() == []
    history = contact_sync_ledger.history(contact_id=cid)
    assert [e.outcome for e in history] == ["created", "rejected"]


def test_a_ledger_outage_is_retried_and_names_the_connection(tmp_path, monkeypatch):
    # A directory where the SQLite file should be: the database cannot be opened.
    (tmp_path / "ledger.db").mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_CONTACT_SYNC_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    outcome = {"contact_id": guid(420), "status": "created", "lead_id": 7, "changed": ["email"]}

    with pytest.raises(LedgerUnavailableError, match="contact_sync_ledger") as raised:
        tasks.record_in_ledger(REALTIME, "manual__1", "on-demand", [outcome], dry_run=False)

    # Not one of the errors the retry policy fails at once: the task's retries replay the write.
    assert not isinstance(raised.value, NEVER_RETRY)


def test_a_missing_ledger_connection_fails_the_report_naming_it(run_sync, sandboxes, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CONTACT_SYNC_LEDGER")
    cid = guid(430)
    sandboxes.dataverse.admin.seed(contacts=[contact(cid, "x@example.com")])

    run = run_sync({"contact_ids": [cid]})

    assert run.state == "failed"
    assert run.task_states["sync_contacts"] == "success"
    assert run.task_states["report"] == "failed"
    assert run.tries["report"] == 1  # configuration: not retried


def test_fail_on_rejections_never_fails_a_dry_run(tmp_path, monkeypatch):
    rejected = {"total": 1, "counts": {"rejected": 1}, "reasons": {"no email": 1}}
    tasks.fail_on_rejections({**rejected, "dry_run": True})  # no exception

    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="1 of 1 contact"):
        tasks.fail_on_rejections({**rejected, "dry_run": False})
    settings_with(tmp_path, monkeypatch, fail_run_on_rejection=False)
    tasks.fail_on_rejections({**rejected, "dry_run": False})
