"""The product running as the demo runs it, for the benchmarks that need a live Airflow.

``running_stack(name)`` starts ``python -m sandbox`` (Dataverse + Entra ID, Marketo, with their
documented limits), Airflow 3 (API server, scheduler, DAG processor; LocalExecutor on SQLite, or
the ``database_url`` given; the demo's parallelism of 4; the settings of
``deploy/airflow-tuning.env`` or, with ``tuning={}``, Airflow's stock ones) loading the real-time
DAG and the no-op floors of ``bench/dags/`` (or the DAG files given), and then relays on demand,
each wired by a Dataverse webhook (auth type WebhookKey) as an operator wires it. Every process
is a process group of its own, stopped when the block ends (Ctrl-C and SIGTERM included);
leftovers are an error.

State and logs go to ``.bench/<name>/``, emptied at each start and kept afterwards for a look.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import requests

from bench import PROJECT_ROOT
from bench.harness import calls_between
from devenv.airflow import DEFAULT_RELAY, LocalAirflow
from devenv.demo import CONTACT_ID_FIELD, PARALLELISM, SYNC_DAG_ID
from devenv.distributed import LocalPostgres
from devenv.relay import LocalRelay
from devenv.sandbox import LocalSandbox, ledger_env
from devenv.session import deaf_to_stop_signals, reset_state_dir, sigterm_as_exit
from relay.settings import RelaySettings
from sandbox.dataverse.admin import DataverseAdmin

# The recipe-shaped floor: the seven tasks the stock reference runs.
FLOOR_DAG_ID = "bench_orchestration_floor"
# The product-shaped floor (parse_events → sync_contacts → report, doing nothing), when present.
PRODUCT_FLOOR_DAG_ID = "bench_product_floor"
BENCH_DAGS = PROJECT_ROOT / "bench" / "dags"
DAG_FILES = (
    PROJECT_ROOT / "dags" / f"{SYNC_DAG_ID}.py",
    BENCH_DAGS / f"{FLOOR_DAG_ID}.py",
)
WORK_ROOT = PROJECT_ROOT / ".bench"
_OWN_WRITES = "POST /api/data/"
# Python's bytecode cache on, as in a deployment: pip compiles the packages it installs (the
# official Airflow image's included) and Python writes the cache of the rest on first import. A
# shell with PYTHONDONTWRITEBYTECODE set (some CI and container images set it) would otherwise
# make every task process and every DAG file parse compile Airflow's, the hooks' and their
# libraries' sources again: seconds of CPU per task on this machine. An empty value turns it off
# (https://docs.python.org/3/using/cmdline.html#envvar-PYTHONDONTWRITEBYTECODE).
BYTECODE_CACHE = {"PYTHONDONTWRITEBYTECODE": ""}
# How often the DAG processor looks for new files and re-parses known ones: Airflow's stock
# values, which docker-compose (the deployment) runs, instead of the demo's 2 s / 10 s (edited
# DAG files show within seconds there). Re-parsing the two DAG files every 10 s cost ~5% of a
# core while idle (measured: the DAG processor 10.7% → 5.1% at 30 s), a price no deployment pays.
# https://airflow.apache.org/docs/apache-airflow/stable/configurations-ref.html#min-file-process-interval
DEPLOYED_DAG_PARSING = {
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
}
# Generous: on a 2-core machine shared with other work, Airflow's first start can take minutes.
_START_TIMEOUT_S = 600.0
_RELAY_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Created:
    """A record created through the Web API, and when (epoch seconds, before the request)."""

    id: str
    at: float


class LiveStack:
    """Sandbox, Airflow and relays of one benchmark; ``stop()`` ends them all."""

    def __init__(
        self,
        work_dir: Path,
        *,
        dag_files: Sequence[Path] = DAG_FILES,
        tuning: Mapping[str, str] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.log_dir = work_dir / "logs"
        self.sandbox = LocalSandbox(self.log_dir)
        self.dag_ids = [path.stem for path in dag_files]  # each file holds the DAG it names
        self.airflow = LocalAirflow(
            work_dir / "airflow",
            _dags_folder(work_dir / "dags", dag_files),
            port=0,
            # The hooks' production settings, and the sync ledger the report task writes.
            env={
                **self.sandbox.connection_env(),
                **ledger_env(work_dir / "ledger.db"),
                **BYTECODE_CACHE,
                **DEPLOYED_DAG_PARSING,
            },
            parallelism=PARALLELISM,
            tuning=tuning,
            database_url=database_url,
        )
        self.relays: list[LocalRelay] = []  # running
        self._stopped_relays: list[LocalRelay] = []
        self._webhook_key = secrets.token_urlsafe(24)
        self.warm = False  # a benchmark's warm-up run went through (Airflow keeps it over resets)

    def start(self) -> None:
        self.sandbox.start()
        self.airflow.start(self.dag_ids, timeout=_START_TIMEOUT_S)
        self.prepare_marketo()

    def prepare_marketo(self) -> None:
        """The custom field the contact map writes (an empty sandbox lacks it)."""
        self.sandbox.marketo.add_field(CONTACT_ID_FIELD)

    def start_relay(
        self, name: str, *, dag_id: str = SYNC_DAG_ID, entity: str = "contact", **settings: Any
    ) -> LocalRelay:
        """A relay with production settings (but for ``settings``) triggering ``dag_id``, and a
        Dataverse webhook on Create of ``entity`` calling it."""
        relay = LocalRelay(
            RelaySettings(
                airflow_url=self.airflow.url,
                airflow_username=DEFAULT_RELAY.username,
                airflow_password=DEFAULT_RELAY.password,
                dag_id=dag_id,
                accepted_entities=(entity,),
                webhook_keys=(self._webhook_key,),
                spool_path=self.work_dir / f"{name}-spool.sqlite3",
                port=0,
                **settings,
            ),
            self.log_dir / name,
        )
        self.relays.append(relay)
        relay.start(timeout=_RELAY_START_TIMEOUT_S)
        self.sandbox.dataverse.register_webhook(
            relay.webhook_url, "WebhookKey", self._webhook_key, messages=("Create",), entity=entity
        )
        return relay

    def reset(self) -> None:
        """Stop the relays, empty both sandboxes (records, webhook registrations, call counters)
        and prepare Marketo again; Airflow keeps its runs."""
        self._stop_relays()
        self.sandbox.dataverse.reset()
        self.sandbox.marketo.reset()
        self.prepare_marketo()

    def stop(self) -> None:
        """The relays first (they call Airflow), then Airflow, then the sandbox."""
        self._stop_relays()
        self.airflow.stop()
        self.sandbox.stop()

    def leftovers(self) -> list[int]:
        """Pids of processes this stack started that are still alive."""
        found = [*self.airflow.live_processes(), *self.sandbox.leftovers()]
        relays = [*self.relays, *self._stopped_relays]
        found += [process for relay in relays for process in relay.leftovers()]
        return sorted(process.pid for process in found)

    def api_calls(self) -> dict[str, dict[str, Any]]:
        """The sandboxes' own count of API calls so far, per service."""
        return {
            "dataverse": self.sandbox.dataverse.calls(),
            "marketo": self.sandbox.marketo.calls(),
        }

    def check_running(self) -> None:
        """Fail at once, not at a timeout, when a process of the stack died."""
        if not self.airflow.running:
            raise RuntimeError(f"an Airflow component exited; logs in {self.airflow.log_dir}")
        for service in (self.sandbox, *self.relays):
            if not service.running:
                raise RuntimeError(f"the {service.name} exited; its log: {service.log_path}")

    def _stop_relays(self) -> None:
        for relay in self.relays:
            relay.stop()
        self._stopped_relays += self.relays
        self.relays = []


