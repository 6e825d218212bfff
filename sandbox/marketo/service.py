"""The Marketo sandbox as an ASGI app: Identity, the REST Lead database and the admin API.

Every REST call runs one pipeline, in this order, so the counters and limits behave like the
real service (https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/rest-api and
https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes):

1. size checks: URI > 8 KB → HTTP 414, body > 1 MB → HTTP 413 (the only non-200 answers);
2. concurrency gate → 615, then injected latency while holding the slot, then injected faults;
3. route: unknown path → 610, known path with another method → 605;
4. token → 600/601/602;
5. rate window → 606, daily quota → 607 (calls refused above consume neither);
6. the endpoint itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.common.calls import CallCounter
from sandbox.common.clock import Clock
from sandbox.common.faults import FaultInjector, FaultPlan
from sandbox.common.limits import ConcurrencyGate, Quota, SlidingWindowLimiter
from sandbox.marketo.auth import TokenIssuer
from sandbox.marketo.schema import FieldCatalogue
from sandbox.marketo.settings import MarketoSettings
from sandbox.marketo.store import LeadDatabase, Query
from sandbox.marketo.wire import (
    ApiError,
    MarketoJSONResponse,
    RequestIds,
    concurrency_message,
    failure,
    rate_limit_message,
    split_values,
    success,
)

_HTTP_FAULTS = frozenset({"500", "502", "503", "504"})
_ENVELOPE_FAULTS = frozenset({"601", "602", "604", "606", "607", "608", "611", "615", "713"})
# The daily quota "resets 12:00 AM CST" (Adobe's REST API overview): a fixed UTC-6, as Adobe
# states it.
_CST = timedelta(hours=-6)
_IDENTITY_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _HttpError(Exception):
    """An answer outside the JSON envelope (413, 414, injected 5xx)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(status)
        self.status = status
        self.text = text


@dataclass
class _Call:
    """One REST request, parsed once for the pipeline and the handler."""

    method: str  # the effective method: ``POST ...?_method=GET`` is a GET
    path: str
    params: dict[str, list[str]]
    body: bytes
    content_type: str
    authorization: str
    request_id: str
    path_params: dict[str, str]

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else None

    def query(self) -> Query:
        return Query(
            filter_type=self.param("filterType"),
            filter_values=split_values(self.params.get("filterValues", [])),
            fields=split_values(self.params.get("fields", [])),
            batch_size=self.param("batchSize"),
            next_page_token=self.param("nextPageToken"),
        )

    def json_body(self) -> dict[str, Any]:
        if not self.content_type.startswith("application/json"):
            raise ApiError("612")
        try:
            body = json.loads(self.body)
        except ValueError:
            raise ApiError("609") from None
        if not isinstance(body, dict):
            raise ApiError("609")
        return body


@dataclass(frozen=True)
class _Endpoint:
    method: str
    pattern: re.Pattern[str]
    template: str  # how ``/_sandbox/calls`` names it: "GET /rest/v1/lead/{id}.json"
    handler: Callable[[_Call], Response]


