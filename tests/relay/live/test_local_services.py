"""``LocalSandbox`` and ``LocalRelay`` as processes, without Airflow: state and spool survive a
restart, SIGKILL leaves nothing behind, a taken port or a dying service fails ``start()`` early."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import httpx
import pytest

from devenv.processes import ProcessExitedError, free_port
from devenv.relay import LocalRelay, settings_env
from devenv.sandbox import LocalSandbox
from devenv.service import PortInUseError
from relay.settings import RelaySettings
from tests.fixtures import WEBHOOK_FIXTURE

KEY = "local-services-key"


def relay_settings(tmp_path: Path, **overrides: object) -> RelaySettings:
    # Airflow is a closed port: the relay must accept and keep webhooks regardless.
    settings = RelaySettings(
        airflow_url=f"http://127.0.0.1:{free_port()}",
        webhook_keys=(KEY,),
        spool_path=tmp_path / "spool.sqlite3",
        port=0,
    )
    return dataclasses.replace(settings, **overrides)


def test_sandbox_keeps_its_state_across_a_restart_and_leaves_no_process(tmp_path: Path):
    sandbox = LocalSandbox(tmp_path / "logs", state_dir=tmp_path / "state")
    with sandbox:
        [contact_id] = sandbox.dataverse.seed(contacts=[{"lastname": "Kept"}])["contacts"]
        sandbox.marketo.seed_leads([{"email": "kept@example.com"}])
    assert sandbox.leftovers() == []

    with sandbox:  # the same ports again, state loaded from state_dir
        assert [row["contactid"] for row in sandbox.dataverse.records("contacts")] == [contact_id]
        assert len(sandbox.marketo.leads(email="kept@example.com")) == 1
    assert sandbox.leftovers() == []


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sandbox = LocalSandbox(tmp_path, marketo_port=port)

        with pytest.raises(PortInUseError, match=str(port)):
            sandbox.start()

    assert sandbox.leftovers() == []
    assert not (tmp_path / "sandbox.log").exists()


def test_a_service_that_dies_fails_start_at_once_with_its_log(tmp_path: Path):
    # The spool path is a directory: SQLite cannot open it, so the relay exits at startup.
    relay = LocalRelay(relay_settings(tmp_path, spool_path=tmp_path), tmp_path)

    try:
        # The exit itself is reported, not the start timeout (that would be TimeoutError): no
        # stopwatch, which a busy machine would turn into a flaky test.
        with pytest.raises(ProcessExitedError, match="relay exited"):
            relay.start(timeout=300)
    finally:
        relay.stop()

    assert relay.leftovers() == []


def test_a_killed_relay_restarts_on_its_port_with_the_spool_intact(tmp_path: Path):
    relay = LocalRelay(relay_settings(tmp_path), tmp_path).start()
    try:
        body = json.loads(WEBHOOK_FIXTURE.read_text())
        answer = httpx.post(relay.webhook_url, params={"code": KEY}, json=body, timeout=10)
        assert answer.json()["status"] == "accepted"
        pid = relay.pid

        relay.kill()

        assert not relay.running
        assert relay.leftovers() == []
        assert pid is not None
        assert not _alive(pid)
        relay.restart()
        assert relay.pid != pid
        assert relay.health()["spool_pending"] == 1  # the url (and port) are the same
    finally:
        relay.stop()
    assert relay.leftovers() == []


def test_relay_settings_go_through_the_environment_unchanged(tmp_path: Path):
    settings = relay_settings(
        tmp_path,
        batch_window_seconds=0.25,
        batch_max_events=7,
        accepted_messages=("Create",),
        webhook_header_name="x-key",
        webhook_header_values=("a", "b"),
    )

    assert RelaySettings.from_env(settings_env(settings)) == settings
    with pytest.raises(ValueError, match="webhook_keys"):
        settings_env(relay_settings(tmp_path, webhook_keys=("has,comma",)))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
