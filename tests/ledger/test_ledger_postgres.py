"""The sync ledger on a real PostgreSQL server (started the way the distributed tests start theirs):
the Connection form, replay, reads, purge, writers in parallel, and an unreachable server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url

from contact_sync.ledger import Ledger, LedgerUnavailableError
from contact_sync.models import Outcome
from devenv.distributed import LocalPostgres, find_postgres_bin_dir
from devenv.processes import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_postgres_bin_dir() is None,
        reason="PostgreSQL server binaries not found: run `make services` as root",
    ),
]

REALTIME = "dynamics_contact_to_marketo"
C1 = "5bd0dc04-1111-4aaa-8bbb-000000000001"
C2 = "0b94ae9e-2222-4aaa-8bbb-000000000002"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    server = LocalPostgres(database="ledger", log_dir=tmp_path_factory.mktemp("postgres-logs"))
    server.start()
    yield server
    server.stop()
    assert server.leftovers() == []


@pytest.fixture
def ledger(postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    url = make_url(postgres.url)
    # Defined as a deployment defines it: an Airflow Connection, here as AIRFLOW_CONN_* JSON.
    conn = {
        "conn_type": "postgres",
        "host": url.host,
        "port": url.port,
        "login": url.username,
        "password": url.password,
        "schema": url.database,
    }
    monkeypatch.setenv("AIRFLOW_CONN_CONTACT_SYNC_LEDGER", json.dumps(conn))
    ledger = Ledger.from_connection()
    yield ledger
    ledger.purge(timedelta(seconds=1), now=datetime(2100, 1, 1, tzinfo=UTC))  # empty for the next
    ledger.close()


def test_record_replay_and_reads_on_postgres(ledger: Ledger):
    rejected = Outcome(C1, "rejected", reason_code="no email", reason="no email")
    ledger.record_run(
        REALTIME, "r1", "webhook", [rejected, Outcome(C2, "created", lead_id=5)], at=NOW
    )
    ledger.record_run(
        REALTIME, "r1", "webhook", [rejected, Outcome(C2, "created", lead_id=5)], at=NOW
    )

    assert ledger.run_summary(REALTIME, "r1").counts == {"rejected": 1, "created": 1}
    assert len(ledger.run_entries(REALTIME, "r1")) == 2
    assert [e.contact_id for e in ledger.open_rejections()] == [C1]
    assert ledger.outcome_counts(NOW - timedelta(days=1)) == {"rejected": 1, "created": 1}

    ledger.record_run(
        REALTIME,
        "r2",
        "on-demand",
        [Outcome(C1, "created", lead_id=6)],
        at=NOW + timedelta(minutes=1),
    )

    assert ledger.open_rejections() == []
    assert [e.run_id for e in ledger.history(lead_id=6)] == ["r2", "r1"]
    assert ledger.history(contact_id=C1)[0].recorded_at == NOW + timedelta(minutes=1)
    assert ledger.purge(timedelta(days=30), now=NOW + timedelta(days=30, seconds=30)) == 2
    assert [e.run_id for e in ledger.history(contact_id=C1)] == ["r2"]


def test_parallel_writers_and_replays_of_one_run_lose_nothing(ledger: Ledger):
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        own = Ledger(ledger.url)  # an engine (and connections) of its own, as another process
        try:
            for n in range(20):
                contacts = [f"{writer:08x}-0000-4000-8000-{n * 5 + i:012x}" for i in range(5)]
                own.record_run(
                    REALTIME, f"w{writer}-{n}", "webhook", [Outcome(c, "created") for c in contacts]
                )
                # Every writer also replays one shared run: the retried report task's race.
                own.record_run(REALTIME, "shared", "webhook", [Outcome(C1, "updated")])
        except BaseException as error:
            errors.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    assert sum(ledger.outcome_counts(datetime(2000, 1, 1, tzinfo=UTC)).values()) == 4 * 20 * 5 + 1
    assert len(ledger.run_entries(REALTIME, "shared")) == 1


def test_an_unreachable_server_is_an_outage_naming_the_connection():
    ledger = Ledger(f"postgresql+psycopg2://ledger:secret-pw@127.0.0.1:{free_port()}/ledger")

    with pytest.raises(LedgerUnavailableError, match="connection 'contact_sync_ledger'") as down:
        ledger.record_run(REALTIME, "r1", "webhook", [Outcome(C1, "created")])

    assert "secret-pw" not in str(down.value)
