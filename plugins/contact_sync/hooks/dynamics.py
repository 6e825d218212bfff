"""``DynamicsHook``: reads contacts and accounts from the Dataverse Web API (Dynamics 365).

Connection ``dynamics365_default``, of type ``dynamics365`` ("Dynamics 365 (Dataverse Web API)" in
the UI's connection form; ``http`` still works in JSON):

- ``host``: the environment URL, ``https://contoso.crm.dynamics.com`` (``https://`` is assumed
  when no scheme is given); ``port``: empty, or the URL's port (443; the UI form asks for it);
- ``login`` / ``password``: the app registration's client id and client secret;
- ``extra`` (JSON)::

    {
      "tenant_id": "<directory (tenant) id or domain>",       # required
      "authority_host": "https://login.microsoftonline.com",  # default
      "resource_url": "<host>",                                # default: the environment URL
      "api_version": "v9.2",                                   # default
      "timeout": [10, 60],                                     # seconds, or one number for both
      "max_attempts": 5,         # tries per request in all (1 = no retries)
      "backoff_base": 1.0,       # first backoff in seconds, doubling per retry (with jitter)
      "backoff_max": 60.0,       # longest backoff
      "max_retry_after": 300,    # longest Retry-After (429) waited out; longer fails at once
      "proxies": {"https": "http://proxy:3128"},  # as in the HTTP provider; also
      "verify": "/etc/ssl/private-ca.pem",        # true / false / a CA bundle, "cert", "trust_env"
    }

Locally, as an environment variable::

    AIRFLOW_CONN_DYNAMICS365_DEFAULT='{"conn_type": "dynamics365",
      "host": "https://contoso.crm.dynamics.com", "login": "<client id>",
      "password": "<client secret>", "extra": {"tenant_id": "<tenant>"}}'

Tokens come from Entra ID's v2.0 client-credentials endpoint with ``scope=<resource_url>/.default``
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlencode

import requests

from contact_sync.errors import (
    ConfigurationError,
    CredentialsError,
    NotFoundError,
    RateLimitError,
    RequestRejectedError,
    Service,
    ServiceError,
    TransientError,
    TransportError,
)
from contact_sync.events import normalize_guid
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
    parse_retry_after,
    response_excerpt,
    unexpected_answer,
    with_port,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Timeout = (10.0, 60.0)
DEFAULT_RETRY = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_max=60.0, max_retry_after=300)
# "Max URL length 32 KB (32,768 chars)": longer id lists are split. https://learn.microsoft.com/
# power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
MAX_URL_LENGTH = 32_768
MAX_PAGE_SIZE = 5_000
# Entra ID's AADSTS codes (https://learn.microsoft.com/entra/identity-platform/reference-error-codes)
# that name what to fix in the Connection, for the Test button's message.
_TENANT_CODES = {90002}  # InvalidTenantName: the tenant id or domain does not exist
_CLIENT_ID_CODES = {700016}  # UnauthorizedClient_DoesNotMatchRequest: unknown application id
_AADSTS = re.compile(r"AADSTS(\d+)")

_ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "If-None-Match": "null",
}
# OData expressions stay readable in the URL (and in its measured length) like Microsoft's
# examples; everything else, spaces and '+' included, is percent-encoded.
_QUERY_SAFE = "$,()'=:/"
_EXTRAS = ("tenant_id", "authority_host", "resource_url", "api_version")


@dataclass(frozen=True, kw_only=True)
class DynamicsSettings(ServiceSettings):
    """Everything the hook needs from its Connection, checked once."""

    environment_url: str
    resource_url: str
    api_url: str
    token_url: str
    scope: str


class DynamicsHook(ServiceHook):
    """Dataverse Web API client: one session, one cached Entra ID token, one ``_request``.

    :param dynamics365_conn_id: the Airflow Connection to use (see the module docstring).
    """

    conn_name_attr = "dynamics365_conn_id"
    default_conn_name = "dynamics365_default"
    conn_type = "dynamics365"
    hook_name = "Dynamics 365 (Dataverse Web API)"
    service = "dataverse"
    user_agent = "contact-sync-dynamics-hook"
    default_timeout = DEFAULT_TIMEOUT
    default_retry = DEFAULT_RETRY

    def __init__(self, dynamics365_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.dynamics365_conn_id = dynamics365_conn_id

    @cached_property
    def settings(self) -> DynamicsSettings:
        conn, extras, common = self._read_connection(
            host_what="the environment URL", extras=_EXTRAS
        )
        environment_url = with_port(_base_url(conn.host), conn.port, self.conn_id)
        resource_url = extras.text("resource_url", environment_url).rstrip("/")
        authority = extras.text("authority_host", "https://login.microsoftonline.com").rstrip("/")
        tenant = extras.required_text("tenant_id", "the Entra ID directory (tenant) id")
        api_version = extras.text("api_version", "v9.2")
        return DynamicsSettings(
            **common,
            environment_url=environment_url,
            resource_url=resource_url,
            api_url=f"{environment_url}/api/data/{api_version}",
            token_url=f"{authority}/{quote(tenant, safe='')}/oauth2/v2.0/token",
            scope=f"{resource_url}/.default",
        )

    def _fetch_token(self) -> IssuedToken:
        """A client-credentials token from Entra ID's v2.0 endpoint (secret in the body)."""
        settings = self.settings
        response = self._caller.send(
            "POST",
            settings.token_url,
            service="entra",
            data={
                "grant_type": "client_credentials",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
                "scope": settings.scope,
            },
        )
        body = json_or_none(response)
        status = response.status_code
        if status == 429:
            raise Retry(_error(RateLimitError, "entra", response, "Entra ID token request"))
        if status >= 500:
            raise Retry(_error(TransientError, "entra", response, "Entra ID token request"))
        if status == 200 and not (isinstance(body, dict) and "access_token" in body):
            raise unexpected_answer(response, service="entra", what="Entra ID token request")
        if status != 200:
            body = body if isinstance(body, dict) else {}
            raise CredentialsError(
                f"Entra ID refused the client credentials of connection {settings.conn_id!r}",
                service="entra",
                status=status,
                code=body.get("error"),
                # error_description names the AADSTS reason; it never echoes the secret.
                excerpt=body.get("error_description") or response_excerpt(response),
            )
        log.info("Fetched an Entra ID token for connection %r", settings.conn_id)
        return IssuedToken(value=body["access_token"], lifetime=float(body.get("expires_in", 0)))

    # --- The choke point ------------------------------------------------------------------------

    def _request(self, method: str, url: str, *, headers: dict[str, str] | None = None) -> Any:
        """Send a Web API request with auth, OData headers, timeout, retries and error mapping.

        ``url`` is absolute (a ``@odata.nextLink``) or relative to the API root. A success with a
        body answers the JSON object Dataverse documents, anything else is a typed error.
        """
        settings = self.settings
        if "://" not in url:
            url = f"{settings.api_url}/{url.lstrip('/')}"
        elif not any(
            url.lower().startswith(f"{origin.lower()}/api/data/")
            for origin in (settings.environment_url, settings.resource_url)
        ):
            # A nextLink names the environment as Dataverse knows it (the host or the resource
            # URL); the bearer token must never go anywhere else.
            raise RequestRejectedError(
                f"refusing to send a token to a foreign URL ({url[:60]}…)", service="dataverse"
            )
        what = describe_url(method, url)

        def attempt() -> Any:
            token = self._tokens.get()
            response = self._caller.send(
                method,
                url,
                headers={**_ODATA_HEADERS, **(headers or {}), "Authorization": f"Bearer {token}"},
            )
            status = response.status_code
            if status < 400:
                if not response.content:
                    return None
                body = json_or_none(response)
                if not isinstance(body, dict):
                    raise unexpected_answer(response, service="dataverse", what=what)
                return body
            if status == 401:
                raise Reauthenticate(
                    _error(CredentialsError, "dataverse", response, "token refused")
                )
            if status == 429:
                raise Retry(
                    _error(RateLimitError, "dataverse", response, "service protection limit")
                )
            if status >= 500:
                raise Retry(_error(TransientError, "dataverse", response, "server error"))
            if status == 404:
                raise _error(NotFoundError, "dataverse", response, f"{what} not found")
            raise _error(RequestRejectedError, "dataverse", response, f"{what} rejected")

        return self._caller.run(attempt, what=what, reauthenticate=self._tokens.invalidate)

    # --- Reads ----------------------------------------------------------------------------------

    def get_contacts(
        self,
        ids: Iterable[str],
        *,
        select: Sequence[str],
        account_select: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Contacts by id (lower-case id → record); ids Dataverse does not have are absent."""
        params = _query_options(select, account_select)
        return self._get_by_ids("contacts", "contactid", ids, params)

    def get_accounts(
        self, ids: Iterable[str], *, select: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Accounts by id (lower-case id → record); ids Dataverse does not have are absent."""
        return self._get_by_ids("accounts", "accountid", ids, _query_options(select, None))

    def _get_by_ids(
        self, entity_set: str, key: str, ids: Iterable[str], params: dict[str, str]
    ) -> dict[str, dict[str, Any]]:
        """One ``Microsoft.Dynamics.CRM.In`` query per URL-sized chunk of ids."""
        wanted = sorted({normalize_guid(i, what=f"{entity_set} id") for i in ids})
        if not wanted:
            return {}

        def url_for(chunk: Sequence[str]) -> str:
            values = ",".join(f"'{i}'" for i in chunk)
            id_filter = f"Microsoft.Dynamics.CRM.In(PropertyName='{key}',PropertyValues=[{values}])"
            return _url(entity_set, {**params, "$filter": id_filter})

        found: dict[str, dict[str, Any]] = {}
        chunks = _chunks_fitting(wanted, url_for, self._max_url_length())
        for chunk in chunks:
            for page in self._pages(url_for(chunk), MAX_PAGE_SIZE):
                for record in page:
                    found[str(record[key]).lower()] = record
        log.info(
            "Read %d of %d %s in %d request chunk(s)",
            len(found),
            len(wanted),
            entity_set,
            len(chunks),
        )
        return found

    def _max_url_length(self) -> int:
        return MAX_URL_LENGTH - len(self.settings.api_url) - 1

    def iter_contact_pages(
        self,
        *,
        filter: str,
        select: Sequence[str],
        orderby: str = "modifiedon asc,contactid asc",
        page_size: int = MAX_PAGE_SIZE,
        account_select: Sequence[str] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of contacts matching an OData ``filter``, fetched as they are consumed."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        params = {**_query_options(select, account_select), "$filter": filter, "$orderby": orderby}
        yield from self._pages(_url("contacts", params), page_size)

    def _pages(self, url: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """Follow ``@odata.nextLink`` verbatim, resending the same page size, until it is absent."""
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        next_url: str | None = url
        pages = 0
        while next_url:
            body = self._request("GET", next_url, headers=headers)
            pages += 1
            records = body.get("value", [])
            log.debug("Page %d: %d record(s)", pages, len(records))
            yield records
            next_url = body.get("@odata.nextLink")

    def _check(self) -> str:
        """Fetch a token and read one contact id (Airflow's "Test connection").

        Reading a contact, rather than calling ``WhoAmI``, also proves the application user may
        read the table the sync needs.
        """
        self._request("GET", _url("contacts", {"$select": "contactid", "$top": "1"}))
        return f"Connected to {self.settings.environment_url}; contacts are readable"

    def _explain(self, error: ServiceError | ConfigurationError) -> str:
        """Name what to fix: the tenant, the credentials, the URL or the permissions."""
        text = str(error)
        if isinstance(error, CredentialsError) and error.service == "entra":
            code = _aadsts_code(error.excerpt or "")
            if code in _TENANT_CODES:
                return f"Tenant id not found by Entra ID: check the tenant id. {text}"
            if code in _CLIENT_ID_CODES:
                return f"Credentials: Entra ID does not know this client id. {text}"
            return f"Credentials: Entra ID refused the client id / client secret. {text}"
        if isinstance(error, CredentialsError):
            return (
                "Credentials: Dataverse refused a fresh token; is the app registration an "
                f"application user of this environment? {text}"
            )
        if isinstance(error, TransportError) and error.service == "entra":
            return f"URL: could not reach Entra ID; check the authority host. {text}"
        if isinstance(error, TransportError):
            return f"URL: could not reach the service; check the environment URL. {text}"
        if isinstance(error, NotFoundError):
            return f"URL: not found; check the environment URL and API version. {text}"
        if isinstance(error, ServiceError) and error.status == 403:
            return (
                "Permissions: the application user may not read contacts; give it a security "
                f"role with read access to Contact. {text}"
            )
        return text


def _error(
    kind: type[ServiceError], service: Service, response: requests.Response, message: str
) -> ServiceError:
    """A typed error from a Dataverse or Entra ID answer: status, code, request id, excerpt."""
    body = json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    return kind(
        message,
        service=service,
        status=response.status_code,
        code=error.get("code") or None,  # Dataverse often sends an empty code
        excerpt=error.get("message") or response_excerpt(response),
        request_id=response.headers.get("x-ms-service-request-id"),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def _aadsts_code(description: str) -> int | None:
    """The number of an Entra ID error description, ``"AADSTS90002: Tenant ..."`` → 90002."""
    match = _AADSTS.search(description)
    return int(match.group(1)) if match else None


def _query_options(select: Sequence[str], account_select: Sequence[str] | None) -> dict[str, str]:
    if not select:
        raise ValueError("select must name at least one column")
    params = {"$select": ",".join(select)}
    if account_select:
        params["$expand"] = f"parentcustomerid_account($select={','.join(account_select)})"
    return params


def _url(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params, quote_via=quote, safe=_QUERY_SAFE)}"


def _chunks_fitting(
    ids: list[str], url_for: Callable[[Sequence[str]], str], max_length: int
) -> list[list[str]]:
    """Split ``ids`` into as few chunks as keep every ``url_for(chunk)`` within ``max_length``.

    Canonical GUIDs all have the same length, so each id adds the same number of characters:
    two measurements give the capacity exactly.
    """
    one = len(url_for(ids[:1]))
    per_id = len(url_for(ids[:2])) - one if len(ids) > 1 else 0
    if one > max_length:
        raise ValueError("the select list alone makes the URL too long for Dataverse")
    capacity = len(ids) if per_id == 0 else 1 + (max_length - one) // per_id
    return [ids[i : i + capacity] for i in range(0, len(ids), capacity)]


def _base_url(host: str) -> str:
    url = host.strip().rstrip("/")
    return url if "://" in url else f"https://{url}"
