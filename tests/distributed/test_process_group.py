"""``devenv.processes.ProcessGroup``, which every local server here builds on: what it starts it
finds again, descendants that moved to another process group or session included, and ``stop()``
ends all of it, SIGKILLing what ignores SIGTERM. Fast, and needs no server binaries."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from devenv.processes import ProcessExitedError, ProcessGroup, wait_for

# A parent that starts two grandchildren, one in a new process group (as Airflow's task supervisor
# does) and one in a new session (as PostgreSQL's children do), writes their pids, and waits.
FAMILY = """
import os, subprocess, sys, time
grandchildren = [
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], process_group=0),
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True),
]
open(sys.argv[1], "w").write(" ".join(str(p.pid) for p in grandchildren))
time.sleep(60)
"""
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
)


def test_stop_ends_the_whole_family_and_leftovers_proves_it(tmp_path: Path):
    group = ProcessGroup("family")
    pids_file = tmp_path / "pids"
    parent = group.spawn(
        "parent",
        [sys.executable, "-c", FAMILY, str(pids_file)],
        env=dict(os.environ),
        log_path=tmp_path / "parent.log",
    )
    wait_for(lambda: bool(pids_file.exists() and pids_file.read_text()), timeout=10, what="pids")
    grandchildren = {int(pid) for pid in pids_file.read_text().split()}

    assert {p.pid for p in group.leftovers()} == {parent.pid, *grandchildren}
    assert os.getsid(parent.pid) == parent.pid  # leads a session of its own

    began = time.monotonic()
    group.stop(grace=5)

    assert time.monotonic() - began < 5  # all went on SIGTERM
    assert group.leftovers() == []
    assert not group.running


def test_what_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path):
    group = ProcessGroup("stubborn")
    process = group.spawn(
        "stubborn",
        [sys.executable, "-c", IGNORES_SIGTERM],
        env=dict(os.environ),
        log_path=tmp_path / "stubborn.log",
    )
    wait_for(lambda: _ignores_sigterm(process.pid), timeout=10, what="SIGTERM handler")

    group.stop(grace=0.5)

    assert process.returncode == -signal.SIGKILL
    assert group.leftovers() == []


def test_stop_one_ends_one_member_and_it_can_be_started_again(tmp_path: Path):
    group = ProcessGroup("pair")
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]

    def spawn(name: str):
        return group.spawn(name, sleep, env=dict(os.environ), log_path=tmp_path / f"{name}.log")

    first, other = spawn("first"), spawn("other")
    group.stop_one("first", grace=5)

    assert first.returncode == -signal.SIGTERM
    assert other.poll() is None
    assert set(group.pids) == {"other"}
    assert {p.pid for p in group.leftovers()} == {other.pid}
    again = spawn("first")
    assert set(group.pids) == {"first", "other"}
    group.stop(grace=5)
    assert again.poll() is not None
    assert group.leftovers() == []


def test_a_failing_command_raises_with_its_log(tmp_path: Path):
    group = ProcessGroup("once")
    failing = [sys.executable, "-c", "import sys; print('no database here'); sys.exit(3)"]

    with pytest.raises(ProcessExitedError, match="exited with 3: no database here"):
        group.run(failing, env=dict(os.environ), log_path=tmp_path / "once.log", timeout=10)
    assert group.leftovers() == []


def _ignores_sigterm(pid: int) -> bool:
    # SigIgn in /proc/<pid>/status is a hex mask of ignored signals; bit n-1 is signal n.
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(
        next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16
    )
    return bool(ignored & (1 << (signal.SIGTERM - 1)))
