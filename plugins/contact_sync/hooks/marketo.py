"""``MarketoHook``: finds and upserts leads (and companies) through Marketo's REST API.

Connection ``marketo_default``, of type ``marketo`` ("Adobe Marketo Engage" in the UI's connection
form; ``http`` still works in JSON):

- ``host``: the REST base URL, ``https://123-ABC-456.mktorest.com``, or just the Munchkin id
  ``123-ABC-456``, which expands to that URL (a trailing ``/rest`` or ``/identity`` is dropped);
- ``port``: empty, or the URL's port (443; the UI form asks for it);
- ``login`` / ``password``: the LaunchPoint custom service's client id and client secret;
- ``extra`` (JSON), all optional::

    {
      "timeout": [10, 90],        # seconds, or one number for both (Sync Leads may take 90 s)
      "max_attempts": 5,          # tries per request in all (1 = no retries)
      "backoff_base": 2.0,        # first backoff in seconds, doubling per retry (with jitter)
      "backoff_max": 30.0,        # longest backoff (Marketo's rate window is 20 s)
      "max_retry_after": 300,     # shared retry knob (Marketo sends no Retry-After)
      "rate_limit_calls": 50,     # client-side sliding window: calls ...
      "rate_limit_window_s": 20,  # ... per this many seconds (Adobe's advice per integration)
      "max_concurrent": 5,        # calls in flight at once, per process (Marketo refuses > 10)
      "proxies": {"https": "http://proxy:3128"},  # as in the HTTP provider; also
      "verify": "/etc/ssl/private-ca.pem"         # true / false / a CA bundle, "cert", "trust_env"
    }

Locally, as an environment variable::

    AIRFLOW_CONN_MARKETO_DEFAULT='{"conn_type": "marketo", "host": "123-ABC-456",
      "login": "<client id>", "password": "<client secret>"}'
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import requests

from contact_sync.errors import (
    ConfigurationError,
    CredentialsError,
    DailyQuotaError,
    RateLimitError,
    RequestRejectedError,
    ServiceError,
    TransientError,
    TransportError,
    redact,
)
from contact_sync.hooks._http import (
    IssuedToken,
    Reauthenticate,
    Retry,
    RetryPolicy,
    ServiceHook,
    ServiceSettings,
    Timeout,
    describe_url,
    json_or_none,
    response_excerpt,
    unexpected_answer,
    with_port,
)
from contact_sync.hooks._limiter import CallLimiter, LimiterSettings, shared_limiter
from contact_sync.models import MAX_RECORDS_PER_CALL

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Timeout = (10.0, 90.0)
DEFAULT_RETRY = RetryPolicy(max_attempts=5, backoff_base=2.0, backoff_max=30.0, max_retry_after=300)
# Adobe's advice is ≤ 50 calls / 20 s per integration (the instance allows 100). The concurrency
# cap is per process and cannot see other workers or integrations, so it keeps half of
# Marketo's 10 free for them.
DEFAULT_LIMITS = LimiterSettings(max_calls=50, window_s=20.0, max_concurrent=5)

# Response-level error codes, as the strings Marketo sends
# (https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes).
AUTH_CODES = frozenset({"600", "601", "602"})  # no / invalid / expired token: renew once
RATE_LIMIT_CODES = frozenset({"606", "615"})  # rate window / concurrency: back off
TRANSIENT_CODES = frozenset(
    {"604", "608", "611", "713"}
)  # time-out, unavailable, system, transient
DAILY_QUOTA_CODE = "607"  # spent until midnight CST: fail fast

_MUNCHKIN_ID = re.compile(r"^\d{3}-[A-Za-z]{3}-\d{3}$")
_EXTRAS = ("rate_limit_calls", "rate_limit_window_s", "max_concurrent")


@dataclass(frozen=True)
class MarketoReason:
    """Why Marketo skipped a record (``code`` is a string such as ``"1004"``)."""

    code: str
    message: str


class _RecordOutcome:
    status: str

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"


@dataclass(frozen=True)
class LeadSyncResult(_RecordOutcome):
    """Marketo's answer for one lead of a Sync Leads call, in input order."""

    status: str  # "created" | "updated" | "skipped"
    lead_id: int | None
    reasons: tuple[MarketoReason, ...] = ()


