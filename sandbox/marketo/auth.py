"""The Identity service: one access token per client, re-issued unchanged until it expires."""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.common.clock import Clock
from sandbox.marketo.settings import MarketoSettings


@dataclass
class IssuedToken:
    value: str
    client_id: str
    expires_at: float  # sandbox wall clock, so saved state survives a restart


class TokenIssuer:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tokens: dict[str, IssuedToken] = {}
        self._current: dict[str, str] = {}  # client id -> its live token
        self._lock = threading.Lock()

    def issue(self, settings: MarketoSettings) -> dict[str, Any]:
        """The identity answer for the (already authenticated) configured client.

        "If you call the Identity endpoint before the token expires, the response returns the
        same token and its remaining lifespan" (Adobe's Authentication page); a fresh one says 3599.
        """
        now = self._clock.now()
        with self._lock:
            token = self._tokens.get(self._current.get(settings.client_id, ""))
            # A token with under a second left would be reported as ``expires_in: 0``, which
            # clients take as already expired; issue its successor instead.
            if token is None or token.expires_at - now < 1:
                token = IssuedToken(
                    value=f"{uuid.uuid4()}:{settings.token_suffix}",
                    client_id=settings.client_id,
                    expires_at=now + settings.token_lifetime_s,
                )
                self._tokens[token.value] = token
                self._current[settings.client_id] = token.value
        return {
            "access_token": token.value,
            # Remaining whole seconds, counted so that a token issued just now says 3599 like
            # the real service (its clock has always moved a little since issuing).
            "token_type": "bearer",
            "expires_in": max(math.ceil(token.expires_at - now) - 1, 0),
            "scope": settings.api_user,
        }

    def check(self, value: str) -> str | None:
        """``None`` for a live token, else the error code: 601 unknown, 602 expired."""
        with self._lock:
            token = self._tokens.get(value)
        if token is None:
            return "601"
        if token.expires_at <= self._clock.now():
            return "602"
        return None

    def reset(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._current.clear()

    def dump(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(token).copy() for token in self._tokens.values()]

    def load(self, tokens: list[dict[str, Any]]) -> None:
        with self._lock:
            self._tokens = {t["value"]: IssuedToken(**t) for t in tokens}
            self._current = {}
            for token in sorted(self._tokens.values(), key=lambda t: t.expires_at):
                self._current[token.client_id] = token.value
