"""``python -m devenv.demo --once`` as a user would run it (a separate process, on free ports): it
must end with status 0, show every sample contact's outcome, and leave no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from contact_sync.ledger import Ledger
from devenv.demo import SAMPLE_ACCOUNT, SAMPLE_CONTACTS
from devenv.processes import free_port
from devenv.service import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMEOUT_SECONDS = 280
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def processes_working_in(directory: Path) -> set[int]:
    """Live processes whose working directory is in ``directory``: the demo runs Airflow in its
    state dir and the sandbox and relay in its log dir, and orphans keep their working directory
    (unlike their parent, which becomes init)."""
    found = set()
    for process in psutil.process_iter(["cwd", "status"]):
        cwd, status = process.info["cwd"], process.info["status"]
        if cwd and status != psutil.STATUS_ZOMBIE and Path(cwd).is_relative_to(directory):
            found.add(process.pid)
    return found


def test_demo_once_syncs_the_samples_and_stops_everything(tmp_path: Path):
    state_dir = tmp_path / "demo"
    argv = [sys.executable, "-m", "devenv.demo", "--once", "--state-dir", str(state_dir)]
    for name in ("dataverse", "marketo", "relay", "airflow"):
        argv += [f"--{name}-port", str(free_port())]
    env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{PROJECT_ROOT / 'plugins'}"}

    seen: set[int] = set()
    with subprocess.Popen(
        argv, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as demo:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while demo.poll() is None:
            assert time.monotonic() < deadline, "the demo did not end"
            seen |= processes_working_in(state_dir)
            time.sleep(0.5)
        out, err = demo.communicate()

    assert demo.returncode == 0, out + err
    table = out[out.index("Marketo leads") : out.index("Rejected contacts")]
    with_email = [contact for contact in SAMPLE_CONTACTS if contact.email]
    for contact in with_email:
        assert contact.email in table
    assert table.count(SAMPLE_ACCOUNT["name"]) == sum(c.with_account for c in with_email)
    rejected = out[out.index("Rejected contacts") :]
    for contact in SAMPLE_CONTACTS:
        assert (f"{contact.name}: no email" in rejected) == (contact.email is None)
    assert "Stopping ... done." in out
    # It ends by pointing at the Contact sync page, and the contact without email is on that
    # page's errors list: the sync ledger (the page's source) has it as an open rejection.
    assert re.search(r"^Contact sync http://127\.0\.0\.1:\d+/contact-sync/", out, re.MULTILINE)
    (no_email,) = [contact for contact in SAMPLE_CONTACTS if contact.email is None]
    (line,) = [line for line in out.splitlines() if f"{no_email.name} ({no_email.label})" in line]
    (contact_id,) = re.findall(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", line
    )
    ledger = Ledger(f"sqlite:///{state_dir / 'ledger.db'}")
    try:
        rejections = {entry.contact_id: entry for entry in ledger.open_rejections()}
    finally:
        ledger.close()
    assert list(rejections) == [contact_id]
    assert rejections[contact_id].reason_code == "no email"
    assert rejections[contact_id].source == "webhook"
    # Independent of the demo's own bookkeeping: what ran in its directories is gone.
    assert len(seen) > 3  # sandbox, relay, Airflow's components: the check can see them
    assert processes_working_in(state_dir) == set()
