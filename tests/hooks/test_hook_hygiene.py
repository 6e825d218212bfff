"""What both hooks promise on every call: a timeout, no secrets or emails in logs, lazy setup."""

from __future__ import annotations

import logging
import uuid

import pytest

from contact_sync.errors import RequestRejectedError
from contact_sync.hooks.dynamics import DEFAULT_TIMEOUT as DYNAMICS_TIMEOUT
from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import DEFAULT_TIMEOUT as MARKETO_TIMEOUT
from contact_sync.hooks.marketo import MarketoHook
from sandbox import defaults
from tests.hooks.conftest import record_requests

EMAILS = [f"reader{i}@example.com" for i in range(5)]


def full_run(dataverse, marketo, dynamics, marketo_hook):
    """A sync's worth of calls through both hooks, with a token renewal and a retry in each."""
    contact_ids = [str(uuid.uuid4()) for _ in EMAILS]
    dataverse.admin.seed(
        contacts=[
            {"contactid": c, "lastname": "Reader", "emailaddress1": e}
            for c, e in zip(contact_ids, EMAILS, strict=True)
        ]
    )
    marketo.admin.seed_leads([{"email": EMAILS[0]}, {"email": EMAILS[0]}])  # a 1007 skip
    dataverse.admin.set_faults({"rules": [{"answer": "503", "path": "/api/data/", "limit": 1}]})
    marketo.admin.set_faults({"rules": [{"answer": "606", "path": "/rest/", "limit": 1}]})

    contacts = dynamics.get_contacts(contact_ids, select=["emailaddress1", "lastname"])
    emails = [c["emailaddress1"] for c in contacts.values()]
    marketo_hook.find_leads("email", emails, fields=["email", "lastName"])
    dataverse.admin.advance_clock(3600)
    marketo.admin.advance_clock(3600)
    dynamics.get_contacts(contact_ids[:1], select=["emailaddress1"])
    results = marketo_hook.sync_leads([{"email": e, "lastName": "Reader"} for e in emails])
    assert sorted(r.status for r in results) == ["created"] * 4 + ["skipped"]


@pytest.fixture
def hooks(dynamics_hook, marketo_hook):
    return dynamics_hook(), marketo_hook()


def test_every_request_carries_a_connect_and_read_timeout(dataverse, marketo, hooks):
    dynamics, mkto = hooks
    sent = record_requests(dynamics.session), record_requests(mkto.session)

    full_run(dataverse, marketo, dynamics, mkto)

    dynamics_sent, marketo_sent = sent[0].sent, sent[1].sent
    assert any("/oauth2/v2.0/token" in r.url for r in dynamics_sent)  # token calls included
    assert any("/identity/oauth/token" in r.url for r in marketo_sent)
    assert len(dynamics_sent) + len(marketo_sent) >= 10
    assert {r.timeout for r in dynamics_sent} == {DYNAMICS_TIMEOUT}
    assert {r.timeout for r in marketo_sent} == {MARKETO_TIMEOUT}


def test_no_secret_token_or_email_reaches_the_logs(dataverse, marketo, hooks, caplog, capfd):
    dynamics, mkto = hooks
    sent = record_requests(dynamics.session), record_requests(mkto.session)

    with caplog.at_level(logging.DEBUG):  # the root logger: urllib3, airflow, ours
        full_run(dataverse, marketo, dynamics, mkto)
    captured = capfd.readouterr()

    tokens = sent[0].bearer_tokens() | sent[1].bearer_tokens()
    assert len(tokens) == 4  # two per service: the renewals happened
    logged = caplog.text + captured.out + captured.err
    assert "attempt 2 of 4" in caplog.text  # the retries were logged ...
    assert "Fetched" in caplog.text  # ... and so were the token fetches, without the token
    forbidden = {defaults.DYNAMICS_CLIENT_SECRET, defaults.MARKETO_CLIENT_SECRET, *tokens}
    assert [s for s in forbidden if s in logged] == []
    # the local part catches an address in any encoding (a URL has %40 for the @)
    assert [e for e in EMAILS if e.split("@")[0] in logged] == []


def test_constructing_a_hook_reads_no_connection(monkeypatch):
    def no_lookups(conn_id):
        raise AssertionError(f"connection {conn_id} looked up")

    monkeypatch.setattr(DynamicsHook, "get_connection", no_lookups)
    monkeypatch.setattr(MarketoHook, "get_connection", no_lookups)

    DynamicsHook("nowhere")
    MarketoHook("nowhere")


def test_error_texts_redact_email_addresses():
    error = RequestRejectedError(
        "Invalid value 'ada.lovelace@example.com'. Required of type 'x'",
        service="marketo",
        code="1001",
    )

    assert "ada.lovelace" not in str(error)
    assert "Invalid value '<email>'" in str(error)
    assert error.code == "1001"
