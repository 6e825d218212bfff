"""MarketoHook against the Marketo sandbox over real HTTP on loopback."""

from __future__ import annotations

import logging
import threading

import pytest

from contact_sync.errors import (
    ConfigurationError,
    CredentialsError,
    DailyQuotaError,
    RateLimitError,
    RequestRejectedError,
)
from contact_sync.hooks.marketo import (
    DEFAULT_LIMITS,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    LeadSyncResult,
    MarketoHook,
    MarketoReason,
)
from sandbox import defaults
from tests.hooks.conftest import record_requests
from tests.support import set_connection

LOOKUP = "GET /rest/v1/leads.json"  # the sandbox counts POST ?_method=GET as the lookup it is
SYNC = "POST /rest/v1/leads.json"
IDENTITY = "POST /identity/oauth/token"


def emails(n: int, start: int = 0) -> list[str]:
    return [f"person{i}@example.com" for i in range(start, start + n)]


def calls(marketo, endpoint: str) -> int:
    return marketo.admin.calls()["by_endpoint"].get(endpoint, 0)


# --- Lookups ----------------------------------------------------------------------------------


def test_find_leads_returns_the_requested_fields_of_matching_leads(marketo, marketo_hook):
    marketo.admin.seed_leads(
        [
            {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"},
            {"email": "alan@example.com", "firstName": "Alan", "city": "Wilmslow"},
        ]
    )

    leads = marketo_hook().find_leads(
        "email", ["ada@example.com", "nobody@example.com"], fields=["email", "firstName"]
    )

    assert len(leads) == 1
    assert leads[0]["email"] == "ada@example.com"
    assert leads[0]["firstName"] == "Ada"
    assert set(leads[0]) == {"id", "email", "firstName"}  # only what was asked for


def test_700_emails_take_three_lookups_and_duplicates_are_sent_once(marketo, marketo_hook):
    marketo.admin.seed_leads([{"email": e} for e in emails(700)])

    leads = marketo_hook().find_leads("email", emails(700) + emails(50), fields=["email"])

    assert sorted(lead["email"] for lead in leads) == sorted(emails(700))
    assert calls(marketo, LOOKUP) == 3


def test_lookup_follows_next_page_token_until_the_last_page(marketo, marketo_hook):
    # Two leads per address (duplicates exist in real instances): 400 matches, 300 per page.
    marketo.admin.seed_leads([{"email": e} for e in emails(200) * 2])

    leads = list(marketo_hook().iter_leads("email", emails(200), fields=["email"]))

    assert len(leads) == 400
    assert len({lead["id"] for lead in leads}) == 400
    assert calls(marketo, LOOKUP) == 2


def test_lookup_values_stay_out_of_the_url(marketo, marketo_hook):
    marketo.admin.seed_leads([{"email": "ada@example.com"}])
    hook = marketo_hook()
    recorder = record_requests(hook.session)

    hook.find_leads("email", ["ada@example.com"], fields=["email"])

    lookups = [r for r in recorder.sent if "/rest/v1/leads.json" in r.url]
    assert [r.method for r in lookups] == ["POST"]
    assert lookups[0].url.endswith("/rest/v1/leads.json?_method=GET")


# --- Sync -------------------------------------------------------------------------------------


def test_sync_leads_returns_one_result_per_lead_in_input_order(marketo, marketo_hook):
    existing, *_ = marketo.admin.seed_leads(
        [{"email": "ada@example.com"}, {"email": "twin@example.com"}, {"email": "twin@example.com"}]
    )
    leads = [
        {"email": "new@example.com", "firstName": "New"},
        {"email": "ada@example.com", "firstName": "Ada"},
        {"email": "twin@example.com", "firstName": "Twin"},
    ]

    results = marketo_hook().sync_leads(leads)

    created, updated, skipped = results
    assert created.status == "created"
    assert isinstance(created.lead_id, int)
    assert updated == LeadSyncResult(status="updated", lead_id=existing)
    assert skipped.skipped
    assert skipped.lead_id is None
    assert [r.code for r in skipped.reasons] == ["1007"]
    assert not created.skipped
    assert not updated.skipped
    assert marketo.admin.lead(existing)["firstName"] == "Ada"


def test_sync_leads_sends_300_per_call_and_keeps_alignment(marketo, marketo_hook):
    marketo.admin.seed_leads([{"email": e} for e in emails(10, start=640)])
    leads = [{"email": e, "lastName": "Batch"} for e in emails(650)]

    results = marketo_hook().sync_leads(leads)

    assert len(results) == 650
    assert calls(marketo, SYNC) == 3
    statuses = [r.status for r in results]
    assert statuses == ["created"] * 640 + ["updated"] * 10
    assert len({r.lead_id for r in results}) == 650


def test_unknown_field_skips_the_record_with_its_reason(marketo, marketo_hook):
    results = marketo_hook().sync_leads([{"email": "ada@example.com", "noSuchField": 1}])

    assert results[0].skipped
    assert results[0].reasons == (MarketoReason("1006", "Field 'noSuchField' not found"),)


def test_sync_companies(marketo, marketo_hook):
    marketo.admin.seed_companies([{"externalCompanyId": "acc-1", "company": "Old name"}])

    results = marketo_hook().sync_companies(
        [
            {"externalCompanyId": "acc-2", "company": "Contoso"},
            {"externalCompanyId": "acc-1", "company": "Fabrikam"},
        ]
    )

    assert [r.status for r in results] == ["created", "updated"]
    assert all(isinstance(r.company_id, int) for r in results)
    names = {c["externalCompanyId"]: c["company"] for c in marketo.admin.companies()}
    assert names == {"acc-1": "Fabrikam", "acc-2": "Contoso"}


def test_describe_and_test_connection(marketo, marketo_hook):
    hook = marketo_hook()

    fields = hook.describe_leads()
    ok, message = hook.test_connection()

    assert "email" in {f.get("rest", {}).get("name") for f in fields}
    assert ok, message


# --- Tokens -----------------------------------------------------------------------------------


def test_one_token_serves_many_calls(marketo, marketo_hook):
    hook = marketo_hook()
    for _ in range(3):
        hook.describe_leads()
    assert calls(marketo, IDENTITY) == 1


def test_token_expiring_mid_run_is_renewed_once(marketo, marketo_hook):
    marketo.admin.seed_leads([{"email": e} for e in emails(600)])
    hook = marketo_hook()
    leads = hook.iter_leads("email", emails(600), fields=["email"])
    first_page = [next(leads) for _ in range(300)]

    marketo.admin.advance_clock(3600)  # the cached token is now expired on Marketo's side
    rest = list(leads)

    assert len(first_page) + len(rest) == 600
    assert calls(marketo, IDENTITY) == 2
    assert marketo.admin.calls()["answers"].get("602") == 1


def test_invalid_token_is_renewed_once_then_fails(marketo, marketo_hook):
    marketo.admin.set_faults({"rules": [{"answer": "601", "path": "/rest/"}]})
    hook = marketo_hook()

    with pytest.raises(CredentialsError) as caught:
        hook.describe_leads()

    assert caught.value.code == "601"
    assert calls(marketo, IDENTITY) == 2
    assert calls(marketo, "GET /rest/v1/leads/describe.json") == 2


def test_bad_client_secret_fails_without_retry_and_without_the_secret(
    marketo, monkeypatch, marketo_hook
):
    marketo_hook()  # defines the connection, then break its secret
    set_connection(
        monkeypatch,
        "marketo_default",
        host=marketo.url,
        login=defaults.MARKETO_CLIENT_ID,
        password="wrong-secret-value",
    )

    with pytest.raises(CredentialsError) as caught:
        MarketoHook().describe_leads()
    ok, message = MarketoHook().test_connection()

    assert "wrong-secret-value" not in str(caught.value)
    assert "wrong-secret-value" not in message
    assert "marketo_default" in str(caught.value)
    assert message.startswith("Credentials: Marketo refused the client id / client secret.")
    assert not ok
    assert calls(marketo, IDENTITY) == 2  # one per hook: never retried
    assert marketo.admin.calls()["total"] == 2


# --- Retries ----------------------------------------------------------------------------------


def test_606_storm_is_retried_and_the_data_arrives(marketo, marketo_hook, caplog):
    marketo.admin.seed_leads([{"email": e} for e in emails(700)])
    marketo.admin.set_faults({"rules": [{"answer": "606", "path": "/rest/v1/leads", "limit": 3}]})

    with caplog.at_level(logging.WARNING):
        leads = marketo_hook().find_leads("email", emails(700), fields=["email"])

    assert len(leads) == 700
    # the first lookup answered 606 three times, then all three lookups went through
    assert calls(marketo, LOOKUP) == 6
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m.rsplit("(", 1)[1] for m in retries] == [
        "attempt 2 of 4)",
        "attempt 3 of 4)",
        "attempt 4 of 4)",
    ]


