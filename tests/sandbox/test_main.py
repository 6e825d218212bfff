"""``python -m sandbox --state-dir``: state saved on SIGTERM (docker compose stop) and reloaded."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from devenv.processes import free_port
from sandbox.dataverse.admin import DataverseAdmin


def _start(state_dir: Path, dv_port: int, mk_port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--state-dir",
            str(state_dir),
            "--dataverse-port",
            str(dv_port),
            "--marketo-port",
            str(mk_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{dv_port}/_sandbox/settings", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError("python -m sandbox did not start")


def test_state_survives_sigterm(tmp_path: Path) -> None:
    dv_port, mk_port = free_port(), free_port()
    process = _start(tmp_path, dv_port, mk_port)
    try:
        admin = DataverseAdmin(f"http://127.0.0.1:{dv_port}")
        admin.seed(contacts=[{"firstname": "Ada", "lastname": "Lovelace"}])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    saved = json.loads((tmp_path / "dataverse.json").read_text())
    assert "Lovelace" in json.dumps(saved)

    process = _start(tmp_path, dv_port, mk_port)
    try:
        contacts = DataverseAdmin(f"http://127.0.0.1:{dv_port}").records("contacts")
        assert [c["lastname"] for c in contacts] == ["Lovelace"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