class MarketoService:
    """In-memory Marketo Engage REST: leads, companies, custom fields, tokens, limits, faults.

    ``settings`` given here are what ``reset()`` returns to; ``MarketoSettings()`` otherwise.
    """

    def __init__(self, settings: MarketoSettings | None = None, clock: Clock | None = None) -> None:
        self._baseline = settings or MarketoSettings()
        self.settings = self._baseline
        self.clock = clock or Clock()
        self.calls = CallCounter()
        self.faults = FaultInjector()
        self.catalogue = FieldCatalogue()
        self.database = LeadDatabase(self.catalogue, self.clock)
        self.tokens = TokenIssuer(self.clock)
        self._rate = SlidingWindowLimiter(None, 20.0, self.clock)
        self._gate = ConcurrencyGate(None)
        self._quota = Quota(None)
        self._quota_day = self._cst_day()
        self._quota_lock = threading.Lock()
        self._request_ids = RequestIds()
        self._apply_limits()
        self._endpoints = self._build_endpoints()
        self.app = Starlette(routes=self._build_routes())

    # ----- lifecycle and state -----

    def reset(self) -> None:
        """Back to an empty instance with the baseline settings, a fresh clock and no faults."""
        self.settings = self._baseline
        self.clock.reset()
        self.catalogue.reset()
        self.database.reset()
        self.tokens.reset()
        self.calls.reset()
        self.faults.clear()
        self._rate.reset()
        self._gate.reset()
        self._quota.reset()
        self._quota_day = self._cst_day()
        self._apply_limits()

    def dump_state(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_json(),
            "custom_fields": self.catalogue.custom_fields(),
            "database": self.database.dump(),
            "tokens": self.tokens.dump(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.update_settings(state.get("settings", {}))
        self.catalogue.load_custom_fields(state.get("custom_fields", []))
        self.database.load(state.get("database", {}))
        self.tokens.load(state.get("tokens", []))

    def update_settings(self, changes: dict[str, Any]) -> MarketoSettings:
        self.settings = self.settings.updated(changes)
        self._apply_limits()
        return self.settings

    def _apply_limits(self) -> None:
        # Adjusted in place: requests in flight hold references to these objects.
        self._rate.max_calls = self.settings.rate_limit_calls
        self._rate.window_s = self.settings.rate_limit_window_s
        self._gate.limit = self.settings.concurrency_limit
        self._quota.limit = self.settings.daily_quota

    def _cst_day(self) -> str:
        return (datetime.fromtimestamp(self.clock.now(), UTC) + _CST).date().isoformat()

    # ----- the REST pipeline -----

    def _build_endpoints(self) -> list[_Endpoint]:
        def endpoint(method: str, path: str, handler: Callable[[_Call], Response]) -> _Endpoint:
            regex = re.escape(path).replace(r"\{id\}", r"(?P<id>\d+)")
            return _Endpoint(method, re.compile(regex), f"{method} {path}", handler)

        return [
            endpoint("GET", "/rest/v1/leads.json", self._get_leads),
            endpoint("POST", "/rest/v1/leads.json", self._sync_leads),
            endpoint("POST", "/rest/v1/leads/delete.json", self._delete_leads),
            # the form real clients send (a recorded exchange: POST leads.json?_method=DELETE)
            endpoint("DELETE", "/rest/v1/leads.json", self._delete_leads),
            endpoint("GET", "/rest/v1/lead/{id}.json", self._get_lead),
            endpoint("GET", "/rest/v1/leads/describe.json", self._describe_leads),
            endpoint("GET", "/rest/v1/leads/describe2.json", self._describe2_leads),
            endpoint("GET", "/rest/v1/companies.json", self._get_companies),
            endpoint("POST", "/rest/v1/companies.json", self._sync_companies),
            endpoint("GET", "/rest/v1/companies/describe.json", self._describe_companies),
        ]

    async def _rest(self, request: Request) -> Response:
        body = await request.body()
        params = _params(request, body)
        method = request.method
        # Long lookups are POSTs with ``_method=GET`` in the URL or, as marketorestpython sends
        # them, in the form body; they are the same call as the GET and are counted as such.
        if method == "POST" and (override := params.pop("_method", [""])[-1].upper()):
            method = override
        call = _Call(
            method=method,
            path=request.url.path,
            params=params,
            body=body,
            content_type=request.headers.get("content-type", ""),
            authorization=request.headers.get("authorization", ""),
            request_id=self._request_ids.next(self.clock.now()),
            path_params={},
        )
        endpoint, known_path = self._resolve(call)
        template = endpoint.template if endpoint else f"{method} {known_path or '/rest/*'}"
        try:
            _check_size(self.settings, request, body)
            response = await self._serve(call, endpoint, known_path)
            answer = "200"
        except ApiError as error:
            response, answer = failure(call.request_id, error.code, error.message), error.code
        except _HttpError as error:
            response, answer = PlainTextResponse(error.text, error.status), str(error.status)
        self.calls.record(template, answer)
        return response

    def _resolve(self, call: _Call) -> tuple[_Endpoint | None, str | None]:
        """The endpoint for the call, else the template of a path served for other methods."""
        other_method_path = None
        for endpoint in self._endpoints:
            match = endpoint.pattern.fullmatch(call.path)
            if match is None:
                continue
            if endpoint.method == call.method:
                call.path_params = match.groupdict()
                return endpoint, None
            other_method_path = endpoint.template.split(" ", 1)[1]
        return None, other_method_path

    async def _serve(
        self, call: _Call, endpoint: _Endpoint | None, known_path: str | None
    ) -> Response:
        if not self._gate.enter():
            raise ApiError("615", concurrency_message(self.settings.concurrency_limit))
        try:
            if self.faults.latency_s:
                await asyncio.sleep(self.faults.latency_s)
            fault = self.faults.draw(call.method, call.path)
            if fault is not None:
                raise self._fault_error(fault)
            if endpoint is None:
                raise ApiError("605" if known_path else "610")
            self._authenticate(call)
            self._take_limits()
            return endpoint.handler(call)
        finally:
            self._gate.leave()

    def _fault_error(self, answer: str) -> Exception:
        if answer in _HTTP_FAULTS:
            return _HttpError(int(answer), f"{answer} injected by the sandbox")
        if answer == "606":
            s = self.settings
            return ApiError(answer, rate_limit_message(s.rate_limit_calls, s.rate_limit_window_s))
        if answer == "615":
            return ApiError(answer, concurrency_message(self.settings.concurrency_limit))
        return ApiError(answer)

    def _authenticate(self, call: _Call) -> None:
        scheme, _, token = call.authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            token = (call.param("access_token") or "") if self.settings.accept_query_token else ""
        if not token.strip():
            raise ApiError("600")
        problem = self.tokens.check(token.strip())
        if problem:
            raise ApiError(problem)

    def _take_limits(self) -> None:
        if self._rate.acquire() is not None:
            s = self.settings
            raise ApiError("606", rate_limit_message(s.rate_limit_calls, s.rate_limit_window_s))
        self._roll_quota_day()
        if not self._quota.take():
            raise ApiError("607")

    def _roll_quota_day(self) -> None:
        """A new day (CST) starts the quota afresh."""
        with self._quota_lock:
            today = self._cst_day()
            if today != self._quota_day:
                self._quota_day = today
                self._quota.reset()

    # ----- REST endpoints -----

    def _get_leads(self, call: _Call) -> Response:
        page = self.database.query_leads(self.settings, call.query())
        return _page_response(call, page.result, page.next_page_token)

    def _get_lead(self, call: _Call) -> Response:
        fields = split_values(call.params.get("fields", []))
        lead_id = int(call.path_params["id"])
        return success(call.request_id, self.database.lead_by_id(lead_id, fields))

    def _sync_leads(self, call: _Call) -> Response:
        return success(call.request_id, self.database.sync_leads(self.settings, call.json_body()))

    def _delete_leads(self, call: _Call) -> Response:
        return success(call.request_id, self.database.delete_leads(self.settings, call.json_body()))

    def _describe_leads(self, call: _Call) -> Response:
        return success(call.request_id, self.catalogue.describe())

    def _describe2_leads(self, call: _Call) -> Response:
        return success(call.request_id, self.catalogue.describe2())

    def _get_companies(self, call: _Call) -> Response:
        page = self.database.query_companies(self.settings, call.query())
        return _page_response(call, page.result, page.next_page_token)

    def _sync_companies(self, call: _Call) -> Response:
        results = self.database.sync_companies(self.settings, call.json_body())
        return success(call.request_id, results)

    def _describe_companies(self, call: _Call) -> Response:
        return success(call.request_id, self.catalogue.describe_companies())

    # ----- Identity -----

    async def _identity(self, request: Request) -> Response:
        """``/identity/oauth/token``: not counted toward limits, never faulted (it has no quota)."""
        params = _params(request, await request.body())
        status, payload = self._identity_answer({k: v[-1] for k, v in params.items()})
        self.calls.record(f"{request.method} /identity/oauth/token", str(status))
        return MarketoJSONResponse(payload, status, headers=_IDENTITY_HEADERS)

    def _identity_answer(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        # The pairing of error, text and status per case is not documented (Adobe's
        # Authentication page): these are the Spring Security OAuth2 answers the quoted
        # messages come from.
        grant_type = params.get("grant_type")
        if not grant_type:
            return 400, {"error": "invalid_request", "error_description": "Missing grant type"}
        if grant_type != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": f"Unsupported grant type: {grant_type}",
            }
        if params.get("client_id") != self.settings.client_id:
            return 401, {
                "error": "invalid_client",
                "error_description": "No client with requested id",
            }
        if params.get("client_secret") != self.settings.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Bad client credentials"}
        return 200, self.tokens.issue(self.settings)

    # ----- admin API (/_sandbox/...; never counted, never limited) -----

    def _build_routes(self) -> list[Route]:
        admin = [
            ("/reset", self._admin_reset, ["POST"]),
            ("/calls", self._admin_calls, ["GET"]),
            ("/faults", self._admin_faults, ["GET", "POST"]),
            ("/settings", self._admin_settings, ["GET", "POST"]),
            ("/clock", self._admin_clock, ["POST"]),
            ("/leads", self._admin_leads, ["GET", "POST"]),
            ("/leads/{lead_id:int}", self._admin_lead, ["GET"]),
            ("/writes", self._admin_writes, ["GET"]),
            ("/quota", self._admin_quota, ["GET"]),
            ("/fields", self._admin_fields, ["POST"]),
            ("/companies", self._admin_companies, ["GET", "POST"]),
        ]
        return [
            Route("/identity/oauth/token", self._identity, methods=["GET", "POST"]),
            *(Route(f"/_sandbox{path}", _admin(handler), methods=m) for path, handler, m in admin),
            Route(
                "/rest/{path:path}", self._rest, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
            ),
        ]

    def _admin_reset(self, request: Request, body: Any) -> Any:
        self.reset()
        return {"reset": True}

    def _admin_calls(self, request: Request, body: Any) -> Any:
        return self.calls.snapshot()

    def _admin_faults(self, request: Request, body: Any) -> Any:
        if request.method == "POST":
            plan = FaultPlan.from_json(body or {})
            unknown = {r.answer for r in plan.rules} - _HTTP_FAULTS - _ENVELOPE_FAULTS
            if unknown:
                known = sorted(_HTTP_FAULTS | _ENVELOPE_FAULTS)
                raise ValueError(
                    f"the Marketo sandbox cannot answer {sorted(unknown)}; use {known}"
                )
            self.faults.set_plan(plan)
        return self.faults.plan.to_json()

    def _admin_settings(self, request: Request, body: Any) -> Any:
        if request.method == "POST":
            self.update_settings(body or {})
        return self.settings.to_json()

    def _admin_clock(self, request: Request, body: Any) -> Any:
        self.clock.advance(float((body or {}).get("advance_s", 0)))
        return {"now": self.clock.now()}

    def _admin_leads(self, request: Request, body: Any) -> Any:
        if request.method == "POST":
            return {"ids": self.database.seed_leads(_records(body))}
        return self.database.leads(self.settings, **dict(request.query_params))

    def _admin_lead(self, request: Request, body: Any) -> Any:
        lead = self.database.lead(request.path_params["lead_id"])
        return lead if lead is not None else JSONResponse({"error": "no such lead"}, 404)

    def _admin_writes(self, request: Request, body: Any) -> Any:
        return {str(lead_id): counts for lead_id, counts in self.database.writes().items()}

    def _admin_quota(self, request: Request, body: Any) -> Any:
        """Today's daily quota (Marketo's Admin > Web Services page shows the same)."""
        self._roll_quota_day()
        return {"limit": self._quota.limit, "used": self._quota.used, "day": self._quota_day}

    def _admin_fields(self, request: Request, body: Any) -> Any:
        spec = body or {}
        return self.catalogue.add_custom(
            spec.get("name", ""), spec.get("data_type", "string"), spec.get("display_name")
        )

    def _admin_companies(self, request: Request, body: Any) -> Any:
        if request.method == "POST":
            return {"ids": self.database.seed_companies(_records(body))}
        return self.database.companies()


def _admin(handler: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
    """Wrap an admin handler: JSON in, JSON out, a bad request as 400 with the reason."""

    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            result = handler(request, json.loads(raw) if raw else None)
        except (ValueError, TypeError, ApiError) as error:
            detail = error.message if isinstance(error, ApiError) else str(error)
            return JSONResponse({"error": detail}, 400)
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


def _records(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
        raise ValueError("expected a JSON list of objects")
    return body


def _params(request: Request, body: bytes) -> dict[str, list[str]]:
    """Query string and form body merged; every name keeps all its values (repeated params)."""
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def _check_size(settings: MarketoSettings, request: Request, body: bytes) -> None:
    uri_bytes = len(request.scope.get("raw_path", b"")) + len(request.scope["query_string"]) + 1
    if uri_bytes > settings.max_uri_bytes:
        raise _HttpError(414, "414 Request-URI Too Large")
    if len(body) > settings.max_body_bytes:
        raise _HttpError(413, "413 Request Entity Too Large")


def _page_response(call: _Call, result: list[dict[str, Any]], token: str | None) -> Response:
    if token is None:
        return success(call.request_id, result)
    return success(call.request_id, result, moreResult=True, nextPageToken=token)
