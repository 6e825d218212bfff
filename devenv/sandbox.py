"""The Dataverse (+ Entra ID) and Marketo sandboxes as a managed process: ``python -m sandbox``.

``LocalSandbox`` runs both services in one process on given or free loopback ports, waits until
both answer, and offers their admin clients and the Airflow Connections that point at them::

    with LocalSandbox(tmp / "logs", state_dir=tmp / "state") as sandbox:
        sandbox.marketo.add_field("dynamicsContactId")
        env = sandbox.connection_env()  # AIRFLOW_CONN_* for LocalAirflow(env=...)

With ``state_dir`` the contacts, leads, webhooks and settings survive a stop and start. The
in-process fixtures ``dataverse`` / ``marketo`` (``sandbox.testing``) stay the faster choice for
tests that need no separate process.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devenv.processes import free_port
from devenv.service import PROJECT_ROOT, LocalService
from sandbox import defaults
from sandbox.dataverse.admin import DataverseAdmin
from sandbox.marketo.admin import MarketoAdmin

# The hooks' default connection ids (DynamicsHook / MarketoHook.default_conn_name); not imported
# from them because that would load Airflow into every process that only wants a sandbox.
DYNAMICS_CONN_ID = "dynamics365_default"
MARKETO_CONN_ID = "marketo_default"


def connection_env(
    dataverse_url: str,
    marketo_url: str,
    *,
    dynamics_extra: Mapping[str, Any] | None = None,
    marketo_extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables (JSON) pointing the hooks' default connections at a sandbox.

    Entra ID lives on the Dataverse sandbox's URL, hence ``authority_host``. The extras are added
    to the connections' extras, e.g. faster retries for tests.
    """
    dynamics = {
        "conn_type": "http",
        "host": dataverse_url,
        "login": defaults.DYNAMICS_CLIENT_ID,
        "password": defaults.DYNAMICS_CLIENT_SECRET,
        "extra": {
            "tenant_id": defaults.TENANT_ID,
            "authority_host": dataverse_url,
            **(dynamics_extra or {}),
        },
    }
    marketo = {
        "conn_type": "http",
        "host": marketo_url,
        "login": defaults.MARKETO_CLIENT_ID,
        "password": defaults.MARKETO_CLIENT_SECRET,
        "extra": dict(marketo_extra or {}),
    }
    return {
        f"AIRFLOW_CONN_{DYNAMICS_CONN_ID.upper()}": json.dumps(dynamics),
        f"AIRFLOW_CONN_{MARKETO_CONN_ID.upper()}": json.dumps(marketo),
    }


# The sync ledger's connection id (contact_sync.ledger.LEDGER_CONN_ID), for the same reason.
LEDGER_CONN_ID = "contact_sync_ledger"
LEDGER_ENV = f"AIRFLOW_CONN_{LEDGER_CONN_ID.upper()}"


def ledger_env(database: Path | str) -> dict[str, str]:
    """``AIRFLOW_CONN_CONTACT_SYNC_LEDGER``: the sync ledger in a SQLite file (made absolute, so
    every Airflow component opens the same file), or a ``postgresql://`` URI as given."""
    text = str(database)
    if text.startswith(("postgresql://", "postgres://")):
        return {LEDGER_ENV: text}
    return {LEDGER_ENV: f"sqlite:///{Path(database).resolve()}"}


class LocalSandbox(LocalService):
    """``python -m sandbox`` on loopback; a port of 0 picks a free one (tests), the demo passes
    the defaults (8701, 8702) and gets ``PortInUseError`` when one is taken."""

    # `python -m sandbox` saves --state-dir in a `finally` that only SIGINT reaches: on SIGTERM
    # uvicorn shuts its servers down and then re-raises the signal, which ends the process first.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        log_dir: Path,
        *,
        state_dir: Path | None = None,
        host: str = defaults.HOST,
        dataverse_port: int = 0,
        marketo_port: int = 0,
    ) -> None:
        super().__init__("sandbox", log_dir, env_prefix="SANDBOX_", pythonpath=[PROJECT_ROOT])
        self.state_dir = None if state_dir is None else Path(state_dir).resolve()
        self.host = host
        self.dataverse_port = dataverse_port or free_port()
        self.marketo_port = marketo_port or free_port()
        self.dataverse_url = f"http://{host}:{self.dataverse_port}"
        self.marketo_url = f"http://{host}:{self.marketo_port}"
        self.dataverse = DataverseAdmin(self.dataverse_url)
        self.marketo = MarketoAdmin(self.marketo_url)

    def connection_env(
        self,
        *,
        dynamics_extra: Mapping[str, Any] | None = None,
        marketo_extra: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables pointing Airflow's hooks at this sandbox."""
        return connection_env(
            self.dataverse_url,
            self.marketo_url,
            dynamics_extra=dynamics_extra,
            marketo_extra=marketo_extra,
        )

    def _argv(self) -> list[str]:
        argv = [
            "sandbox",
            "--host",
            self.host,
            "--dataverse-port",
            str(self.dataverse_port),
            "--marketo-port",
            str(self.marketo_port),
        ]
        if self.state_dir is not None:
            argv += ["--state-dir", str(self.state_dir)]
        return argv

    def _service_env(self) -> dict[str, str]:
        return {}  # everything is on the command line

    def _ports(self) -> list[tuple[str, int]]:
        return [(self.host, self.dataverse_port), (self.host, self.marketo_port)]

    def _health_urls(self) -> list[str]:
        # The admin API answers without a token and is never counted or rate-limited.
        return [f"{url}/_sandbox/settings" for url in (self.dataverse_url, self.marketo_url)]
