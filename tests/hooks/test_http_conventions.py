"""What sits between the hooks and the services: proxies, TLS settings, answers that are not JSON,
and what the UI's Test button says when a Connection is wrong."""

from __future__ import annotations

import json
import uuid

import pytest
from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter

from contact_sync.errors import ConfigurationError, RequestRejectedError, TransportError
from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import MarketoHook
from sandbox import defaults
from tests.support import connect_dynamics, connect_marketo, set_connection

TOKEN = json.dumps({"token_type": "Bearer", "expires_in": 3599, "access_token": "t0k"}).encode()
PROXY_PAGE = b"<html><body>Sign in to the proxy. Help: helpdesk@corp.example</body></html>"


def dynamics_at(monkeypatch, url: str, conn_id: str = "dv", **extra) -> DynamicsHook:
    set_connection(
        monkeypatch,
        conn_id,
        conn_type="dynamics365",
        host=url,
        login="client",
        password="secret",
        extra={"tenant_id": "tenant", "authority_host": url, "max_attempts": 1, **extra},
    )
    return DynamicsHook(conn_id)


def marketo_at(monkeypatch, url: str, conn_id: str = "mk", **extra) -> MarketoHook:
    set_connection(
        monkeypatch,
        conn_id,
        conn_type="marketo",
        host=url,
        login="client",
        password="secret",
        extra={"max_attempts": 1, **extra},
    )
    return MarketoHook(conn_id)


# --- Answers that are not the JSON the APIs document ------------------------------------------


def test_a_proxy_page_instead_of_dataverse_json_is_a_typed_error(monkeypatch, loopback_site):
    site = loopback_site(
        {
            "/tenant/oauth2/v2.0/token": (200, "application/json", TOKEN),
            "/api/data/": (200, "text/html; charset=utf-8", PROXY_PAGE),
        }
    )
    hook = dynamics_at(monkeypatch, site.url)

    with pytest.raises(RequestRejectedError) as caught:
        hook.get_contacts([str(uuid.uuid4())], select=["lastname"])

    error = caught.value
    assert (error.service, error.status) == ("dataverse", 200)
    assert "text/html body instead of JSON" in str(error)
    assert "Sign in to the proxy" in str(error)
    assert "helpdesk@corp.example" not in str(error)


def test_a_proxy_page_instead_of_a_token_is_not_a_credentials_error(monkeypatch, loopback_site):
    site = loopback_site({"/": (200, "text/html", PROXY_PAGE)})

    with pytest.raises(RequestRejectedError) as caught:
        dynamics_at(monkeypatch, site.url).get_contacts([str(uuid.uuid4())], select=["lastname"])

    assert caught.value.service == "entra"
    assert "Entra ID token request: HTTP 200 with a text/html body" in str(caught.value)


def test_a_proxy_page_instead_of_marketo_json_is_a_typed_error(monkeypatch, loopback_site):
    site = loopback_site(
        {
            "/identity/oauth/token": (200, "application/json", TOKEN),
            "/rest/": (200, "text/html", PROXY_PAGE),
        }
    )

    with pytest.raises(RequestRejectedError) as caught:
        marketo_at(monkeypatch, site.url).describe_leads()

    assert (caught.value.service, caught.value.status) == ("marketo", 200)
    assert "text/html body instead of JSON" in str(caught.value)


def test_a_proxy_page_instead_of_a_marketo_token_is_a_typed_error(monkeypatch, loopback_site):
    site = loopback_site({"/": (200, "text/html", PROXY_PAGE)})

    with pytest.raises(RequestRejectedError, match="identity token request: HTTP 200"):
        marketo_at(monkeypatch, site.url).describe_leads()


# --- The Test button's message names what to fix ----------------------------------------------


def test_test_button_names_an_unknown_tenant(dataverse, monkeypatch):
    connect_dynamics(monkeypatch, dataverse.url, tenant_id="not-our-tenant")

    ok, message = DynamicsHook().test_connection()

    assert not ok
    assert message.startswith("Tenant id not found by Entra ID")
    assert "AADSTS90002" in message


def test_test_button_names_an_unknown_client_id(dataverse, monkeypatch):
    connect_dynamics(monkeypatch, dataverse.url)
    set_connection(
        monkeypatch,
        "dynamics365_default",
        host=dataverse.url,
        login=str(uuid.uuid4()),
        password=defaults.DYNAMICS_CLIENT_SECRET,
        extra={"tenant_id": defaults.TENANT_ID, "authority_host": dataverse.url},
    )

    ok, message = DynamicsHook().test_connection()

    assert not ok
    assert message.startswith("Credentials: Entra ID does not know this client id")


