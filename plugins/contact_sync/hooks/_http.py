"""What both hooks share: :class:`ServiceHook` (the Connection preamble, the session, the call
counter, the token cache), reading extras, timeouts, and the one retry loop.

A hook's ``_request`` sends one attempt through :meth:`RetryingCaller.send` and classifies the
answer; it raises :class:`Retry` for what the service documents as transient and
:class:`Reauthenticate` for a refused token. :meth:`RetryingCaller.run` turns those signals into
bounded, logged retries with exponential backoff and jitter, so the two hooks behave the same.

Why not ``HttpHook`` (apache-airflow-providers-http): it sends every extra it does not know as a
request header, so ``tenant_id`` and our retry settings would travel to Entra ID, Dataverse and
Marketo; its ``run``/``check_response`` raise one ``AirflowException`` for every status, where
the two services need their own classification (Retry-After, Marketo's 200-with-error envelope).
What users know from it is kept: the extras ``proxies``, ``verify``, ``cert`` and ``trust_env``
with its meanings and defaults, and its TCP keep-alive adapter (from ``requests-toolbelt``).
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from airflow.sdk import BaseHook
from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter

from contact_sync.errors import (
    ConfigurationError,
    RequestRejectedError,
    ServiceError,
    TransportError,
    redact,
)

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

    def _fail(self, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"Connection {self.conn_id!r}: extra {key!r} {problem}")

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

    def flag(self, key: str, default: bool) -> bool:
        """A JSON boolean (the UI's checkbox); ``"true"``/``"false"`` as typed into the JSON."""
        value = self._extras.get(key, default)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, not {value!r}")
        return value

    def file_path(self, key: str, value: Any) -> str:
        path = os.path.expanduser(value.strip()) if isinstance(value, str) else ""
        if not path or not os.path.isfile(path):
            raise self._fail(key, f"must name a readable file on the worker, not {value!r}")
        return path

    def http_options(self) -> HttpOptions:
        """``proxies``, ``verify``, ``cert``, ``trust_env``: the HTTP provider's extras.

        Same names, meanings and defaults as ``HttpHook``'s, which are ``requests``' session
        attributes: https://requests.readthedocs.io/en/latest/user/advanced/ (proxies, SSL
        verification, client certificates, and ``trust_env`` for the ``*_PROXY`` variables and
        ``REQUESTS_CA_BUNDLE``).
        """
        proxies = self._extras.get("proxies") or {}
        if not isinstance(proxies, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in proxies.items()
        ):
            raise self._fail("proxies", 'must map a scheme to a proxy URL: {"https": "http://…"}')
        verify: bool | str = self._extras.get("verify", True)
        if isinstance(verify, str) and verify.strip().lower() in ("true", "false"):
            verify = self.flag("verify", True)
        elif not isinstance(verify, bool):
            verify = self.file_path("verify", verify)  # a CA bundle (PEM) for a private CA
        cert = self._extras.get("cert")
        if cert is not None and cert != "":
            parts = cert if isinstance(cert, list) else [cert]
            if len(parts) not in (1, 2):
                raise self._fail("cert", "must be a PEM file or [certificate file, key file]")
            paths = tuple(self.file_path("cert", part) for part in parts)
            cert = paths[0] if len(paths) == 1 else paths
        else:
            cert = None
        return HttpOptions(
            proxies=dict(proxies), verify=verify, cert=cert, trust_env=self.flag("trust_env", True)
        )

    def retry_policy(self, default: RetryPolicy) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.integer("max_attempts", default.max_attempts),
            backoff_base=self.number("backoff_base", default.backoff_base),
            backoff_max=self.number("backoff_max", default.backoff_max),
            max_retry_after=self.number("max_retry_after", default.max_retry_after),
        )


RETRY_EXTRAS = ("max_attempts", "backoff_base", "backoff_max", "max_retry_after")
"""Extras read by :meth:`ConnectionExtras.retry_policy`, for both Connections."""
HTTP_EXTRAS = ("proxies", "verify", "cert", "trust_env")
"""Extras read by :meth:`ConnectionExtras.http_options`, for both Connections."""


@dataclass(frozen=True)
class HttpOptions:
    """How the session reaches the service: proxies, TLS verification, client certificate."""

    proxies: dict[str, str] = field(default_factory=dict)
    verify: bool | str = True
    cert: str | tuple[str, ...] | None = None
    trust_env: bool = True


