"""Hooks under test, wired to the sandbox through ``AIRFLOW_CONN_*`` variables as in production."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import MarketoHook
from sandbox import defaults

# Retries as in production, minus the waiting.
FAST_RETRIES = {"max_attempts": 4, "backoff_base": 0.01, "backoff_max": 0.02}
# The client-side limiter is process-wide per settings; tests that do not test it get a budget
# of their own that other tests cannot use up.
UNLIMITED = {"rate_limit_calls": 100_000, "rate_limit_window_s": 1, "max_concurrent": 10}


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    """Define a Connection the way deployments do: JSON in ``AIRFLOW_CONN_<ID>``."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "http", **fields})
    )


@pytest.fixture
def marketo_hook(marketo, monkeypatch) -> Callable[..., MarketoHook]:
    """``marketo_hook(**extras)``: a MarketoHook on the sandbox with fast retries."""

    def make(**extras: Any) -> MarketoHook:
        set_connection(
            monkeypatch,
            "marketo_default",
            host=marketo.url,
            login=defaults.MARKETO_CLIENT_ID,
            password=defaults.MARKETO_CLIENT_SECRET,
            extra={**FAST_RETRIES, **UNLIMITED, **extras},
        )
        return MarketoHook()

    return make


@pytest.fixture
def dynamics_hook(dataverse, monkeypatch) -> Callable[..., DynamicsHook]:
    """``dynamics_hook(**extras)``: a DynamicsHook on the sandbox (Entra ID on the same URL)."""

    def make(**extras: Any) -> DynamicsHook:
        set_connection(
            monkeypatch,
            "dynamics365_default",
            host=dataverse.url,
            login=defaults.DYNAMICS_CLIENT_ID,
            password=defaults.DYNAMICS_CLIENT_SECRET,
            extra={
                "tenant_id": defaults.TENANT_ID,
                "authority_host": dataverse.url,
                **FAST_RETRIES,
                **extras,
            },
        )
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
