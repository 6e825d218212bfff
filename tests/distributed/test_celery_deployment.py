"""The real-time sync on the distributed shape: CeleryExecutor, PostgreSQL and Redis, all real.

Contacts created through the Dataverse sandbox's Web API are synced by a DAG run triggered over
REST; the run's tasks must have been executed by the Celery worker, Airflow's metadata must live
in PostgreSQL, and stopping everything must leave no process behind.
"""

from __future__ import annotations

import socket
from uuid import uuid4

import pytest
import sqlalchemy

from devenv.airflow import LocalAirflow
from devenv.distributed import LocalPostgres, LocalRedis, find_postgres_bin_dir, find_redis_server
from devenv.pytest_plugin import ledger_of
from tests.distributed.conftest import REALTIME_DAG

_MISSING = [
    name
    for name, found in (
        ("postgresql", find_postgres_bin_dir()),
        ("redis-server", find_redis_server()),
    )
    if found is None
]

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        bool(_MISSING),
        reason=f"{', '.join(_MISSING)} not installed: `make test-distributed` installs them",
    ),
]

CONTACT_ID_FIELD = "dynamicsContactId"  # referenced by include/mappings; an admin adds it once


def test_airflow_runs_on_postgres_with_a_celery_worker(
    celery_airflow: LocalAirflow, postgres: LocalPostgres
):
    assert set(celery_airflow.pids) == {"api-server", "scheduler", "dag-processor", "celery-worker"}
    # The metadata is in PostgreSQL: the DAG processor wrote the parsed DAG there.
    engine = sqlalchemy.create_engine(postgres.url)
    try:
        with engine.connect() as connection:
            dag_ids = connection.execute(sqlalchemy.text("SELECT dag_id FROM dag")).scalars()
            assert REALTIME_DAG in set(dag_ids)
    finally:
        engine.dispose()


def test_contacts_sync_to_marketo_through_tasks_run_by_the_celery_worker(
    celery_airflow: LocalAirflow, dataverse, marketo
):
    marketo.admin.add_field(CONTACT_ID_FIELD)
    emails = {f"k{n}-{uuid4().hex[:8]}@example.com" for n in range(3)}
    contact_ids = {_create_contact(dataverse, email): email for email in emails}

    run_id = celery_airflow.trigger(REALTIME_DAG, {"contact_ids": sorted(contact_ids)})

    assert celery_airflow.wait_for_run(REALTIME_DAG, run_id, timeout=180) == "success"
    leads = {lead[CONTACT_ID_FIELD]: lead["email"] for lead in marketo.admin.leads()}
    assert leads == contact_ids
    task_ids = {ti["task_id"] for ti in celery_airflow.task_instances(REALTIME_DAG, run_id)}
    assert task_ids, "the run has no task instances"
    # The worker logs every workload it receives, naming task and run.
    received = (celery_airflow.log_dir / "celery-worker.log").read_text(errors="replace")
    assert run_id in received
    assert {task_id for task_id in task_ids if f"task_id='{task_id}'" in received} == task_ids
    # The report task, run by the worker, wrote the ledger in PostgreSQL.
    ledger = ledger_of(celery_airflow)
    try:
        recorded = {e.contact_id: e.outcome for e in ledger.run_entries(REALTIME_DAG, run_id)}
    finally:
        ledger.close()
    assert recorded == dict.fromkeys(contact_ids, "created")
    assert ledger.url.startswith("postgresql://")


def test_stopping_leaves_no_process_and_no_port_open(
    celery_airflow: LocalAirflow, postgres: LocalPostgres, redis_server: LocalRedis
):
    # Without this, the "nothing left" below could pass by never having found anything.
    assert celery_airflow.live_processes()
    assert postgres.leftovers()
    assert redis_server.leftovers()
    ports = (celery_airflow.port, postgres.port, redis_server.port)

    celery_airflow.stop()
    redis_server.stop()
    postgres.stop()

    assert celery_airflow.live_processes() == []
    assert postgres.leftovers() == []
    assert redis_server.leftovers() == []
    for port in ports:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
            pass


def _create_contact(dataverse, email: str) -> str:
    """Create a contact the way a Dataverse client does and return its id."""
    session = dataverse.admin.api_session()
    body = {"emailaddress1": email, "firstname": "Ada", "lastname": "Lovelace"}
    response = session.post(f"{dataverse.admin.api_url}/contacts", json=body, timeout=10)
    response.raise_for_status()
    # OData-EntityId: <api>/contacts(<guid>)
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
