"""Run ``docker-compose.yaml`` for real on this machine: what ``make test-compose`` drives.

- ``DockerEngine`` makes a Docker Engine answer: it uses one that already does, or installs
  Debian's ``docker.io`` / ``docker-compose`` / ``debootstrap`` when missing and starts ``dockerd``
  itself (``--bridge=none --iptables=false``: no bridge network on these machines) in a process
  group of its own, which ``stop()`` ends again. ``DockerUnavailable`` carries the reason when
  none can run (not root, no kernel support, ...).
- ``build_standins()`` runs ``deploy/standins/build.sh``: local images under the names the compose
  file and Dockerfile use, for machines that reach no image registry.
- ``host_network_override(ports)`` is the one file that differs from what a user runs: every
  service on the host's network (``network_mode: host``), service names resolved to 127.0.0.1,
  builds with ``network: host``, and each service on a free port of this machine instead of its
  fixed port inside a compose network (other programs here may hold 8080 or 5432).
- ``ComposeStack`` is ``docker-compose -p NAME -f docker-compose.yaml -f OVERRIDE --env-file ENV``:
  ``up``, ``wait_healthy``, ``restart``, ``down``, and the containers' state.
- ``ComposeAirflow`` is ``devenv.airflow.LocalAirflow``'s REST client pointed at the stack's API
  server, so the tests reuse its ``trigger``/``wait_for_run``/``dag_runs``.
"""

# This module drives the docker, docker-compose and apt-get programs found on PATH, with argument
# lists built here (no shell): ruff's S603/S607 warnings are about exactly that.
# ruff: noqa: S603, S607

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from devenv.airflow import AirflowUser, LocalAirflow
from devenv.processes import ProcessGroup, free_port, tail, wait_for

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
STANDINS_SCRIPT = PROJECT_ROOT / "deploy" / "standins" / "build.sh"
DEBIAN_PACKAGES = {
    "dockerd": "docker.io",
    "docker-compose": "docker-compose",
    "debootstrap": "debootstrap",
}
_POLL_SECONDS = 2.0
# A healthcheck command that runs a CLI under coreutils' `timeout` (see docker-compose.yaml).
CLI_CHECK = re.compile(r"^timeout \d+ ")
# How long the test lets such a check run on a crowded machine (see host_network_override).
CLI_CHECK_SECONDS = 240


class DockerUnavailable(RuntimeError):
    """No Docker Engine can run here; the message says why."""


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


class DockerEngine:
    """A Docker Engine: the running one, or a ``dockerd`` started (and stopped) here."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._group = ProcessGroup("dockerd")
        self.started_here = False

    def ensure(self, timeout: float = 60.0) -> None:
        if _docker_answers():
            log.info("using the Docker Engine already running")
            return
        missing = [pkg for tool, pkg in DEBIAN_PACKAGES.items() if shutil.which(tool) is None]
        if missing:
            self._install(missing)
        if os.geteuid() != 0:
            raise DockerUnavailable("dockerd must start as root here, and this is not root")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / "dockerd.log"
        self._group.spawn(
            "dockerd",
            # No bridge network and no iptables rules: containers use the host's network only.
            ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false"],
            env=dict(os.environ),
            log_path=log_path,
        )
        self.started_here = True
        try:
            wait_for(_docker_answers, timeout=timeout, what="dockerd to answer")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise DockerUnavailable(f"dockerd did not start: {exc}; {tail(log_path)}") from None

    def _install(self, packages: Sequence[str]) -> None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise DockerUnavailable(
                f"{', '.join(packages)} missing and cannot be installed (needs root and apt-get)"
            )
        log.info("installing %s from Debian", ", ".join(packages))
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        ):
            result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise DockerUnavailable(f"{' '.join(argv[:2])} failed: {result.stderr[-500:]}")

    @property
    def pids(self) -> dict[str, int]:
        return self._group.pids

    def leftovers(self) -> list[Any]:
        return self._group.leftovers()

    def stop(self) -> None:
        """Stop the ``dockerd`` started here (nothing if it was already running)."""
        if self.started_here:
            # dockerd stops its containerd on SIGTERM; that takes a few seconds.
            self._group.stop(grace=30.0)


def build_standins(log_path: Path) -> None:
    """Build the stand-in base images (``deploy/standins/build.sh``); raise with its log's tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        result = subprocess.run(
            ["bash", str(STANDINS_SCRIPT)], stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"building the stand-in images failed: {tail(log_path)}")


