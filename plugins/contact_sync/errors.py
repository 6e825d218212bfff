"""Every error the sync raises, grouped by what the caller can do (httpx's tree is the model).

::

    ContactSyncError
    ├── ConfigurationError        fix a Connection, a setting or a mapping: retrying cannot help
    │   └── CredentialsError      (also a ServiceError) the service refused the client credentials
    └── ServiceError              a call to Dataverse, Entra ID or Marketo failed (``.service``)
        ├── CredentialsError
        ├── RateLimitError        wait and retry (Dataverse 429 + Retry-After, Marketo 606/615)
        ├── TransientError        retry with backoff (5xx, Marketo 604/608/611/713)
        ├── DailyQuotaError       Marketo 607: fail until the quota resets (midnight US Central)
        ├── RequestRejectedError  the service refused this request (4xx, other codes): fix it
        │   └── NotFoundError     404 where a missing resource is a fault, not a result
        └── TransportError        no HTTP answer at all: connection refused, timeout, TLS

Callers catch by meaning (``RateLimitError``), by service (``error.service == "marketo"``), or
everything remote (``ServiceError``). :data:`NEVER_RETRY` is the one list both DAGs' retry
policies fail at once on. Error texts carry the HTTP status, the service's code, the request id and
a short, redacted excerpt of the answer: enough to act on, never a secret, token or email address.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "EXCERPT_LENGTH",
    "NEVER_RETRY",
    "ConfigurationError",
    "ContactSyncError",
    "CredentialsError",
    "DailyQuotaError",
    "NotFoundError",
    "RateLimitError",
    "RequestRejectedError",
    "Service",
    "ServiceError",
    "TransientError",
    "TransportError",
    "redact",
]

EXCERPT_LENGTH = 200

Service = Literal["dataverse", "entra", "marketo"]

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_WHITESPACE = re.compile(r"\s+")


def redact(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """``text`` on one line, email addresses replaced and cut to ``limit`` characters.

    Service messages echo input back (Marketo: ``Invalid value 'x@y.z'``), so anything quoted from
    an answer passes through here before it reaches an exception, an outcome reason or a log.
    """
    one_line = _WHITESPACE.sub(" ", _EMAIL.sub("<email>", text)).strip()
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


class ContactSyncError(Exception):
    """Base of every error the sync raises on purpose."""


class ConfigurationError(ContactSyncError):
    """A Connection, a setting or a mapping file is missing a value or holds a wrong one.

    The message names what to fix (the connection and key, the file and entry). Never retried.
    """


class ServiceError(ContactSyncError):
    """A call to one of the services failed; ``service`` says which."""

    def __init__(
        self,
        message: str,
        *,
        service: Service,
        status: int | None = None,
        code: str | None = None,
        excerpt: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = redact(message)
        self.service = service
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
        text = f"{self.service}: {self.message}"
        if any(details):
            text += " (" + ", ".join(d for d in details if d) + ")"
        if self.excerpt and self.excerpt != self.message:
            text += f": {self.excerpt}"
        return text


class CredentialsError(ServiceError, ConfigurationError):
    """The service refused the client credentials, or a freshly issued token: fix the Connection."""


class RateLimitError(ServiceError):
    """A rate or concurrency limit still answered after the hook's bounded retries."""


class TransientError(ServiceError):
    """A server-side failure the service documents as temporary, after the hook's retries."""


class DailyQuotaError(ServiceError):
    """Marketo's daily quota (607) is spent: retrying before the reset only wastes time."""


class RequestRejectedError(ServiceError):
    """The service refused this request (a 4xx, an unexpected answer, a non-transient code)."""


class NotFoundError(RequestRejectedError):
    """404 where a missing resource is a fault (a wrong API version or entity set), not a result."""


class TransportError(ServiceError):
    """No HTTP answer: connection refused or reset, DNS, TLS, or a timeout."""


#: Errors a task must not retry: the DAGs' retry policies fail at once on these.
NEVER_RETRY: tuple[type[BaseException], ...] = (
    ConfigurationError,
    DailyQuotaError,
    RequestRejectedError,
)
