"""The relay's own limits: what a flood of webhooks or many slow clients may cost it, at most.

Read from environment variables with the same rules as :mod:`relay.settings`. A group of their
own because they bound the HTTP server (uvicorn's protocol and connection limits) and the spool's
disk, not what the relay does with an event:

``RELAY_MAX_CONNECTIONS``
    Open connections plus requests in progress; past it uvicorn answers 503 at once (its
    ``limit_concurrency``; default 100). With ``RELAY_MAX_BODY_BYTES`` it bounds the memory held
    by request bodies: 100 x 1 MiB.
``RELAY_MAX_HEADER_BYTES``
    Request line plus headers; larger gets uvicorn's 400 before the app sees it (h11's
    ``max_incomplete_event_size``; default 16 KiB, Dataverse sends under 2 KiB).
``RELAY_HEADER_TIMEOUT_SECONDS``
    A connection must deliver a complete request line and headers within this long of opening
    (or of its previous response), else it is closed: slow-header clients ("slowloris") cannot
    hold the connection slots (default 10 s).
``RELAY_BODY_TIMEOUT_SECONDS``
    The whole body must arrive within this long, else 408 (default 30 s; Dataverse sends at once
    and waits 60 s for the answer).
``RELAY_KEEP_ALIVE_SECONDS``
    An idle keep-alive connection is closed after this long (default 5 s, uvicorn's).
``RELAY_SPOOL_ALARM_BYTES``
    ``/healthz`` turns unhealthy (503, ``spool_alarm: true``) and ``relay_spool_alarm`` is 1 once
    the spool's live data passes this (default 256 MiB: ~1 million events of ids).
``RELAY_SPOOL_MAX_BYTES``
    Past this, webhooks are refused with 503 before their body is read (Dataverse retries 503
    once, then the system job shows the failure), rather than filling the disk (default 1 GiB).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from relay.settings import SettingsError

_MIB = 1024 * 1024


@dataclass(frozen=True)
class RelayLimits:
    """Bounds on connections, headers, slow clients and the spool; see the module docstring."""

    max_connections: int = 100
    max_header_bytes: int = 16 * 1024
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 5.0
    spool_alarm_bytes: int = 256 * _MIB
    spool_max_bytes: int = 1024 * _MIB

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) <= 0:
                raise SettingsError(f"{_variable(field.name)} must be positive")
        if self.spool_max_bytes < self.spool_alarm_bytes:
            raise SettingsError("RELAY_SPOOL_MAX_BYTES is below RELAY_SPOOL_ALARM_BYTES")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RelayLimits:
        """Read the ``RELAY_*`` variables of the module docstring; unset ones keep the default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            name = _variable(field.name)
            if name in env:
                kind = int if field.type == "int" else float
                try:
                    values[field.name] = kind(env[name])
                except ValueError:
                    raise SettingsError(f"{name} is not a number") from None
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables that make :meth:`from_env` build these limits again."""
        return {_variable(field.name): str(getattr(self, field.name)) for field in fields(self)}

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``."""
        header_timeout = self.header_timeout_seconds

        class Protocol(_HeaderTimeoutH11Protocol):
            timeout_headers = header_timeout

        return {
            # h11, not httptools: the header size limit below is h11's, and only this protocol
            # class carries the header timeout.
            "http": Protocol,
            "h11_max_incomplete_event_size": self.max_header_bytes,
            "limit_concurrency": self.max_connections,
            "timeout_keep_alive": self.keep_alive_seconds,
        }


def _variable(field_name: str) -> str:
    return f"RELAY_{field_name.upper()}"


class _HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not complete their headers in time.

    uvicorn times out idle keep-alive connections but not a request whose headers trickle in: any
    byte received cancels the keep-alive timer. Here a timer runs from the connection's start (and
    from each response) until h11 has parsed a whole request head.
    """

    timeout_headers: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def handle_events(self) -> None:
        super().handle_events()
        # Past IDLE, h11 has the request head: the body is the app's to time (body timeout).
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            self._header_timer.cancel()
            self._header_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.timeout_headers, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.logger.warning("closing a connection whose request headers did not arrive in time")
            self.transport.close()