def test_test_button_names_missing_read_permission(monkeypatch, loopback_site):
    denied = {
        "error": {
            "code": "0x80040220",
            "message": "Principal user is missing prvReadContact privilege",
        }
    }
    site = loopback_site(
        {
            "/tenant/oauth2/v2.0/token": (200, "application/json", TOKEN),
            "/api/data/": (403, "application/json", json.dumps(denied).encode()),
        }
    )

    ok, message = dynamics_at(monkeypatch, site.url).test_connection()

    assert not ok
    assert message.startswith("Permissions: the application user may not read contacts")
    assert "prvReadContact" in message


@pytest.mark.parametrize("make", [dynamics_at, marketo_at])
def test_test_button_names_an_unreachable_url(monkeypatch, make):
    ok, message = make(monkeypatch, "http://127.0.0.1:9").test_connection()

    assert not ok
    assert message.startswith("URL: could not reach")
    assert "secret" not in message


def test_test_button_names_a_wrong_path(monkeypatch, loopback_site):
    site = loopback_site({"/tenant/oauth2/v2.0/token": (200, "application/json", TOKEN)})

    ok, message = dynamics_at(monkeypatch, site.url, api_version="v1.0").test_connection()

    assert not ok
    assert message.startswith("URL: not found; check the environment URL and API version")


def test_test_button_names_a_marketo_permission_error(monkeypatch, loopback_site):
    denied = {"requestId": "1#a", "success": False, "errors": [{"code": "603", "message": "x"}]}
    site = loopback_site(
        {
            "/identity/oauth/token": (200, "application/json", TOKEN),
            "/rest/": (200, "application/json", json.dumps(denied).encode()),
        }
    )

    ok, message = marketo_at(monkeypatch, site.url).test_connection()

    assert not ok
    assert message.startswith("Permissions: the API user's role may not read lead fields")


def test_a_transport_failure_is_a_transport_error_of_its_service(monkeypatch):
    with pytest.raises(TransportError) as caught:
        marketo_at(monkeypatch, "http://127.0.0.1:9").describe_leads()

    assert caught.value.service == "marketo"
    assert caught.value.status is None


def test_an_unreachable_entra_id_is_a_transport_error_of_entra(dataverse, monkeypatch):
    connect_dynamics(monkeypatch, dataverse.url, authority_host="http://127.0.0.1:9")

    with pytest.raises(TransportError) as caught:
        DynamicsHook().get_contacts([str(uuid.uuid4())], select=["lastname"])
    ok, message = DynamicsHook().test_connection()

    assert caught.value.service == "entra"
    assert "/oauth2/v2.0/token" in str(caught.value)
    assert not ok
    assert message.startswith("URL: could not reach Entra ID; check the authority host.")
    assert dataverse.admin.calls()["total"] == 0


def test_an_unreachable_dataverse_is_a_transport_error_of_dataverse(monkeypatch, loopback_site):
    entra = loopback_site({"/tenant/oauth2/v2.0/token": (200, "application/json", TOKEN)})
    set_connection(
        monkeypatch,
        "dv",
        conn_type="dynamics365",
        host="http://127.0.0.1:9",
        login="client",
        password="secret",
        extra={"tenant_id": "tenant", "authority_host": entra.url, "max_attempts": 1},
    )

    with pytest.raises(TransportError) as caught:
        DynamicsHook("dv").get_contacts([str(uuid.uuid4())], select=["lastname"])
    ok, message = DynamicsHook("dv").test_connection()

    assert caught.value.service == "dataverse"
    assert "/api/data/" in str(caught.value)
    assert not ok
    assert message.startswith("URL: could not reach the service; check the environment URL.")


# --- The port field (shown in the form: the UI's Test button needs one stored) ------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("https://contoso.crm.dynamics.com", 443, "https://contoso.crm.dynamics.com"),
        ("contoso.crm.dynamics.com", None, "https://contoso.crm.dynamics.com"),
        ("https://contoso.crm.dynamics.com", 0, "https://contoso.crm.dynamics.com"),
        ("http://127.0.0.1:8080/", 8080, "http://127.0.0.1:8080"),
        ("http://127.0.0.1", 8080, "http://127.0.0.1:8080"),
        ("contoso.crm.dynamics.com", 8443, "https://contoso.crm.dynamics.com:8443"),
    ],
)
def test_the_port_is_the_urls_own_or_added(monkeypatch, host, port, expected):
    set_connection(
        monkeypatch,
        "dv",
        conn_type="dynamics365",
        host=host,
        port=port,
        login="client",
        password="secret",
        extra={"tenant_id": "tenant"},
    )

    settings = DynamicsHook("dv").settings

    assert settings.environment_url == expected
    # The token's audience and the nextLink check see the URL Dataverse uses, without ":443".
    assert settings.scope == f"{expected}/.default"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("123-ABC-456", 443, "https://123-ABC-456.mktorest.com"),
        ("https://123-abc-456.mktorest.com/rest", 443, "https://123-abc-456.mktorest.com"),
        ("http://127.0.0.1:8080", 8080, "http://127.0.0.1:8080"),
    ],
)
def test_marketo_takes_the_same_port_rule(monkeypatch, host, port, expected):
    set_connection(
        monkeypatch, "mk", conn_type="marketo", host=host, port=port, login="c", password="s"
    )

    assert MarketoHook("mk").settings.base_url == expected


