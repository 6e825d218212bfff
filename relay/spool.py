"""The durable spool: every accepted webhook event, in SQLite, until Airflow has it.

Durability: WAL journal with ``synchronous=FULL``, so a commit is on disk (WAL fsynced) before
the relay answers 2xx. ``NORMAL`` would be faster but may lose the last commits on power loss, and
Dataverse does not resend what we acknowledged. One webhook is one small transaction, so FULL
costs one fsync per accepted event, well inside Dataverse's 60 s.

Life of an event: inserted ``pending`` with no batch; the forwarder *claims* a batch (assigns a
``batch_id`` to up to N pending events in one transaction), sends it, then marks the batch ``sent``
or ``failed``. Because the assignment is stored, a restarted relay resends the same events under
the same ``batch_id``, which is also the ``dag_run_id``: Airflow answers 409 if it already has it.

The table holds ids only (no email, no names): the same fields as the DAG run conf.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contact_sync.events import ContactEvent

PENDING = "pending"
SENT = "sent"
FAILED = "failed"

_WAL_SIZE_LIMIT = 4 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key     TEXT NOT NULL UNIQUE,
    operation_id   TEXT,
    correlation_id TEXT,
    message        TEXT NOT NULL,
    entity         TEXT NOT NULL,
    entity_id      TEXT NOT NULL,
    occurred_at    TEXT,
    received_at    REAL NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'sent', 'failed')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    batch_id       TEXT
);
CREATE INDEX IF NOT EXISTS events_by_state ON events (state, batch_id, seq);
CREATE INDEX IF NOT EXISTS events_by_batch ON events (batch_id);
"""


def body_digest(body: Any) -> str:
    """SHA-256 of a parsed webhook body in canonical JSON (sorted keys, no spaces).

    Canonical so that a resend of the same ``RemoteExecutionContext`` matches even if a proxy
    re-serialised it (key order, whitespace, escapes); any change of content gives another digest.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def dedupe_key(event: ContactEvent, digest: str | None = None) -> str:
    """The spool's unique key: a redelivered webhook maps to the same key.

    ``OperationId`` identifies the platform operation; the record id is added because a bulk
    operation might, as far as the docs say, share one operation id across records (NOT FOUND
    either way), and merging two records' events would silently drop one.

    Without an operation id nothing in the event tells two changes of one record apart (a body may
    also lack ``OperationCreatedOn``, and two operations can share its millisecond), so the whole
    body is the identity: ``digest`` (:func:`body_digest`). Dataverse resends the same serialised
    context, which matches; a different change of the same record differs somewhere (its changed
    attributes, time or correlation id) and is kept. Two byte-for-byte identical changes are one
    change as far as the DAG is concerned: it re-reads the record either way. A caller that has no
    body falls back to the record, message and time of the operation.
    """
    if event.operation_id:
        return f"op:{event.operation_id}:{event.id}"
    if digest is not None:
        return f"body:{event.entity}:{event.id}:{digest}"
    return f"rec:{event.entity}:{event.id}:{event.message}:{event.occurred_at}"


def batch_id_for(keys: list[str]) -> str:
    """Deterministic ``dag_run_id`` of a batch: the same events always give the same id."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return f"relay__{digest[:32]}"


@dataclass(frozen=True)
class Batch:
    """Events assigned to one DAG run, oldest first."""

    batch_id: str
    events: list[ContactEvent]
    attempts: int


@dataclass(frozen=True)
class SpoolStats:
    """What ``/healthz`` and ``/metrics`` report about the spool."""

    pending: int
    failed: int
    sent: int
    oldest_pending_received_at: float | None
    live_bytes: int = 0  # see Spool.live_bytes


