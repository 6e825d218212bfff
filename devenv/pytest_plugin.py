"""pytest fixtures for a live local Airflow (``devenv.airflow.LocalAirflow``).

Enable with ``pytest_plugins = ["devenv.pytest_plugin"]`` in the top-level ``tests/conftest.py``.
A test module chooses what Airflow loads by overriding the module-scoped input fixtures::

    @pytest.fixture(scope="module")
    def airflow_dags_folder() -> Path:
        return Path(__file__).parent / "dags"

    @pytest.fixture(scope="module")
    def airflow_env(sandbox_servers) -> dict[str, str]:
        return {"AIRFLOW_CONN_MARKETO_DEFAULT": json.dumps({...})}

    @pytest.fixture(scope="module")
    def airflow_dag_ids() -> list[str]:
        return ["dynamics_contact_to_marketo"]

    @pytest.mark.e2e
    def test_sync(airflow_live):
        run_id = airflow_live.trigger("dynamics_contact_to_marketo", {"contact_ids": [...]})

Airflow starts once per session and is shared by every module asking for the same DAG folder and
env; a module asking for different ones gets a fresh instance (the old one is stopped first, as
two would crowd a 2-core machine). ``airflow_live`` itself is module-scoped because pytest
resolves a session-scoped fixture's inputs once, from whichever module asks first: overrides
would be ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devenv.airflow import PROJECT_ROOT, LocalAirflow
from devenv.sandbox import LEDGER_ENV, ledger_env

if TYPE_CHECKING:
    from contact_sync.ledger import Ledger
    from devenv.relay import LocalRelay
    from devenv.sandbox import LocalSandbox
    from relay.settings import RelaySettings


def ledger_of(airflow: LocalAirflow) -> Ledger:
    """The sync ledger a live Airflow's ``report`` tasks write (from its connection env)."""
    from contact_sync.ledger import Ledger

    return Ledger(airflow.extra_env[LEDGER_ENV])


@pytest.fixture(autouse=True)
def contact_sync_ledger(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Ledger]:
    """Every test's own sync ledger (SQLite), as ``AIRFLOW_CONN_CONTACT_SYNC_LEDGER``.

    The DAGs' ``report`` tasks need one; in-process runs (``dag.test``) write here, and a test
    reads it through this fixture. A test may delete or replace the variable.
    """
    from contact_sync.ledger import Ledger

    path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    for name, value in ledger_env(path).items():
        monkeypatch.setenv(name, value)
    ledger = Ledger(f"sqlite:///{path}")
    try:
        yield ledger
    finally:
        ledger.close()


class AirflowInstances:
    """The session's one live Airflow, replaced only when a module needs another configuration."""

    def __init__(self, new_home: Callable[[], Path]) -> None:
        self._new_home = new_home
        self._current: LocalAirflow | None = None
        self._key: tuple[Path, tuple[tuple[str, str], ...]] | None = None

    def get(
        self, dags_folder: Path, env: Mapping[str, str], dag_ids: Iterable[str]
    ) -> LocalAirflow:
        """A running Airflow with this DAG folder and env, and ``dag_ids`` parsed."""
        key = (dags_folder.resolve(), tuple(sorted(env.items())))
        # A test may have stopped the shared instance on purpose (to prove stop() works).
        if self._current is not None and self._key == key and self._current.running:
            self._current.wait_for_dags(dag_ids)
            return self._current
        self.close()
        home = self._new_home()
        # The report tasks write the sync ledger: one in the instance's home unless the module
        # chose another (tests read it with ``ledger_of(airflow_live)``).
        env = {**ledger_env(home / "ledger.db"), **env}
        airflow = LocalAirflow(home, dags_folder, port=0, env=env)
        airflow.start(dag_ids)
        self._current, self._key = airflow, key
        return airflow

    def close(self) -> None:
        """Stop the current instance and fail loudly if any of its processes survived."""
        airflow, self._current, self._key = self._current, None, None
        if airflow is None:
            return
        airflow.stop()
        if leftovers := airflow.live_processes():
            raise RuntimeError(f"Airflow processes left after stop(): {[p.pid for p in leftovers]}")


@pytest.fixture(scope="session")
def airflow_instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowInstances]:
    """Holder of the session's live Airflow; stops it at session end."""
    instances = AirflowInstances(lambda: tmp_path_factory.mktemp("airflow-home"))
    try:
        yield instances
    finally:
        instances.close()


@pytest.fixture(scope="module")
def airflow_dags_folder() -> Path:
    """The DAG folder Airflow loads; the project's ``dags/`` unless a module overrides it."""
    return PROJECT_ROOT / "dags"


@pytest.fixture(scope="module")
def airflow_env() -> dict[str, str]:
    """Extra environment for every Airflow component, e.g. ``AIRFLOW_CONN_*`` connections."""
    return {}


@pytest.fixture(scope="module")
def airflow_dag_ids() -> list[str]:
    """DAGs that must be parsed before the module's tests run."""
    return []


@pytest.fixture(scope="module")
def airflow_live(
    airflow_instances: AirflowInstances,
    airflow_dags_folder: Path,
    airflow_env: dict[str, str],
    airflow_dag_ids: list[str],
) -> LocalAirflow:
    """A live Airflow (API server, scheduler, DAG processor) on a free loopback port."""
    return airflow_instances.get(airflow_dags_folder, airflow_env, airflow_dag_ids)


# -- the sandbox and the relay as processes (devenv.sandbox, devenv.relay) -------------------------
# Imported inside the fixtures: the relay pulls in the Airflow API client, which sessions that
# never ask for a relay should not pay for.


def _stop_all(services: Iterable[LocalSandbox | LocalRelay]) -> None:
    """Stop every service, then fail loudly if any of their processes survived."""
    stopped = list(services)
    for service in stopped:
        service.stop()
    if leftovers := [process.pid for service in stopped for process in service.leftovers()]:
        raise RuntimeError(f"sandbox/relay processes left after stop(): {leftovers}")


@pytest.fixture(scope="module")
def local_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSandbox]:
    """``python -m sandbox`` as a process on free ports for the module (state kept in memory);
    stopped at the end, and no process may be left."""
    from devenv.sandbox import LocalSandbox

    sandbox = LocalSandbox(tmp_path_factory.mktemp("sandbox")).start()
    try:
        yield sandbox
    finally:
        _stop_all([sandbox])


@pytest.fixture(scope="module")
def start_local_relay(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[RelaySettings], LocalRelay]]:
    """``start_local_relay(settings)``: ``python -m relay`` as a process (``settings.port == 0``
    picks a free port), logging to a temp dir; every relay started is stopped at the module's end,
    and no process may be left."""
    from devenv.relay import LocalRelay

    relays: list[LocalRelay] = []

    def start(settings: RelaySettings) -> LocalRelay:
        relay = LocalRelay(settings, tmp_path_factory.mktemp("relay"))
        relays.append(relay)
        return relay.start()

    try:
        yield start
    finally:
        _stop_all(relays)
