"""Entra ID token endpoints (v2.0, v1) and the Web API's Bearer check, as documented."""

from __future__ import annotations

import base64

import pytest
import requests

from sandbox import defaults
from sandbox.dataverse.entra import decode_claims


def v2(url, **overrides):
    form = {
        "grant_type": "client_credentials",
        "client_id": defaults.DYNAMICS_CLIENT_ID,
        "client_secret": defaults.DYNAMICS_CLIENT_SECRET,
        "scope": f"{url}/.default",
    }
    form.update(overrides)
    tenant = form.pop("tenant", defaults.TENANT_ID)
    form = {k: v for k, v in form.items() if v is not None}
    return requests.post(f"{url}/{tenant}/oauth2/v2.0/token", data=form, timeout=5)


def test_v2_token_has_the_documented_shape_and_lifetime(dataverse):
    response = v2(dataverse.url)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "access_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    claims = decode_claims(body["access_token"])
    assert claims["aud"] == dataverse.url
    assert claims["tid"] == defaults.TENANT_ID
    assert claims["appid"] == defaults.DYNAMICS_CLIENT_ID
    assert claims["exp"] - claims["iat"] == 3599


def test_v2_accepts_client_secret_by_http_basic(dataverse):
    basic = f"{defaults.DYNAMICS_CLIENT_ID}:{defaults.DYNAMICS_CLIENT_SECRET}"
    response = requests.post(
        f"{dataverse.url}/{defaults.TENANT_ID}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": f"{dataverse.url}/.default"},
        headers={"Authorization": "Basic " + base64.b64encode(basic.encode()).decode()},
        timeout=5,
    )

    assert response.status_code == 200
    assert response.json()["access_token"]


def test_v1_token_answers_numbers_as_strings(dataverse):
    response = requests.post(
        f"{dataverse.url}/{defaults.TENANT_ID}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": defaults.DYNAMICS_CLIENT_ID,
            "client_secret": defaults.DYNAMICS_CLIENT_SECRET,
            "resource": f"{dataverse.url}/",
        },
        timeout=5,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["resource"] == f"{dataverse.url}/"
    for key in ("expires_in", "ext_expires_in", "expires_on", "not_before"):
        assert isinstance(body[key], str), key
    assert int(body["expires_on"]) - int(body["not_before"]) == int(body["expires_in"]) == 3599


@pytest.mark.parametrize(
    ("overrides", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "00000000-0000-0000-0000-00000000abcd"}, 400, "unauthorized_client", 700016),
        ({"tenant": "00000000-0000-0000-0000-000000000000"}, 400, "invalid_request", 90002),
        ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope", 70011),
        ({"grant_type": None}, 400, "invalid_request", 900144),
    ],
    ids=["bad-secret", "unknown-client", "unknown-tenant", "bad-scope", "missing-parameter"],
)
def test_v2_errors_carry_aadsts_codes(dataverse, overrides, status, error, code):
    response = v2(dataverse.url, **overrides)

    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert f"Trace ID: {body['trace_id']}" in body["error_description"]
    assert f"Correlation ID: {body['correlation_id']}" in body["error_description"]
    assert "access_token" not in body


def test_missing_parameter_is_named(dataverse):
    response = v2(dataverse.url, scope=None)

    assert "'scope'" in response.json()["error_description"]


def test_invalid_client_status_and_token_lifetime_are_settings(dataverse):
    dataverse.admin.settings(invalid_client_status=400, token_lifetime_s=600)

    assert v2(dataverse.url, client_secret="wrong").status_code == 400
    assert v2(dataverse.url).json()["expires_in"] == 600


def assert_challenged(response, url):
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f"Bearer authorization_uri={url}/{defaults.TENANT_ID}/oauth2/authorize, resource_id={url}/"
    )


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not.a.token", "Basic abc"])
def test_web_api_refuses_missing_or_malformed_tokens(dataverse, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(f"{dataverse.admin.api_url}/contacts", headers=headers, timeout=5)

    assert_challenged(response, dataverse.url)


def test_web_api_refuses_an_expired_token(dataverse):
    session = dataverse.admin.api_session()
    assert session.get(f"{dataverse.admin.api_url}/contacts", timeout=5).status_code == 200

    dataverse.admin.advance_clock(3600)

    assert_challenged(session.get(f"{dataverse.admin.api_url}/contacts", timeout=5), dataverse.url)


def test_web_api_refuses_a_token_for_another_org(dataverse):
    session = dataverse.admin.api_session()
    other = "https://other.crm.dynamics.com"
    dataverse.admin.settings(org_url=other)

    response = session.get(f"{dataverse.admin.api_url}/contacts", timeout=5)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].endswith(f"resource_id={other}/")
