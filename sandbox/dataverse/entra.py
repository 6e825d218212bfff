"""Entra ID client-credentials tokens (v2.0 and v1 endpoints) and their check on the Web API.

Tokens are JWTs like Entra's (same claims), signed with HS256 and a key only this process knows:
the Web API can check them without keeping a list, and a token from elsewhere never passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse

from sandbox.common.clock import Clock
from sandbox.dataverse.settings import DataverseSettings


@dataclass(frozen=True)
class TokenClaims:
    client_id: str
    user_id: str  # the application user the client acts as (oid)


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description


def application_user_id(client_id: str) -> str:
    """The Dataverse application user bound to an app registration (stable per client)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"dataverse-sandbox-user/{client_id.lower()}"))


def same_resource(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


class Entra:
    """The token endpoints of one tenant, and the token check the Web API uses."""

    def __init__(
        self,
        settings: Callable[[], DataverseSettings],
        clock: Clock,
        org_url: Callable[[Request], str],
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._org_url = org_url
        self._key = secrets.token_bytes(32)

    async def token_v2(self, request: Request) -> JSONResponse:
        try:
            form = await self._checked_form(request, target="scope")
            scope = form["scope"]
            if not scope.endswith("/.default") or not same_resource(
                scope.removesuffix("/.default"), self._org_url(request)
            ):
                raise EntraError(
                    400,
                    "invalid_scope",
                    70011,
                    "The provided value for the input parameter 'scope' is not valid. "
                    f"The scope {scope} is not valid.",
                )
            token, lifetime, _ = self._issue(form["client_id"], scope.removesuffix("/.default"))
        except EntraError as exc:
            return self._error(exc)
        return JSONResponse({"token_type": "Bearer", "expires_in": lifetime, "access_token": token})

    async def token_v1(self, request: Request) -> JSONResponse:
        try:
            form = await self._checked_form(request, target="resource")
            resource = form["resource"]
            if not same_resource(resource, self._org_url(request)):
                raise EntraError(
                    400,
                    "invalid_resource",
                    500011,
                    f"The resource principal named {resource} was not found in the tenant named "
                    f"{self._settings().tenant_id}. This can happen if the application has not "
                    "been installed by the administrator of the tenant or consented to by any "
                    "user in the tenant. You might have sent your authentication request to the "
                    "wrong tenant.",
                )
            token, lifetime, issued = self._issue(form["client_id"], resource)
        except EntraError as exc:
            return self._error(exc)
        # v1 answers numbers as strings
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": str(lifetime),
                "ext_expires_in": str(lifetime),
                "expires_on": str(issued + lifetime),
                "not_before": str(issued),
                "resource": resource,
                "access_token": token,
            }
        )

    def check(self, authorization: str | None, org_url: str) -> TokenClaims | None:
        """The claims of a valid, unexpired Bearer token for ``org_url``; None otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2 or not token.isascii():
            return None
        header_b64, payload_b64, signature_b64 = token.strip().split(".")
        expected = self._sign(f"{header_b64}.{payload_b64}")
        if not hmac.compare_digest(expected, signature_b64):
            return None
        try:
            claims = json.loads(_b64decode(payload_b64))
        except (ValueError, binascii.Error):
            return None
        now = self._clock.now()
        if not same_resource(claims.get("aud", ""), org_url):
            return None
        if not claims.get("nbf", 0) <= now < claims.get("exp", 0):
            return None
        return TokenClaims(client_id=claims["appid"], user_id=claims["oid"])

    def www_authenticate(self, request: Request, org_url: str) -> str:
        authority = f"{_origin(request)}/{self._settings().tenant_id}/oauth2/authorize"
        return f"Bearer authorization_uri={authority}, resource_id={org_url.rstrip('/')}/"

    async def _checked_form(self, request: Request, *, target: str) -> dict[str, str]:
        """The request's parameters once tenant, grant, client and secret have been checked."""
        settings = self._settings()
        tenant = request.path_params["tenant"]
        if tenant.lower() != settings.tenant_id.lower():
            raise EntraError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud. Check with your subscription "
                "administrator, this may happen if there are no active subscriptions for the "
                "tenant.",
            )
        form = {k: str(v) for k, v in (await request.form()).items()}
        basic_id, basic_secret = _basic_credentials(request.headers.get("authorization"))
        form.setdefault("client_id", basic_id or "")
        form.setdefault("client_secret", basic_secret or "")
        for name in ("grant_type", "client_id", target):
            if not form.get(name):
                raise EntraError(
                    400,
                    "invalid_request",
                    900144,
                    f"The request body must contain the following parameter: '{name}'.",
                )
        if form["grant_type"] != "client_credentials":
            raise EntraError(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type "
                f"'{form['grant_type']}'. Only client_credentials is served by this sandbox.",
            )
        client_id = form["client_id"]
        secret = next(
            (s for c, s in settings.clients.items() if c.lower() == client_id.lower()), None
        )
        if secret is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{settings.tenant_id}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        if not form["client_secret"]:
            raise EntraError(
                settings.invalid_client_status,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
            )
        if not hmac.compare_digest(form["client_secret"].encode(), secret.encode()):
            raise EntraError(
                settings.invalid_client_status,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
            )
        return form

    def _issue(self, client_id: str, audience: str) -> tuple[str, int, int]:
        settings = self._settings()
        issued = int(self._clock.now())
        lifetime = settings.token_lifetime_s
        user = application_user_id(client_id)
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{settings.tenant_id}/",
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
            "appid": client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": user,
            "sub": user,
            "tid": settings.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        header = _b64encode(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64encode(json.dumps(claims).encode())
        token = f"{header}.{payload}.{self._sign(f'{header}.{payload}')}"
        return token, lifetime, issued

    def _sign(self, data: str) -> str:
        return _b64encode(hmac.new(self._key, data.encode(), hashlib.sha256).digest())

    def _error(self, exc: EntraError) -> JSONResponse:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self._clock.now()))
        description = (
            f"AADSTS{exc.code}: {exc.description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}"
        )
        return JSONResponse(
            {
                "error": exc.error,
                "error_description": description,
                "error_codes": [exc.code],
                "timestamp": stamp,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
            },
            status_code=exc.status,
        )


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """HTTP Basic client authentication (RFC 6749 §2.3.1: both parts form-urlencoded)."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, binascii.Error):
        return None, None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def _origin(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a sandbox token, without checking it (for tests and debugging)."""
    return json.loads(_b64decode(token.split(".")[1]))