def test_endless_rate_limiting_stops_after_max_attempts(marketo, marketo_hook):
    marketo.admin.set_faults({"rules": [{"answer": "615", "path": "/rest/"}]})

    with pytest.raises(RateLimitError) as caught:
        marketo_hook(max_attempts=3).describe_leads()

    assert caught.value.code == "615"
    assert calls(marketo, "GET /rest/v1/leads/describe.json") == 3


@pytest.mark.parametrize("answer", ["502", "604", "713"])
def test_transient_errors_are_retried(marketo, marketo_hook, answer):
    marketo.admin.set_faults({"rules": [{"answer": answer, "path": "/rest/", "limit": 2}]})

    assert marketo_hook().describe_leads()
    assert calls(marketo, "GET /rest/v1/leads/describe.json") == 3


def test_daily_quota_fails_fast(marketo, marketo_hook):
    marketo.admin.set_faults({"rules": [{"answer": "607", "path": "/rest/"}]})

    with pytest.raises(DailyQuotaError):
        marketo_hook().describe_leads()

    assert calls(marketo, "GET /rest/v1/leads/describe.json") == 1


def test_other_errors_are_not_retried(marketo, marketo_hook):
    with pytest.raises(RequestRejectedError) as caught:
        marketo_hook().find_leads("email", ["ada@example.com"], fields=["noSuchField"])

    assert caught.value.code == "1006"
    assert calls(marketo, LOOKUP) == 1


