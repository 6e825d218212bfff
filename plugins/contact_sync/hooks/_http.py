"""What both hooks share: reading extras, the token cache, timeouts, and the one retry loop.

A hook's ``_request`` sends one attempt through :meth:`RetryingCaller.send` and classifies the
answer; it raises :class:`Retry` for what the service documents as transient and
:class:`Reauthenticate` for a refused token. :meth:`RetryingCaller.run` turns those signals into
bounded, logged retries with exponential backoff and jitter, so the two hooks behave the same.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests

from contact_sync.hooks.errors import HookConfigError, ServiceError, redact

log = logging.getLogger(__name__)

T = TypeVar("T")

Timeout = tuple[float, float]
"""``(connect, read)`` seconds, as ``requests`` takes them."""


# --- Connection extras ------------------------------------------------------------------------


class ConnectionExtras:
    """Typed access to a Connection's ``extra`` JSON; every error names the connection and key."""

    def __init__(self, conn_id: str, extras: Mapping[str, Any]) -> None:
        self.conn_id = conn_id
        self._extras = dict(extras)

    def _fail(self, key: str, problem: str) -> HookConfigError:
        return HookConfigError(f"Connection {self.conn_id!r}: extra {key!r} {problem}")

    def warn_unknown(self, known: Iterable[str]) -> None:
        """Log extras the hook does not read, so a typo does not pass silently."""
        unknown = sorted(set(self._extras) - set(known))
        if unknown:
            log.warning("Connection %r: ignoring unknown extras %s", self.conn_id, unknown)

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._extras.get(key, default)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            raise self._fail(key, f"must be a string, not {type(value).__name__}")
        return value.strip()

    def required_text(self, key: str, what: str) -> str:
        value = self.text(key)
        if not value:
            raise self._fail(key, f"is required ({what})")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self._extras.get(key, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self._fail(key, f"must be a number, not {value!r}") from None
        if not math.isfinite(number) or number < minimum:
            raise self._fail(key, f"must be a number ≥ {minimum}, not {value!r}")
        return number

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        number = self.number(key, default, minimum=minimum)
        if number != int(number):
            raise self._fail(key, f"must be a whole number, not {number!r}")
        return int(number)

    def timeout(self, default: Timeout, key: str = "timeout") -> Timeout:
        """``timeout``: one number for both phases, or ``[connect, read]``."""
        value = self._extras.get(key)
        if value is None:
            return default
        if isinstance(value, list | tuple):
            if len(value) != 2:
                raise self._fail(key, "must be seconds or [connect, read]")
            connect, read = value
        else:
            connect = read = value
        try:
            pair = (float(connect), float(read))
        except (TypeError, ValueError):
            raise self._fail(key, f"must be seconds or [connect, read], not {value!r}") from None
        if not all(math.isfinite(s) and s > 0 for s in pair):
            raise self._fail(key, f"must be positive seconds, not {value!r}")
        return pair

    def retry_policy(self, default: RetryPolicy) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.integer("max_attempts", default.max_attempts),
            backoff_base=self.number("backoff_base", default.backoff_base),
            backoff_max=self.number("backoff_max", default.backoff_max),
            max_retry_after=self.number("max_retry_after", default.max_retry_after),
        )


RETRY_EXTRAS = ("max_attempts", "backoff_base", "backoff_max", "max_retry_after")
"""Extras read by :meth:`ConnectionExtras.retry_policy`, for both Connections."""


# --- Retries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_attempts`` tries in all, waits doubling from ``backoff_base``."""

    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    # The longest server-requested wait (Retry-After) we sit through; a longer one fails the call
    # and leaves the decision to the task's own retries instead of holding a worker slot.
    max_retry_after: float = 300.0

    def backoff(self, retry_number: int) -> float:
        """Seconds before retry ``retry_number`` (1-based): "equal jitter" exponential backoff.

        Half the delay is fixed so waits really grow; the random half spreads out clients that
        failed together (a 606 storm hits every worker at once).
        """
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (retry_number - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


class Retry(Exception):
    """Raised by an attempt: the failure is transient; ``error`` is raised if no retry is left."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(str(error))
        self.error = error


class Reauthenticate(Exception):
    """Raised by an attempt: the token was refused; fetch a new one and try once more."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(str(error))
        self.error = error


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), ``None`` if absent."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def require_credentials(conn_id: str, conn: Any, *, host_what: str) -> None:
    """Every service Connection needs a host, a client id (login) and a client secret (password)."""
    if not conn.host:
        raise HookConfigError(f"Connection {conn_id!r}: host ({host_what}) is required")
    if not conn.login or not conn.password:
        raise HookConfigError(
            f"Connection {conn_id!r}: login (client id) and password (client secret) are required"
        )