@dataclass(frozen=True)
class HostPorts:
    """The port of each service on the host's network (free ones in the test)."""

    postgres: int
    redis: int
    api: int
    scheduler_health: int
    worker_logs: int
    triggerer_logs: int
    relay: int
    dataverse: int
    marketo: int

    @classmethod
    def free(cls) -> HostPorts:
        names = cls.__dataclass_fields__
        ports: set[int] = set()
        while len(ports) < len(names):
            ports.add(free_port())
        return cls(**dict(zip(names, sorted(ports), strict=True)))


def _services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def host_network_override(ports: HostPorts) -> dict[str, Any]:
    """The compose override that runs every service on the host's network at ``ports``."""
    services = _services()
    hosts = [f"{name}:127.0.0.1" for name in services]
    database = f"postgres:{ports.postgres}/airflow"
    password = "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"  # noqa: S105 - a reference to .env
    airflow_env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow:{password}@{database}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://airflow:{password}@{database}",
        "AIRFLOW_CONN_CONTACT_SYNC_LEDGER": (
            f"postgresql://airflow:{password}@postgres:{ports.postgres}/contact_sync"
        ),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://:@redis:{ports.redis}/0",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://airflow-apiserver:{ports.api}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports.api),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(ports.scheduler_health),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports.worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports.triggerer_logs),
    }
    override: dict[str, Any] = {}
    for name, spec in services.items():
        service: dict[str, Any] = {"network_mode": "host", "extra_hosts": hosts}
        if "build" in spec:
            service["build"] = {"context": ".", "network": "host"}
        if name.startswith("airflow-"):
            service["environment"] = dict(airflow_env)
        override[name] = service

    # The test's machines are shared by many busy processes: Airflow's API server has taken over
    # three minutes to start there, which the file's 30 s grace and 5 retries at 30 s would call
    # unhealthy. A longer grace; a short interval for the cheap curl checks, so that waiting ends
    # soon after a service is up (a healthy state is only seen at the next check); and a longer
    # limit for the checks that start Airflow's or Celery's CLI, which took over 30 s there under
    # load. The file runs those under coreutils' `timeout` (Docker does not kill a check that
    # exceeds its own timeout, and they piled up); here that limit is raised, with Docker's above.
    timing = {"interval": "5s", "timeout": "30s", "retries": 5, "start_period": "600s"}
    # Seen there at a load average of 20 on 2 cores: `airflow jobs check` printing its answer after
    # 77 s and exiting after 100 s, with 4 s of CPU time.
    cli_timing = {**timing, "interval": "30s", "timeout": f"{CLI_CHECK_SECONDS + 10}s"}
    for name, spec in services.items():
        if "healthcheck" not in spec:
            continue
        test = spec["healthcheck"]["test"]
        if test[0] == "CMD-SHELL" and CLI_CHECK.match(test[1]):
            override[name]["healthcheck"] = {
                "test": [
                    "CMD-SHELL",
                    CLI_CHECK.sub(f"timeout {CLI_CHECK_SECONDS} ", test[1], count=1),
                ],
                **cli_timing,
            }
        else:
            override[name]["healthcheck"] = dict(timing)

    def check(name: str, test: list[str]) -> None:
        override[name]["healthcheck"] = {"test": test, **timing}

    override["postgres"]["environment"] = {"PGPORT": str(ports.postgres)}
    override["postgres"]["command"] = ["postgres", "-c", "listen_addresses=127.0.0.1"]
    override["redis"]["command"] = [
        "redis-server", "--bind", "127.0.0.1", "--port", str(ports.redis), "--protected-mode", "no"
    ]  # fmt: skip
    check("redis", ["CMD", "redis-cli", "-p", str(ports.redis), "ping"])
    check(
        "airflow-apiserver",
        ["CMD", "curl", "--fail", f"http://127.0.0.1:{ports.api}/api/v2/version"],
    )
    check(
        "airflow-scheduler",
        ["CMD", "curl", "--fail", f"http://127.0.0.1:{ports.scheduler_health}/health"],
    )
    override["relay"]["environment"] = {
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(ports.relay),
        "RELAY_AIRFLOW_URL": f"http://airflow-apiserver:{ports.api}",
    }
    check("relay", ["CMD", "curl", "--fail", f"http://127.0.0.1:{ports.relay}/healthz"])
    override["sandbox"]["command"] = [
        "python", "-m", "sandbox", "--host", "127.0.0.1", "--state-dir", "/var/lib/sandbox",
        "--dataverse-port", str(ports.dataverse), "--marketo-port", str(ports.marketo),
    ]  # fmt: skip
    check(
        "sandbox",
        [
            "CMD-SHELL",
            f"curl --fail http://127.0.0.1:{ports.dataverse}/_sandbox/calls && "
            f"curl --fail http://127.0.0.1:{ports.marketo}/_sandbox/calls",
        ],
    )
    return {"services": override}


