"""``DataverseService``: Entra ID + the Dataverse Web API + webhooks on one Starlette app, with
service-protection limits, fault injection, call counters and the ``/_sandbox/`` admin API.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.common.calls import CallCounter
from sandbox.common.clock import Clock
from sandbox.common.faults import FaultInjector, FaultPlan
from sandbox.common.limits import ConcurrencyGate, SlidingWindowLimiter
from sandbox.dataverse import errors
from sandbox.dataverse.entra import Entra, application_user_id
from sandbox.dataverse.errors import ApiError
from sandbox.dataverse.metadata import metadata_route
from sandbox.dataverse.schema import ACCOUNT, BY_ENTITY_SET, CONTACT, Table
from sandbox.dataverse.settings import DataverseSettings
from sandbox.dataverse.store import RecordStore, target_key
from sandbox.dataverse.webapi import API_PREFIX, Caller, WebApi
from sandbox.dataverse.webhooks import Webhooks

FAULT_ANSWERS = ("401", "429", "500", "502", "503", "504")
_FAULT_MESSAGES = {
    500: (errors.UNEXPECTED, "An unexpected error occurred."),
    502: ("", "Bad Gateway"),
    503: ("", "The service is unavailable."),
    504: ("", "Gateway Timeout"),
}
# the user seeded rows are owned by (they come from no client)
SEED_USER = application_user_id("sandbox-seed")


class DataverseService:
    """One organization (and its Entra ID tenant), in memory."""

    def __init__(
        self, settings: DataverseSettings | None = None, clock: Clock | None = None
    ) -> None:
        self._initial_settings = settings or DataverseSettings()
        self.settings = self._initial_settings
        self.clock = clock or Clock()
        self.calls = CallCounter()
        self.faults = FaultInjector()
        self.store = RecordStore()
        self.webhooks = Webhooks(lambda: self.settings, self.clock)
        self.entra = Entra(lambda: self.settings, self.clock, self.org_url)
        self.webapi = WebApi(
            self.store, lambda: self.settings, self.now, self.webhooks.notify, metadata_route
        )
        self._limits: dict[str, tuple[SlidingWindowLimiter, ConcurrencyGate]] = {}
        self.app = Starlette(routes=self._routes())

    # --- state ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the start: no rows, webhooks or deliveries; counters, faults, clock, settings."""
        self.store.clear()
        self.webhooks.reset()
        self.calls.reset()
        self.faults.clear()
        self.clock.reset()
        self.settings = self._initial_settings
        self._limits.clear()

    def dump_state(self) -> dict[str, Any]:
        return {"records": self.store.dump(), "webhooks": self.webhooks.dump()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.store.load(state.get("records", {}))
        self.webhooks.load(state.get("webhooks", {}))

    def apply_settings(self, changes: dict[str, Any]) -> DataverseSettings:
        self.settings = self.settings.updated(changes)
        self._limits.clear()  # limiters are rebuilt with the new limits
        return self.settings

    def now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock.now()))

    def org_url(self, request: Request) -> str:
        return self.settings.org_url or str(request.base_url).rstrip("/")

    def seed(
        self, contacts: list[dict[str, Any]], accounts: list[dict[str, Any]]
    ) -> dict[str, list[str]]:
        """Insert rows as given (ids, ``createdon``/``modifiedon`` and ``_parentcustomerid_value``
        may be set), accounts first; seeding fires no webhooks, as an import would not."""
        created: dict[str, list[str]] = {"accounts": [], "contacts": []}
        for table, items in ((ACCOUNT, accounts), (CONTACT, contacts)):
            for item in items:
                row = self.store.insert(
                    table,
                    self._seed_values(table, dict(item)),
                    user_id=SEED_USER,
                    business_unit_id=self.settings.business_unit_id,
                    now=self.now(),
                )
                created[table.entity_set].append(row[table.primary_id])
        return created

    def _seed_values(self, table: Table, item: dict[str, Any]) -> dict[str, Any]:
        stamps = {k: item.pop(k) for k in ("createdon", "modifiedon") if k in item}
        for name, stamp in stamps.items():
            try:
                time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must look like 2024-01-31T12:00:00Z") from exc
        parent = item.pop("_parentcustomerid_value", None) if table is CONTACT else None
        values = {**self.webapi.values(table, item), **stamps}
        if parent is not None:
            parent = str(parent).lower()
            target = next((t for t in (ACCOUNT, CONTACT) if self.store.get(t, parent)), None)
            if target is None:
                raise ValueError(f"no account or contact has id {parent}")
            values["_parentcustomerid_value"] = parent
            values[target_key("_parentcustomerid_value")] = target.logical_name
        return values

    # --- serving the APIs -----------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        admin = _AdminRoutes(self)
        return [
            Route(
                "/{tenant}/oauth2/v2.0/token",
                self._served("POST /{tenant}/oauth2/v2.0/token", self.entra.token_v2),
                methods=["POST"],
            ),
            Route(
                "/{tenant}/oauth2/token",
                self._served("POST /{tenant}/oauth2/token", self.entra.token_v1),
                methods=["POST"],
            ),
            Route(
                API_PREFIX + "/{path:path}",
                self._web_api,
                methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            ),
            *admin.routes(),
        ]

    def _served(
        self, template: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            await self._latency()
            return await handler(request)

        async def endpoint(request: Request) -> Response:
            return await self._serve(request, template, lambda: run(request))

        return endpoint

    async def _web_api(self, request: Request) -> Response:
        method = request.method
        try:
            route = self.webapi.route(method, request)
        except ApiError as exc:
            failure = exc
            template = f"{method} {API_PREFIX}/{{unknown}}"
        else:
            failure = None
            template = f"{method} {API_PREFIX}/{route.template}"

        async def run() -> Response:
            if len(str(request.url)) > self.settings.max_url_length:
                status = self.settings.url_too_long_status
                return Response("Request-URI Too Long", status_code=status)
            caller = self._caller(request)
            if caller is None:
                return self._unauthorized(request)
            if failure is not None:
                raise failure
            return await self._limited(caller, lambda: route.handler(request, caller))

        return await self._serve(request, template, run)

    async def _serve(
        self, request: Request, template: str, run: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Injected faults and counting around one API call."""
        fault = self.faults.draw(request.method, request.url.path)
        if fault is not None:
            response = self._fault(request, fault)
        else:
            try:
                response = await run()
            except ApiError as exc:
                response = exc.response()
        self.calls.record(template, str(response.status_code))
        return response

    async def _latency(self) -> None:
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)

    def _caller(self, request: Request) -> Caller | None:
        org_url = self.org_url(request)
        claims = self.entra.check(request.headers.get("authorization"), org_url)
        return Caller(claims.user_id, org_url) if claims else None

    def _unauthorized(self, request: Request) -> Response:
        # NOT FOUND: the body of Dataverse's 401; it answers with the challenge header only
        challenge = self.entra.www_authenticate(request, self.org_url(request))
        return Response(status_code=401, headers={"WWW-Authenticate": challenge})

    async def _limited(
        self, caller: Caller, handler: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Service protection limits, per application user (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits)."""
        window, gate = self._limiter(caller.user_id)
        settings = self.settings
        if not gate.enter():
            raise ApiError(
                429,
                errors.CONCURRENCY_LIMIT,
                f"Number of concurrent requests exceeded the limit of {settings.max_concurrent}.",
                {"Retry-After": str(settings.concurrency_retry_after_s)},
            )
        try:
            await self._latency()  # inside the gate: a slow answer holds its concurrency slot
            wait = window.acquire()
            if wait is not None:
                raise ApiError(
                    429,
                    errors.REQUEST_LIMIT,
                    f"Number of requests exceeded the limit of {settings.requests_per_window} "
                    f"over time window of {settings.window_s:g} seconds.",
                    {"Retry-After": str(math.ceil(wait))},
                )
            return await handler()
        finally:
            gate.leave()

    def _limiter(self, user_id: str) -> tuple[SlidingWindowLimiter, ConcurrencyGate]:
        limits = self._limits.get(user_id)
        if limits is None:
            settings = self.settings
            limits = (
                SlidingWindowLimiter(settings.requests_per_window, settings.window_s, self.clock),
                ConcurrencyGate(settings.max_concurrent),
            )
            self._limits[user_id] = limits
        return limits

    def _fault(self, request: Request, answer: str) -> Response:
        status = int(answer)
        if status == 401:
            return self._unauthorized(request)
        if status == 429:
            retry_after = {"Retry-After": str(self.settings.fault_retry_after_s)}
            limit = self.settings.requests_per_window
            message = (
                f"Number of requests exceeded the limit of {limit} over time window of "
                f"{self.settings.window_s:g} seconds."
            )
            return ApiError(429, errors.REQUEST_LIMIT, message, retry_after).response()
        code, message = _FAULT_MESSAGES[status]
        return ApiError(status, code, message).response()


class _AdminRoutes:
    """``/_sandbox/...``: inspect, seed, reset and break the service (never counted)."""

    def __init__(self, service: DataverseService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        def route(path: str, handler: Any, *methods: str) -> Route:
            return Route(f"/_sandbox/{path}", _admin(handler), methods=list(methods))

        return [
            route("reset", self.reset, "POST"),
            route("calls", lambda r: self.service.calls.snapshot(), "GET"),
            route("faults", self.faults, "GET", "POST"),
            route("settings", self.settings, "GET", "POST"),
            route("clock", self.clock, "POST"),
            route("seed", self.seed, "POST"),
            route("records/{entity_set}", self.records, "GET"),
            route("records/{entity_set}/{record_id}", self.record, "GET"),
            route("webhooks", self.webhooks, "GET", "POST", "DELETE"),
            route("webhooks/{endpoint_id}", self.webhook, "DELETE"),
            route("deliveries", lambda r: {"value": self.service.webhooks.deliveries()}, "GET"),
        ]

    async def reset(self, request: Request) -> dict[str, Any]:
        self.service.reset()
        return {"reset": True}

    async def faults(self, request: Request) -> dict[str, Any]:
        if request.method == "POST":
            plan = FaultPlan.from_json(await request.json() or {})
            wrong = sorted({r.answer for r in plan.rules} - set(FAULT_ANSWERS))
            if wrong:
                raise ValueError(f"fault answers must be among {FAULT_ANSWERS}; got {wrong}")
            self.service.faults.set_plan(plan)
        return self.service.faults.plan.to_json()

    async def settings(self, request: Request) -> dict[str, Any]:
        if request.method == "POST":
            return self.service.apply_settings(await request.json()).to_json()
        return self.service.settings.to_json()

    async def clock(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        self.service.clock.advance(float(body.get("advance_s", 0)))
        return {"now": self.service.now()}

    async def seed(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        return self.service.seed(body.get("contacts", []), body.get("accounts", []))

    async def records(self, request: Request) -> dict[str, Any]:
        table = _table(request.path_params["entity_set"])
        return {"value": self.service.store.rows(table)}

    async def record(self, request: Request) -> Any:
        table = _table(request.path_params["entity_set"])
        record_id = request.path_params["record_id"].lower()
        row = self.service.store.get(table, record_id)
        if row is None:
            raise errors.record_not_found(table.logical_name, record_id)
        return row

    async def webhooks(self, request: Request) -> dict[str, Any]:
        hooks = self.service.webhooks
        if request.method == "POST":
            return hooks.register(await request.json())
        if request.method == "DELETE":
            return {"deleted": hooks.unregister()}
        return {"value": hooks.registrations()}

    async def webhook(self, request: Request) -> dict[str, Any]:
        deleted = self.service.webhooks.unregister(request.path_params["endpoint_id"])
        if not deleted:
            raise ApiError(404, errors.OBJECT_DOES_NOT_EXIST, "No such webhook registration.")
        return {"deleted": deleted}


def _table(entity_set: str) -> Table:
    table = BY_ENTITY_SET.get(entity_set)
    if table is None:
        raise errors.segment_not_found(entity_set)
    return table


def _admin(handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
    """JSON in and out; a bad request (ValueError) is a 400 naming the problem."""

    async def endpoint(request: Request) -> Response:
        try:
            result = handler(request)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as exc:
            return exc.response()
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(result)

    return endpoint