class Spool:
    """One SQLite connection guarded by a lock; callers run methods in a worker thread.

    The methods are short, blocking and thread-safe; the ASGI app and the forwarder call them
    through ``asyncio.to_thread`` so the event loop never waits on an fsync.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) below.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"SQLite refused WAL mode for {path} (got {mode})")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # The WAL file is truncated to this after a checkpoint instead of keeping its peak size.
        self._db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, event: ContactEvent, *, digest: str | None = None) -> bool:
        """Store ``event`` durably; False when an event with the same key is already stored.

        ``digest`` is the webhook body's :func:`body_digest`, the identity of an event without an
        operation id (see :func:`dedupe_key`).
        """
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO events (dedupe_key, operation_id, correlation_id, message, entity,"
                " entity_id, occurred_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (dedupe_key) DO NOTHING",
                (
                    dedupe_key(event, digest),
                    event.operation_id,
                    event.correlation_id,
                    event.message,
                    event.entity,
                    event.id,
                    event.occurred_at,
                    self._clock(),
                ),
            )
            return cursor.rowcount == 1

    def unassigned(self) -> tuple[int, float | None]:
        """Count of pending events not yet in a batch, and when the oldest was received."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*), min(received_at) FROM events"
                " WHERE state = 'pending' AND batch_id IS NULL"
            ).fetchone()
        return row[0], row[1]

    def open_batch(self) -> Batch | None:
        """The oldest batch that was claimed but not finished (e.g. before a restart)."""
        with self._lock:
            row = self._db.execute(
                "SELECT batch_id FROM events WHERE state = 'pending' AND batch_id IS NOT NULL"
                " ORDER BY seq LIMIT 1"
            ).fetchone()
            return None if row is None else self._load_batch(row[0])

    def claim_batch(self, max_events: int) -> Batch | None:
        """Assign the oldest unassigned pending events (at most ``max_events``) to a new batch."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT seq, dedupe_key FROM events WHERE state = 'pending' AND batch_id IS NULL"
                " ORDER BY seq LIMIT ?",
                (max_events,),
            ).fetchall()
            if not rows:
                return None
            batch_id = batch_id_for([row["dedupe_key"] for row in rows])
            db.executemany(
                "UPDATE events SET batch_id = ? WHERE seq = ?",
                [(batch_id, row["seq"]) for row in rows],
            )
            return self._load_batch(batch_id)

    def _load_batch(self, batch_id: str) -> Batch:
        rows = self._db.execute(
            "SELECT message, entity, entity_id, operation_id, correlation_id, occurred_at,"
            " attempts FROM events WHERE batch_id = ? ORDER BY seq",
            (batch_id,),
        ).fetchall()
        events = [
            ContactEvent(
                message=row["message"],
                entity=row["entity"],
                id=row["entity_id"],
                operation_id=row["operation_id"],
                correlation_id=row["correlation_id"],
                occurred_at=row["occurred_at"],
            )
            for row in rows
        ]
        return Batch(batch_id, events, attempts=max(row["attempts"] for row in rows))

    def record_attempt(self, batch_id: str, error: str | None) -> None:
        """Count one delivery attempt of a batch that stays pending, with why it did not go."""
        with self._transaction() as db:
            db.execute(
                "UPDATE events SET attempts = attempts + 1, last_error = ? WHERE batch_id = ?",
                (error, batch_id),
            )

    def finish_batch(self, batch_id: str, state: str, error: str | None = None) -> None:
        """Mark a batch ``sent`` or ``failed`` (with the reason)."""
        if state not in (SENT, FAILED):
            raise ValueError(f"a batch ends sent or failed, not {state!r}")
        with self._transaction() as db:
            db.execute(
                "UPDATE events SET state = ?, attempts = attempts + 1, last_error = ?"
                " WHERE batch_id = ?",
                (state, error, batch_id),
            )

    def prune_sent(self, received_before: float) -> int:
        """Forget delivered events received before the given time; returns how many.

        Kept until then so that a late redelivery is still recognised as a duplicate.
        """
        with self._transaction() as db:
            return db.execute(
                "DELETE FROM events WHERE state = 'sent' AND received_at < ?", (received_before,)
            ).rowcount

    def live_bytes(self) -> int:
        """Bytes of the database's pages in use (committed data, also what is still in the WAL).

        Pages freed by pruning stay in the file but are reused, so they do not count: the alarm
        clears once delivered events are pruned, without a VACUUM. The WAL file itself is not
        counted: SQLite checkpoints it every 1000 pages and ``journal_size_limit`` truncates it
        back, so it adds at most ~4 MiB on disk.
        """
        with self._lock:
            page_size, pages, free = (
                self._db.execute(f"PRAGMA {pragma}").fetchone()[0]
                for pragma in ("page_size", "page_count", "freelist_count")
            )
        return (pages - free) * page_size

    def stats(self) -> SpoolStats:
        with self._lock:
            counts = dict(
                self._db.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall()
            )
            oldest = self._db.execute(
                "SELECT min(received_at) FROM events WHERE state = 'pending'"
            ).fetchone()[0]
        return SpoolStats(
            pending=counts.get(PENDING, 0),
            failed=counts.get(FAILED, 0),
            sent=counts.get(SENT, 0),
            oldest_pending_received_at=oldest,
            live_bytes=self.live_bytes(),
        )

    def failed_batches(self, limit: int = 10) -> list[dict[str, object]]:
        """The latest failed batches with their reason, for ``/healthz``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_id, count(*) AS events, max(last_error) AS reason FROM events"
                " WHERE state = 'failed' GROUP BY batch_id ORDER BY max(seq) DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(row) for row in rows]