@contextlib.contextmanager
def running_stack(name: str, *, postgres: bool = False, **stack: Any) -> Iterator[LiveStack]:
    """A started ``LiveStack(**stack)`` in ``.bench/<name>/`` until the block ends; with
    ``postgres``, Airflow's metadata database on a throwaway PostgreSQL server, as deployed
    (SQLite takes one writer at a time: under a bulk import or after an API server outage the
    scheduler can exit on "database is locked")."""
    work_dir = WORK_ROOT / name
    reset_state_dir(work_dir, ".bench-state", "`python -m bench`")
    database = LocalPostgres(log_dir=work_dir / "postgres") if postgres else None
    print(f"  starting the sandbox, Airflow and relays (state and logs in {work_dir}) ...")
    try:
        with sigterm_as_exit():
            began = time.monotonic()
            if database is not None:
                database.start()
                stack["database_url"] = database.url
            live = LiveStack(work_dir, **stack)
            try:
                live.start()
                print(f"  up in {time.monotonic() - began:.0f} s", flush=True)
                yield live
            finally:
                with deaf_to_stop_signals():
                    live.stop()
                if left := live.leftovers():
                    raise RuntimeError(f"processes left after the benchmark: {left}")
    finally:
        if database is not None:
            with deaf_to_stop_signals():
                database.stop()


def contact_bodies(tag: str, count: int) -> list[dict[str, str]]:
    """``count`` distinct contacts for the Web API, named and addressed after ``tag``."""
    return [
        {
            "firstname": tag.title(),
            "lastname": f"Contact {n}",
            "emailaddress1": f"{tag}-{n}@example.com",
        }
        for n in range(count)
    ]


