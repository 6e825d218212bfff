"""The relay tests' one conftest: relays in-process against an Airflow stand-in (``start_relay``,
``relay``), and as processes against a live Airflow with the real DAGs and the sandbox
(``start_live_relay``, for ``tests/relay/live``).

Live: Airflow's connections point at the session's sandbox (``sandbox_servers``), so the runs the
relay triggers can really sync; each test gets an empty sandbox (the ``dataverse`` / ``marketo``
fixtures reset it), the Marketo field the maps need, and a relay of its own whose webhook is
registered in the Dataverse sandbox.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from devenv.airflow import DEFAULT_RELAY, LocalAirflow
from devenv.processes import free_port  # noqa: F401 - the one free_port, for the relay tests
from devenv.relay import LocalRelay
from relay.app import WEBHOOK_PATH, create_app
from relay.limits import RelayLimits
from relay.settings import RelaySettings
from sandbox.common.server import ServerThread
from tests.fixtures import WEBHOOK_FIXTURE
from tests.relay.airflow_standin import PASSWORD, USERNAME, AirflowStandIn, running_standin
from tests.support import sandbox_airflow_env

FIXTURE = WEBHOOK_FIXTURE
CODE_KEYS = ("old-key-0001", "new-key-0002")
HEADER_NAME = "x-relay-key"
HEADER_VALUE = "header-key-0003"


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 5.0,
    what: str = "condition",
    *,
    poll: float = 0.01,
) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds. Live tests poll Airflow's API less often (``poll=LIVE_POLL_SECONDS``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


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
    with running_standin() as standin:
        yield standin


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

    def start(*, limits: RelayLimits | None = None, **overrides: Any) -> RunningRelay:
        settings = replace(relay_settings, **overrides)
        server = ServerThread(create_app(settings, limits)).start()
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


# --- live: relay processes, a live Airflow, the sandbox --------------------------------

DAG_ID = "dynamics_contact_to_marketo"
WEBHOOK_KEY = "relay-live-webhook-key"
DAG_PATH = f"/api/v2/dags/{DAG_ID}"
LIVE_POLL_SECONDS = 0.25


@pytest.fixture(scope="module")
def airflow_dag_ids() -> list[str]:
    return [DAG_ID]


@pytest.fixture(scope="module")
def airflow_env(sandbox_servers: Any) -> dict[str, str]:
    return sandbox_airflow_env(sandbox_servers)


@pytest.fixture(scope="module")
def runs_on_hold(airflow_live: LocalAirflow) -> Iterator[None]:
    """Pause the DAG for tests about delivery only: Airflow still creates the runs (which is what
    they check), but they wait queued instead of running seven tasks each on a 2-core machine (and
    keeping SQLite busy while Airflow restarts). At the end the held runs are marked failed and the
    DAG unpaused, so a later module sharing this Airflow finds it as it was."""
    airflow_live.request("PATCH", DAG_PATH, json={"is_paused": True})
    yield
    for run in airflow_live.dag_runs(DAG_ID):
        if run["state"] == "queued":
            path = f"{DAG_PATH}/dagRuns/{quote(run['dag_run_id'], safe='')}"
            airflow_live.request("PATCH", path, json={"state": "failed"})
    airflow_live.request("PATCH", DAG_PATH, json={"is_paused": False})


@pytest.fixture
def marketo_ready(marketo: Any) -> None:
    """The contact maps write this custom field; a reset sandbox does not have it."""
    marketo.admin.add_field("dynamicsContactId")


@pytest.fixture
def start_live_relay(
    airflow_live: LocalAirflow,
    dataverse: Any,
    marketo_ready: None,
    start_local_relay: Callable[[RelaySettings], LocalRelay],
    tmp_path: Path,
) -> Iterator[Callable[..., LocalRelay]]:
    """``start_live_relay(**settings)``: a relay process for ``airflow_live`` with fast retries, its
    webhook registered in the Dataverse sandbox (WebhookKey); stopped after the test."""
    started: list[LocalRelay] = []

    def start(**overrides: Any) -> LocalRelay:
        settings = RelaySettings(
            airflow_url=airflow_live.url,
            airflow_username=DEFAULT_RELAY.username,
            airflow_password=DEFAULT_RELAY.password,
            webhook_keys=(WEBHOOK_KEY,),
            spool_path=tmp_path / "spool.sqlite3",
            port=0,
            batch_window_seconds=0.3,
            backoff_initial_seconds=0.2,
            backoff_max_seconds=1.0,
            airflow_probe_seconds=0.5,
            airflow_connect_timeout_seconds=2.0,
            airflow_read_timeout_seconds=15.0,
        )
        relay = start_local_relay(replace(settings, **overrides))
        started.append(relay)
        dataverse.admin.register_webhook(relay.webhook_url, "WebhookKey", WEBHOOK_KEY)
        return relay

    yield start
    for relay in started:
        relay.stop()


def create_contacts(dataverse: Any, count: int, tag: str) -> list[str]:
    """Create contacts through the Web API (each fires the Create webhook); their ids."""
    session = dataverse.admin.api_session()
    ids = []
    for n in range(count):
        values = {"firstname": f"{tag}{n}", "lastname": "Relay", "emailaddress1": email(tag, n)}
        response = session.post(f"{dataverse.admin.api_url}/contacts", json=values)
        assert response.status_code == 204, response.text
        ids.append(response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")"))
    return ids


def email(tag: str, n: int) -> str:
    return f"{tag}-{n}@example.com"


def runs_for(airflow: LocalAirflow, contact_ids: list[str]) -> dict[str, list[str]]:
    """``run id → the ids of its events``, for every run holding an event of ``contact_ids``."""
    wanted = set(contact_ids)
    found = {}
    for run in airflow.dag_runs(DAG_ID):
        ids = [event["id"] for event in (run["conf"] or {}).get("events", [])]
        if wanted & set(ids):
            found[run["dag_run_id"]] = ids
    return found


def delivered_once(airflow: LocalAirflow, contact_ids: list[str]) -> dict[str, list[str]] | None:
    """The runs holding ``contact_ids`` once every id is in some run, else None; fails at once
    when an id is in two events (the relay doubled it)."""
    runs = runs_for(airflow, contact_ids)
    events = Counter(contact_id for ids in runs.values() for contact_id in ids)
    doubled = sorted(contact_id for contact_id, count in events.items() if count > 1)
    assert not doubled, f"events delivered twice: {doubled}"
    return runs if set(events) >= set(contact_ids) else None
