"""The sync ledger: one durable row per contact outcome, and one per run, in a SQL database of ours.

Both DAGs' ``report`` tasks call :meth:`Ledger.record_run`; the "Contact sync" page reads it. It
lives behind the Airflow Connection ``contact_sync_ledger`` (:data:`LEDGER_CONN_ID`):

- SQLite: ``conn_type`` ``sqlite`` and the database file's absolute path, e.g.
  ``AIRFLOW_CONN_CONTACT_SYNC_LEDGER='sqlite:////var/lib/contact-sync/ledger.db'`` or the JSON
  ``{"conn_type": "sqlite", "host": "/var/lib/contact-sync/ledger.db"}``;
- PostgreSQL: ``postgresql://user:password@host:5432/database`` (``conn_type`` ``postgres``).

``extra.retention_days`` (default 30) is how long :meth:`Ledger.purge` keeps rows. It is not
Airflow's metadata database (whose tables Airflow's migrations own) and not XCom: runs and XComs
are cleaned by ``airflow db clean``, while the ledger keeps a contact's history across them.

What a row holds: ids (contact, lead, DAG, run), the outcome, a reason code and reason (passed
through :func:`contact_sync.errors.redact`), and the NAMES of the fields that changed, never their
values. Contact ids must be GUIDs and field names identifiers, so an email address or a name
cannot end up in the ledger by mistake.

Errors: a missing or wrong Connection, or a ledger schema newer than this code, raise
:class:`~contact_sync.errors.ConfigurationError`; a database that cannot be reached or written
raises :class:`LedgerUnavailableError`. Both name the connection. The DAGs let the task fail and
retry: the outcomes stay in XCom until a ``report`` attempt has written them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from contact_sync.errors import ConfigurationError, ContactSyncError, redact
from contact_sync.events import EventError, normalize_guid

if TYPE_CHECKING:
    from airflow.sdk import Connection as AirflowConnection

__all__ = [
    "DEFAULT_RETENTION",
    "LEDGER_CONN_ID",
    "SCHEMA_VERSION",
    "SOURCES",
    "Ledger",
    "LedgerEntry",
    "LedgerUnavailableError",
    "RunSummary",
    "url_from_connection",
]

log = logging.getLogger(__name__)

LEDGER_CONN_ID = "contact_sync_ledger"
DEFAULT_RETENTION = timedelta(days=30)
#: Where a run came from; ``dry run`` also sets the row's ``dry_run`` flag.
SOURCES = ("webhook", "on-demand", "reconciliation", "dry run")
#: Version of the tables below; a ledger written by newer code is refused, not misread.
SCHEMA_VERSION = 1

_REASON_LENGTH = 500
_CODE_LENGTH = 100
# Outcomes are an open set (created, updated, unchanged, rejected, skipped, flagged, deleted, ...):
# any short lower-case word is accepted.
_OUTCOME_RE = re.compile(r"^[a-z][a-z _-]{0,31}$")
# A Marketo REST field name (or a dotted Dataverse column path): never a value such as an email.
_FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")
# SQLite: how long a writer waits for another's lock (pysqlite's busy timeout), in seconds. Report
# tasks of two runs may write at once; each transaction is short.
_SQLITE_BUSY_SECONDS = 30
_WRITE_OPTION = "contact_sync_ledger_write"


class LedgerUnavailableError(ContactSyncError):
    """The ledger database cannot be reached or written; retrying later may help."""

    def __init__(self, message: str, *, conn_id: str) -> None:
        self.conn_id = conn_id
        super().__init__(message)


class _UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, stored naive (SQLite keeps no offset)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger times must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


_metadata = MetaData()

_schema_table = Table(
    "contact_sync_ledger_schema",
    _metadata,
    Column("id", Integer, primary_key=True),  # always 1: one row
    Column("version", Integer, nullable=False),
)

_runs = Table(
    "contact_sync_runs",
    _metadata,
    Column("dag_id", String(250), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("counts", Text, nullable=False),  # JSON object: outcome → number of contacts
    Column("recorded_at", _UTCDateTime, nullable=False),
    Index("ix_contact_sync_runs_source_time", "source", "recorded_at"),
)

_outcomes = Table(
    "contact_sync_outcomes",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("source", String(32), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("contact_id", String(36), nullable=False),
    Column("lead_id", BigInteger, nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("reason_code", String(_CODE_LENGTH), nullable=True),
    Column("reason", Text, nullable=True),
    Column("changed_fields", Text, nullable=False),  # JSON array of field names
    Column("recorded_at", _UTCDateTime, nullable=False),
    Index("ix_contact_sync_outcomes_contact", "contact_id", "recorded_at"),
    Index("ix_contact_sync_outcomes_lead", "lead_id"),
    Index("ix_contact_sync_outcomes_run", "dag_id", "run_id"),
    Index("ix_contact_sync_outcomes_time", "recorded_at"),
)


@dataclass(frozen=True)
class LedgerEntry:
    """One contact's outcome in one run."""

    contact_id: str
    outcome: str
    dag_id: str
    run_id: str
    source: str
    dry_run: bool
    recorded_at: datetime
    lead_id: int | None = None
    reason_code: str | None = None
    reason: str | None = None
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """A run's outcome counts as recorded by its ``report`` task."""

    dag_id: str
    run_id: str
    source: str
    dry_run: bool
    recorded_at: datetime
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Contacts the run recorded."""
        return sum(self.counts.values())


def url_from_connection(conn: AirflowConnection) -> URL:
    """The SQLAlchemy URL of a ``sqlite`` or ``postgres`` Airflow Connection.

    Raises :class:`ConfigurationError` naming the connection and the field to fix.
    """
    conn_type = (conn.conn_type or "").lower()
    where = f"Airflow connection {conn.conn_id!r}"
    if conn_type == "sqlite":
        # Airflow reads "sqlite:////abs/path.db" into `schema`, the sqlite provider's JSON form
        # keeps the path in `host`: accept either.
        path = conn.host or conn.schema
        if not path:
            raise ConfigurationError(f"{where}: set the SQLite database file's path (host)")
        if not PurePosixPath(path).is_absolute():
            # Each Airflow component has its own working directory: a relative path would give
            # each of them a ledger of its own.
            raise ConfigurationError(f"{where}: the SQLite path must be absolute, got {path!r}")
        return URL.create("sqlite", database=path)
    if conn_type in ("postgres", "postgresql"):
        if not conn.host or not conn.schema:
            raise ConfigurationError(f"{where}: set host and schema (the database name)")
        return URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host,
            port=conn.port or None,
            database=conn.schema,
        )
    raise ConfigurationError(
        f"{where}: conn_type {conn.conn_type!r} is not supported; use sqlite or postgres"
    )


def _retention_from_extra(conn: AirflowConnection) -> timedelta:
    raw = conn.extra_dejson.get("retention_days", DEFAULT_RETENTION.days)
    try:
        days = int(raw)
    except (TypeError, ValueError):
        days = 0
    if days < 1:
        raise ConfigurationError(
            f"Airflow connection {conn.conn_id!r}: extra.retention_days must be a whole number "
            f"of days ≥ 1, got {raw!r}"
        )
    return timedelta(days=days)


_T = TypeVar("_T")


class Ledger:
    """The ledger in one database. Cheap to build; the engine and schema come on first use."""

    def __init__(
        self,
        url: str | URL,
        *,
        conn_id: str = LEDGER_CONN_ID,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self.url = url
        self.conn_id = conn_id
        self.retention = retention
        self._engine: Engine | None = None
        self._schema_checked = False

    @classmethod
    def from_connection(cls, conn_id: str = LEDGER_CONN_ID) -> Ledger:
        """The ledger behind the Airflow Connection ``conn_id``; a missing one is an error."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise ConfigurationError(
                f"Airflow connection {conn_id!r} is not defined: the sync ledger needs it "
                "(a sqlite:////absolute/path.db or postgresql://… connection)"
            ) from None
        return cls(
            url_from_connection(conn), conn_id=conn_id, retention=_retention_from_extra(conn)
        )

    def close(self) -> None:
        """Close the engine's pooled connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._schema_checked = False

    # -- writing -----------------------------------------------------------------------------------

    def record_run(
        self,
        dag_id: str,
        run_id: str,
        source: str,
        outcomes: Iterable[Any],
        *,
        dry_run: bool = False,
        at: datetime | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> RunSummary:
        """Record a run's outcomes and its summary, replacing what the same run recorded before.

        ``outcomes`` are :class:`contact_sync.models.Outcome` objects or mappings with
        ``contact_id``, ``status`` (or ``outcome``) and optionally ``lead_id``, ``reason_code``,
        ``reason`` and ``changed`` (field names). Replacing makes a retried ``report`` task
        idempotent: one run never has two sets of rows. One transaction: all or nothing.
        ``counts`` (outcome → contacts) overrides the run row's counts when ``outcomes`` lists
        only some of the run's contacts (the reconciliation records its ``unchanged`` ones as a
        count only).
        """
        if not dag_id or not run_id:
            raise ValueError("record_run needs a dag_id and a run_id")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}; got {source!r}")
        dry_run = dry_run or source == "dry run"
        moment = _aware(at) if at is not None else datetime.now(UTC)
        rows = [_outcome_row(item, index) for index, item in enumerate(outcomes)]
        tally: dict[str, int] = {}
        for row in rows:
            tally[row["outcome"]] = tally.get(row["outcome"], 0) + 1
        if counts is not None:
            tally = {str(status): int(n) for status, n in counts.items() if n}
        common = {"dag_id": dag_id, "run_id": run_id, "source": source, "dry_run": dry_run}
        run_row = {**common, "counts": json.dumps(tally, sort_keys=True), "recorded_at": moment}
        outcome_rows = [{**common, **row, "recorded_at": moment} for row in rows]
        this_run = and_(_outcomes.c.dag_id == dag_id, _outcomes.c.run_id == run_id)

        def write() -> None:
            with self._write_transaction() as connection:
                # The run row first, as an upsert: a concurrent replay of the same run waits on
                # its row lock here, then replaces what the first one wrote (PostgreSQL, READ
                # COMMITTED; SQLite writers are serialized anyway).
                connection.execute(_upsert_run(connection.dialect.name, run_row))
                connection.execute(delete(_outcomes).where(this_run))
                if outcome_rows:
                    connection.execute(insert(_outcomes), outcome_rows)

        self._guarded(write)
        log.info(
            "ledger: recorded %d outcome(s) of %s run %s (%s)", len(rows), dag_id, run_id, source
        )
        return RunSummary(dag_id, run_id, source, dry_run, moment, tally)

    def purge(self, older_than: timedelta | None = None, *, now: datetime | None = None) -> int:
        """Delete outcome and run rows older than ``older_than`` (default: the retention
        setting); return the number of outcome rows deleted."""
        keep = self.retention if older_than is None else older_than
        if keep <= timedelta(0):
            raise ValueError(f"purge keeps a positive age of rows; got {keep}")
        cutoff = (_aware(now) if now is not None else datetime.now(UTC)) - keep

        def write() -> int:
            with self._write_transaction() as connection:
                deleted = connection.execute(
                    delete(_outcomes).where(_outcomes.c.recorded_at < cutoff)
                ).rowcount
                connection.execute(delete(_runs).where(_runs.c.recorded_at < cutoff))
                return deleted

        deleted = self._guarded(write)
        log.info("ledger: purged %d outcome row(s) older than %s", deleted, keep)
        return deleted

    # -- reading -----------------------------------------------------------------------------------

    def outcome_counts(self, since: datetime, *, dry_run: bool = False) -> dict[str, int]:
        """Outcome → number of contact outcomes recorded since ``since`` (real runs by default)."""
        query = (
            select(_outcomes.c.outcome, func.count())
            .where(_outcomes.c.recorded_at >= _aware(since), _outcomes.c.dry_run == dry_run)
            .group_by(_outcomes.c.outcome)
        )
        return self._guarded(lambda: dict(self._rows(query)))  # type: ignore[arg-type]

    def open_rejections(self, limit: int = 1000) -> list[LedgerEntry]:
        """Contacts whose latest real (not dry-run) outcome is ``rejected``, newest first.

        A contact leaves this list as soon as a later run records another outcome for it.
        """
        latest = (
            select(
                _outcomes,
                func.row_number()
                .over(
                    partition_by=_outcomes.c.contact_id,
                    order_by=(_outcomes.c.recorded_at.desc(), _outcomes.c.id.desc()),
                )
                .label("rank"),
            )
            .where(_outcomes.c.dry_run.is_(False))
            .subquery()
        )
        query = (
            select(*[latest.c[column.name] for column in _outcomes.columns])
            .where(latest.c.rank == 1, latest.c.outcome == "rejected")
            .order_by(latest.c.recorded_at.desc(), latest.c.id.desc())
            .limit(limit)
        )
        return self._entries(query)

    def history(
        self, *, contact_id: str | None = None, lead_id: int | None = None, limit: int = 500
    ) -> list[LedgerEntry]:
        """Every recorded outcome of a contact, or of the contacts a lead was synced from,
        newest first (dry runs included; each entry says which)."""
        if (contact_id is None) == (lead_id is None):
            raise ValueError("history needs exactly one of contact_id and lead_id")
        if contact_id is not None:
            condition = _outcomes.c.contact_id == normalize_guid(contact_id, what="contact id")
        else:
            contacts = select(_outcomes.c.contact_id).where(_outcomes.c.lead_id == lead_id)
            # A contact's rejections carry no lead id: include its whole history.
            condition = or_(_outcomes.c.lead_id == lead_id, _outcomes.c.contact_id.in_(contacts))
        query = (
            select(_outcomes)
            .where(condition)
            .order_by(_outcomes.c.recorded_at.desc(), _outcomes.c.id.desc())
            .limit(limit)
        )
        return self._entries(query)

    def run_entries(self, dag_id: str, run_id: str) -> list[LedgerEntry]:
        """The contacts one run recorded, by outcome then contact id."""
        query = (
            select(_outcomes)
            .where(_outcomes.c.dag_id == dag_id, _outcomes.c.run_id == run_id)
            .order_by(_outcomes.c.outcome, _outcomes.c.contact_id)
        )
        return self._entries(query)

    def run_summary(self, dag_id: str, run_id: str) -> RunSummary | None:
        """What one run recorded, or None when its ``report`` has not written the ledger."""
        query = select(_runs).where(_runs.c.dag_id == dag_id, _runs.c.run_id == run_id)
        found = self._summaries(query)
        return found[0] if found else None

    def latest_run(self, source: str = "reconciliation") -> RunSummary | None:
        """The most recent real (not dry-run) run recorded from ``source``."""
        query = (
            select(_runs)
            .where(_runs.c.source == source, _runs.c.dry_run.is_(False))
            .order_by(_runs.c.recorded_at.desc())
            .limit(1)
        )
        found = self._summaries(query)
        return found[0] if found else None

    def schema_version(self) -> int:
        """The schema version of the database (creating the schema when it is empty)."""
        self._engine_checked()
        query = select(_schema_table.c.version).where(_schema_table.c.id == 1)
        return self._guarded(lambda: self._rows(query)[0][0])

    # -- internals ---------------------------------------------------------------------------------

    def _entries(self, query: Any) -> list[LedgerEntry]:
        return [_entry(row) for row in self._guarded(lambda: self._rows(query))]

    def _summaries(self, query: Any) -> list[RunSummary]:
        return [
            RunSummary(
                dag_id=row.dag_id,
                run_id=row.run_id,
                source=row.source,
                dry_run=bool(row.dry_run),
                recorded_at=row.recorded_at,
                counts=json.loads(row.counts),
            )
            for row in self._guarded(lambda: self._rows(query))
        ]

    @contextmanager
    def _write_transaction(self) -> Iterator[Connection]:
        with self._engine_checked().connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: True})
            with connection.begin():
                yield connection

    def _rows(self, query: Any) -> list[Any]:
        with self._engine_checked().connect() as connection:
            return list(connection.execute(query))

    def _guarded(self, operation: Callable[[], _T]) -> _T:
        with self._database_errors():
            return operation()

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        try:
            yield
        except (DBAPIError, SQLAlchemyError) as error:
            # The driver's own message, never SQLAlchemy's rendering of the statement and its
            # parameters; redacted like every service message.
            cause = getattr(error, "orig", None) or error
            raise LedgerUnavailableError(
                f"sync ledger (Airflow connection {self.conn_id!r}) is unavailable: "
                f"{type(cause).__name__}: {redact(str(cause))}",
                conn_id=self.conn_id,
            ) from error

    def _engine_checked(self) -> Engine:
        if self._engine is None:
            self._engine = self._create_engine()
        if not self._schema_checked:
            with self._database_errors():
                self._ensure_schema(self._engine)
            self._schema_checked = True
        return self._engine

    def _create_engine(self) -> Engine:
        url = self.url if isinstance(self.url, URL) else _parse_url(self.url)
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_SECONDS})
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        # pre_ping: a pooled connection the server closed meanwhile is replaced, not an outage.
        return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=3)

    def _ensure_schema(self, engine: Engine) -> None:
        for attempt in (1, 2):
            try:
                _metadata.create_all(engine, checkfirst=True)
                with engine.begin() as connection:
                    found = connection.execute(
                        select(_schema_table.c.version).where(_schema_table.c.id == 1)
                    ).scalar()
                    if found is None:
                        connection.execute(
                            insert(_schema_table), [{"id": 1, "version": SCHEMA_VERSION}]
                        )
                        found = SCHEMA_VERSION
                break
            except (IntegrityError, DBAPIError):
                # Two processes creating the schema at once: the loser finds it on its retry.
                if attempt == 2:
                    raise
        if found > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the sync ledger behind Airflow connection {self.conn_id!r} has schema version "
                f"{found}, newer than this code's {SCHEMA_VERSION}: upgrade the contact_sync "
                "code everywhere that writes it, or point the connection at another database"
            )


def _upsert_run(dialect: str, row: Mapping[str, Any]) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(_runs).values(dict(row))
    return statement.on_conflict_do_update(
        index_elements=[_runs.c.dag_id, _runs.c.run_id],
        set_={
            name: statement.excluded[name]
            for name in ("source", "dry_run", "counts", "recorded_at")
        },
    )


def _parse_url(url: str) -> URL:
    from sqlalchemy.engine import make_url

    return make_url(url)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (pysqlite's own transaction handling defers it past
    # reads), and keep readers of the page unblocked by a writer: WAL journal.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # A write takes the lock up front (BEGIN IMMEDIATE), so two writers queue on the busy timeout
    # instead of one failing at once with "database is locked" when upgrading a read lock
    # (SQLAlchemy's pysqlite notes, "Serializable isolation / Savepoints / Transactional DDL").
    write = connection.get_execution_options().get(_WRITE_OPTION)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware (UTC)")
    return moment


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        contact_id=row.contact_id,
        outcome=row.outcome,
        dag_id=row.dag_id,
        run_id=row.run_id,
        source=row.source,
        dry_run=bool(row.dry_run),
        recorded_at=row.recorded_at,
        lead_id=row.lead_id,
        reason_code=row.reason_code,
        reason=row.reason,
        changed_fields=tuple(json.loads(row.changed_fields)),
    )


def _outcome_row(item: Any, index: int) -> dict[str, Any]:
    data: Mapping[str, Any] = item.to_dict() if hasattr(item, "to_dict") else item
    if not isinstance(data, Mapping):
        raise ValueError(f"outcome {index}: expected an Outcome or a mapping, got {type(item)}")
    where = f"outcome {index}"
    try:
        contact_id = normalize_guid(data.get("contact_id"), what=f"{where}: contact_id")
    except EventError as error:
        raise ValueError(str(error)) from None
    status = data.get("status", data.get("outcome"))
    if not isinstance(status, str) or not _OUTCOME_RE.match(status):
        raise ValueError(f"{where}: status must be a short lower-case word, got {status!r}")
    lead_id = data.get("lead_id")
    if lead_id is not None:
        if isinstance(lead_id, bool) or not str(lead_id).isdigit():
            raise ValueError(f"{where}: lead_id must be a Marketo lead id (an integer)")
        lead_id = int(lead_id)
    changed = data.get("changed", data.get("changed_fields")) or ()
    if isinstance(changed, str):
        raise ValueError(f"{where}: changed must be a list of field names, not a string")
    names = list(changed)
    for name in names:
        if not isinstance(name, str) or not _FIELD_NAME_RE.match(name):
            # Field NAMES only: a value (an email, a name with spaces) must never be stored.
            raise ValueError(f"{where}: changed holds something that is not a field name")
    reason_code = data.get("reason_code")
    reason = data.get("reason")
    return {
        "contact_id": contact_id,
        "lead_id": lead_id,
        "outcome": status,
        "reason_code": redact(str(reason_code), _CODE_LENGTH) if reason_code else None,
        "reason": redact(str(reason), _REASON_LENGTH) if reason else None,
        "changed_fields": json.dumps(sorted(set(names))),
    }
