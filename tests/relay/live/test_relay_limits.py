"""The relay's own limits against a real ``python -m relay`` and a hostile load from a second
process on loopback: slow-header connections are closed, the flood is answered 202 or 503 (never
5xx), every 202 is in the spool, the spool stops growing at its cap, the relay keeps serving."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from devenv.processes import free_port, wait_for
from devenv.relay import LocalRelay
from devenv.service import PROJECT_ROOT
from relay.airflow import REST_CLIENT_LOADED
from relay.limits import RelayLimits
from relay.settings import RelaySettings
from relay.spool import Spool

KEY = "relay-limits-key"


class LimitedRelay(LocalRelay):
    """``LocalRelay`` with :class:`RelayLimits` in its environment too."""

    def __init__(self, settings: RelaySettings, limits: RelayLimits, log_dir: Path) -> None:
        super().__init__(settings, log_dir)
        self.limits = limits

    def _service_env(self) -> dict[str, str]:
        return {**super()._service_env(), **self.limits.to_env()}


def test_slow_clients_and_a_flood_cannot_exhaust_the_relay(tmp_path: Path) -> None:
    settings = RelaySettings(
        airflow_url=f"http://127.0.0.1:{free_port()}",  # Airflow away: everything stays spooled
        webhook_keys=(KEY,),
        spool_path=tmp_path / "spool.sqlite3",
        port=0,
        batch_window_seconds=60.0,
    )
    # A cap the flood reaches: an empty spool is ~24 KB, each event adds ~0.5 KB with its index
    # entries.
    limits = RelayLimits(
        max_connections=40,
        max_header_bytes=16 * 1024,
        header_timeout_seconds=2.0,
        body_timeout_seconds=5.0,
        spool_alarm_bytes=60 * 1024,
        spool_max_bytes=100 * 1024,
    )
    with LimitedRelay(settings, limits, tmp_path / "logs") as relay:
        # The relay serves before its Airflow client is imported (seconds of CPU under load);
        # the limits are measured once that is done.
        wait_for(
            lambda: REST_CLIENT_LOADED in relay.log_path.read_text(),
            timeout=120,
            what="the relay's Airflow client",
        )
        load = subprocess.run(
            [
                *(sys.executable, "-m", "tests.relay.live.load", "--url", relay.url, "--key", KEY),
                *("--slow", "60", "--flood", "1200", "--parallel", "30", "--seconds", "20"),
            ],
            cwd=PROJECT_ROOT,
            env={"PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}"},
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
        result = json.loads(load.stdout.splitlines()[-1])
        print(f"load against the relay: {result}")
        answers = result["answers"]
        health = httpx.get(f"{relay.url}/healthz", timeout=10.0)
        assert relay.pid is not None
        rss = psutil.Process(relay.pid).memory_info().rss

    # Never a 5xx other than the two 503s that mean "not now": concurrency and spool cap.
    assert set(answers) <= {
        "202 accepted",
        "503 spool_full",
        "503 text",  # uvicorn's "Service Unavailable" past max_connections
        "431 headers_too_large",  # a 40 KB header
        "400 text",  # the same when it arrived in pieces: uvicorn's "Invalid HTTP request"
    }, answers
    assert result["transport_errors"] == 0
    # The slow-header connections were closed by the relay, none kept its slot to the end.
    assert result["slow"] == {"closed": 60}, result["slow"]
    # Every oversized header refused (by uvicorn or the app); the only ones a 503 may have hit.
    oversized = answers.get("431 headers_too_large", 0) + answers.get("400 text", 0)
    assert oversized + answers.get("503 text", 0) >= 1200 // 50
    assert oversized > 0
    assert answers.get("503 spool_full", 0) > 0  # the flood reached the cap ...
    with sqlite3.connect(settings.spool_path) as db:
        stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
    assert stored == answers["202 accepted"]  # ... and every 202 is in the spool
    spool = Spool(settings.spool_path)
    try:
        # Checked before each write: at most the writes in flight (max_connections) pass the cap.
        assert spool.live_bytes() < limits.spool_max_bytes + limits.max_connections * 4096
        assert answers["202 accepted"] > 100  # the cap was not reached early
    finally:
        spool.close()
    # Still serving afterwards: the health check answers and says why it is unhealthy.
    assert health.status_code == 503
    assert health.json()["spool_full"] is True
    print(f"relay RSS after the load: {rss} bytes")
