"""A real Airflow 3 started by ``devenv``: health, a triggered run whose conf reaches the task,
task states and XComs read back over REST, 409 on a replayed run id, 401 on a wrong password, and
no process left behind by ``stop()``.

The last test stops the shared instance on purpose; the plugin starts a new one for any later
module that asks for ``airflow_live``.
"""

import os
import time
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from devenv.airflow import DEFAULT_ADMIN, DEFAULT_RELAY, MARKER_ENV, AirflowApiError, LocalAirflow

pytestmark = pytest.mark.e2e

DAG_ID = "e2e_conf_echo"
HOLD_DAG_ID = "e2e_hold"
COMPONENTS = {"api-server", "scheduler", "dag-processor"}


@pytest.fixture(scope="module")
def airflow_dags_folder() -> Path:
    return Path(__file__).parent / "dags"


@pytest.fixture(scope="module")
def airflow_dag_ids() -> list[str]:
    return [DAG_ID, HOLD_DAG_ID]


def test_api_is_healthy_and_every_component_is_tracked(airflow_live: LocalAirflow):
    health = httpx.get(f"{airflow_live.url}/api/v2/monitor/health", timeout=10).json()

    assert {health[c]["status"] for c in ("metadatabase", "scheduler", "dag_processor")} == {
        "healthy"
    }
    assert set(airflow_live.pids) == COMPONENTS
    # Without this, "nothing left after stop()" below could pass by finding nothing ever.
    tracked = {process.pid for process in airflow_live.live_processes()}
    assert set(airflow_live.pids.values()) <= tracked
    assert len(tracked) > len(COMPONENTS)  # children too: uvicorn server, executor workers


def test_triggered_run_gets_its_conf_and_reports_task_states(airflow_live: LocalAirflow):
    conf = {"probe": uuid4().hex, "contact_ids": ["8f0c1e4a-0000-4000-8000-000000000001"]}

    run_id = airflow_live.trigger(DAG_ID, conf)

    assert airflow_live.wait_for_run(DAG_ID, run_id, timeout=90) == "success"
    states = {ti["task_id"]: ti["state"] for ti in airflow_live.task_instances(DAG_ID, run_id)}
    assert states == {"echo_conf": "success", "count_keys": "success"}
    assert airflow_live.xcom(DAG_ID, run_id, "echo_conf") == conf
    assert airflow_live.xcom(DAG_ID, run_id, "count_keys") == len(conf)


def test_relay_account_may_trigger_but_not_replay_a_run_id(airflow_live: LocalAirflow):
    token = airflow_live.token(DEFAULT_RELAY.username, DEFAULT_RELAY.password)
    # ':' and '.' are within Airflow's default allowed_run_id_pattern, as the relay's ids will be.
    run_id = f"relay:{uuid4().hex}.1"

    assert airflow_live.trigger(DAG_ID, {"n": 1}, run_id=run_id, token=token) == run_id
    with pytest.raises(AirflowApiError) as replay:
        airflow_live.trigger(DAG_ID, {"n": 2}, run_id=run_id, token=token)

    assert replay.value.status_code == 409


def test_wrong_password_gets_401_and_the_right_one_a_token(airflow_live: LocalAirflow):
    with pytest.raises(AirflowApiError) as refused:
        airflow_live.token(DEFAULT_ADMIN.username, DEFAULT_ADMIN.password + "-wrong")

    assert refused.value.status_code == 401
    assert airflow_live.token(DEFAULT_ADMIN.username, DEFAULT_ADMIN.password).count(".") == 2


def test_stop_ends_every_process_even_a_running_task(airflow_live: LocalAirflow):
    run_id = airflow_live.trigger(HOLD_DAG_ID, {"seconds": 600})
    _wait_for_task_state(airflow_live, HOLD_DAG_ID, run_id, "running")
    sessions = set(airflow_live.pids.values())
    component_groups = {os.getpgid(pid) for pid in sessions}
    tracked = airflow_live.live_processes()
    # The task supervisor moves the task into a process group of its own: it must still be found.
    assert any(os.getpgid(process.pid) not in component_groups for process in tracked)

    airflow_live.stop()
    airflow_live.stop()  # idempotent

    assert airflow_live.live_processes() == []
    # Independent of devenv's bookkeeping: scan /proc by session, process group and marker.
    assert _live_pids_in(sessions, airflow_live.instance_id) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{airflow_live.url}/api/v2/monitor/health", timeout=2)


def _wait_for_task_state(airflow: LocalAirflow, dag_id: str, run_id: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while {ti["state"] for ti in airflow.task_instances(dag_id, run_id)} != {state}:
        assert time.monotonic() < deadline, f"{dag_id} never reached {state}"
        time.sleep(0.25)


def _live_pids_in(sessions: set[int], marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the parenthesised command name: state, ppid, pgrp, session, ...
            state, _, pgrp, session = (entry / "stat").read_text().rpartition(")")[2].split()[:4]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # ended while we looked, or not ours to read (PID 1)
        ours = int(pgrp) in sessions or int(session) in sessions
        if state != "Z" and (ours or f"{MARKER_ENV}={marker}".encode() in environ):
            found.append(int(entry.name))
    return found
