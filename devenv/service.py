"""One of our own Python services (``python -m sandbox``, ``python -m relay``) as a managed process.

``LocalService`` is the shared part of ``devenv.sandbox.LocalSandbox`` and
``devenv.relay.LocalRelay``: the command runs in a ``ProcessGroup`` (its own session, output in a
log file), ``start()`` returns once its health URLs answer and stops it again on any failure,
``stop()`` ends it and everything it started, ``kill()`` SIGKILLs it the way a crash or the OOM
killer would.

The environment is the caller's minus the service's own variable prefix (so settings come only
from the arguments, never from a stray ``RELAY_*`` exported in a shell), plus ``PYTHONPATH`` for
the packages the service imports.
"""

from __future__ import annotations

import abc
import errno
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import psutil

from devenv.processes import ProcessGroup, wait_http

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class PortInUseError(RuntimeError):
    """A fixed port the service needs is taken by another process."""


def require_free_port(host: str, port: int, what: str) -> None:
    """Raise ``PortInUseError`` naming ``what`` when ``host:port`` cannot be bound right now.

    Checked before starting because otherwise the health check could be answered by whatever
    already listens there, while our process dies on its bind error.
    """
    with socket.socket() as probe:
        # As uvicorn binds: connections of a stopped server lingering in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(
                f"{what} needs {host}:{port}, which another process is using; stop it or choose "
                "another port"
            ) from None


class LocalService(abc.ABC):
    """``python -m <module>`` in a process group of its own, with a health wait.

    Subclasses give the module and its arguments, its settings variables, the ports it binds and
    its health URLs; ``name`` names the process and its log file ``<log_dir>/<name>.log``.
    """

    #: What ``stop()`` sends first; SIGKILL follows after the grace.
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(
        self, name: str, log_dir: Path, *, env_prefix: str, pythonpath: Sequence[Path]
    ) -> None:
        """``env_prefix``: the service's own settings variables, which are not inherited."""
        if not env_prefix:
            raise ValueError("env_prefix must not be empty: it would drop the whole environment")
        self.name = name
        self.env_prefix = env_prefix
        self.log_dir = Path(log_dir).resolve()
        self.log_path = self.log_dir / f"{name}.log"
        self._pythonpath = tuple(pythonpath)
        self._group = ProcessGroup(name)

    # -- to be given by subclasses -----------------------------------------------------------

    @abc.abstractmethod
    def _argv(self) -> list[str]:
        """The module to run and its arguments: what follows ``python -m``."""

    @abc.abstractmethod
    def _service_env(self) -> dict[str, str]:
        """The service's settings variables (added last to the environment)."""

    @abc.abstractmethod
    def _health_urls(self) -> list[str]:
        """URLs that must answer (see ``_is_up``) before ``start()`` returns."""

    def _is_up(self, response: httpx.Response) -> bool:
        return response.is_success

    @abc.abstractmethod
    def _ports(self) -> list[tuple[str, int]]:
        """``(host, port)`` pairs the service binds, checked to be free before it starts."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Self:
        """Start the service and return once every health URL answers; raise (with the log's
        tail when the process died) and leave nothing running otherwise."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if self.pid is not None:  # it ended on its own: reap it and sweep up its children first
            self._group.stop()
        for host, port in self._ports():
            require_free_port(host, port, self.name)
        try:
            self._group.spawn(
                self.name,
                [sys.executable, "-m", *self._argv()],
                env=self._environment(),
                log_path=self.log_path,
                cwd=self.log_dir,
                stop_signal=self.stop_signal,
            )
            for url in self._health_urls():
                wait_http(url, timeout=timeout, ok=self._is_up, check=self._group.raise_if_exited)
        except BaseException:
            self._group.stop()
            raise
        return self

    def stop(self, grace: float = 15.0) -> None:
        """Stop the service (its stop signal, SIGKILL after ``grace``); safe to call twice."""
        self._group.stop(grace)

    def kill(self) -> None:
        """SIGKILL the service's whole process group at once, as a crash would: no shutdown code
        runs. ``start()`` may be called again afterwards."""
        pid = self._group.pids.get(self.name)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
        # Only reaps the killed process and forgets it: there is nothing left to stop.
        self._group.stop(grace=0.0)

    def restart(self, timeout: float = 30.0) -> Self:
        """Stop (gracefully, if still running) and start again with the same settings."""
        self.stop()
        return self.start(timeout)

    @property
    def running(self) -> bool:
        """True while the service's process is alive."""
        return self._group.running

    @property
    def pid(self) -> int | None:
        """The service's pid (also its session and process group id) once started."""
        return self._group.pids.get(self.name)

    def leftovers(self) -> list[psutil.Process]:
        """Live processes of this service; empty after ``stop()`` or ``kill()``."""
        return self._group.leftovers()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(self.env_prefix)}
        pythonpath = os.pathsep.join(str(path) for path in self._pythonpath)
        return {**inherited, "PYTHONPATH": pythonpath, **self._service_env()}