class WebApiWriter:
    """Creates records through the Dataverse Web API as a bulk import does: several requests at
    once, each on its own connection; every Create fires the registered webhooks."""

    def __init__(self, dataverse: DataverseAdmin, workers: int = 8) -> None:
        self.dataverse = dataverse
        self.workers = workers
        self._token = dataverse.access_token()  # one token, before anything is measured
        self._local = threading.local()

    def create(self, entity_set: str, body: Mapping[str, Any]) -> Created:
        """One record; its id (lower case, as the webhooks carry it) and when it was asked for."""
        at = time.time()
        response = self._session().post(
            f"{self.dataverse.api_url}/{entity_set}",
            json=dict(body),
            headers={"Prefer": "return=representation"},
            timeout=30,
        )
        response.raise_for_status()
        id_column = "contactid" if entity_set == "contacts" else "accountid"
        return Created(str(response.json()[id_column]).lower(), at)

    def create_many(
        self, entity_set: str, bodies: Sequence[Mapping[str, Any]], *, over_seconds: float = 0.0
    ) -> list[Created]:
        """``bodies`` created ``workers`` at a time, in order; with ``over_seconds``, paced evenly
        over that long (a slow import) instead of as fast as the service answers."""
        began = time.time()
        gap = over_seconds / len(bodies) if bodies else 0.0

        def create(numbered: tuple[int, Mapping[str, Any]]) -> Created:
            number, body = numbered
            time.sleep(max(0.0, began + number * gap - time.time()))
            return self.create(entity_set, body)

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(create, enumerate(bodies)))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self.dataverse.api_session(self._token)
        return session


def sync_calls(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The calls the sandboxes counted between two ``LiveStack.api_calls()``, less the
    benchmark's own Creates in the Web API (answered 201: the sync never writes to Dataverse)."""
    calls = {service: calls_between(before[service], after[service]) for service in before}
    dataverse = calls["dataverse"]
    for endpoint in [e for e in dataverse["by_endpoint"] if e.startswith(_OWN_WRITES)]:
        count = dataverse["by_endpoint"].pop(endpoint)
        dataverse["total"] -= count
        dataverse["answers"]["201"] -= count
        if not dataverse["answers"]["201"]:
            del dataverse["answers"]["201"]
    return calls


def timestamp(value: str) -> float:
    """An Airflow API date (ISO 8601, UTC) as epoch seconds."""
    return datetime.fromisoformat(value).timestamp()


def poll(
    condition: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    every: float,
    check: Callable[[], None] | None = None,
) -> Any:
    """Call ``condition`` every ``every`` seconds until it returns something truthy; that."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return result


def cpu_seconds(processes: Sequence[psutil.Process]) -> dict[int, float]:
    """CPU seconds (user + system) each live process has used so far, by pid, with those of its
    children that ended and were waited for: the DAG processor parses each file in a child that
    lives a fraction of a second, which a sample of the live processes alone would never see."""
    used: dict[int, float] = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            used[process.pid] = (
                times.user + times.system + times.children_user + times.children_system
            )
    return used


@dataclass(frozen=True)
class IdleCpu:
    """Share of one core used while idle: all of Airflow, and per component (its children and
    task processes included: each component is a session of its own)."""

    total: float
    by_component: dict[str, float]


def component_of(process: psutil.Process, components: Mapping[str, int]) -> str:
    """The Airflow component (name → pid, each its session's leader) ``process`` belongs to:
    by session, else by its nearest ancestor that is a component; ``other`` when neither."""
    by_pid = {pid: name for name, pid in components.items()}
    with contextlib.suppress(psutil.Error, ProcessLookupError):
        if (sid := os.getsid(process.pid)) in by_pid:
            return by_pid[sid]
        for ancestor in process.parents():
            if ancestor.pid in by_pid:
                return by_pid[ancestor.pid]
    return "other"


def cpu_by_component(
    before: Mapping[int, float], after: Mapping[int, float], components: Mapping[int, str]
) -> dict[str, float]:
    """CPU seconds used between two ``cpu_seconds`` samples, summed per component (``components``:
    pid → component). A process that started meanwhile counts from 0; one that ended is lost
    unless its parent waited for it (then its parent's count has it)."""
    used: dict[str, float] = {}
    for pid, total in after.items():
        name = components.get(pid, "other")
        used[name] = used.get(name, 0.0) + max(0.0, total - before.get(pid, 0.0))
    return used


def idle_cpu(airflow: LocalAirflow, seconds: float) -> IdleCpu:
    """Share of one core Airflow's processes (components, their children) use over ``seconds``
    with no run to do: what a tight scheduler loop costs while nothing happens. Call it after
    every run ended."""
    before = cpu_seconds(airflow.live_processes())
    began = time.monotonic()
    time.sleep(seconds)
    processes = airflow.live_processes()
    after = cpu_seconds(processes)
    elapsed = time.monotonic() - began
    owners = {process.pid: component_of(process, airflow.pids) for process in processes}
    used = cpu_by_component(before, after, owners)
    shares = {name: value / elapsed for name, value in sorted(used.items())}
    return IdleCpu(sum(shares.values()), shares)


def _dags_folder(folder: Path, dag_files: Sequence[Path]) -> Path:
    """A DAG folder holding (links to) ``dag_files``, and nothing else."""
    folder.mkdir(parents=True)
    for path in dag_files:
        (folder / path.name).symlink_to(path)
    return folder
