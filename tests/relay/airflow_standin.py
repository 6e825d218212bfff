"""A small stand-in for the two Airflow 3 endpoints the relay uses, run on loopback in tests.

``POST /auth/token`` issues unsigned JWT-shaped tokens with a real ``exp``; ``POST
/api/v2/dags/{dag_id}/dagRuns`` behaves like Airflow (200 with the run, 409 for a known run id,
401 for an unknown token) unless a test scripts the next answers; ``GET`` on the same path counts
the runs in the ``state`` values asked (every run ends at once unless a test keeps them active
with ``runs_end = False``). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.common.server import ServerThread

USERNAME = "relay"
PASSWORD = "relay-airflow-password"
# Scripted answer: the run is created, then the response is "lost" as a 500.
CREATE_THEN_500 = -500


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class AirflowStandIn:
    url: str = ""  # set once the server runs
    token_lifetime_seconds: float = 3600.0
    trigger_delay_seconds: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    scripted: list[int] = field(default_factory=list)
    scripted_detail: str = "scripted failure"
    runs_end: bool = True  # False: runs stay active (queued, then running) until end_runs()
    list_status: int = 200  # the answer to GET .../dagRuns
    ended: set[str] = field(default_factory=set)
    last_states: set[str] = field(default_factory=set)  # the states the last GET asked for
    _tokens: set[str] = field(default_factory=set)
    _serial: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/auth/token", self._token, methods=["POST"]),
                Route("/api/v2/dags/{dag_id}/dagRuns", self._trigger, methods=["POST"]),
                Route("/api/v2/dags/{dag_id}/dagRuns", self._list, methods=["GET"]),
                Route("/api/v2/monitor/health", self._health, methods=["GET"]),
            ]
        )

    # -- test controls -------------------------------------------------------------------------

    def script(self, *statuses: int, detail: str = "scripted failure") -> None:
        """The next trigger requests get these statuses, in order, then normal behaviour."""
        with self._lock:
            self.scripted.extend(statuses)
            self.scripted_detail = detail

    def end_runs(self) -> None:
        """Every run created so far ends."""
        with self._lock:
            self.ended |= set(self.runs)

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def of(self, path_suffix: str) -> list[Recorded]:
        with self._lock:
            return [request for request in self.requests if request.path.endswith(path_suffix)]

    @property
    def triggers(self) -> list[Recorded]:
        return [request for request in self.of("/dagRuns") if request.method == "POST"]

    @property
    def run_questions(self) -> list[Recorded]:
        return [request for request in self.of("/dagRuns") if request.method == "GET"]

    @property
    def token_requests(self) -> list[Recorded]:
        return self.of("/auth/token")

    # -- endpoints ------------------------------------------------------------------------------

    async def _record(self, request: Request) -> Recorded:
        raw = await request.body()
        recorded = Recorded(
            request.method,
            request.url.path,
            dict(request.headers),
            json.loads(raw) if raw else None,
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    @staticmethod
    def _answer(recorded: Recorded, status: int, body: Any) -> Response:
        recorded.status = status
        return JSONResponse(body, status_code=status)

    async def _token(self, request: Request) -> Response:
        recorded = await self._record(request)
        body = recorded.body or {}
        if body.get("username") != USERNAME or body.get("password") != PASSWORD:
            return self._answer(recorded, 401, {"detail": "Invalid credentials"})
        claims = {
            "sub": USERNAME,
            "jti": next(self._serial),
            "exp": int(time.time() + self.token_lifetime_seconds),
        }
        token = f"{_b64({'alg': 'none'})}.{_b64(claims)}.sig"
        with self._lock:
            self._tokens.add(token)
        return self._answer(recorded, 201, {"access_token": token})

    async def _trigger(self, request: Request) -> Response:
        recorded = await self._record(request)
        if self.trigger_delay_seconds:
            await asyncio.sleep(self.trigger_delay_seconds)
        token = recorded.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            if token not in self._tokens:
                return self._answer(recorded, 401, {"detail": "Invalid JWT token"})
            scripted = self.scripted.pop(0) if self.scripted else None
            run_id = recorded.body["dag_run_id"]
            if scripted is not None and scripted != CREATE_THEN_500:
                return self._answer(recorded, scripted, {"detail": self.scripted_detail})
            if run_id in self.runs:
                return self._answer(
                    recorded, 409, {"detail": f"DAG Run with id {run_id} already exists"}
                )
            self.runs[run_id] = recorded.body
            if self.runs_end:
                self.ended.add(run_id)
        if scripted == CREATE_THEN_500:
            return self._answer(recorded, 500, {"detail": "Internal Server Error"})
        dag_id = request.path_params["dag_id"]
        return self._answer(
            recorded,
            200,
            {"dag_id": dag_id, "dag_run_id": run_id, "state": "queued", **recorded.body},
        )

    async def _list(self, request: Request) -> Response:
        recorded = await self._record(request)
        token = recorded.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            if token not in self._tokens:
                return self._answer(recorded, 401, {"detail": "Invalid JWT token"})
            if self.list_status != 200:
                return self._answer(recorded, self.list_status, {"detail": "scripted failure"})
            states = set(request.query_params.getlist("state"))
            active = [run for run in self.runs if run not in self.ended]
            found = active if states == {"queued", "running"} else list(self.runs)
            self.last_states = states
        limit = int(request.query_params.get("limit", 50))
        runs = [{"dag_run_id": run_id, "state": "running"} for run_id in found[:limit]]
        return self._answer(recorded, 200, {"dag_runs": runs, "total_entries": len(found)})

    async def _health(self, request: Request) -> Response:
        recorded = await self._record(request)
        return self._answer(recorded, 200, {"metadatabase": {"status": "healthy"}})


@contextmanager
def running_standin() -> Iterator[AirflowStandIn]:
    """A stand-in served on a free loopback port (``.url`` set) for the duration of the block."""
    standin = AirflowStandIn()
    server = ServerThread(standin.app).start()
    standin.url = server.url
    try:
        yield standin
    finally:
        server.stop()