def new_session(options: HttpOptions, user_agent: str) -> requests.Session:
    """A session configured like ``HttpHook``'s, with its TCP keep-alive adapter and defaults.

    Keep-alive probes (first after 120 s idle, then every 30 s) keep a connection alive through
    load balancers and NAT gateways that drop idle TCP flows (Azure's default idle timeout is
    4 minutes: https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-tcp-reset)
    while a long Sync Leads call is answered.
    """
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    session.proxies.update(options.proxies)
    session.verify = options.verify
    session.cert = options.cert
    session.trust_env = options.trust_env
    adapter = TCPKeepAliveAdapter(idle=120, count=20, interval=30)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
        service: str,
        logger: logging.Logger,
        sleep: Callable[[float], None] = time.sleep,
        calls: Counter[str] | None = None,
    ) -> None:
        self.session = session
        self.calls: Counter[str] = Counter() if calls is None else calls
        self.timeout = timeout
        self.policy = policy
        self._service = service
        self._log = logger
        self._sleep = sleep

    def send(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool = True,
        service: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP exchange with the ``(connect, read)`` timeout.

        A failure to connect is always retryable (the request never arrived); a read timeout only
        for idempotent requests, as a write may have happened. The exception text of ``requests``
        holds the full URL, so it is replaced by a redacted one (``from None``). ``service``
        names another service than the caller's for a transport failure (Dataverse's tokens come
        from Entra ID).
        """
        # A method override (Marketo's ``POST ...?_method=GET`` lookups) is what the call does.
        override = (kwargs.get("params") or {}).get("_method")
        self.calls[describe_url(override or method, url)] += 1
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            error = TransportError(
                f"{method} {_path_of(url)} failed: {type(exc).__name__} "
                f"(timeout {self.timeout[0]:g}/{self.timeout[1]:g} s)",
                service=service or self._service,  # type: ignore[arg-type]
            )
            never_arrived = isinstance(exc, requests.ConnectionError | requests.ConnectTimeout)
            if idempotent or never_arrived:
                raise Retry(error) from None
            raise error from None

    def run(self, attempt: Callable[[], T], *, what: str, reauthenticate: Callable[[], None]) -> T:
        """Call ``attempt`` until it returns, acting on :class:`Retry` and :class:`Reauthenticate`.

        A refused token is renewed once per call (it does not use up an attempt); a second refusal
        is an auth error. Transient failures are retried up to ``max_attempts`` tries in all.

        Not tenacity (which ``HttpHook.run_with_advanced_retry`` uses): the renewal that does not
        count as an attempt, the stop on a too-long Retry-After and the wait taken from the error
        would each be a custom ``retry``/``stop``/``wait`` callable reading the same exception,
        plus a ``before_sleep`` for the log line: longer than this loop, and split in four.
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


def unexpected_answer(response: requests.Response, *, service: str, what: str) -> ServiceError:
    """A success status whose body is not the JSON the API documents (a proxy's HTML page)."""
    content_type = response.headers.get("Content-Type", "").split(";")[0] or "untyped"
    return RequestRejectedError(
        f"{what}: HTTP {response.status_code} with a {content_type} body instead of JSON; "
        "is a proxy answering, or does the host point at the wrong site?",
        service=service,  # type: ignore[arg-type]
        status=response.status_code,
        excerpt=response_excerpt(response),
    )


_DEFAULT_PORTS = {"https": 443, "http": 80}


def with_port(url: str, port: int | None, conn_id: str) -> str:
    """``url`` with the Connection's ``port``, which may only repeat the port the URL has.

    The UI form asks for the port (its Test button needs one stored: see
    ``contact_sync.provider``); JSON connections may leave it out, and 0 counts as none. A port
    that is the URL's own (explicit, or 443 for https) leaves the URL as it is: Entra ID scopes
    and Dataverse's ``@odata.nextLink`` name the environment without ``:443``, and the hooks
    compare those URLs as text. Another port is added to a URL that names none.
    """
    if not port:
        return url
    parts = urlsplit(url)
    try:
        explicit = parts.port
    except ValueError:
        raise ConfigurationError(
            f"Connection {conn_id!r}: host has an invalid port ({parts.netloc})"
        ) from None
    if port == (explicit or _DEFAULT_PORTS.get(parts.scheme.lower())):
        return url
    if explicit is not None:
        raise ConfigurationError(
            f"Connection {conn_id!r}: port {port} differs from the port in the host URL "
            f"({explicit}); make them equal or remove the port from the URL"
        )
    return urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))