class ComposeStack:
    """``docker-compose`` on the project's file plus an override, with its own project name."""

    def __init__(self, project: str, env_file: Path, override_file: Path, log_dir: Path) -> None:
        self.project = project
        self.env_file = env_file
        self.override_file = override_file
        self.log_dir = log_dir
        self.services = sorted(_services())

    def _argv(self, *args: str) -> list[str]:
        return [
            "docker-compose",
            "--project-name", self.project,
            "--project-directory", str(PROJECT_ROOT),
            "--env-file", str(self.env_file),
            "-f", str(COMPOSE_FILE),
            "-f", str(self.override_file),
            *args,
        ]  # fmt: skip

    def compose(self, *args: str, timeout: float = 1800.0) -> str:
        """Run ``docker-compose ARGS``; its output goes to ``compose.log``; raise on failure."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["nice", *self._argv(*args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        with (self.log_dir / "compose.log").open("a") as out:
            out.write(f"$ docker-compose {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def containers(self) -> dict[str, dict[str, Any]]:
        """Service name → ``docker inspect`` of its container, for every container of the project
        (stopped ones included)."""
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if not ids:
            return {}
        inspected = json.loads(
            subprocess.run(
                ["docker", "inspect", *ids], capture_output=True, text=True, check=True
            ).stdout
        )
        return {item["Config"]["Labels"]["com.docker.compose.service"]: item for item in inspected}

    def states(self) -> dict[str, str]:
        """Service → ``healthy``/``unhealthy``/``starting`` (healthchecked), else the status
        (``running``, ``exited(0)``, ...)."""
        states = {}
        for service, item in self.containers().items():
            state = item["State"]
            if "Health" in state and state["Status"] == "running":
                states[service] = state["Health"]["Status"]
            elif state["Status"] == "exited":
                states[service] = f"exited({state['ExitCode']})"
            else:
                states[service] = state["Status"]
        return states

    def wait_healthy(self, timeout: float = 900.0) -> float:
        """Wait until every long-running service is healthy and the init job exited 0; return the
        seconds it took. Raise at once when a container exited with an error."""
        began = time.monotonic()
        deadline = began + timeout
        while True:
            states = self.states()
            failed = {
                s: v for s, v in states.items() if v.startswith("exited") and v != "exited(0)"
            }
            if failed:
                raise RuntimeError(f"containers failed: {failed}; {self.logs(*failed)}")
            done = {s for s, v in states.items() if v in ("healthy", "exited(0)")}
            if done == set(self.services):
                return time.monotonic() - began
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout:.0f} s: {states}")
            time.sleep(_POLL_SECONDS)

    def logs(self, *services: str, lines: int = 40) -> str:
        """The last ``lines`` of each service's output (of its current container)."""
        argv = self._argv("logs", "--no-color", f"--tail={lines}", *services)
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        return result.stdout

    def volumes(self) -> list[str]:
        return subprocess.run(
            [
                "docker",
                "volume",
                "ls",
                "-q",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()


def write_override(path: Path, ports: HostPorts) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(host_network_override(ports), sort_keys=False))


class ComposeAirflow(LocalAirflow):
    """``LocalAirflow``'s REST client for the stack's API server; it starts nothing itself."""

    def __init__(self, stack: ComposeStack, port: int, admin_password: str, home: Path) -> None:
        super().__init__(
            home,
            PROJECT_ROOT / "dags",
            port=port,
            admin=AirflowUser("admin", "admin", admin_password),
            service_users=(),
        )
        self.stack = stack
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0, connect=5.0))

    @property
    def running(self) -> bool:
        """True while no Airflow container has stopped."""
        states = self.stack.states()
        return all(
            state in ("healthy", "starting", "running", "exited(0)")
            for service, state in states.items()
            if service.startswith("airflow-")
        )

    def forget_token(self) -> None:
        """Drop the cached admin token (after a restart the API server still accepts it, as the
        JWT secret is the same; this proves a fresh login works)."""
        self._admin_token = None

    def start(self, dag_ids: Any = (), timeout: float = 0.0) -> None:
        raise RuntimeError("ComposeAirflow runs inside docker-compose: use ComposeStack.compose")

    def stop(self, grace: float = 0.0) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def relay_health(port: int) -> Mapping[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    return response.json()
