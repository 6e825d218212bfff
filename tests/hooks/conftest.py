"""Hooks under test, wired to the sandbox through ``AIRFLOW_CONN_*`` variables as in production."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import MarketoHook
from tests.support import connect_dynamics, connect_marketo


@pytest.fixture
def marketo_hook(marketo, monkeypatch) -> Callable[..., MarketoHook]:
    """``marketo_hook(**extras)``: a MarketoHook on the sandbox with fast retries."""

    def make(**extras: Any) -> MarketoHook:
        connect_marketo(monkeypatch, marketo.url, **extras)
        return MarketoHook()

    return make


@pytest.fixture
def dynamics_hook(dataverse, monkeypatch) -> Callable[..., DynamicsHook]:
    """``dynamics_hook(**extras)``: a DynamicsHook on the sandbox (Entra ID on the same URL)."""

    def make(**extras: Any) -> DynamicsHook:
        connect_dynamics(monkeypatch, dataverse.url, **extras)
        return DynamicsHook()

    return make


@dataclass
class SentRequest:
    method: str
    url: str
    headers: dict[str, str]
    timeout: Any


@dataclass
class Recorder:
    """Every request a session sends, as the transport sees it."""

    sent: list[SentRequest] = field(default_factory=list)

    def bearer_tokens(self) -> set[str]:
        return {
            r.headers["Authorization"].removeprefix("Bearer ")
            for r in self.sent
            if r.headers.get("Authorization", "").startswith("Bearer ")
        }


class _RecordingAdapter(HTTPAdapter):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self._recorder = recorder

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self._recorder.sent.append(
            SentRequest(
                request.method or "",
                request.url or "",
                dict(request.headers),
                kwargs.get("timeout"),
            )
        )
        return super().send(request, **kwargs)


def record_requests(session: requests.Session) -> Recorder:
    """Mount a transport adapter on ``session`` that records each request and its timeout."""
    recorder = Recorder()
    adapter = _RecordingAdapter(recorder)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return recorder


# --- Loopback servers that are not the services: a proxy's page, a forwarding proxy -----------


Route = tuple[int, str, bytes]
"""``(status, content type, body)`` a :class:`LoopbackSite` answers for a path prefix."""


class LoopbackSite:
    """A real HTTP server on a free loopback port answering fixed pages by path prefix.

    What stands in for things between the hooks and the services: a captive proxy's HTML page,
    a misrouted host, a Dataverse that refuses a read with 403. Also a forwarding proxy
    (``forward=True``): it sends each absolute-URL request on and records its request line.
    """

    def __init__(self, routes: dict[str, Route] | None = None, *, forward: bool = False) -> None:
        self.routes = routes or {}
        self.seen: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                site.seen.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if forward:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    answer = requests.request(
                        self.command, self.path, headers=headers, data=body, timeout=10
                    )
                    status, kind, content = (
                        answer.status_code,
                        answer.headers.get("Content-Type", ""),
                        answer.content,
                    )
                else:
                    prefix = next((p for p in site.routes if self.path.startswith(p)), None)
                    status, kind, content = (
                        site.routes[prefix] if prefix is not None else (404, "text/plain", b"")
                    )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def loopback_site() -> Iterator[Callable[..., LoopbackSite]]:
    """``loopback_site(routes, forward=False)``: servers stopped when the test ends."""
    sites: list[LoopbackSite] = []

    def make(routes: dict[str, Route] | None = None, *, forward: bool = False) -> LoopbackSite:
        sites.append(LoopbackSite(routes, forward=forward))
        return sites[-1]

    yield make
    for site in sites:
        site.close()
