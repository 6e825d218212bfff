"""Identity and token transport, from Adobe's Authentication page."""

from __future__ import annotations

import re

import pytest

from sandbox import defaults
from tests.sandbox.marketo_rest import MarketoRest, error_code

DESCRIBE = "/rest/v1/leads/describe.json"


@pytest.fixture
def rest(marketo):
    return MarketoRest(marketo.url)


def test_token_has_the_documented_shape_and_headers(rest):
    response = rest.identity()

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert re.fullmatch(r"[0-9a-f-]{36}:int", body["access_token"])
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3599
    assert body["scope"] == defaults.MARKETO_API_USER


def test_same_token_with_shrinking_lifetime_until_expiry(marketo, rest):
    first = rest.identity().json()
    marketo.admin.advance_clock(1000)
    again = rest.identity(method="POST").json()

    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == first["expires_in"] - 1000

    marketo.admin.advance_clock(2600)
    renewed = rest.identity().json()
    assert renewed["access_token"] != first["access_token"]
    assert renewed["expires_in"] == 3599


def test_identity_accepts_a_form_body(marketo, rest):
    response = rest.session.post(
        marketo.url + "/identity/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": defaults.MARKETO_CLIENT_ID,
            "client_secret": defaults.MARKETO_CLIENT_SECRET,
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"client_secret": "wrong"}, "Bad client credentials"),
        ({"client_id": "nobody"}, "No client with requested id"),
    ],
)
def test_bad_client_is_401_invalid_client(rest, overrides, description):
    response = rest.identity(**overrides)

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": description}


def test_identity_calls_do_not_use_the_rate_limit(marketo, rest):
    marketo.admin.settings(rate_limit_calls=1)
    for _ in range(4):
        assert rest.identity().status_code == 200

    assert rest.get(DESCRIBE)["success"] is True  # fetches its token: a fifth identity call
    calls = marketo.admin.calls()["by_endpoint"]
    assert calls == {"GET /identity/oauth/token": 5, "GET " + DESCRIBE: 1}


def test_missing_invalid_and_expired_tokens(marketo, rest):
    assert error_code(rest.call("GET", DESCRIBE, anonymous=True).json()) == "600"
    assert error_code(rest.call("GET", DESCRIBE, token="0000:int").json()) == "601"

    token = rest.token
    assert rest.call("GET", DESCRIBE, token=token).json()["success"] is True
    marketo.admin.advance_clock(3600)
    expired = rest.call("GET", DESCRIBE, token=token)

    assert expired.status_code == 200
    assert expired.json()["errors"] == [{"code": "602", "message": "Access token expired"}]
    assert marketo.admin.calls()["answers"] == {"200": 2, "600": 1, "601": 1, "602": 1}


def test_query_parameter_token_only_behind_the_switch(marketo, rest):
    token = rest.token
    answer = rest.call("GET", DESCRIBE, anonymous=True, params={"access_token": token}).json()
    assert error_code(answer) == "600"

    marketo.admin.settings(accept_query_token=True)
    answer = rest.call("GET", DESCRIBE, anonymous=True, params={"access_token": token}).json()
    assert answer["success"] is True


def test_failed_auth_counts_toward_no_limit(marketo, rest):
    marketo.admin.settings(rate_limit_calls=1, daily_quota=1)
    for _ in range(3):
        assert error_code(rest.call("GET", DESCRIBE, token="garbage").json()) == "601"

    assert rest.get(DESCRIBE)["success"] is True