# --- The shared hook --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """What every service Connection holds, checked once; each hook adds its own fields."""

    conn_id: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout: Timeout
    retry: RetryPolicy
    http: HttpOptions


class ServiceHook(BaseHook):
    """The plumbing both hooks share: Connection preamble, session, call counter, token cache.

    A subclass names its ``service`` (for transport errors), builds ``settings`` from
    :meth:`_read_connection`, fetches tokens in ``_fetch_token`` and says in ``_check`` what the
    UI's Test button does, and in ``_explain`` what a failure of it means.
    """

    conn_name_attr: ClassVar[str]
    service: ClassVar[str]
    user_agent: ClassVar[str]
    default_timeout: ClassVar[Timeout]
    default_retry: ClassVar[RetryPolicy]
    # The renewal margin of the token cache (see TokenCache).
    token_margin: ClassVar[float] = 300.0

    def __init__(self) -> None:
        super().__init__()
        # Requests sent by this hook (retries and token requests included) by "METHOD /path";
        # run reports show how much of the service's quota a run used.
        self.api_calls: Counter[str] = Counter()

    @property
    def conn_id(self) -> str:
        return getattr(self, self.conn_name_attr)

    @cached_property
    def settings(self) -> ServiceSettings:
        raise NotImplementedError

    def _read_connection(
        self, *, host_what: str, extras: Iterable[str]
    ) -> tuple[Any, ConnectionExtras, dict[str, Any]]:
        """The Connection, its extras, and the settings every hook has, after the common checks.

        Every service Connection needs a host, a client id (login) and a client secret (password).
        """
        conn_id = self.conn_id
        conn = self.get_connection(conn_id)
        reader = ConnectionExtras(conn_id, conn.extra_dejson)
        reader.warn_unknown((*extras, "timeout", *RETRY_EXTRAS, *HTTP_EXTRAS))
        if not conn.host:
            raise ConfigurationError(f"Connection {conn_id!r}: host ({host_what}) is required")
        if not conn.login or not conn.password:
            raise ConfigurationError(
                f"Connection {conn_id!r}: login (client id) and password (client secret) "
                "are required"
            )
        common = {
            "conn_id": conn_id,
            "client_id": conn.login,
            "client_secret": conn.password,
            "timeout": reader.timeout(self.default_timeout),
            "retry": reader.retry_policy(self.default_retry),
            "http": reader.http_options(),
        }
        return conn, reader, common

    @cached_property
    def session(self) -> requests.Session:
        return new_session(self.settings.http, self.user_agent)

    def get_conn(self) -> requests.Session:
        """The hook's ``requests.Session`` (Airflow's hook interface)."""
        return self.session

    @cached_property
    def _caller(self) -> RetryingCaller:
        settings = self.settings
        return RetryingCaller(
            session=self.session,
            timeout=settings.timeout,
            policy=settings.retry,
            service=self.service,
            logger=logging.getLogger(type(self).__module__),
            calls=self.api_calls,
        )

    @cached_property
    def _tokens(self) -> TokenCache:
        return TokenCache(self._fetch_token, max_margin=self.token_margin)

    def _fetch_token(self) -> IssuedToken:
        raise NotImplementedError

    def _check(self) -> str:
        """A token and one cheap read; the success message."""
        raise NotImplementedError

    def _explain(self, error: ServiceError | ConfigurationError) -> str:
        """What a failed :meth:`test_connection` means, naming what to fix."""
        return str(error)

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test connection" (the UI's Test button): a token and one cheap read.

        The message leaves out the connection id: the API's test endpoint hands the hook a
        random transient id, which would name no connection the user knows, and the user knows
        which connection they are testing.
        """
        try:
            return True, self._check()
        except (ServiceError, ConfigurationError) as exc:
            message = self._explain(exc)
        quoted = repr(self.conn_id)
        return False, message.replace(f"Connection {quoted}: ", "").replace(
            f" of connection {quoted}", ""
        )