@pytest.mark.parametrize(
    ("hook_class", "extra"), [(DynamicsHook, {"tenant_id": "tenant"}), (MarketoHook, {})]
)
def test_a_port_other_than_the_urls_names_both(monkeypatch, hook_class, extra):
    set_connection(
        monkeypatch,
        "conn",
        conn_type=hook_class.conn_type,
        host="http://127.0.0.1:8080",
        port=9090,
        login="client",
        password="secret",
        extra=extra,
    )

    ok, message = hook_class("conn").test_connection()

    assert not ok
    assert "port 9090 differs from the port in the host URL (8080)" in message
    # Airflow's test endpoint names the connection with a random id: the message names none.
    assert "conn" not in message.lower()


# --- The connection types, as JSON --------------------------------------------------------------


def test_connections_of_the_new_types_work_from_json(dataverse, marketo, monkeypatch):
    for conn_type in ("dynamics365", "marketo", "http"):
        set_connection(
            monkeypatch,
            "dv",
            conn_type=conn_type if conn_type != "marketo" else "dynamics365",
            host=dataverse.url,
            login=defaults.DYNAMICS_CLIENT_ID,
            password=defaults.DYNAMICS_CLIENT_SECRET,
            extra={"tenant_id": defaults.TENANT_ID, "authority_host": dataverse.url},
        )
        set_connection(
            monkeypatch,
            "mk",
            conn_type=conn_type if conn_type != "dynamics365" else "marketo",
            host=marketo.url,
            login=defaults.MARKETO_CLIENT_ID,
            password=defaults.MARKETO_CLIENT_SECRET,
        )

        assert DynamicsHook("dv").test_connection()[0], conn_type
        assert MarketoHook("mk").test_connection()[0], conn_type


# --- The HTTP provider's extras ----------------------------------------------------------------


def test_requests_go_through_the_proxy_of_the_connection(
    dataverse, marketo, monkeypatch, loopback_site
):
    proxy = loopback_site(forward=True)
    # trust_env false: no *_PROXY / NO_PROXY variable of the machine may change the route
    http = {"proxies": {"http": proxy.url}, "trust_env": False}
    connect_dynamics(monkeypatch, dataverse.url, **http)
    connect_marketo(monkeypatch, marketo.url, **http)

    assert DynamicsHook().get_contacts([str(uuid.uuid4())], select=["lastname"]) == {}
    assert MarketoHook().describe_leads()

    through = [line.split("?")[0] for line in proxy.seen]
    assert through == [
        f"POST {dataverse.url}/{defaults.TENANT_ID}/oauth2/v2.0/token",
        f"GET {dataverse.url}/api/data/v9.2/contacts",
        f"POST {marketo.url}/identity/oauth/token",
        f"GET {marketo.url}/rest/v1/leads/describe.json",
    ]


def test_without_a_proxy_nothing_goes_through_one(dataverse, monkeypatch, loopback_site):
    proxy = loopback_site(forward=True)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    connect_dynamics(monkeypatch, dataverse.url, trust_env=False)

    DynamicsHook().get_contacts([str(uuid.uuid4())], select=["lastname"])

    assert proxy.seen == []


def test_tls_settings_reach_the_session(monkeypatch, tmp_path):
    bundle, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (bundle, cert, key):
        path.write_text("-----BEGIN CERTIFICATE-----\n")

    verified = dynamics_at(monkeypatch, "https://contoso.crm.dynamics.com", verify=str(bundle))
    unverified = marketo_at(
        monkeypatch, "123-ABC-456", verify="false", cert=[str(cert), str(key)], trust_env="false"
    )

    assert verified.session.verify == str(bundle)
    assert verified.session.trust_env is True
    assert (unverified.session.verify, unverified.session.trust_env) == (False, False)
    assert unverified.session.cert == (str(cert), str(key))
    for hook in (verified, unverified):
        assert isinstance(hook.session.get_adapter("https://any.example"), TCPKeepAliveAdapter)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("verify", "/nowhere/ca.pem"),
        ("verify", 1),
        ("cert", ["a", "b", "c"]),
        ("proxies", "http://proxy:3128"),
        ("trust_env", "maybe"),
    ],
)
def test_a_bad_http_extra_names_the_connection_and_the_key(monkeypatch, key, value):
    hook = marketo_at(monkeypatch, "123-ABC-456", **{key: value})

    with pytest.raises(ConfigurationError, match=rf"'mk': extra '{key}'"):
        _ = hook.session
