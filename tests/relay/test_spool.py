"""The SQLite spool on its own: durability settings, dedupe keys, batch claims across restarts."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from contact_sync.events import ContactEvent
from relay.spool import FAILED, SENT, Spool, batch_id_for, body_digest, dedupe_key


def _event(**overrides: str | None) -> ContactEvent:
    fields: dict[str, str | None] = {
        "message": "Update",
        "entity": "contact",
        "id": str(uuid.uuid4()),
        "operation_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "occurred_at": "2024-05-01T10:00:00Z",
    }
    fields.update(overrides)
    return ContactEvent(**fields)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool.sqlite3"


def test_spool_uses_wal_and_full_sync(path: Path) -> None:
    spool = Spool(path)
    try:
        with sqlite3.connect(path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # synchronous is per connection: read it from the spool's own connection.
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        spool.close()


def test_events_survive_reopening_and_duplicates_stay_duplicates(path: Path) -> None:
    event = _event()
    spool = Spool(path)
    assert spool.add(event) is True
    spool.close()

    reopened = Spool(path)
    try:
        assert reopened.add(event) is False
        assert reopened.stats().pending == 1
        batch = reopened.claim_batch(10)
        assert batch is not None
        assert batch.events == [event]
    finally:
        reopened.close()


def test_without_operation_id_the_body_digest_is_the_key(path: Path) -> None:
    contact = str(uuid.uuid4())
    # No operation id, no time: only the bodies tell two changes of one contact apart.
    event = _event(id=contact, operation_id=None, occurred_at=None)
    first, second = body_digest({"city": "Redmond"}), body_digest({"city": "Seattle"})
    assert body_digest({"b": 1, "a": [1, "é"]}) == body_digest({"a": [1, "é"], "b": 1})
    spool = Spool(path)
    try:
        added = [spool.add(event, digest=d) for d in (first, second, second)]
        assert added == [True, True, False]
        # An operation id stays the key when there is one: the digest is not needed then.
        with_op = _event(id=contact)
        assert dedupe_key(with_op, first) == dedupe_key(with_op) == dedupe_key(with_op, second)
    finally:
        spool.close()


def test_without_operation_id_or_body_the_record_message_and_time_are_the_key(
    path: Path,
) -> None:
    contact = str(uuid.uuid4())
    first = _event(id=contact, operation_id=None)
    same = _event(id=contact, operation_id=None, correlation_id=None)
    later = _event(id=contact, operation_id=None, occurred_at="2024-05-01T10:00:01Z")
    assert dedupe_key(first) == dedupe_key(same) != dedupe_key(later)
    spool = Spool(path)
    try:
        assert [spool.add(e) for e in (first, same, later)] == [True, False, True]
    finally:
        spool.close()


def test_one_operation_on_two_records_keeps_both(path: Path) -> None:
    operation = str(uuid.uuid4())
    spool = Spool(path)
    try:
        assert spool.add(_event(operation_id=operation))
        assert spool.add(_event(operation_id=operation))
        assert spool.stats().pending == 2
    finally:
        spool.close()


def test_claimed_batch_keeps_its_id_across_a_restart(path: Path) -> None:
    events = [_event() for _ in range(5)]
    spool = Spool(path)
    for event in events:
        spool.add(event)
    batch = spool.claim_batch(3)
    assert batch is not None
    assert batch.events == events[:3]
    assert batch.batch_id == batch_id_for([dedupe_key(e) for e in reversed(events[:3])])
    assert batch.batch_id.startswith("relay__")
    assert len(batch.batch_id) == len("relay__") + 32
    spool.close()

    reopened = Spool(path)
    try:
        resumed = reopened.open_batch()
        assert resumed is not None
        assert (resumed.batch_id, resumed.events) == (batch.batch_id, batch.events)
        reopened.record_attempt(batch.batch_id, "Airflow down")
        assert reopened.open_batch().attempts == 1  # type: ignore[union-attr]
        reopened.finish_batch(batch.batch_id, SENT)
        assert reopened.open_batch() is None
        rest = reopened.claim_batch(3)
        assert rest is not None
        assert rest.events == events[3:]
        reopened.finish_batch(rest.batch_id, FAILED, "400: bad conf")
        stats = reopened.stats()
        assert (stats.pending, stats.sent, stats.failed) == (0, 3, 2)
        assert reopened.failed_batches() == [
            {"batch_id": rest.batch_id, "events": 2, "reason": "400: bad conf"}
        ]
    finally:
        reopened.close()


def test_pruning_forgets_only_old_sent_events(path: Path) -> None:
    now = [1000.0]
    spool = Spool(path, clock=lambda: now[0])
    try:
        spool.add(_event())
        batch = spool.claim_batch(10)
        spool.finish_batch(batch.batch_id, SENT)  # type: ignore[union-attr]
        now[0] = 2000.0
        spool.add(_event())  # pending, newer
        assert spool.prune_sent(received_before=1500.0) == 1
        assert spool.prune_sent(received_before=3000.0) == 0  # the pending one stays
        assert spool.stats().pending == 1
    finally:
        spool.close()
