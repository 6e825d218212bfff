"""The sync ledger on real SQLite files: recording, idempotent replay, the page's reads, retention,
schema versioning, the Connection, outages, two writer processes at once, and no PII stored."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contact_sync.errors import ConfigurationError
from contact_sync.ledger import (
    SCHEMA_VERSION,
    Ledger,
    LedgerUnavailableError,
)
from contact_sync.models import Outcome

REALTIME = "dynamics_contact_to_marketo"
NIGHTLY = "dynamics_marketo_reconciliation"
C1 = "5bd0dc04-1111-4aaa-8bbb-000000000001"
C2 = "0b94ae9e-2222-4aaa-8bbb-000000000002"
C3 = "9c3e1f70-3333-4aaa-8bbb-000000000003"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.close()


def rejected(contact_id: str, code: str = "no email") -> Outcome:
    return Outcome(contact_id, "rejected", reason_code=code, reason=f"{code}: not sent")


def test_a_run_is_recorded_with_its_outcomes_and_summary(ledger: Ledger):
    outcomes = [
        Outcome(C1, "created", lead_id=1),
        {"contact_id": C2, "status": "updated", "lead_id": 2, "changed": ["firstName", "city"]},
        rejected(C3),
    ]

    summary = ledger.record_run(REALTIME, "relay__1", "webhook", outcomes, at=NOW)

    assert summary.counts == {"created": 1, "updated": 1, "rejected": 1}
    assert summary.total == 3
    assert ledger.run_summary(REALTIME, "relay__1") == summary
    entries = {entry.contact_id: entry for entry in ledger.run_entries(REALTIME, "relay__1")}
    assert entries[C2].changed_fields == ("city", "firstName")
    assert entries[C2].lead_id == 2
    assert entries[C3].reason_code == "no email"
    assert entries[C3].lead_id is None
    assert {e.source for e in entries.values()} == {"webhook"}
    assert all(e.recorded_at == NOW and not e.dry_run for e in entries.values())


def test_a_replayed_report_replaces_the_run_instead_of_doubling_it(ledger: Ledger):
    ledger.record_run(REALTIME, "r1", "webhook", [rejected(C1), rejected(C2)], at=NOW)
    # The task retried after the upsert was cleared and re-ran: same run, new outcomes.
    ledger.record_run(REALTIME, "r1", "webhook", [Outcome(C1, "created", lead_id=7)], at=NOW)
    ledger.record_run(REALTIME, "r1", "webhook", [Outcome(C1, "created", lead_id=7)], at=NOW)

    assert [(e.contact_id, e.outcome) for e in ledger.run_entries(REALTIME, "r1")] == [
        (C1, "created")
    ]
    assert ledger.run_summary(REALTIME, "r1").counts == {"created": 1}
    # The same run id in the other DAG is another run.
    ledger.record_run(NIGHTLY, "r1", "reconciliation", [rejected(C3)], at=NOW)
    assert len(ledger.run_entries(REALTIME, "r1")) == 1


def test_open_rejections_follow_each_contacts_latest_real_outcome(ledger: Ledger):
    ledger.record_run(REALTIME, "r1", "webhook", [rejected(C1), rejected(C2)], at=NOW)
    ledger.record_run(REALTIME, "r2", "webhook", [rejected(C3, "invalid email")], at=NOW)
    # C1 is synced by a later run: it leaves the list.
    later = NOW + timedelta(minutes=5)
    ledger.record_run(REALTIME, "r3", "on-demand", [Outcome(C1, "created", lead_id=4)], at=later)
    # A dry run syncs nothing: C2 stays.
    ledger.record_run(REALTIME, "r4", "dry run", [Outcome(C2, "created")], at=later)

    open_ = ledger.open_rejections()

    assert {e.contact_id for e in open_} == {C2, C3}
    assert {e.contact_id: e.run_id for e in open_} == {C2: "r1", C3: "r2"}
    # C1 rejected again even later: back on the list with the new run.
    ledger.record_run(NIGHTLY, "n1", "reconciliation", [rejected(C1)], at=later + timedelta(1))
    assert ledger.open_rejections()[0].contact_id == C1
    assert ledger.open_rejections()[0].dag_id == NIGHTLY


def test_history_by_contact_or_lead_is_newest_first_and_checks_the_id(ledger: Ledger):
    ledger.record_run(REALTIME, "r1", "webhook", [rejected(C1)], at=NOW)
    ledger.record_run(
        REALTIME,
        "r2",
        "on-demand",
        [Outcome(C1, "created", lead_id=9)],
        at=NOW + timedelta(hours=1),
    )
    ledger.record_run(
        NIGHTLY,
        "n1",
        "reconciliation",
        [Outcome(C1, "unchanged", lead_id=9), Outcome(C2, "created", lead_id=10)],
        at=NOW + timedelta(hours=2),
    )

    by_contact = ledger.history(contact_id=C1.upper())
    by_lead = ledger.history(lead_id=9)

    assert [e.run_id for e in by_contact] == ["n1", "r2", "r1"]
    # The rejection has no lead id yet: found through the contact the lead was synced from.
    assert [e.run_id for e in by_lead] == ["n1", "r2", "r1"]
    assert ledger.history(lead_id=12345) == []
    with pytest.raises(ValueError, match="contact id is not a GUID"):
        ledger.history(contact_id="not-a-guid")


def test_counts_by_outcome_over_a_window_leave_dry_runs_apart(ledger: Ledger):
    ledger.record_run(
        REALTIME, "old", "webhook", [Outcome(C1, "created")], at=NOW - timedelta(days=3)
    )
    ledger.record_run(REALTIME, "new", "webhook", [Outcome(C2, "updated"), rejected(C3)], at=NOW)
    ledger.record_run(REALTIME, "dry", "dry run", [Outcome(C1, "updated")], at=NOW)

    assert ledger.outcome_counts(NOW - timedelta(hours=24)) == {"updated": 1, "rejected": 1}
    assert ledger.outcome_counts(NOW - timedelta(days=7)) == {
        "created": 1,
        "updated": 1,
        "rejected": 1,
    }
    assert ledger.outcome_counts(NOW - timedelta(days=7), dry_run=True) == {"updated": 1}


def test_latest_reconciliation_is_the_newest_real_one(ledger: Ledger):
    ledger.record_run(NIGHTLY, "n1", "reconciliation", [Outcome(C1, "unchanged")], at=NOW)
    ledger.record_run(NIGHTLY, "n2", "reconciliation", [rejected(C2)], at=NOW + timedelta(days=1))
    ledger.record_run(
        NIGHTLY, "n3", "dry run", [Outcome(C1, "updated")], at=NOW + timedelta(days=2)
    )
    ledger.record_run(
        REALTIME, "r9", "webhook", [Outcome(C1, "updated")], at=NOW + timedelta(days=3)
    )

    latest = ledger.latest_run("reconciliation")

    assert (latest.run_id, latest.counts) == ("n2", {"rejected": 1})
    assert Ledger(ledger.url).latest_run("on-demand") is None


def test_purge_deletes_rows_older_than_the_retention(ledger: Ledger):
    ledger.record_run(
        REALTIME, "old", "webhook", [rejected(C1), rejected(C2)], at=NOW - timedelta(days=31)
    )
    ledger.record_run(
        REALTIME, "new", "webhook", [Outcome(C1, "created")], at=NOW - timedelta(days=29)
    )

    assert ledger.purge(now=NOW) == 2  # default retention: 30 days

    assert ledger.run_summary(REALTIME, "old") is None
    assert ledger.run_entries(REALTIME, "old") == []
    assert len(ledger.run_entries(REALTIME, "new")) == 1
    assert ledger.purge(timedelta(days=1), now=NOW) == 1
    assert ledger.run_summary(REALTIME, "new") is None


def test_schema_is_created_once_and_a_newer_one_is_refused(tmp_path: Path):
    path = tmp_path / "ledger.db"
    assert Ledger(f"sqlite:///{path}").schema_version() == SCHEMA_VERSION
    assert Ledger(f"sqlite:///{path}").schema_version() == SCHEMA_VERSION  # found, not re-made
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM contact_sync_ledger_schema").fetchone() == (1,)
        db.execute("UPDATE contact_sync_ledger_schema SET version = ?", (SCHEMA_VERSION + 1,))

    newer = Ledger(f"sqlite:///{path}")
    with pytest.raises(
        ConfigurationError, match="schema version 2, newer than this code's 1"
    ) as refused:
        newer.record_run(REALTIME, "r1", "webhook", [Outcome(C1, "created")])
    assert "'contact_sync_ledger'" in str(refused.value)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM contact_sync_outcomes").fetchone() == (0,)


def test_the_connection_defines_the_database_and_the_retention(tmp_path, monkeypatch):
    path = tmp_path / "from-conn.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CONTACT_SYNC_LEDGER",
        json.dumps({"conn_type": "sqlite", "host": str(path), "extra": {"retention_days": 7}}),
    )
    ledger = Ledger.from_connection()
    ledger.record_run(
        REALTIME, "r1", "webhook", [Outcome(C1, "created")], at=NOW - timedelta(days=8)
    )

    assert path.is_file()
    assert ledger.retention == timedelta(days=7)
    assert ledger.purge(now=NOW) == 1
    # The URI form Airflow documents for SQLite works too.
    monkeypatch.setenv("AIRFLOW_CONN_CONTACT_SYNC_LEDGER", f"sqlite:///{path}")
    assert Ledger.from_connection().schema_version() == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "Airflow connection 'contact_sync_ledger' is not defined"),
        ('{"conn_type": "sqlite", "host": "ledger.db"}', "must be absolute, got 'ledger.db'"),
        ('{"conn_type": "sqlite"}', "set the SQLite database file's path"),
        ('{"conn_type": "mysql", "host": "db"}', "conn_type 'mysql' is not supported"),
        ('{"conn_type": "postgres", "host": "db"}', "set host and schema"),
        (
            '{"conn_type": "sqlite", "host": "/tmp/x.db", "extra": {"retention_days": "a month"}}',
            "extra.retention_days must be a whole number of days ≥ 1, got 'a month'",
        ),
    ],
)
def test_a_missing_or_wrong_connection_is_named(monkeypatch, value, message):
    if value is None:
        monkeypatch.delenv("AIRFLOW_CONN_CONTACT_SYNC_LEDGER", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_CONTACT_SYNC_LEDGER", value)

    with pytest.raises(ConfigurationError, match=message) as refused:
        Ledger.from_connection()

    assert "contact_sync_ledger" in str(refused.value)


def test_an_unreachable_database_raises_an_error_naming_the_connection(tmp_path: Path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'no-such-dir' / 'ledger.db'}")

    with pytest.raises(LedgerUnavailableError, match="connection 'contact_sync_ledger'") as down:
        ledger.record_run(REALTIME, "r1", "webhook", [Outcome(C1, "created")])
    assert down.value.conn_id == "contact_sync_ledger"
    with pytest.raises(LedgerUnavailableError, match="unable to open database file"):
        ledger.open_rejections()


def test_bad_outcomes_are_refused_before_anything_is_written(ledger: Ledger):
    good = Outcome(C1, "created")
    cases = [
        ({"contact_id": "yvonne@fourthcoffee.example", "status": "created"}, "not a GUID"),
        ({"contact_id": C2, "status": "Created!"}, "status must be a short lower-case word"),
        ({"contact_id": C2, "status": "updated", "lead_id": "x"}, "lead_id must be"),
        ({"contact_id": C2, "status": "updated", "changed": ["a@b.example"]}, "not a field name"),
        ({"contact_id": C2, "status": "updated", "changed": "email"}, "list of field names"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            ledger.record_run(REALTIME, "r1", "webhook", [good, bad])
    with pytest.raises(ValueError, match="source must be one of"):
        ledger.record_run(REALTIME, "r1", "nightly", [good])

    assert ledger.run_summary(REALTIME, "r1") is None
    assert ledger.run_entries(REALTIME, "r1") == []


def test_the_ledger_file_holds_ids_and_field_names_but_no_email(ledger: Ledger, tmp_path: Path):
    email = "yvonne.mckay@fourthcoffee.example"
    outcomes = [
        Outcome(C1, "rejected", reason_code="invalid email", reason=f"Marketo refused {email}"),
        {"contact_id": C2, "status": "updated", "lead_id": 2, "changed": ["email", "lastName"]},
    ]

    ledger.record_run(REALTIME, "r1", "webhook", outcomes, at=NOW)
    ledger.close()

    with sqlite3.connect(tmp_path / "ledger.db") as db:
        dump = "\n".join(db.iterdump())  # every table, every value, as SQL text
    assert C1 in dump
    assert '"lastName"' in dump
    assert email not in dump
    assert "@" not in dump
    entry = Ledger(ledger.url).run_entries(REALTIME, "r1")[0]
    assert entry.reason == "Marketo refused <email>"


def _write_runs(url: str, writer: int, runs: int) -> None:
    ledger = Ledger(url)
    for n in range(runs):
        contacts = [f"{writer:08x}-0000-4000-8000-{n * 10 + i:012x}" for i in range(10)]
        ledger.record_run(
            REALTIME, f"w{writer}-{n}", "webhook", [Outcome(c, "created") for c in contacts]
        )
    ledger.close()


def test_two_writer_processes_at_once_lose_nothing(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).schema_version()  # not needed, but keeps the race on the rows, not the DDL
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_runs, args=(url, w, 25)) for w in (1, 2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)

    assert [p.exitcode for p in writers] == [0, 0]
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        assert db.execute("SELECT count(*) FROM contact_sync_runs").fetchone() == (50,)
        assert db.execute(
            "SELECT count(DISTINCT contact_id) FROM contact_sync_outcomes"
        ).fetchone() == (500,)