@dataclass(frozen=True)
class CompanySyncResult(_RecordOutcome):
    """Marketo's answer for one company of a Sync Companies call, in input order."""

    status: str  # "created" | "updated" | "skipped"
    company_id: int | None
    reasons: tuple[MarketoReason, ...] = ()


@dataclass(frozen=True, kw_only=True)
class MarketoSettings(ServiceSettings):
    """Everything the hook needs from its Connection, checked once."""

    base_url: str
    limits: LimiterSettings


class MarketoHook(ServiceHook):
    """Marketo REST client: one session, one cached token, a shared limiter, one ``_request``.

    :param marketo_conn_id: the Airflow Connection to use (see the module docstring).
    """

    conn_name_attr = "marketo_conn_id"
    default_conn_name = "marketo_default"
    conn_type = "marketo"
    hook_name = "Adobe Marketo Engage"
    service = "marketo"
    user_agent = "contact-sync-marketo-hook"
    default_timeout = DEFAULT_TIMEOUT
    default_retry = DEFAULT_RETRY
    # Renew at most a minute early: the identity endpoint re-issues the same token until it
    # really expires, so an earlier renewal only returns it again.
    token_margin = 60.0

    def __init__(self, marketo_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.marketo_conn_id = marketo_conn_id

    @cached_property
    def settings(self) -> MarketoSettings:
        conn, extras, common = self._read_connection(
            host_what="REST base URL or Munchkin id", extras=_EXTRAS
        )
        return MarketoSettings(
            **common,
            base_url=with_port(rest_base_url(conn.host), conn.port, self.conn_id),
            limits=LimiterSettings(
                max_calls=extras.integer("rate_limit_calls", DEFAULT_LIMITS.max_calls),
                window_s=extras.number("rate_limit_window_s", DEFAULT_LIMITS.window_s),
                max_concurrent=extras.integer("max_concurrent", DEFAULT_LIMITS.max_concurrent),
            ),
        )

    @cached_property
    def _limiter(self) -> CallLimiter:
        settings = self.settings
        return shared_limiter(settings.base_url, settings.client_id, settings.limits)

    def _fetch_token(self) -> IssuedToken:
        """A token from the identity endpoint, cached for the REMAINING lifetime it reports.

        Identity calls do not count toward Marketo's limits, so they bypass the limiter.
        """
        settings = self.settings
        response = self._caller.send(
            "POST",
            f"{settings.base_url}/identity/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
            },
        )
        status = response.status_code
        if status >= 500:
            raise Retry(
                TransientError(
                    "identity endpoint failed",
                    service="marketo",
                    status=status,
                    excerpt=response_excerpt(response),
                )
            )
        body = json_or_none(response)
        if status == 200 and not (isinstance(body, dict) and "access_token" in body):
            raise unexpected_answer(response, service="marketo", what="identity token request")
        if status != 200:
            error = body if isinstance(body, dict) else {}
            raise CredentialsError(
                f"identity endpoint refused the client credentials of connection "
                f"{settings.conn_id!r}",
                service="marketo",
                status=status,
                code=error.get("error"),
                excerpt=error.get("error_description") or response_excerpt(response),
            )
        log.info("Fetched a Marketo token for connection %r", settings.conn_id)
        return IssuedToken(value=body["access_token"], lifetime=float(body.get("expires_in", 0)))

    # --- The choke point ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Send a REST call with auth, limiter, timeout, retries and error mapping.

        :return: the envelope of a ``success: true`` answer (``result``, ``nextPageToken``, ...).
        """
        url = f"{self.settings.base_url}{path}"
        what = describe_url(method, url)

        def attempt() -> dict[str, Any]:
            token = self._tokens.get()
            with self._limiter.slot():
                response = self._caller.send(
                    method,
                    url,
                    params=params,
                    data=data,
                    json=json,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    idempotent=idempotent,
                )
            return self._envelope(response, what)

        return self._caller.run(attempt, what=what, reauthenticate=self._tokens.invalidate)

    @staticmethod
    def _envelope(response: requests.Response, what: str) -> dict[str, Any]:
        """The success envelope, or the signal / typed error its status and ``errors[0]`` mean."""
        status = response.status_code
        body = json_or_none(response)
        if status >= 500:
            # 502 is "likely a timeout ... retried with exponential backoff" (Adobe's error codes
            # page, HTTP-level errors)
            raise Retry(TransientError(f"{what}: HTTP {status}", service="marketo", status=status))
        if status != 200:
            # 413 / 414 and anything unexpected: a request we must fix, not retry.
            raise RequestRejectedError(
                f"{what}: HTTP {status}",
                service="marketo",
                status=status,
                excerpt=response_excerpt(response),
            )
        if not isinstance(body, dict):
            raise unexpected_answer(response, service="marketo", what=what)
        if body.get("success") is True:
            return body
        errors = body.get("errors") or [{}]
        code = str(errors[0].get("code", "")) or None
        message = f"{what}: {errors[0].get('message', 'success is false, no error given')}"
        details = {"service": "marketo", "code": code, "request_id": body.get("requestId")}
        if code in AUTH_CODES:
            raise Reauthenticate(CredentialsError(message, **details))
        if code == DAILY_QUOTA_CODE:
            raise DailyQuotaError(message, **details)
        if code in RATE_LIMIT_CODES:
            raise Retry(RateLimitError(message, **details))
        if code in TRANSIENT_CODES:
            raise Retry(TransientError(message, **details))
        raise RequestRejectedError(message, **details)

    # --- Leads ----------------------------------------------------------------------------------

    def iter_leads(
        self, filter_type: str, values: Iterable[str], *, fields: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """Leads whose ``filter_type`` field is one of ``values``, every page of every chunk.

        Always the ``POST ...?_method=GET`` form with the query in the body: filter values are
        email addresses, which then stay out of URLs (proxy logs, urllib3's debug log), and no
        URL length has to be computed to stay under Marketo's 8 KB.
        """
        unique = list(dict.fromkeys(v.strip() for v in values if v and v.strip()))
        if any("," in v for v in unique):
            raise ValueError("Marketo filter values are comma-separated; a value holds a comma")
        for start in range(0, len(unique), MAX_RECORDS_PER_CALL):
            form = {
                "filterType": filter_type,
                "filterValues": ",".join(unique[start : start + MAX_RECORDS_PER_CALL]),
                "fields": ",".join(fields),
                "batchSize": str(MAX_RECORDS_PER_CALL),
            }
            while True:
                body = self._request(
                    "POST", "/rest/v1/leads.json", params={"_method": "GET"}, data=form
                )
                result = body.get("result") or []
                yield from result
                token = body.get("nextPageToken")
                if not result or not token or body.get("moreResult") is False:
                    break
                form = {**form, "nextPageToken": token}

    def find_leads(
        self, filter_type: str, values: Iterable[str], *, fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """All leads matching any of ``values`` (see :meth:`iter_leads`), each lead once."""
        values = list(values)
        leads = list(
            {
                lead["id"]: lead for lead in self.iter_leads(filter_type, values, fields=fields)
            }.values()
        )
        log.info("Found %d lead(s) for %d %s value(s)", len(leads), len(set(values)), filter_type)
        return leads

    def sync_leads(
        self,
        leads: Sequence[Mapping[str, Any]],
        *,
        action: str = "createOrUpdate",
        lookup_field: str = "email",
        partition_name: str | None = None,
    ) -> list[LeadSyncResult]:
        """Create or update leads, 300 per call; one result per input lead, in input order.

        A skipped lead is a result with its reasons, not an exception. A read time-out is not
        retried here (the write may have happened); the task's own retry replays the batch.
        """
        body: dict[str, Any] = {"action": action, "lookupField": lookup_field}
        if partition_name:
            body["partitionName"] = partition_name
        outcomes = [
            LeadSyncResult(status, record_id, reasons)
            for status, record_id, reasons in self._sync("/rest/v1/leads.json", leads, body)
        ]
        _log_outcomes("lead", outcomes)
        return outcomes

    def sync_companies(
        self,
        companies: Sequence[Mapping[str, Any]],
        *,
        action: str = "createOrUpdate",
        dedupe_by: str = "dedupeFields",
    ) -> list[CompanySyncResult]:
        """Create or update company records (keyed by ``externalCompanyId``), like sync_leads."""
        body = {"action": action, "dedupeBy": dedupe_by}
        outcomes = [
            CompanySyncResult(status, record_id, reasons)
            for status, record_id, reasons in self._sync("/rest/v1/companies.json", companies, body)
        ]
        _log_outcomes("company", outcomes)
        return outcomes

    def _sync(
        self, path: str, records: Sequence[Mapping[str, Any]], body: dict[str, Any]
    ) -> Iterator[tuple[str, int | None, tuple[MarketoReason, ...]]]:
        for start in range(0, len(records), MAX_RECORDS_PER_CALL):
            chunk = list(records[start : start + MAX_RECORDS_PER_CALL])
            answer = self._request("POST", path, json={**body, "input": chunk}, idempotent=False)
            results = answer.get("result") or []
            if len(results) != len(chunk):
                raise RequestRejectedError(
                    f"POST {path}: {len(results)} result(s) for {len(chunk)} record(s)",
                    service="marketo",
                    request_id=answer.get("requestId"),
                )
            # Results come in input order; company results also say so with ``seq``.
            results = (
                sorted(results, key=lambda r: r.get("seq", 0)) if "seq" in results[0] else results
            )
            for result in results:
                reasons = tuple(
                    MarketoReason(str(r.get("code", "")), redact(str(r.get("message", ""))))
                    for r in result.get("reasons") or ()
                )
                yield str(result.get("status", "")), result.get("id"), reasons

    def describe_leads(self) -> list[dict[str, Any]]:
        """The lead fields of this instance (``rest.name``, the API name, is not always there)."""
        return self._request("GET", "/rest/v1/leads/describe.json").get("result") or []

    def _check(self) -> str:
        """Fetch a token and describe the lead fields (Airflow's "Test connection")."""
        fields = self.describe_leads()
        return f"Connected to {self.settings.base_url}: {len(fields)} lead fields"

    def _explain(self, error: ServiceError | ConfigurationError) -> str:
        """Name what to fix: the credentials, the URL or the permissions."""
        text = str(error)
        if isinstance(error, CredentialsError):
            return f"Credentials: Marketo refused the client id / client secret. {text}"
        if isinstance(error, TransportError):
            return f"URL: could not reach Marketo; check the REST endpoint or Munchkin id. {text}"
        if isinstance(error, ServiceError) and error.status == 404:
            return f"URL: not found; check the REST endpoint or Munchkin id. {text}"
        if isinstance(error, ServiceError) and error.code == "603":
            # 603 "Access denied": the API user's role lacks the permission for the call.
            return (
                "Permissions: the API user's role may not read lead fields (Read-Only Lead "
                f"or Read-Write Lead). {text}"
            )
        return text


def rest_base_url(host: str) -> str:
    """The REST base URL from a Connection host: a URL, a bare host name or a Munchkin id."""
    host = host.strip().rstrip("/")
    if _MUNCHKIN_ID.match(host):
        return f"https://{host}.mktorest.com"
    if "://" not in host:
        host = f"https://{host}"
    for suffix in ("/rest", "/identity"):
        host = host.removesuffix(suffix)
    return host


def _log_outcomes(kind: str, outcomes: Sequence[_RecordOutcome]) -> None:
    counts = Counter(outcome.status for outcome in outcomes)
    log.info(
        "Synced %d %s record(s): %s", len(outcomes), kind, dict(sorted(counts.items())) or "none"
    )
