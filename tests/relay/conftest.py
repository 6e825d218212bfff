"""Fixtures for the relay: the Airflow stand-in and relays on free loopback ports."""

from __future__ import annotations

import copy
import json
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.app import WEBHOOK_PATH, create_app
from relay.settings import RelaySettings
from sandbox.common.server import ServerThread
from tests.fixtures import WEBHOOK_FIXTURE
from tests.relay.airflow_standin import PASSWORD, USERNAME, AirflowStandIn

FIXTURE = WEBHOOK_FIXTURE
CODE_KEYS = ("old-key-0001", "new-key-0002")
HEADER_NAME = "x-relay-key"
HEADER_VALUE = "header-key-0003"


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def webhook_body(
    *,
    message: str = "Update",
    entity: str = "contact",
    contact_id: str | None = None,
    operation_id: str | None = None,
) -> dict[str, Any]:
    """The Microsoft sample webhook with fresh ids (or the given ones)."""
    body = copy.deepcopy(_SAMPLE)
    body["MessageName"] = message
    body["PrimaryEntityName"] = entity
    body["PrimaryEntityId"] = contact_id or str(uuid.uuid4())
    body["OperationId"] = operation_id or str(uuid.uuid4())
    return body


_SAMPLE = json.loads(FIXTURE.read_text())


@dataclass
class RunningRelay:
    url: str
    settings: RelaySettings
    server: ServerThread
    client: httpx.Client

    def post(self, body: Any, *, code: str | None = CODE_KEYS[0], **kwargs: Any) -> httpx.Response:
        params = {"code": code} if code is not None else {}
        # JSON values are encoded here; bytes and byte iterators (streamed bodies) go as they are.
        kwargs["json" if isinstance(body, dict | list) else "content"] = body
        return self.client.post(WEBHOOK_PATH, params=params, **kwargs)

    def rows(self) -> list[sqlite3.Row]:
        """The spool's rows, read through a separate connection (what is committed)."""
        with sqlite3.connect(self.settings.spool_path) as db:
            db.row_factory = sqlite3.Row
            return db.execute("SELECT * FROM events ORDER BY seq").fetchall()

    def metric(self, sample: str) -> float:
        """The value of one sample (name plus labels) on ``/metrics``; 0 when absent."""
        for line in self.client.get("/metrics").text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return 0.0

    def states(self) -> list[str]:
        return [row["state"] for row in self.rows()]

    def stop(self) -> None:
        self.client.close()
        self.server.stop()


@pytest.fixture
def airflow() -> Iterator[AirflowStandIn]:
    standin = AirflowStandIn()
    server = ServerThread(standin.app).start()
    standin.url = server.url
    yield standin
    server.stop()


@pytest.fixture
def relay_settings(tmp_path: Path, airflow: AirflowStandIn) -> RelaySettings:
    """Fast settings: small window and backoff, short timeouts."""
    return RelaySettings(
        airflow_url=airflow.url,
        airflow_username=USERNAME,
        airflow_password=PASSWORD,
        webhook_keys=CODE_KEYS,
        webhook_header_name=HEADER_NAME,
        webhook_header_values=(HEADER_VALUE,),
        spool_path=tmp_path / "spool.sqlite3",
        batch_window_seconds=0.05,
        # Many tests look at the spool before delivery, a long window holding events back: that
        # is the window rule. The leading edge (the default) has its own tests in
        # test_forwarder.py.
        batch_leading_edge=False,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.05,
        airflow_connect_timeout_seconds=1.0,
        airflow_read_timeout_seconds=2.0,
    )


@pytest.fixture
def start_relay(relay_settings: RelaySettings) -> Iterator[Callable[..., RunningRelay]]:
    """Start a relay (settings overridable per call); all are stopped at the end of the test."""
    running: list[RunningRelay] = []

    def start(**overrides: Any) -> RunningRelay:
        settings = replace(relay_settings, **overrides)
        server = ServerThread(create_app(settings)).start()
        relay = RunningRelay(server.url, settings, server, httpx.Client(base_url=server.url))
        running.append(relay)
        return relay

    yield start
    for relay in running:
        relay.stop()


@pytest.fixture
def relay(start_relay: Callable[..., RunningRelay]) -> RunningRelay:
    """A relay whose forwarder holds events back (long window), so the spool can be inspected."""
    return start_relay(batch_window_seconds=60.0)
