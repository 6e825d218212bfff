"""Hooks under test, wired to the sandbox through ``AIRFLOW_CONN_*`` variables as in production."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
