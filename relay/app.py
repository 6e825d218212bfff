"""The relay's ASGI app: receive Dataverse webhooks, store them, answer fast.

``POST /webhooks/dynamics365``
    401 on a wrong or missing key (nothing read or stored), 413 over the size limit, 400 when the
    body is not JSON, is nested too deeply or is not a ``RemoteExecutionContext``, 202 ``ignored``
    for other entities or messages (compared case-insensitively, as the DAG does), 202
    ``accepted`` once the event is committed to the spool (also for a redelivery, which is stored
    once). 431 when the request line and headers are over their limit, 408 when the body does not
    arrive in time. 503 if the spool cannot be written, and ``spool_full`` (without reading the
    body) past ``RELAY_SPOOL_MAX_BYTES`` (see :mod:`relay.limits`): Dataverse retries 503 once.
``GET /healthz``
    Spool depth and size, oldest pending age, failed events, whether Airflow answered last time.
    503 when the spool is unreadable, past its size alarm, or the oldest pending event is older
    than the configured limit (Airflow has been unreachable or refusing for too long); an
    unreachable Airflow alone is not a reason, because the relay still accepts and keeps webhooks.
``GET /metrics``
    Prometheus text (see :mod:`relay.metrics`).

Logs carry ids and counts only: webhook bodies may hold names and emails.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from contact_sync.events import EventError, event_from_webhook
from relay.airflow import AirflowClient
from relay.forwarder import Forwarder
from relay.limits import RelayLimits
from relay.metrics import Metrics
from relay.settings import RelaySettings
from relay.spool import Spool, body_digest

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/dynamics365"
_SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


def _matches_any(candidate: str | None, secrets: tuple[str, ...]) -> bool:
    """Constant-time check of ``candidate`` against every configured secret.

    Every secret is compared, without stopping at a match, so the timing does not reveal which
    key (old or new during a rotation) matched.
    """
    if candidate is None:
        return False
    given = candidate.encode()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given, secret.encode())
    return matched


def _authorized(request: Request, settings: RelaySettings) -> bool:
    by_code = _matches_any(request.query_params.get("code"), settings.webhook_keys)
    by_header = bool(settings.webhook_header_name) and _matches_any(
        request.headers.get(settings.webhook_header_name), settings.webhook_header_values
    )
    return by_code or by_header


async def _read_limited(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refusing early (by Content-Length) or while streaming once it passes ``limit``,
    or once ``timeout`` seconds passed before its end (a client trickling bytes holds a slot)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise _BodyTooSlow from None
    return b"".join(chunks)


def _reply(status: int, outcome: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": outcome, **extra}, status_code=status)


class Relay:
    """The relay's parts, built once per app; handlers are its methods."""

    def __init__(self, settings: RelaySettings, limits: RelayLimits) -> None:
        self.settings = settings
        self.limits = limits
        # Compared as contact_sync.events.refusal_reason does, so the relay drops nothing the DAG
        # would sync.
        self._accepted_messages = frozenset(m.casefold() for m in settings.accepted_messages)
        self.metrics = Metrics()
        self.spool = Spool(settings.spool_path)
        self.airflow = AirflowClient(settings)
        self.forwarder = Forwarder(settings, self.spool, self.metrics, self.airflow)

    def _reject(self, status: int, reason: str, message: str) -> JSONResponse:
        self.metrics.inc("relay_webhooks_rejected_total", label=("reason", reason))
        log.warning("webhook rejected (%s): %s", reason, message)
        return _reply(status, "rejected", reason=reason, message=message)

    async def webhook(self, request: Request) -> Response:
        self.metrics.inc("relay_webhooks_received_total")
        if not _authorized(request, self.settings):
            # Says nothing about which part was wrong, and the body is never read.
            return self._reject(401, "unauthorized", "missing or wrong webhook key")
        head = len(request.url.query) + sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
        if head > self.limits.max_header_bytes:
            # uvicorn's h11 limit refuses a head that is still incomplete past the size; one that
            # arrived whole in a single read reaches the app, and is refused here.
            limit = self.limits.max_header_bytes
            return self._reject(431, "headers_too_large", f"the headers are over {limit} bytes")
        try:
            spool_bytes = await asyncio.to_thread(self.spool.live_bytes)
        except sqlite3.Error:
            log.exception("could not read the spool's size")
            return _reply(503, "unavailable", message="the spool could not be read")
        if spool_bytes >= self.limits.spool_max_bytes:
            # Refused before the body is read: a flood while Airflow is away cannot fill the disk.
            # 503 is one Dataverse retries; the events it gives up on are in its system jobs.
            self.metrics.inc("relay_webhooks_rejected_total", label=("reason", "spool_full"))
            log.warning("webhook refused: the spool is over RELAY_SPOOL_MAX_BYTES")
            return _reply(503, "unavailable", reason="spool_full", message="the spool is full")
        try:
            raw = await _read_limited(
                request, self.settings.max_body_bytes, self.limits.body_timeout_seconds
            )
        except _BodyTooLarge:
            limit = self.settings.max_body_bytes
            return self._reject(413, "too_large", f"the body is over {limit} bytes")
        except _BodyTooSlow:
            seconds = self.limits.body_timeout_seconds
            return self._reject(408, "too_slow", f"the body did not arrive within {seconds:g} s")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            message = f"the body is not JSON: {type(exc).__name__}"
            return self._reject(400, "malformed_json", message)
        except RecursionError:
            # The decoder recurses once per array/object level; a RemoteExecutionContext is a few
            # levels deep, so a body nested past Python's recursion limit is not one.
            return self._reject(400, "too_deep", "the body's JSON is nested too deeply")
        try:
            event = event_from_webhook(body)
        except EventError as exc:
            return self._reject(400, "not_a_context", str(exc))

        stripped = _SIZE_EXCEEDED_HEADER in request.headers
        delete_ignored = not self.settings.accept_contact_delete and (
            event.entity,
            event.message.casefold(),
        ) == ("contact", "delete")
        if (
            event.entity not in self.settings.accepted_entities
            or event.message.casefold() not in self._accepted_messages
            or delete_ignored
        ):
            self.metrics.inc("relay_webhooks_ignored_total")
            log.info("webhook ignored: %s %s id=%s", event.entity, event.message, event.id)
            return _reply(202, "ignored")
        try:
            # Without an operation id the body itself identifies the delivery (spool.dedupe_key).
            digest = None if event.operation_id else body_digest(body)
        except RecursionError:
            # The encoder's frames are deeper than the decoder's: a body json.loads just managed.
            return self._reject(400, "too_deep", "the body's JSON is nested too deeply")
        try:
            stored = await asyncio.to_thread(self.spool.add, event, digest=digest)
        except sqlite3.Error:
            # 503 is one of the three statuses Dataverse retries (once).
            log.exception("could not store webhook %s id=%s", event.message, event.id)
            return _reply(503, "unavailable", message="the spool could not be written")
        if not stored:
            self.metrics.inc("relay_webhooks_duplicate_total")
            log.info("webhook redelivered, already stored: operation=%s", event.operation_id)
            return _reply(202, "duplicate")
        self.metrics.inc("relay_webhooks_accepted_total")
        self.forwarder.notify()
        log.info(
            "webhook accepted: %s %s id=%s operation=%s%s",
            event.entity,
            event.message,
            event.id,
            event.operation_id,
            " (stripped payload)" if stripped else "",
        )
        return _reply(202, "accepted")

    async def healthz(self, request: Request) -> Response:
        try:
            stats = await asyncio.to_thread(self.spool.stats)
            failed = await asyncio.to_thread(self.spool.failed_batches)
        except sqlite3.Error:
            log.exception("spool unreadable")
            return _reply(503, "unhealthy", message="the spool is unreadable")
        oldest_age = (
            None
            if stats.oldest_pending_received_at is None
            else max(0.0, time.time() - stats.oldest_pending_received_at)
        )
        stale = oldest_age is not None and oldest_age > self.settings.health_max_pending_age_seconds
        alarm = stats.live_bytes >= self.limits.spool_alarm_bytes
        return JSONResponse(
            {
                "status": "unhealthy" if stale or alarm else "ok",
                "spool_pending": stats.pending,
                "oldest_pending_age_seconds": oldest_age,
                "failed_events": stats.failed,
                "failed_batches": failed,
                "airflow_reachable": self.forwarder.airflow_reachable,
                "spool_bytes": stats.live_bytes,
                "spool_alarm": alarm,
                "spool_full": stats.live_bytes >= self.limits.spool_max_bytes,
            },
            status_code=503 if stale or alarm else 200,
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        stats = await asyncio.to_thread(self.spool.stats)
        text = self.metrics.render(stats, self.forwarder.airflow_reachable, self.limits)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # The REST client takes seconds to import: loaded while the relay already serves webhooks,
        # so that the first trigger does not pay for it. A failure shows in the forwarder's log,
        # whose calls load it again.
        loading = asyncio.create_task(asyncio.to_thread(self.airflow.load))
        self.forwarder.start()
        try:
            yield
        finally:
            await self.forwarder.stop()
            with contextlib.suppress(Exception):
                await loading
            self.spool.close()


def create_app(settings: RelaySettings, limits: RelayLimits | None = None) -> Starlette:
    """The relay as an ASGI app; the forwarder runs while the app's lifespan does.

    ``limits`` (default: :class:`RelayLimits`' defaults) bound the spool here; their connection
    and header limits are uvicorn's (``limits.uvicorn_options()``, see ``python -m relay``).
    """
    relay = Relay(settings, limits or RelayLimits())
    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, relay.webhook, methods=["POST"]),
            Route("/healthz", relay.healthz, methods=["GET"]),
            Route("/metrics", relay.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=relay.lifespan,
    )
    app.state.relay = relay
    return app
