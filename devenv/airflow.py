"""A real local Airflow 3 (API server, scheduler, DAG processor) for end-to-end tests and the demo.

``LocalAirflow`` runs the same components a deployment runs, sized for a 2-core machine: on
LocalExecutor and SQLite by default, or, given a ``database_url`` and a ``CeleryBackend``, on
CeleryExecutor with a Celery worker as a further component (the distributed shape; Flower is not
started). Its rules:

- Configuration reaches Airflow only through the environment of the child processes: nothing
  outside the given ``AIRFLOW_HOME`` is read or written, and ``AIRFLOW_*`` variables of the caller
  (the Makefile exports ``AIRFLOW_HOME``) never leak in.
- Every component starts in a session (and process group) of its own through
  ``devenv.processes.ProcessGroup``, so ``stop()`` can end it all and ``live_processes()`` can
  prove it did, task processes included (Airflow's task supervisor moves each task into a new
  process group within the session).
- Users come from the simple auth manager with passwords we write into its passwords file before
  the first start, so they are known rather than generated and printed.

Run ``python -m devenv.airflow`` for the demo: Airflow on http://127.0.0.1:8080 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

import httpx
import psutil

# MARKER_ENV is re-exported: tests look for it in /proc/<pid>/environ.
from devenv.processes import MARKER_ENV as MARKER_ENV
from devenv.processes import ProcessGroup, free_port, wait_for, wait_http
from relay.airflow import jwt_expiry

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TUNING_FILE = PROJECT_ROOT / "deploy" / "airflow-tuning.env"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})

# How often run and DAG states are polled; short because each check is a cheap loopback request.
_POLL_SECONDS = 0.25
# A task sometimes ignores SIGTERM for 10 s and more (seen with a sleeping task); a local run being
# torn down has nothing to clean up that is worth that wait.
_TASK_GRACE_SECONDS = 2.0
# Components whose health gates start(); the triggerer joins when it is enabled.
_REQUIRED_HEALTH = ("metadatabase", "scheduler", "dag_processor")
_POOL_ATTEMPTS = 3
# The API server answers the first Execution API call of a fresh instance only after seconds of
# start-up work, blocking its other requests meanwhile: over a minute was seen on a loaded 2-core
# machine (the first task's start; its retries got through). A REST call waits that out.
_READ_TIMEOUT_SECONDS = 120.0
# The admin's JWT is renewed this long before it expires, so no request carries a stale one.
_TOKEN_RENEW_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class AirflowUser:
    """A simple-auth-manager user; ``role`` is one of viewer, user, op, admin."""

    username: str
    role: str
    password: str = field(repr=False)


# Fixed passwords are the point: tests, the relay's local settings and the demo must know them, and
# the API listens on loopback only. Real deployments use another auth manager.
DEFAULT_ADMIN = AirflowUser("admin", "admin", "admin")
# The relay only triggers DAG runs: "user" is the least role that may (op adds pools, connections).
DEFAULT_RELAY = AirflowUser("relay", "user", "relay-local")


@dataclass(frozen=True)
class Pool:
    """An Airflow pool created (or resized) at start."""

    name: str
    slots: int
    description: str = ""


# Marketo allows 10 concurrent calls per instance; the DAGs' Marketo tasks share this pool. The slot
# count the real DAGs want is not documented yet: two leaves headroom for other Marketo clients.
DEFAULT_POOLS = (
    Pool("marketo_api", 2, "Tasks calling the Marketo REST API (10 concurrent calls allowed)"),
)


@dataclass(frozen=True)
class CeleryBackend:
    """Where CeleryExecutor queues tasks and keeps their results, and the worker's pool size.

    The URLs hold passwords: excluded from repr.
    """

    broker_url: str = field(repr=False)
    result_backend: str = field(repr=False)
    worker_concurrency: int = 2


def read_tuning(path: Path = TUNING_FILE) -> dict[str, str]:
    """The ``AIRFLOW__*`` settings of an env file (``KEY=VALUE`` lines, ``#`` comments), the
    format docker compose's ``env_file`` reads, so the demo and compose share one file."""
    settings: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.startswith("AIRFLOW__") or not value.strip():
            raise ValueError(f"{path}:{number}: expected AIRFLOW__SECTION__KEY=value, got {line!r}")
        settings[key] = value.strip()
    return settings


class AirflowApiError(RuntimeError):
    """The Airflow REST API answered with an error status."""

    def __init__(self, method: str, path: str, status_code: int, body: str) -> None:
        self.status_code = status_code
        super().__init__(f"{method} {path} answered {status_code}: {body[:300]}")


class LocalAirflow:
    """One local Airflow: API server, scheduler, DAG processor and, optionally, a triggerer.

    ``port=0`` picks a free loopback port (tests); the demo uses the default 8080. ``env`` is added
    last to the components' environment: ``AIRFLOW_CONN_*`` connections, or ``AIRFLOW__S__K``
    overrides of the settings chosen here. ``tuning`` replaces the settings of
    ``deploy/airflow-tuning.env`` (``{}``: Airflow's stock scheduler). ``database_url``
    (SQLAlchemy) replaces the SQLite file in ``home``; ``celery`` switches to CeleryExecutor and
    adds a ``celery-worker`` component, and needs a ``database_url``, as Airflow refuses
    CeleryExecutor on SQLite.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        plugins_folder: Path = PROJECT_ROOT / "plugins",
        port: int = 8080,
        env: Mapping[str, str] | None = None,
        pools: Sequence[Pool] = DEFAULT_POOLS,
        admin: AirflowUser = DEFAULT_ADMIN,
        service_users: Sequence[AirflowUser] = (DEFAULT_RELAY,),
        parallelism: int = 4,
        triggerer: bool = False,
        database_url: str | None = None,
        celery: CeleryBackend | None = None,
        tuning: Mapping[str, str] | None = None,
    ) -> None:
        if celery is not None and database_url is None:
            raise ValueError("CeleryExecutor needs a database_url: Airflow refuses it on SQLite")
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = self.home / "logs"
        self.extra_env = dict(env or {})
        self.pools = tuple(pools)
        self.admin = admin
        self.users = (admin, *service_users)
        self.parallelism = parallelism
        self.triggerer = triggerer
        self.database_url = database_url or f"sqlite:///{self.home / 'airflow.db'}"
        self.celery = celery
        # The deployment's tuned settings; ``{}`` runs Airflow's stock ones (the benchmark's
        # reference). ``env`` still overrides them.
        self.tuning = dict(read_tuning() if tuning is None else tuning)
        # The worker's Celery node name, so readiness can be asked of this very worker.
        self.worker_name = f"devenv-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        # Running tasks report their end through the API server: it stops after the rest.
        self._group = ProcessGroup(
            "airflow", last=("api-server",), detached_grace=_TASK_GRACE_SECONDS
        )
        self.instance_id = self._group.instance_id
        self.startup_seconds: float | None = None
        self._http: httpx.Client | None = None
        self._admin_token: str | None = None
        self._admin_renew_at = float("inf")
        self._env: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, dag_ids: Iterable[str] = (), timeout: float = 180.0) -> None:
        """Migrate the database, start the components, and return once healthy with ``dag_ids``
        parsed. On any failure, Ctrl-C included, everything started so far is stopped again."""
        if self._group.pids:
            raise RuntimeError(f"Airflow at {self.url} is already running")
        began = time.monotonic()
        deadline = began + timeout
        try:
            env = self._env = self._prepare_home()
            self._group.run(
                self._airflow_command(["db", "migrate"]),
                env=env,
                log_path=self.log_dir / "db-migrate.log",
                timeout=deadline - time.monotonic(),
                cwd=self.home,
            )
            self._http = httpx.Client(
                base_url=self.url, timeout=httpx.Timeout(_READ_TIMEOUT_SECONDS, connect=5.0)
            )
            for name, args in self._components():
                self._group.spawn(
                    name,
                    self._airflow_command(args),
                    env=env,
                    log_path=self.log_dir / f"{name}.log",
                    cwd=self.home,
                )
            self._wait_until_healthy(deadline)
            self._create_pools()
            self.wait_for_dags(dag_ids, timeout=deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        log.info(
            "Airflow up at %s in %.1f s; logs in %s", self.url, self.startup_seconds, self.log_dir
        )

    @property
    def running(self) -> bool:
        """True while every component started is still alive."""
        return self._group.running

    @property
    def pids(self) -> dict[str, int]:
        """Component name → pid (each also its session and process group id) while running."""
        return self._group.pids

    def stop(self, grace: float = 10.0) -> None:
        """Stop in dependency order, each step SIGTERM first and SIGKILL after ``grace``.

        Running tasks go first: their supervisors report the end through the API server, and the
        scheduler would otherwise wait for them to finish. Then the scheduler, DAG processor and
        triggerer; then the API server; then whatever ``live_processes()`` still finds. Safe to
        call twice, and called at exit.
        """
        self._group.stop(grace)
        if self._http is not None:
            self._http.close()
            self._http = None
        self._admin_token = None

    def stop_component(self, name: str, grace: float = 10.0) -> None:
        """Stop one component (``api-server``, ``scheduler``, ...) as an outage or a rolling
        restart would; the others keep running. ``start_component`` brings it back."""
        if name not in self._group.pids:
            raise ValueError(f"no running Airflow component {name!r}; running: {list(self.pids)}")
        self._group.stop_one(name, grace)

    def start_component(self, name: str, timeout: float = 120.0) -> None:
        """Start a component stopped by ``stop_component`` again, with the environment of
        ``start()``, and return once Airflow reports every component healthy."""
        [args] = [args for component, args in self._components() if component == name]
        self._group.spawn(
            name,
            self._airflow_command(args),
            env=self._env,
            log_path=self.log_dir / f"{name}.log",
            cwd=self.home,
        )
        self._wait_until_healthy(time.monotonic() + timeout)

    def live_processes(self) -> list[psutil.Process]:
        """Every live process of this instance: components, their children, task processes.

        Empty after ``stop()``; tests assert exactly that.
        """
        return self._group.leftovers()

    def memory_bytes(self) -> int:
        """Proportional set size (shared pages split fairly) of all live processes, in bytes."""
        return self._group.memory_bytes()

    # -- REST API --------------------------------------------------------------------------------

    def token(self, username: str, password: str) -> str:
        """A JWT for the public API from the simple auth manager's ``POST /auth/token``."""
        credentials = {"username": username, "password": password}
        response = self._client.post("/auth/token", json=credentials)
        _raise_for_status(response)
        return response.json()["access_token"]

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """Call the REST API as ``token``'s user (default: the admin); raise on error statuses.

        The admin's JWT is cached, renewed shortly before its ``exp`` (Airflow's ``[api_auth]
        jwt_expiration_time``, a day by default) and once more on a 401 (the API server restarted
        with another secret), so a demo left running keeps working.
        """
        if token is not None:
            response = self._send(method, path, json, params, token)
        else:
            response = self._send(method, path, json, params, self._admin_bearer())
            if response.status_code == 401:
                log.info("Airflow refused the admin token (401); renewing it")
                response = self._send(method, path, json, params, self._admin_bearer(renew=True))
        _raise_for_status(response)
        return response

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        token: str,
    ) -> httpx.Response:
        return self._client.request(
            method, path, json=json, params=params, headers={"Authorization": f"Bearer {token}"}
        )

    def _admin_bearer(self, *, renew: bool = False) -> str:
        """The admin's cached JWT; a new one when asked, when none is cached or ``exp`` is near."""
        if renew or self._admin_token is None or time.time() >= self._admin_renew_at:
            self._admin_token = self.token(self.admin.username, self.admin.password)
            expiry = jwt_expiry(self._admin_token)
            # A token without ``exp`` is kept until Airflow answers 401.
            self._admin_renew_at = (
                float("inf") if expiry is None else expiry - _TOKEN_RENEW_MARGIN_SECONDS
            )
        return self._admin_token

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any],
        run_id: str | None = None,
        *,
        token: str | None = None,
    ) -> str:
        """Trigger a run the way the relay does (no logical date) and return its ``dag_run_id``.

        A ``run_id`` already used answers 409, raised as ``AirflowApiError``.
        """
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf)}
        if run_id is not None:
            body["dag_run_id"] = run_id
        path = _api_path("dags", dag_id, "dagRuns")
        run = self.request("POST", path, json=body, token=token).json()
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 60.0) -> str:
        """Poll the run until it ends; return its final state (``success`` or ``failed``)."""
        path = _api_path("dags", dag_id, "dagRuns", run_id)
        deadline = time.monotonic() + timeout
        while True:
            state = self.request("GET", path).json()["state"]
            if state in TERMINAL_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout:.0f} s")
            time.sleep(_POLL_SECONDS)

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest first, as the API lists them (``conf``, dates, state)."""
        runs: list[dict[str, Any]] = []
        path = _api_path("dags", dag_id, "dagRuns")
        while True:
            params = {"order_by": "run_after", "limit": 100, "offset": len(runs)}
            page = self.request("GET", path, params=params).json()
            runs += page["dag_runs"]
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                return runs

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances as the API returns them (``task_id``, ``state``, ...)."""
        path = _api_path("dags", dag_id, "dagRuns", run_id, "taskInstances")
        return self.request("GET", path).json()["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value, e.g. what it returned."""
        path = _api_path(
            "dags", dag_id, "dagRuns", run_id, "taskInstances", task_id, "xcomEntries", key
        )
        return self.request("GET", path).json()["value"]

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG (new DAGs start unpaused here; this is for DAGs paused on purpose)."""
        self.request("PATCH", _api_path("dags", dag_id), json={"is_paused": False})

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 60.0) -> None:
        """Return once every DAG in ``dag_ids`` is parsed; raise at once on import errors."""
        pending = set(dag_ids)
        deadline = time.monotonic() + timeout
        while pending:
            listed = self.request("GET", "/api/v2/dags", params={"limit": 1000}).json()["dags"]
            pending -= {dag["dag_id"] for dag in listed}
            if not pending:
                return
            errors = self.request("GET", "/api/v2/importErrors").json()["import_errors"]
            if errors:
                found = "; ".join(
                    f"{error['filename']}: {error['stack_trace'].strip().splitlines()[-1]}"
                    for error in errors
                )
                raise RuntimeError(f"DAG import errors: {found}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs not parsed after {timeout:.0f} s: {sorted(pending)}")
            self._group.raise_if_exited()
            time.sleep(_POLL_SECONDS)

    # -- internals -------------------------------------------------------------------------------

    @property
    def _client(self) -> httpx.Client:
        if self._http is None:
            raise RuntimeError(f"Airflow at {self.url} is not started")
        return self._http

    def _prepare_home(self) -> dict[str, str]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The auth manager only generates passwords for users missing from this file.
        passwords = {user.username: user.password for user in self.users}
        _write_private(self._passwords_file, json.dumps(passwords))
        return self._environment(self._home_secrets())

    @property
    def _passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def _home_secrets(self) -> dict[str, str]:
        """Keys that must agree across components and restarts of the same home: the Fernet key
        encrypts stored connections and variables, the JWT secret signs API and task tokens."""
        path = self.home / "devenv-secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        generated = {
            "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            # 64 bytes: PyJWT warns below that for the HS512 Airflow signs with.
            "jwt_secret": secrets.token_urlsafe(64),
            "api_secret_key": secrets.token_urlsafe(32),
        }
        _write_private(path, json.dumps(generated))
        return generated

    def _environment(self, keys: Mapping[str, str]) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        venv_bin = str(Path(sys.executable).parent)
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW_CONFIG": str(self.home / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if self.celery else "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The connection list's Test button (Airflow 3 ships it disabled): it runs the hooks'
            # own test_connection for the Dynamics 365 and Marketo connection types.
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # Airflow 3 dropped [database] load_default_connections: `db migrate` creates none.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Edited DAGs show in the UI within seconds instead of the default 30.
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{user.username}:{user.role}" for user in self.users
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self._passwords_file),
            # Tasks reach the API server through the Execution API; it must be our port.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            # New DAG files are found within ~2 s; known files are re-parsed every 10 s.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_dir),
            # The log servers default to fixed ports, which two instances would fight over.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PATH": os.pathsep.join([venv_bin, inherited.get("PATH", "")]),
        }
        if self.celery:
            settings |= {
                "AIRFLOW__CELERY__BROKER_URL": self.celery.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": self.celery.result_backend,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery.worker_concurrency),
            }
        return {**inherited, **settings, **self.tuning, **self.extra_env}

    def _components(self) -> list[tuple[str, list[str]]]:
        components = [
            ("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.port)]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
        ]
        if self.triggerer:
            components.append(("triggerer", ["triggerer"]))
        if self.celery:
            # One worker on one machine: gossip and mingle (worker-to-worker sync) only slow
            # its start. It serves task logs on WORKER_LOG_SERVER_PORT, set above.
            worker = ["celery", "worker", "--celery-hostname", self.worker_name]
            worker += ["--without-gossip", "--without-mingle"]
            components.append(("celery-worker", worker))
        return components

    def _airflow_command(self, args: Sequence[str]) -> list[str]:
        # The interpreter running us, so the components use this venv whatever PATH says.
        return [sys.executable, "-m", "airflow", *args]

    def _wait_until_healthy(self, deadline: float) -> None:
        required = (*_REQUIRED_HEALTH, "triggerer") if self.triggerer else _REQUIRED_HEALTH

        def all_healthy(response: httpx.Response) -> bool:
            health = response.json()
            return all((health.get(c) or {}).get("status") == "healthy" for c in required)

        try:
            wait_http(
                f"{self.url}/api/v2/monitor/health",
                timeout=deadline - time.monotonic(),
                ok=all_healthy,
                check=self._group.raise_if_exited,
            )
            if self.celery:
                broker_url = self.celery.broker_url
                wait_for(
                    lambda: self._worker_answers_ping(broker_url),
                    timeout=deadline - time.monotonic(),
                    what=f"Celery worker {self.worker_name}",
                    check=self._group.raise_if_exited,
                )
        except TimeoutError as error:
            raise TimeoutError(f"{error}; logs in {self.log_dir}") from None

    def _worker_answers_ping(self, broker_url: str) -> bool:
        # Celery's own control channel through the broker, as `celery inspect ping` does; the
        # API's health endpoint knows nothing of workers.
        from celery import Celery  # only the distributed shape needs Celery here

        with Celery(broker=broker_url) as app:
            replies = app.control.ping(destination=[self.worker_name], timeout=1.0)
        return any(self.worker_name in reply for reply in replies)

    def _create_pools(self) -> None:
        if not self.pools:
            return
        entities = [
            {"name": pool.name, "slots": pool.slots, "description": pool.description}
            for pool in self.pools
        ]
        action = {"action": "create", "entities": entities, "action_on_existence": "overwrite"}
        # On SQLite a write waits at most 5 s for a running task's (the reconciliation DAG's first
        # run starts as soon as it is parsed) and then answers 500 "Database error". The request
        # overwrites, so sending it again is safe. A longer busy timeout for the whole database
        # is no cure: Airflow's API server then stalls for its full length where two of its own
        # sessions write at once (tried: the demo's run listing timed out at 30 s).
        for attempt in range(1, _POOL_ATTEMPTS + 1):
            try:
                result = self.request("PATCH", "/api/v2/pools", json={"actions": [action]}).json()
                break
            except AirflowApiError as error:
                if error.status_code < 500 or attempt == _POOL_ATTEMPTS:
                    raise
                log.warning("creating pools answered %s; retrying", error.status_code)
                time.sleep(_POLL_SECONDS)
        if errors := result["create"]["errors"]:
            raise RuntimeError(f"creating pools failed: {errors}")


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        raise AirflowApiError(
            response.request.method, response.request.url.path, response.status_code, response.text
        )


def _api_path(*segments: str) -> str:
    # Run ids may hold ':' and '+' (the default run-id pattern allows them): quote every segment.
    return "/api/v2/" + "/".join(quote(segment, safe="") for segment in segments)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(text + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Run Airflow for the demo until Ctrl-C or SIGTERM, then stop every process."""
    parser = argparse.ArgumentParser(prog="python -m devenv.airflow", description=main.__doc__)
    parser.add_argument("--home", type=Path, default=PROJECT_ROOT / ".airflow")
    parser.add_argument("--dags", type=Path, default=PROJECT_ROOT / "dags")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--triggerer", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # unwinds through the finally below

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    airflow = LocalAirflow(args.home, args.dags, port=args.port, triggerer=args.triggerer)
    try:
        airflow.start()
        log.info("users: %s (passwords in devenv/airflow.py)", [u.username for u in airflow.users])
        while airflow.running:
            time.sleep(1.0)
        log.error("a component exited; its log is in %s", airflow.log_dir)
    except KeyboardInterrupt:
        pass
    finally:
        airflow.stop()


if __name__ == "__main__":
    main()
