"""Helpers shared by test packages: Connections to the sandbox, defined as deployments define them.

Hooks read ``AIRFLOW_CONN_<ID>`` JSON, so pointing them (or a whole DAG run) at the sandbox is a
matter of environment variables, set through ``monkeypatch`` so each test cleans up after itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devenv.sandbox import connection_env
from sandbox import defaults

# Retries as in production, minus the waiting.
FAST_RETRIES = {"max_attempts": 4, "backoff_base": 0.01, "backoff_max": 0.02}
# The client-side limiter is process-wide per settings; tests that do not test it get a budget
# of their own that other tests cannot use up.
UNLIMITED = {"rate_limit_calls": 100_000, "rate_limit_window_s": 1, "max_concurrent": 10}

# The real-time DAG's tasks, in order: contact fields stay inside ``sync_contacts``.
REALTIME_TASK_IDS = ("parse_events", "sync_contacts", "report")


def sandbox_airflow_env(sandbox_servers: Any) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` for a live Airflow pointed at the in-process sandbox.

    One definition for every live-Airflow test module: modules with equal env share one instance.
    """
    return connection_env(
        sandbox_servers.dataverse.url,
        sandbox_servers.marketo.url,
        dynamics_extra=FAST_RETRIES,
        marketo_extra={**FAST_RETRIES, **UNLIMITED},
    )


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    """Define a Connection the way deployments do: JSON in ``AIRFLOW_CONN_<ID>``."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "http", **fields})
    )


def connect_marketo(
    monkeypatch: pytest.MonkeyPatch, url: str, conn_id: str = "marketo_default", **extras: Any
) -> None:
    """``conn_id`` → the Marketo sandbox at ``url``, with fast retries and no client-side limit."""
    set_connection(
        monkeypatch,
        conn_id,
        host=url,
        login=defaults.MARKETO_CLIENT_ID,
        password=defaults.MARKETO_CLIENT_SECRET,
        extra={**FAST_RETRIES, **UNLIMITED, **extras},
    )


def connect_dynamics(
    monkeypatch: pytest.MonkeyPatch, url: str, conn_id: str = "dynamics365_default", **extras: Any
) -> None:
    """``conn_id`` → the Dataverse sandbox at ``url`` (Entra ID on the same URL), fast retries."""
    set_connection(
        monkeypatch,
        conn_id,
        host=url,
        login=defaults.DYNAMICS_CLIENT_ID,
        password=defaults.DYNAMICS_CLIENT_SECRET,
        extra={
            "tenant_id": defaults.TENANT_ID,
            "authority_host": url,
            **FAST_RETRIES,
            **extras,
        },
    )