# --- Client-side limiter ----------------------------------------------------------------------


def test_limiter_keeps_a_burst_under_the_rate_limit(marketo, marketo_hook):
    marketo.admin.settings(rate_limit_calls=4, rate_limit_window_s=0.4)
    hook = marketo_hook(rate_limit_calls=4, rate_limit_window_s=0.45, max_attempts=1)

    for _ in range(10):
        hook.describe_leads()

    assert "606" not in marketo.admin.calls()["answers"]


def test_limiter_caps_concurrency_across_hook_instances(marketo, marketo_hook):
    marketo.admin.settings(concurrency_limit=2)
    marketo.admin.set_faults({"latency_ms": 50, "rules": []})
    marketo_hook(max_concurrent=2, max_attempts=1, rate_limit_calls=99_999)
    failures: list[Exception] = []

    def work() -> None:
        try:
            MarketoHook().describe_leads()  # a hook per thread, one limiter for all
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert "615" not in marketo.admin.calls()["answers"]
    assert marketo.service._gate.peak == 2


# --- Connection -------------------------------------------------------------------------------


def test_a_bare_munchkin_id_and_the_defaults(monkeypatch):
    set_connection(monkeypatch, "marketo_default", host="123-ABC-456", login="id", password="pw")

    settings = MarketoHook().settings

    assert settings.base_url == "https://123-ABC-456.mktorest.com"
    assert settings.timeout == DEFAULT_TIMEOUT
    assert settings.retry == DEFAULT_RETRY
    assert settings.limits == DEFAULT_LIMITS
    assert "pw" not in repr(settings)


def test_a_full_rest_url_loses_its_rest_suffix(monkeypatch):
    set_connection(
        monkeypatch,
        "mk",
        host="https://123-abc-456.mktorest.com/rest/",
        login="id",
        password="pw",
        extra={"timeout": [3, 30], "max_concurrent": 2},
    )

    settings = MarketoHook("mk").settings

    assert settings.base_url == "https://123-abc-456.mktorest.com"
    assert settings.timeout == (3.0, 30.0)
    assert settings.limits.max_concurrent == 2


def test_missing_credentials_name_the_connection(monkeypatch):
    set_connection(monkeypatch, "mk_broken", host="123-ABC-456")
    hook = MarketoHook("mk_broken")  # constructing reads nothing

    with pytest.raises(ConfigurationError, match="mk_broken"):
        hook.describe_leads()


def test_a_bad_extra_names_the_connection_and_the_key(monkeypatch):
    set_connection(
        monkeypatch, "mk", host="123-ABC-456", login="i", password="p", extra={"timeout": "soon"}
    )
    with pytest.raises(ConfigurationError, match=r"'mk'.*'timeout'"):
        _ = MarketoHook("mk").settings
