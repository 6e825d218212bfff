"""Relay configuration, read once from environment variables.

Every setting, its variable and its default:

``RELAY_AIRFLOW_URL``
    Base URL of the Airflow 3 API server, without ``/api/v2`` (default ``http://127.0.0.1:8080``).
``RELAY_AIRFLOW_USERNAME`` / ``RELAY_AIRFLOW_PASSWORD``
    Credentials for ``POST /auth/token`` (the simple auth manager's JWT). Secret: never logged.
``RELAY_DAG_ID``
    The DAG to trigger (default ``dynamics_contact_to_marketo``).
``RELAY_WEBHOOK_KEYS``
    Comma-separated keys accepted as ``?code=`` (Dataverse auth type ``WebhookKey``). Several keys
    let an operator rotate: add the new key, re-register the webhook, then drop the old one.
``RELAY_WEBHOOK_HEADER_NAME`` / ``RELAY_WEBHOOK_HEADER_VALUES``
    A header name and comma-separated accepted values (Dataverse auth type ``HttpHeader``).
    At least one ``?code=`` key or one header value is required: the relay never runs open.
``RELAY_ACCEPTED_ENTITIES`` / ``RELAY_ACCEPTED_MESSAGES``
    Comma-separated; other webhooks are answered 202 and ignored (default ``contact,account`` and
    ``Create,Update,Delete``); the DAG refuses, with the reason in its report, what it does not
    act on (``contact_sync.events.ACTED_ON``; an account Create "writes nothing"). A contact
    ``Delete`` is kept only when ``on_contact_removed`` in the mappings' ``settings.yaml`` (read at
    start, ``$CONTACT_SYNC_MAPPINGS_DIR``) is not ``ignore``, or ``RELAY_ACCEPT_CONTACT_DELETE``
    says so (true/false; it wins over the settings).
``RELAY_SPOOL_PATH``
    The SQLite spool file (default ``relay-spool.sqlite3`` in the working directory).
``RELAY_MAX_BODY_BYTES``
    Larger webhook bodies get 413 (default 1 MiB; Dataverse strips payloads over 256 KB itself).
``RELAY_BATCH_WINDOW_SECONDS`` / ``RELAY_BATCH_MAX_EVENTS``
    The forwarder triggers at most one partial batch per window, and sends at most this many
    events per DAG run (defaults 1 s and 300, the DAG's batch size). A full batch goes at once.
``RELAY_BATCH_LEADING_EDGE``
    ``true`` (default): an event after a quiet window is sent at once, and the events coming
    within the window after it go together at its end. ``false``: every partial batch waits the
    whole window after its oldest event, the relay's rule before (kept for comparisons).
``RELAY_BATCH_HOLD_ACTIVE_RUNS`` / ``RELAY_BATCH_MAX_WAIT_SECONDS``
    When the window has passed but the batch is not full, and Airflow already has this many runs of
    the DAG queued or running, another run would only compete with them for task slots: the batch
    keeps growing instead, up to the maximum wait after its oldest event (defaults 2 runs and 30 s;
    a wait at or below the window never holds).
``RELAY_BACKOFF_INITIAL_SECONDS`` / ``RELAY_BACKOFF_MAX_SECONDS``
    Retry delay after Airflow 5xx or connection errors: doubles from the initial value up to the
    cap (defaults 1 s and 60 s).
``RELAY_AIRFLOW_CONNECT_TIMEOUT_SECONDS`` / ``RELAY_AIRFLOW_READ_TIMEOUT_SECONDS``
    Timeouts of every Airflow request (defaults 5 s and 30 s).
``RELAY_TOKEN_REFRESH_MARGIN_SECONDS``
    Renew the JWT this long before its ``exp`` (default 60 s).
``RELAY_SENT_RETENTION_SECONDS``
    Delivered events stay in the spool this long, so a late redelivery is still recognised as a
    duplicate (default 86400 s; Dataverse retries once, within seconds).
``RELAY_AIRFLOW_PROBE_SECONDS``
    While idle, the forwarder checks Airflow's health endpoint this often, so ``/healthz`` knows
    whether Airflow is reachable before the next webhook (default 30 s).
``RELAY_HEALTH_MAX_PENDING_AGE_SECONDS``
    ``/healthz`` answers 503 when the oldest pending event is older than this (default 300 s).
``RELAY_HOST`` / ``RELAY_PORT``
    Where ``python -m relay`` listens (default ``127.0.0.1:8703``).
``RELAY_LOG_LEVEL``
    Logging level of ``python -m relay`` (default ``INFO``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8703


class SettingsError(ValueError):
    """A relay setting is missing or invalid; the message names the variable."""


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _flag(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise SettingsError(f"{name} must be true or false, not {value.strip()!r}")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class RelaySettings:
    """Everything the relay needs; build it with :meth:`from_env` or directly in tests."""

    airflow_url: str = "http://127.0.0.1:8080"
    # Secrets are excluded from repr so that a logged or printed settings object leaks nothing.
    airflow_username: str = field(default="", repr=False)
    airflow_password: str = field(default="", repr=False)
    dag_id: str = "dynamics_contact_to_marketo"
    webhook_keys: tuple[str, ...] = field(default=(), repr=False)
    webhook_header_name: str = ""
    webhook_header_values: tuple[str, ...] = field(default=(), repr=False)
    accepted_entities: tuple[str, ...] = ("contact", "account")
    accepted_messages: tuple[str, ...] = ("Create", "Update", "Delete")
    # from settings.yaml at start: a contact Delete matters only when on_contact_removed acts
    accept_contact_delete: bool = False
    spool_path: Path = Path("relay-spool.sqlite3")
    max_body_bytes: int = 1024 * 1024
    batch_window_seconds: float = 1.0
    batch_leading_edge: bool = True
    batch_max_events: int = 300
    batch_hold_active_runs: int = 2
    batch_max_wait_seconds: float = 30.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    airflow_connect_timeout_seconds: float = 5.0
    airflow_read_timeout_seconds: float = 30.0
    token_refresh_margin_seconds: float = 60.0
    sent_retention_seconds: float = 86400.0
    airflow_probe_seconds: float = 30.0
    health_max_pending_age_seconds: float = 300.0
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        # Dataverse logical names are lower case, and so are the events' entity names.
        object.__setattr__(
            self, "accepted_entities", tuple(name.lower() for name in self.accepted_entities)
        )
        if not self.webhook_keys and not self.webhook_header_values:
            raise SettingsError(
                "set RELAY_WEBHOOK_KEYS and/or RELAY_WEBHOOK_HEADER_VALUES: "
                "the relay does not accept unauthenticated webhooks"
            )
        if self.webhook_header_values and not self.webhook_header_name:
            raise SettingsError("RELAY_WEBHOOK_HEADER_VALUES needs RELAY_WEBHOOK_HEADER_NAME")
        if self.batch_max_events < 1:
            raise SettingsError("RELAY_BATCH_MAX_EVENTS must be at least 1")
        if self.batch_hold_active_runs < 1:
            raise SettingsError("RELAY_BATCH_HOLD_ACTIVE_RUNS must be at least 1")
        for variable, seconds in (
            ("RELAY_BATCH_WINDOW_SECONDS", self.batch_window_seconds),
            ("RELAY_BATCH_MAX_WAIT_SECONDS", self.batch_max_wait_seconds),
        ):
            if seconds < 0:
                raise SettingsError(f"{variable} must not be negative")
        if self.backoff_initial_seconds <= 0:
            raise SettingsError("RELAY_BACKOFF_INITIAL_SECONDS must be positive")
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise SettingsError("RELAY_BACKOFF_MAX_SECONDS is below RELAY_BACKOFF_INITIAL_SECONDS")

    @property
    def airflow_timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeout sent with every Airflow request."""
        return (self.airflow_connect_timeout_seconds, self.airflow_read_timeout_seconds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RelaySettings:
        """Read the ``RELAY_*`` variables described in this module's docstring."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}

        def number(name: str, attr: str, kind: type[int] | type[float]) -> None:
            if name in env:
                try:
                    values[attr] = kind(env[name])
                except ValueError as exc:
                    raise SettingsError(f"{name} is not a number") from exc

        for name, attr in (
            ("RELAY_AIRFLOW_URL", "airflow_url"),
            ("RELAY_AIRFLOW_USERNAME", "airflow_username"),
            ("RELAY_AIRFLOW_PASSWORD", "airflow_password"),
            ("RELAY_DAG_ID", "dag_id"),
            ("RELAY_WEBHOOK_HEADER_NAME", "webhook_header_name"),
            ("RELAY_HOST", "host"),
            ("RELAY_LOG_LEVEL", "log_level"),
        ):
            if name in env:
                values[attr] = env[name].strip()
        for name, attr in (
            ("RELAY_WEBHOOK_KEYS", "webhook_keys"),
            ("RELAY_WEBHOOK_HEADER_VALUES", "webhook_header_values"),
            ("RELAY_ACCEPTED_ENTITIES", "accepted_entities"),
            ("RELAY_ACCEPTED_MESSAGES", "accepted_messages"),
        ):
            if name in env:
                values[attr] = _csv(env[name])
        if "RELAY_SPOOL_PATH" in env:
            values["spool_path"] = Path(env["RELAY_SPOOL_PATH"])
        if "RELAY_BATCH_LEADING_EDGE" in env:
            values["batch_leading_edge"] = _flag(
                "RELAY_BATCH_LEADING_EDGE", env["RELAY_BATCH_LEADING_EDGE"]
            )
        number("RELAY_MAX_BODY_BYTES", "max_body_bytes", int)
        number("RELAY_BATCH_MAX_EVENTS", "batch_max_events", int)
        number("RELAY_BATCH_HOLD_ACTIVE_RUNS", "batch_hold_active_runs", int)
        number("RELAY_PORT", "port", int)
        for name, attr in (
            ("RELAY_BATCH_WINDOW_SECONDS", "batch_window_seconds"),
            ("RELAY_BATCH_MAX_WAIT_SECONDS", "batch_max_wait_seconds"),
            ("RELAY_BACKOFF_INITIAL_SECONDS", "backoff_initial_seconds"),
            ("RELAY_BACKOFF_MAX_SECONDS", "backoff_max_seconds"),
            ("RELAY_AIRFLOW_CONNECT_TIMEOUT_SECONDS", "airflow_connect_timeout_seconds"),
            ("RELAY_AIRFLOW_READ_TIMEOUT_SECONDS", "airflow_read_timeout_seconds"),
            ("RELAY_TOKEN_REFRESH_MARGIN_SECONDS", "token_refresh_margin_seconds"),
            ("RELAY_SENT_RETENTION_SECONDS", "sent_retention_seconds"),
            ("RELAY_AIRFLOW_PROBE_SECONDS", "airflow_probe_seconds"),
            ("RELAY_HEALTH_MAX_PENDING_AGE_SECONDS", "health_max_pending_age_seconds"),
        ):
            number(name, attr, float)
        if "RELAY_ACCEPT_CONTACT_DELETE" in env:  # an explicit choice wins over settings.yaml
            values["accept_contact_delete"] = _flag(
                "RELAY_ACCEPT_CONTACT_DELETE", env["RELAY_ACCEPT_CONTACT_DELETE"]
            )
        else:
            from contact_sync.mapping import load_mappings

            policy = load_mappings().settings.on_contact_removed
            values["accept_contact_delete"] = policy != "ignore"
        return cls(**values)  # type: ignore[arg-type]
