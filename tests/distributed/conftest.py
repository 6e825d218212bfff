"""The distributed shape without Docker: PostgreSQL and Redis as our own processes, and Airflow on
CeleryExecutor with a Celery worker, wired to the sandbox through ``AIRFLOW_CONN_*`` variables.

The servers are module-scoped and stop in dependency order (Airflow, then its broker and
database); each teardown fails if a process of its own survived.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devenv.airflow import PROJECT_ROOT, CeleryBackend, LocalAirflow
from devenv.distributed import LocalPostgres, LocalRedis
from devenv.pytest_plugin import AirflowInstances
from devenv.sandbox import ledger_env
from tests.support import connect_dynamics, connect_marketo

REALTIME_DAG = "dynamics_contact_to_marketo"


class _EnvCollector:
    """Takes ``setenv`` calls like ``pytest.MonkeyPatch`` does, so the connection helpers of
    ``tests.support`` can build an environment for other processes instead of this one."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}

    def setenv(self, name: str, value: str) -> None:
        self.env[name] = value


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    server = LocalPostgres(log_dir=tmp_path_factory.mktemp("postgres-logs"))
    server.start()
    yield server
    server.stop()
    assert server.leftovers() == []


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(log_dir=tmp_path_factory.mktemp("redis-logs"))
    server.start()
    yield server
    server.stop()
    assert server.leftovers() == []


@pytest.fixture(scope="module")
def celery_airflow(
    airflow_instances: AirflowInstances,
    postgres: LocalPostgres,
    redis_server: LocalRedis,
    sandbox_servers,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalAirflow]:
    """Airflow with the project's ``dags/`` on CeleryExecutor, its metadata in ``postgres``."""
    # Two Airflows would crowd a 2-core machine: the shared LocalExecutor one goes first.
    airflow_instances.close()
    connections = _EnvCollector()
    connect_dynamics(connections, sandbox_servers.dataverse.url)
    connect_marketo(connections, sandbox_servers.marketo.url)
    airflow = LocalAirflow(
        tmp_path_factory.mktemp("airflow-celery-home"),
        PROJECT_ROOT / "dags",
        port=0,
        # The nightly DAG would start a run at once and write to the same sandbox: it stays
        # paused, and only the real-time DAG is unpaused.
        env={
            **connections.env,
            # The sync ledger in a database of its own on the same PostgreSQL server.
            **ledger_env(postgres.create_database("ledger")),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        },
        database_url=postgres.url,
        celery=CeleryBackend(broker_url=redis_server.url(), result_backend=f"db+{postgres.url}"),
    )
    airflow.start([REALTIME_DAG], timeout=240)
    airflow.unpause(REALTIME_DAG)
    yield airflow
    airflow.stop()
    assert airflow.live_processes() == []
