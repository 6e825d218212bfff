"""The webhook relay as a managed process: ``python -m relay`` configured by ``RelaySettings``.

``LocalRelay`` turns a ``RelaySettings`` into the ``RELAY_*`` variables ``python -m relay`` reads,
runs it with ``plugins/`` on ``PYTHONPATH`` (the relay parses events with ``contact_sync.events``,
as the DAG does), and waits for ``/healthz``::

    settings = RelaySettings(
        airflow_url=airflow.url,
        airflow_username=DEFAULT_RELAY.username,
        airflow_password=DEFAULT_RELAY.password,
        webhook_keys=("local-webhook-key",),
        spool_path=home / "spool.sqlite3",
        port=0,  # a free port; the demo uses the default 8703
    )
    with LocalRelay(settings, home) as relay:
        dataverse.register_webhook(relay.webhook_url, "WebhookKey", "local-webhook-key")

``kill()`` SIGKILLs it (a crash: no shutdown code runs); ``restart()`` starts it again on the same
spool and port, so whatever it had accepted is forwarded after the restart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx

from devenv.processes import free_port
from devenv.service import PROJECT_ROOT, LocalService
from relay.app import WEBHOOK_PATH
from relay.settings import RelaySettings

_ENV_PREFIX = "RELAY_"


def settings_env(settings: RelaySettings) -> dict[str, str]:
    """The ``RELAY_*`` variables that make ``RelaySettings.from_env`` build ``settings`` again.

    Every field's variable is its name upper-cased after ``RELAY_`` (see ``relay/settings.py``);
    the round trip is checked, so a field breaking that rule fails here rather than being dropped
    silently.
    """
    env = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        env[f"{_ENV_PREFIX}{field.name.upper()}"] = text
    parsed = RelaySettings.from_env(env)
    if parsed != settings:
        differing = [
            field.name
            for field in dataclasses.fields(settings)
            if getattr(parsed, field.name) != getattr(settings, field.name)
        ]
        raise ValueError(f"these relay settings do not survive the environment: {differing}")
    return env


class LocalRelay(LocalService):
    """``python -m relay`` with ``settings``; ``settings.port == 0`` picks a free port.

    The log goes to ``<log_dir>/relay.log``. A relative ``spool_path`` is taken from the caller's
    working directory (the process runs in ``log_dir``).
    """

    def __init__(self, settings: RelaySettings, log_dir: Path) -> None:
        super().__init__(
            "relay",
            log_dir,
            env_prefix=_ENV_PREFIX,
            pythonpath=[PROJECT_ROOT, PROJECT_ROOT / "plugins"],
        )
        self.settings = dataclasses.replace(
            settings,
            port=settings.port or free_port(),
            spool_path=Path(settings.spool_path).resolve(),
        )
        self.url = f"http://{self.settings.host}:{self.settings.port}"
        self.webhook_url = f"{self.url}{WEBHOOK_PATH}"

    def health(self) -> dict[str, Any]:
        """``/healthz`` as JSON, whatever its status (503 carries the same fields)."""
        response = httpx.get(f"{self.url}/healthz", timeout=10.0)
        return response.json()

    def _argv(self) -> list[str]:
        return ["relay"]

    def _service_env(self) -> dict[str, str]:
        return settings_env(self.settings)

    def _ports(self) -> list[tuple[str, int]]:
        return [(self.settings.host, self.settings.port)]

    def _health_urls(self) -> list[str]:
        return [f"{self.url}/healthz"]

    def _is_up(self, response: httpx.Response) -> bool:
        # 503 means "up, but events wait too long" (e.g. Airflow still down after a restart):
        # the relay is serving, which is all start() waits for.
        return "spool_pending" in response.json()
