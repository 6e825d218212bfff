"""Typed errors of the two hooks, and the redaction every error text and log line goes through.

Callers catch by meaning (``DynamicsRateLimitError``, ``MarketoDailyQuotaError``, ...) or by service
(``DynamicsError``, ``MarketoError``), or everything a remote call can raise (``ServiceError``).
Error texts carry the HTTP status, the service's error code, the request id and a short, redacted
excerpt of the answer: enough to act on, never a secret, token or email address.
"""

from __future__ import annotations

import re

EXCERPT_LENGTH = 200

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_WHITESPACE = re.compile(r"\s+")


def redact(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """``text`` on one line, email addresses replaced and cut to ``limit`` characters.

    Service messages echo input back (Marketo: ``Invalid value 'x@y.z'``), so anything quoted from
    an answer passes through here before it reaches an exception or a log.
    """
    one_line = _WHITESPACE.sub(" ", _EMAIL.sub("<email>", text)).strip()
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


class HookConfigError(ValueError):
    """A Connection is missing a value or holds one the hook cannot use; names the connection."""


class ServiceError(Exception):
    """A call to Dataverse, Entra ID or Marketo failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        excerpt: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = redact(message)
        self.status = status
        self.code = code
        self.excerpt = redact(excerpt) if excerpt else None
        self.request_id = request_id
        # Seconds the service asked us to wait (Dataverse's Retry-After), when it said.
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def summary(self) -> str:
        """Status and code in a few words, for retry logs."""
        parts = [f"HTTP {self.status}" if self.status is not None else None]
        parts.append(f"code {self.code}" if self.code else None)
        return ", ".join(p for p in parts if p) or type(self).__name__

    def __str__(self) -> str:
        details = [
            f"HTTP {self.status}" if self.status is not None else "",
            f"code {self.code}" if self.code else "",
            f"request {self.request_id}" if self.request_id else "",
        ]
        text = self.message
        if any(details):
            text += " (" + ", ".join(d for d in details if d) + ")"
        if self.excerpt and self.excerpt != self.message:
            text += f": {self.excerpt}"
        return text


# --- Dataverse and Entra ID -------------------------------------------------------------------


class DynamicsError(ServiceError):
    """Dataverse or its Entra ID token endpoint refused a request or could not be reached."""


class DynamicsAuthError(DynamicsError):
    """Entra ID refused the client credentials, or Dataverse refused a fresh token."""


class DynamicsRateLimitError(DynamicsError):
    """429 from the service-protection limits, after the bounded retries (or a too-long wait)."""


class DynamicsNotFoundError(DynamicsError):
    """404 where a missing resource is a fault (a wrong API version or entity set), not a result."""


class DynamicsRequestError(DynamicsError):
    """Any other failure: a rejected request (4xx), a server error (5xx) or no connection."""


# --- Marketo ----------------------------------------------------------------------------------


class MarketoError(ServiceError):
    """Marketo answered ``success: false`` (or an HTTP error), or could not be reached.

    ``code`` is Marketo's error code as the string it sends (``"606"``); ``None`` when the failure
    happened below Marketo's envelope (a connection error).
    """

    def __init__(
        self,
        code: str | None,
        message: str,
        *,
        request_id: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)


class MarketoAuthError(MarketoError):
    """The identity endpoint refused the client credentials, or a fresh token was refused."""


class MarketoRateLimitError(MarketoError):
    """606 / 615 (rate or concurrency limit) still answered after the bounded retries."""


class MarketoDailyQuotaError(MarketoError):
    """607: the subscription's daily quota is spent; retrying before the reset only wastes time."""


class MarketoApiError(MarketoError):
    """Any other error code, HTTP error or unreachable service."""
