"""DynamicsHook against the Entra ID + Dataverse sandbox over real HTTP on loopback."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contact_sync.errors import (
    ConfigurationError,
    CredentialsError,
    RateLimitError,
    RequestRejectedError,
    TransportError,
)
from contact_sync.hooks.dynamics import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    MAX_URL_LENGTH,
    DynamicsHook,
)
from sandbox import defaults
from tests.hooks.conftest import record_requests
from tests.support import set_connection

CONTACTS = "GET /api/data/v9.2/contacts"
ACCOUNTS = "GET /api/data/v9.2/accounts"
TOKEN = "POST /{tenant}/oauth2/v2.0/token"
START = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
SELECT = ["firstname", "lastname", "emailaddress1", "_parentcustomerid_value"]


def new_id() -> str:
    return str(uuid.uuid4())


def calls(dataverse, endpoint: str) -> int:
    return dataverse.admin.calls()["by_endpoint"].get(endpoint, 0)


def contacts_modified(n: int) -> list[dict]:
    """``n`` contacts modified one minute apart, in that order."""
    return [
        {
            "contactid": new_id(),
            "lastname": f"Contact {i}",
            "emailaddress1": f"contact{i}@example.com",
            "modifiedon": (START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for i in range(n)
    ]


# --- Reads by id ------------------------------------------------------------------------------


def test_contacts_by_id_expand_the_parent_account(dataverse, dynamics_hook):
    account_id, contact_id = new_id(), new_id()
    dataverse.admin.seed(
        accounts=[{"accountid": account_id, "name": "Contoso", "telephone1": "555-0100"}],
        contacts=[
            {
                "contactid": contact_id,
                "firstname": "Ada",
                "lastname": "Lovelace",
                "emailaddress1": "ada@example.com",
                "_parentcustomerid_value": account_id,
            }
        ],
    )

    found = dynamics_hook().get_contacts(
        ["{" + contact_id.upper() + "}"], select=SELECT, account_select=["name", "telephone1"]
    )

    contact = found[contact_id]
    assert contact["emailaddress1"] == "ada@example.com"
    assert contact["_parentcustomerid_value"] == account_id
    assert contact["parentcustomerid_account"]["name"] == "Contoso"
    assert contact["parentcustomerid_account"]["accountid"] == account_id


def test_a_missing_contact_is_absent_from_the_answer(dataverse, dynamics_hook):
    assert dynamics_hook().get_contacts([new_id()], select=SELECT) == {}
    assert calls(dataverse, CONTACTS) == 1


def test_an_id_that_is_not_a_guid_is_refused_before_any_request(dataverse, dynamics_hook):
    with pytest.raises(ValueError, match="GUID"):
        dynamics_hook().get_contacts(["1' or 1 eq 1"], select=SELECT)
    assert dataverse.admin.calls()["total"] == 0


def test_300_contacts_by_id_take_one_request(dataverse, dynamics_hook):
    present = contacts_modified(250)
    dataverse.admin.seed(contacts=present)
    ids = [c["contactid"].upper() for c in present] + [new_id() for _ in range(50)]

    found = dynamics_hook().get_contacts(ids, select=SELECT)

    assert set(found) == {c["contactid"] for c in present}  # lower-case keys, missing absent
    assert calls(dataverse, CONTACTS) == 1


def test_ids_are_chunked_only_when_the_url_would_be_too_long(dataverse, dynamics_hook):
    present = contacts_modified(3)
    dataverse.admin.seed(contacts=present)
    ids = [new_id() for _ in range(2000)] + [c["contactid"] for c in present]
    hook = dynamics_hook()
    recorder = record_requests(hook.session)

    found = hook.get_contacts(ids, select=SELECT, account_select=["name"])

    assert set(found) == {c["contactid"] for c in present}
    lookups = [r for r in recorder.sent if "/contacts?" in r.url]
    assert len(lookups) == 3  # 2003 ids of 39 characters each in 32 KB URLs
    assert all(len(r.url) <= MAX_URL_LENGTH for r in lookups)
    assert max(len(r.url) for r in lookups) > MAX_URL_LENGTH - 100  # chunks are full
    assert dataverse.admin.calls()["answers"].keys() == {"200"}


def test_get_accounts(dataverse, dynamics_hook):
    accounts = [{"accountid": new_id(), "name": f"Account {i}"} for i in range(3)]
    dataverse.admin.seed(accounts=accounts)

    found = dynamics_hook().get_accounts([a["accountid"] for a in accounts], select=["name"])

    assert {k: v["name"] for k, v in found.items()} == {a["accountid"]: a["name"] for a in accounts}
    assert calls(dataverse, ACCOUNTS) == 1


# --- Paging -----------------------------------------------------------------------------------


def test_contact_pages_follow_next_link_lazily(dataverse, dynamics_hook):
    dataverse.admin.seed(contacts=contacts_modified(7))
    hook = dynamics_hook()
    recorder = record_requests(hook.session)

    pages = hook.iter_contact_pages(
        filter="modifiedon ge 2024-03-01T10:00:00Z", select=["lastname"], page_size=3
    )
    first = next(pages)
    calls_after_first_page = calls(dataverse, CONTACTS)
    rest = list(pages)

    assert calls_after_first_page == 1  # a generator: nothing fetched ahead
    assert [len(p) for p in [first, *rest]] == [3, 3, 1]
    names = [c["lastname"] for page in [first, *rest] for c in page]
    assert names == [f"Contact {i}" for i in range(7)]  # modifiedon asc
    assert calls(dataverse, CONTACTS) == 3
    lookups = [r for r in recorder.sent if "/contacts" in r.url]
    assert {r.headers["Prefer"] for r in lookups} == {"odata.maxpagesize=3"}


# --- Tokens -----------------------------------------------------------------------------------


def test_token_expiring_mid_run_is_renewed_once(dataverse, dynamics_hook):
    dataverse.admin.seed(contacts=contacts_modified(6))
    pages = dynamics_hook().iter_contact_pages(
        filter="modifiedon ge 2024-01-01T00:00:00Z", select=["lastname"], page_size=2
    )
    first = next(pages)

    dataverse.admin.advance_clock(3600)  # the cached token has expired on the service's side
    rest = list(pages)

    assert sum(len(p) for p in [first, *rest]) == 6
    assert calls(dataverse, TOKEN) == 2
    assert dataverse.admin.calls()["answers"].get("401") == 1


def test_a_refused_token_is_renewed_once_then_fails(dataverse, dynamics_hook):
    dataverse.admin.set_faults({"rules": [{"answer": "401", "path": "/api/data/"}]})

    with pytest.raises(CredentialsError) as caught:
        dynamics_hook().get_contacts([new_id()], select=SELECT)

    assert caught.value.status == 401
    assert caught.value.service == "dataverse"
    assert calls(dataverse, TOKEN) == 2
    assert calls(dataverse, CONTACTS) == 2


def test_bad_credentials_fail_without_retry_and_without_the_secret(
    dataverse, dynamics_hook, monkeypatch
):
    dynamics_hook()
    set_connection(
        monkeypatch,
        "dynamics365_default",
        host=dataverse.url,
        login=defaults.DYNAMICS_CLIENT_ID,
        password="wrong-secret-value",
        extra={"tenant_id": defaults.TENANT_ID, "authority_host": dataverse.url},
    )

    with pytest.raises(CredentialsError) as caught:
        DynamicsHook().get_contacts([new_id()], select=SELECT)
    ok, message = DynamicsHook().test_connection()

    assert caught.value.code == "invalid_client"
    assert caught.value.service == "entra"
    assert message.startswith("Credentials: Entra ID refused the client id / client secret.")
    assert "AADSTS7000215" in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value) + message
    assert not ok
    assert dataverse.admin.calls()["by_endpoint"] == {TOKEN: 2}


def test_test_connection(dataverse, dynamics_hook):
    ok, message = dynamics_hook().test_connection()
    assert ok, message


# --- Retries ----------------------------------------------------------------------------------


def test_429_storm_is_retried_and_the_data_arrives(dataverse, dynamics_hook):
    dataverse.admin.settings(fault_retry_after_s=0)
    dataverse.admin.seed(contacts=contacts_modified(2))
    dataverse.admin.set_faults(
        {"rules": [{"answer": "429", "path": "/api/data/v9.2/contacts", "limit": 3}]}
    )

    pages = dynamics_hook().iter_contact_pages(filter="statecode eq 0", select=["lastname"])

    assert sum(len(page) for page in pages) == 2
    assert calls(dataverse, CONTACTS) == 4


def test_endless_429_stops_after_max_attempts(dataverse, dynamics_hook):
    dataverse.admin.settings(fault_retry_after_s=0)
    dataverse.admin.set_faults({"rules": [{"answer": "429", "path": "/api/data/"}]})

    with pytest.raises(RateLimitError) as caught:
        dynamics_hook(max_attempts=3).get_contacts([new_id()], select=SELECT)

    assert caught.value.code == "0x80072322"
    assert calls(dataverse, CONTACTS) == 3


def test_retry_after_is_waited_out(dataverse, dynamics_hook, caplog):
    dataverse.admin.settings(fault_retry_after_s=1)
    dataverse.admin.set_faults({"rules": [{"answer": "429", "path": "/api/data/", "limit": 1}]})
    hook = dynamics_hook()

    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert hook.get_contacts([new_id()], select=SELECT) == {}

    assert time.monotonic() - started >= 1.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "HTTP 429" in warnings[0]
    assert warnings[0].endswith("retrying in 1.00 s (attempt 2 of 4)")


def test_a_retry_after_beyond_the_limit_fails_at_once(dataverse, dynamics_hook):
    dataverse.admin.settings(fault_retry_after_s=120)
    dataverse.admin.set_faults({"rules": [{"answer": "429", "path": "/api/data/"}]})

    with pytest.raises(RateLimitError) as caught:
        dynamics_hook(max_retry_after=60).get_contacts([new_id()], select=SELECT)

    assert caught.value.retry_after == 120
    assert calls(dataverse, CONTACTS) == 1


@pytest.mark.parametrize("answer", ["500", "503"])
def test_server_errors_are_retried(dataverse, dynamics_hook, answer):
    dataverse.admin.set_faults({"rules": [{"answer": answer, "path": "/api/data/", "limit": 2}]})

    assert dynamics_hook().get_contacts([new_id()], select=SELECT) == {}
    assert calls(dataverse, CONTACTS) == 3


def test_a_rejected_query_is_not_retried(dataverse, dynamics_hook):
    with pytest.raises(RequestRejectedError) as caught:
        list(dynamics_hook().iter_contact_pages(filter="nosuchcolumn eq 1", select=["lastname"]))

    assert caught.value.status == 400
    assert caught.value.code == "0x80060888"
    assert calls(dataverse, CONTACTS) == 1


def test_a_connection_error_is_retried_then_reported(monkeypatch):
    # A port nobody listens on: every attempt is refused at connect time.
    set_connection(
        monkeypatch,
        "dv_down",
        host="http://127.0.0.1:9",
        login="id",
        password="secret",
        extra={
            "tenant_id": "t",
            "authority_host": "http://127.0.0.1:9",
            "max_attempts": 2,
            "backoff_base": 0.01,
        },
    )

    with pytest.raises(TransportError, match="ConnectionError") as caught:
        DynamicsHook("dv_down").get_contacts([new_id()], select=SELECT)

    assert "secret" not in str(caught.value)


# --- Connection -------------------------------------------------------------------------------


def test_connection_defaults(monkeypatch):
    set_connection(
        monkeypatch,
        "dynamics365_default",
        host="contoso.crm.dynamics.com",
        login="client",
        password="the-secret",
        extra={"tenant_id": "contoso.onmicrosoft.com"},
    )

    settings = DynamicsHook().settings

    assert settings.api_url == "https://contoso.crm.dynamics.com/api/data/v9.2"
    assert settings.token_url == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert settings.scope == "https://contoso.crm.dynamics.com/.default"
    assert settings.timeout == DEFAULT_TIMEOUT
    assert settings.retry == DEFAULT_RETRY
    assert "the-secret" not in repr(settings)


def test_connection_overrides(monkeypatch):
    set_connection(
        monkeypatch,
        "dv",
        host="https://contoso.crm4.dynamics.com/",
        login="client",
        password="secret",
        extra={
            "tenant_id": "t",
            "resource_url": "https://contoso.api.crm4.dynamics.com",
            "api_version": "v9.1",
            "timeout": 7,
            "max_attempts": 2,
        },
    )

    settings = DynamicsHook("dv").settings

    assert settings.api_url == "https://contoso.crm4.dynamics.com/api/data/v9.1"
    assert settings.scope == "https://contoso.api.crm4.dynamics.com/.default"
    assert settings.timeout == (7.0, 7.0)
    assert settings.retry.max_attempts == 2


def test_a_missing_tenant_id_names_the_connection(monkeypatch):
    set_connection(
        monkeypatch, "dv_no_tenant", host="contoso.crm.dynamics.com", login="c", password="s"
    )
    hook = DynamicsHook("dv_no_tenant")  # constructing reads nothing

    with pytest.raises(ConfigurationError, match=r"'dv_no_tenant'.*'tenant_id'"):
        hook.get_contacts([new_id()], select=SELECT)


def test_the_token_never_goes_to_a_foreign_url(dataverse, dynamics_hook):
    hook = dynamics_hook()
    with pytest.raises(RequestRejectedError, match="foreign"):
        hook._request("GET", "https://elsewhere.example/api/data/v9.2/contacts")
    assert dataverse.admin.calls()["total"] == 0
