"""Long-running local services as process groups that can be stopped completely and proven gone.

``ProcessGroup`` is what ``LocalAirflow``, the sandbox and the relay runners build on:

- ``spawn(name, argv, env=..., log_path=...)`` starts a command in a session (and process group) of
  its own, output appended to a log file, with a marker variable naming the group in its
  environment; ``run(...)`` does the same for a one-shot command and waits for it.
- ``stop(grace)`` ends everything: first the session members that left their leader's process
  group (an Airflow task process, for one), then the named processes, each group sent its stop
  signal and SIGKILLed after ``grace``, those named ``last`` at construction after the others,
  and finally whatever ``leftovers()`` still finds. Idempotent, and also run at interpreter exit.
- ``leftovers()`` lists every live process of the group: found by session, because a child may
  move to a new process group but not out of the session without ``setsid``; by the marker,
  which finds what did call ``setsid`` as long as it keeps its original environment
  (``setproctitle``, which Airflow uses, blanks ``/proc/<pid>/environ``); and as a descendant
  of a spawned process seen at any earlier look, which finds the rest (PostgreSQL's children
  call ``setsid`` and overwrite their environment with their titles).

``wait_http(url, timeout=..., ok=...)`` polls a health URL until ``ok(response)`` holds;
``wait_for(ready, timeout=..., what=...)`` polls any condition (a database accepting connections).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import httpx
import psutil

MARKER_ENV = "DEVENV_INSTANCE"

# How often conditions are polled; short because each check is a cheap local call.
POLL_SECONDS = 0.25


class ProcessExitedError(RuntimeError):
    """A process of the group ended on its own, or a one-shot command failed."""


class ProcessGroup:
    """Named processes, each leading its own session, stopped together.

    ``label`` names the group in messages. ``last`` names processes that must outlive the others
    while they stop (Airflow's API server, which running tasks report their end to).
    ``detached_grace`` is the SIGTERM grace for processes that left their leader's process group,
    shorter than the components' because a task being torn down has nothing worth waiting for.
    """

    def __init__(
        self,
        label: str,
        *,
        last: Collection[str] = (),
        detached_grace: float | None = None,
    ) -> None:
        self.label = label
        self.instance_id = uuid.uuid4().hex
        self._last = frozenset(last)
        self._detached_grace = detached_grace
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop_signals: dict[str, signal.Signals] = {}
        self._log_paths: dict[str, Path] = {}
        # Kept after stop() so leftovers() still recognises members of our sessions.
        self._sessions: set[int] = set()
        # Descendants seen so far, kept so that one orphaned by its parent's end is still found.
        self._descendants: dict[int, psutil.Process] = {}

    # -- starting --------------------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as ``name`` in a new session, stdout and stderr appended to ``log_path``.

        ``env`` is the complete environment (the marker is added). ``user`` runs it as that user
        (PostgreSQL refuses root). ``stop_signal`` is what ``stop()`` sends first: SIGINT for
        PostgreSQL, whose SIGTERM waits for every client to disconnect.
        """
        if name in self._processes:
            raise RuntimeError(f"{self.label}: {name} is already running")
        process = self._popen(argv, env=env, log_path=log_path, cwd=cwd, user=user)
        self._processes[name] = process
        self._stop_signals[name] = stop_signal
        self._log_paths[name] = log_path
        return process

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        timeout: float,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        """Run a one-shot command in a new session and wait for it; raise with its log's tail if
        it fails. On timeout or interruption its whole process group is killed."""
        process = self._popen(argv, env=env, log_path=log_path, cwd=cwd, user=user)
        try:
            returncode = process.wait(timeout=timeout)
        except BaseException:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            raise
        if returncode != 0:
            raise ProcessExitedError(
                f"{self.label}: {' '.join(argv[:4])} exited with {returncode}: {tail(log_path)}"
            )

    def _popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None,
        user: str | None,
    ) -> subprocess.Popen[bytes]:
        # Re-registering keeps one entry, also for a group started again after stop().
        atexit.unregister(self.stop)
        atexit.register(self.stop)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # The user's own group and no supplementary groups: root's must not be inherited.
        group = pwd.getpwnam(user).pw_gid if user is not None else None
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 - argv from our own code, no shell
                list(argv),
                env={**env, MARKER_ENV: self.instance_id},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=group,
                extra_groups=[] if user is not None else None,
            )
        self._sessions.add(process.pid)  # start_new_session: the child leads session and group
        return process

    # -- watching --------------------------------------------------------------------------------

    @property
    def pids(self) -> dict[str, int]:
        """Name → pid (each also its session and process group id) of the spawned processes."""
        return {name: process.pid for name, process in self._processes.items()}

    @property
    def running(self) -> bool:
        """True while at least one process was spawned and every spawned one is alive."""
        return bool(self._processes) and all(p.poll() is None for p in self._processes.values())

    def log_path(self, name: str) -> Path:
        """Where ``name`` writes its output."""
        return self._log_paths[name]

    def raise_if_exited(self) -> None:
        """Raise ``ProcessExitedError`` with the log's tail if a spawned process has ended."""
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise ProcessExitedError(
                    f"{self.label}: {name} exited with {process.returncode}: "
                    f"{tail(self._log_paths[name])}"
                )

    def leftovers(self) -> list[psutil.Process]:
        """Every live process of the group: spawned ones, their children, detached descendants.

        Empty after ``stop()``; tests assert exactly that.
        """
        self._remember_descendants()
        found = {p.pid: p for p in find_processes(self.instance_id, self._sessions)}
        for pid, process in self._descendants.items():
            if pid not in found and _is_alive(process):
                found[pid] = process
        return list(found.values())

    def _remember_descendants(self) -> None:
        for leader in self._processes.values():
            try:
                children = psutil.Process(leader.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            # psutil.Process remembers its start time: a recycled pid is not mistaken for ours.
            self._descendants.update((child.pid, child) for child in children)

    def memory_bytes(self) -> int:
        """Proportional set size (shared pages split fairly) of all live processes, in bytes."""
        total = 0
        for process in self.leftovers():
            try:
                total += process.memory_full_info().pss
            except psutil.Error:
                continue  # it ended while we counted
        return total

    # -- stopping --------------------------------------------------------------------------------

    def stop_one(self, name: str, grace: float = 10.0) -> None:
        """Stop the process group ``name`` leads (its stop signal, SIGKILL after ``grace``); the
        others keep running, and ``spawn(name, ...)`` may start it again. Its session is still
        ours: whatever it left behind is found by ``leftovers()`` and ended by ``stop()``."""
        process = self._processes.pop(name)
        _stop_groups([(process, self._stop_signals.pop(name))], grace)

    def stop(self, grace: float = 10.0) -> None:
        """Stop everything, each step its stop signal first and SIGKILL after ``grace``.

        Order: session members that left their leader's process group; the spawned processes
        not named ``last``, together; those named ``last``; then whatever ``leftovers()`` still
        finds.
        Safe to call twice; also registered to run at interpreter exit.
        """
        atexit.unregister(self.stop)
        self._remember_descendants()
        processes, self._processes = self._processes, {}
        leader_groups = {process.pid for process in processes.values()}
        # Only session members and marked processes: descendants that left the session on their
        # own (PostgreSQL's) are their parent's to stop, and it does.
        found = find_processes(self.instance_id, self._sessions)
        detached = [p for p in found if _group_of(p.pid) not in leader_groups]
        _terminate(detached, grace if self._detached_grace is None else self._detached_grace)
        first = {name: p for name, p in processes.items() if name not in self._last}
        last = {name: p for name, p in processes.items() if name in self._last}
        for stage in (first, last):
            _stop_groups([(p, self._stop_signals[name]) for name, p in stage.items()], grace)
        _terminate(self.leftovers(), grace)


def find_processes(instance_id: str, sessions: Collection[int] = ()) -> list[psutil.Process]:
    """Live (non-zombie) processes in one of ``sessions`` or carrying ``instance_id`` as marker."""
    found = []
    for process in psutil.process_iter(["environ", "status"]):
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        environ = process.info["environ"] or {}
        try:
            in_session = os.getsid(process.pid) in sessions
        except ProcessLookupError:
            continue
        if in_session or environ.get(MARKER_ENV) == instance_id:
            found.append(process)
    return found


def wait_for(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll ``ready()`` until it returns true; ``TimeoutError`` naming ``what`` after ``timeout``.

    ``check`` runs before every attempt, e.g. ``group.raise_if_exited`` to fail at once when the
    server died instead of at the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def wait_http(
    url: str,
    *,
    timeout: float,
    ok: Callable[[httpx.Response], bool] = lambda response: response.is_success,
    check: Callable[[], None] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Poll ``GET url`` until ``ok(response)`` holds and return that response.

    Refused connections and ``ok`` raising ``ValueError`` (a body that is not JSON yet) count as
    "not yet". ``check`` runs before every attempt, e.g. ``group.raise_if_exited`` to fail at once
    when the server died instead of at the timeout.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0), headers=headers) as client:
        while True:
            if check is not None:
                check()
            try:
                response = client.get(url)
                if ok(response):
                    return response
                last = f"{response.status_code}: {response.text[:300]}"
            except (httpx.TransportError, ValueError) as error:
                last = repr(error)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready after {timeout:.0f} s; last: {last}")
            time.sleep(POLL_SECONDS)


def free_port() -> int:
    """A loopback TCP port free right now (another process may still take it before we do)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def _stop_groups(
    leaders: Sequence[tuple[subprocess.Popen[bytes], signal.Signals]], grace: float
) -> None:
    """Signal the process groups these processes lead; SIGKILL a group whose leader outlives
    ``grace``. Members that outlive their leader are left to the final sweep in ``stop()``."""
    for leader, signum in leaders:
        _signal_group(leader.pid, signum)
    deadline = time.monotonic() + grace
    for leader, _ in leaders:
        try:
            leader.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(leader.pid, signal.SIGKILL)
            leader.wait()


def _terminate(processes: Sequence[psutil.Process], grace: float) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    alive = _wait_until_dead(processes, grace)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    _wait_until_dead(alive, 5.0)


def _wait_until_dead(processes: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has exited; return those still alive at ``timeout``.

    Not ``psutil.wait_procs``: for processes that are not our children it waits until the pid is
    gone, and a dead task stays a zombie until its supervisor gets round to reaping it.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _is_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _is_alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, signum)


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