class RetryingCaller:
    """One ``requests.Session`` with a mandatory timeout, and the bounded retry loop around it.

    ``calls`` counts every request handed to the transport, retries and token requests included,
    by ``"METHOD /path"``: what the service will bill against its limits, for run reports.
    """

    def __init__(
        self,
        *,
        session: requests.Session,
        timeout: Timeout,
        policy: RetryPolicy,
        transport_error: Callable[[str], ServiceError],
        logger: logging.Logger,
        sleep: Callable[[float], None] = time.sleep,
        calls: Counter[str] | None = None,
    ) -> None:
        self.session = session
        self.calls: Counter[str] = Counter() if calls is None else calls
        self.timeout = timeout
        self.policy = policy
        self._transport_error = transport_error
        self._log = logger
        self._sleep = sleep

    def send(
        self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any
    ) -> requests.Response:
        """One HTTP exchange with the ``(connect, read)`` timeout.

        A failure to connect is always retryable (the request never arrived); a read timeout only
        for idempotent requests, as a write may have happened. The exception text of ``requests``
        holds the full URL, so it is replaced by a redacted one (``from None``).
        """
        # A method override (Marketo's ``POST ...?_method=GET`` lookups) is what the call does.
        override = (kwargs.get("params") or {}).get("_method")
        self.calls[describe_url(override or method, url)] += 1
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            error = self._transport_error(
                f"{method} {_path_of(url)} failed: {type(exc).__name__} "
                f"(timeout {self.timeout[0]:g}/{self.timeout[1]:g} s)"
            )
            never_arrived = isinstance(exc, requests.ConnectionError | requests.ConnectTimeout)
            if idempotent or never_arrived:
                raise Retry(error) from None
            raise error from None

    def run(self, attempt: Callable[[], T], *, what: str, reauthenticate: Callable[[], None]) -> T:
        """Call ``attempt`` until it returns, acting on :class:`Retry` and :class:`Reauthenticate`.

        A refused token is renewed once per call (it does not use up an attempt); a second refusal
        is an auth error. Transient failures are retried up to ``max_attempts`` tries in all.
        """
        policy = self.policy
        reauthenticated = False
        tries = 1
        while True:
            try:
                return attempt()
            except Reauthenticate as signal:
                if reauthenticated:
                    raise signal.error from None
                reauthenticated = True
                self._log.info(
                    "%s: token refused (%s); renewing it once", what, signal.error.summary
                )
                reauthenticate()
            except Retry as signal:
                error = signal.error
                if tries >= policy.max_attempts:
                    self._log.error("%s failed after %d attempts: %s", what, tries, error.summary)
                    raise error from None
                if error.retry_after is not None and error.retry_after > policy.max_retry_after:
                    self._log.error(
                        "%s: the service asks to wait %.0f s, more than max_retry_after (%.0f s)",
                        what,
                        error.retry_after,
                        policy.max_retry_after,
                    )
                    raise error from None
                wait = error.retry_after if error.retry_after is not None else policy.backoff(tries)
                tries += 1
                self._log.warning(
                    "%s: %s; retrying in %.2f s (attempt %d of %d)",
                    what,
                    error.summary,
                    wait,
                    tries,
                    policy.max_attempts,
                )
                self._sleep(wait)


def _path_of(url: str) -> str:
    """The URL without its query string, which may hold ids, filters or credentials."""
    return url.split("?", 1)[0]


def describe_url(method: str, url: str) -> str:
    """``"GET /api/data/v9.2/contacts"``: what retry logs name a call by."""
    path = _path_of(url)
    scheme_end = path.find("://")
    if scheme_end >= 0:
        slash = path.find("/", scheme_end + 3)
        path = path[slash:] if slash >= 0 else "/"
    return f"{method} {path}"


# --- Tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    value: str
    lifetime: float  # seconds the issuer says it remains valid


class TokenCache:
    """A bearer token kept for its real lifetime and renewed early; thread-safe.

    The renewal margin is 10 % of the lifetime, capped at ``max_margin``: 5 minutes before an hour
    token expires, and for Marketo, whose identity endpoint hands back the same token with its
    REMAINING lifetime, proportionally less each time, so a token near its end is fetched a few
    times rather than on every call.
    """

    def __init__(
        self,
        fetch: Callable[[], IssuedToken],
        *,
        max_margin: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_margin = max_margin
        self._clock = clock
        self._value: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if self._value is None or self._clock() >= self._renew_at:
                issued = self._fetch()
                margin = min(self._max_margin, issued.lifetime * 0.1)
                self._value = issued.value
                self._renew_at = self._clock() + issued.lifetime - margin
                log.debug("Fetched a token valid for %.0f s", issued.lifetime)
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._value = None


def response_excerpt(response: requests.Response) -> str:
    """A short, redacted excerpt of an answer's body for an error text."""
    return redact(response.text or "")


def json_or_none(response: requests.Response) -> Any:
    """The JSON body, or ``None`` when the body is not JSON (an HTML error page from a proxy)."""
    try:
        return response.json()
    except ValueError:
        return None
