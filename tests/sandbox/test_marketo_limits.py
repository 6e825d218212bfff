"""Limits, faults, counters and admin state, from Adobe's REST overview and error-codes pages."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.marketo import MarketoService, MarketoSettings
from tests.sandbox.marketo_rest import MarketoRest, error_code

DESCRIBE = "/rest/v1/leads/describe.json"


@pytest.fixture
def rest(marketo):
    return MarketoRest(marketo.url)


def test_rate_limit_606_over_the_trailing_window(marketo, rest):
    marketo.admin.settings(rate_limit_calls=3, rate_limit_window_s=20)
    answers = [rest.get(DESCRIBE) for _ in range(4)]

    assert [a["success"] for a in answers] == [True, True, True, False]
    assert answers[3]["errors"] == [
        {"code": "606", "message": "Max rate limit '3' exceeded with in '20' secs"}
    ]
    marketo.admin.advance_clock(20)
    assert rest.get(DESCRIBE)["success"] is True


def test_concurrency_limit_615_for_truly_parallel_calls(marketo, rest):
    marketo.admin.settings(concurrency_limit=2)
    # Each call holds its slot for a second: long enough for all five to be in flight at
    # once even on a busy machine, so exactly two get through.
    marketo.admin.set_faults({"latency_ms": 1000})
    token = rest.token

    def call(_):
        # One session per thread: requests.Session is not thread-safe.
        caller = MarketoRest(marketo.url)
        return caller.call("GET", DESCRIBE, token=token).json()

    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(call, range(5)))

    refused = [a for a in answers if not a["success"]]
    assert len(refused) == 3
    assert refused[0]["errors"] == [
        {"code": "615", "message": "Concurrent access limit '2' reached"}
    ]
    assert marketo.service.calls.snapshot()["answers"] == {"200": 3, "615": 3}


def test_daily_quota_607_until_midnight_central_time(marketo, rest):
    marketo.admin.settings(daily_quota=2)
    answers = [rest.get(DESCRIBE) for _ in range(3)]

    assert answers[2]["errors"] == [{"code": "607", "message": "Daily quota reached"}]
    before = marketo.admin.quota()
    assert (before["limit"], before["used"]) == (2, 2)
    marketo.admin.advance_clock(24 * 3600)
    after = marketo.admin.quota()
    assert (after["used"], after["day"] > before["day"]) == (0, True)
    assert error_code(rest.call("GET", DESCRIBE).json()) == "602"  # a day outlives the token
    assert MarketoRest(marketo.url).get(DESCRIBE)["success"] is True  # with a fresh token


def test_injected_envelope_faults_and_http_errors(marketo, rest):
    token = rest.token
    marketo.admin.set_faults(
        {
            "rules": [
                {"answer": "713", "path": "/rest/v1/leads/describe", "limit": 1},
                {"answer": "502", "path": "/rest/v1/leads/describe", "limit": 1},
            ]
        }
    )

    transient = rest.call("GET", DESCRIBE, token=token)
    gateway = rest.call("GET", DESCRIBE, token=token)
    healthy = rest.call("GET", DESCRIBE, token=token)

    assert transient.status_code == 200
    assert transient.json()["errors"] == [{"code": "713", "message": "Transient Error"}]
    assert gateway.status_code == 502
    assert healthy.json()["success"] is True
    assert marketo.admin.calls()["answers"] == {"713": 1, "502": 1, "200": 2}


def test_fault_share_is_deterministic_with_a_seed(marketo, rest):
    plan = {"seed": 3, "rules": [{"answer": "606", "share": 0.5}]}

    def run():
        marketo.admin.set_faults(plan)
        return [rest.get(DESCRIBE)["success"] for _ in range(12)]

    first, second = run(), run()
    assert first == second
    assert 0 < first.count(False) < 12


def test_unknown_fault_answers_are_refused(marketo):
    with pytest.raises(requests.HTTPError) as refused:
        marketo.admin.set_faults({"rules": [{"answer": "429"}]})
    assert refused.value.response.status_code == 400


def test_oversized_uri_and_body_are_the_only_http_errors(marketo, rest):
    long_uri = rest.call("GET", "/rest/v1/leads.json", params={"filterValues": "x" * 9000})
    big_body = rest.call("POST", "/rest/v1/leads.json", json={"input": [{"x": "y" * 1_100_000}]})

    assert (long_uri.status_code, big_body.status_code) == (414, 413)


def test_wrong_method_605_and_unknown_resource_610(rest):
    # (DELETE is served on leads.json: real clients delete leads with POST ...?_method=DELETE)
    assert error_code(rest.call("PUT", "/rest/v1/leads.json").json()) == "605"
    assert error_code(rest.call("POST", DESCRIBE).json()) == "605"
    assert error_code(rest.call("GET", "/rest/v1/opportunities.json").json()) == "610"


def test_calls_count_per_endpoint_template_and_answer(marketo, rest):
    [lead_id] = marketo.admin.seed_leads([{"email": "a@x.com"}])
    rest.get(f"/rest/v1/lead/{lead_id}.json")
    rest.get("/rest/v1/lead/424242.json")
    rest.lookup("firstName", ["x"])

    calls = marketo.admin.calls()

    assert calls["by_endpoint"] == {
        "GET /identity/oauth/token": 1,
        "GET /rest/v1/lead/{id}.json": 2,
        "GET /rest/v1/leads.json": 1,
    }
    assert calls["answers"] == {"200": 3, "1011": 1}
    assert calls["total"] == 4


def test_settings_round_trip_and_refuse_unknown_keys(marketo):
    changed = marketo.admin.settings(daily_quota=None, partitions=["Default", "Emea"])
    assert changed["daily_quota"] is None
    assert MarketoSettings.from_json(changed).partitions == ["Default", "Emea"]

    for bad in ({"no_such_knob": 1}, {"rate_limit_calls": "many"}):
        with pytest.raises(requests.HTTPError):
            marketo.admin.settings(**bad)


def test_reset_empties_everything(marketo, rest):
    marketo.admin.settings(rate_limit_calls=1)
    marketo.admin.add_field("dynamicsContactId")
    marketo.admin.seed_leads([{"email": "a@x.com"}])
    rest.get(DESCRIBE)

    marketo.admin.reset()

    assert marketo.admin.leads() == []
    assert marketo.admin.calls()["total"] == 0
    assert marketo.admin.settings()["rate_limit_calls"] == 100
    assert error_code(rest.call("GET", DESCRIBE).json()) == "601"  # the old token is gone


def test_state_survives_dump_and_load(marketo, rest):
    marketo.admin.add_field("dynamicsContactId")
    marketo.admin.seed_companies([{"externalCompanyId": "acct-1", "company": "Acme"}])
    marketo.admin.seed_leads([{"email": "a@x.com", "externalCompanyId": "acct-1"}])
    token = rest.token

    copy = MarketoService()
    copy.load_state(marketo.service.dump_state())

    assert copy.dump_state() == marketo.service.dump_state()
    assert copy.database.lead(1)["company"] == "Acme"
    assert copy.catalogue.get("dynamicsContactId") is not None
    assert copy.tokens.check(token) is None
