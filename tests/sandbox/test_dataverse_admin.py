"""The sandbox's own controls: settings, state dump/load, reset, and the concurrency limit."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.dataverse import DataverseService, DataverseSettings
from sandbox.dataverse.schema import CONTACT


def test_settings_round_trip_and_refuse_unknown_keys(dataverse):
    changed = dataverse.admin.settings(max_page_size=10, window_s=60)

    assert changed["max_page_size"] == 10
    assert DataverseSettings(**json.loads(json.dumps(changed))) == dataverse.service.settings
    with pytest.raises(requests.HTTPError):
        dataverse.admin.settings(no_such_knob=1)
    with pytest.raises(requests.HTTPError):
        dataverse.admin.settings(max_page_size="ten")


def test_reset_restores_defaults_and_empties_everything(dataverse):
    dataverse.admin.seed(contacts=[{"lastname": "Gone"}])
    dataverse.admin.register_webhook("http://127.0.0.1:9/hook", "WebhookKey", "k")
    dataverse.admin.settings(max_page_size=1)
    dataverse.admin.set_faults({"rules": [{"answer": "500", "path": "/nowhere"}]})
    dataverse.admin.advance_clock(1000)

    dataverse.admin.reset()

    assert dataverse.admin.records("contacts") == []
    assert dataverse.admin.webhooks() == []
    assert dataverse.admin.settings() == DataverseSettings().to_json()
    assert dataverse.admin.get("faults")["rules"] == []
    assert dataverse.admin.calls()["total"] == 0


def test_state_survives_dump_and_load(dataverse):
    ids = dataverse.admin.seed(
        accounts=[{"name": "Contoso"}], contacts=[{"lastname": "Kept", "emailaddress1": "k@x.io"}]
    )
    dataverse.admin.register_webhook("http://127.0.0.1:9/hook", "HttpHeader", {"x-key": "v"})

    state = json.loads(json.dumps(dataverse.service.dump_state()))
    restored = DataverseService()
    restored.load_state(state)

    [contact] = restored.store.rows(CONTACT)
    assert contact["contactid"] == ids["contacts"][0]
    assert contact["emailaddress1"] == "k@x.io"
    assert [w["url"] for w in restored.webhooks.registrations()] == ["http://127.0.0.1:9/hook"]


def test_concurrency_limit_refuses_at_once(dataverse):
    dataverse.admin.settings(max_concurrent=1)
    dataverse.admin.set_faults({"latency_ms": 300})
    session_a, session_b = dataverse.admin.api_session(), dataverse.admin.api_session()
    url = f"{dataverse.admin.api_url}/contacts"

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda s: s.get(url, timeout=5), (session_a, session_b)))

    assert sorted(r.status_code for r in answers) == [200, 429]
    [refused] = [r for r in answers if r.status_code == 429]
    assert refused.json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 1.",
    }
    assert refused.headers["Retry-After"] == "1"
