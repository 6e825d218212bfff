"""The webhook endpoint over real HTTP: keys, validation, spooling, health and metrics."""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contact_sync.events import EventError, event_from_webhook
from relay.app import WEBHOOK_PATH
from relay.limits import RelayLimits
from relay.spool import Spool
from tests.relay.airflow_standin import PASSWORD
from tests.relay.conftest import (
    CODE_KEYS,
    HEADER_NAME,
    HEADER_VALUE,
    RunningRelay,
    webhook_body,
)


@pytest.mark.parametrize("key", CODE_KEYS)
def test_every_code_key_is_accepted_during_rotation(relay: RunningRelay, key: str) -> None:
    body = webhook_body()
    response = relay.post(body, code=key)
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    [row] = relay.rows()
    assert (row["entity_id"], row["operation_id"]) == (body["PrimaryEntityId"], body["OperationId"])


def test_header_key_is_accepted(relay: RunningRelay) -> None:
    response = relay.post(webhook_body(), code=None, headers={HEADER_NAME: HEADER_VALUE})
    assert response.status_code == 202
    assert len(relay.rows()) == 1


@pytest.mark.parametrize(
    ("code", "headers"),
    [
        (None, {}),
        ("", {}),
        ("wrong-key", {}),
        (CODE_KEYS[0][:-1], {}),
        (CODE_KEYS[0] + "x", {}),
        (None, {HEADER_NAME: "wrong"}),
        (None, {"x-other-header": HEADER_VALUE}),
        (HEADER_VALUE, {}),  # a header value is not a ?code= key
    ],
)
def test_wrong_or_missing_key_is_401_and_nothing_is_stored(
    relay: RunningRelay, code: str | None, headers: dict[str, str]
) -> None:
    response = relay.post(webhook_body(), code=code, headers=headers)
    assert response.status_code == 401
    assert relay.rows() == []


def test_keys_are_compared_in_constant_time(
    relay: RunningRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert relay.post(webhook_body(), code=CODE_KEYS[0]).status_code == 202
    # Every configured key is compared, also after the first one matched.
    assert compared == [(CODE_KEYS[0].encode(), key.encode()) for key in CODE_KEYS]


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe\x00", b"", b'{"a": 1'])
def test_malformed_json_is_400_with_a_message(relay: RunningRelay, raw: bytes) -> None:
    response = relay.post(raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["reason"] == "malformed_json"
    assert "not JSON" in response.json()["message"]
    assert relay.rows() == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"hello": "world"}, "missing MessageName, PrimaryEntityName, PrimaryEntityId"),
        ([1, 2], "JSON object"),
        ({**webhook_body(), "PrimaryEntityId": "not-a-guid"}, "PrimaryEntityId"),
    ],
)
def test_body_that_is_not_a_context_is_400_with_the_reason(
    relay: RunningRelay, body: object, expected: str
) -> None:
    response = relay.post(body)
    assert response.status_code == 400
    assert response.json()["reason"] == "not_a_context"
    assert expected in response.json()["message"]
    assert relay.rows() == []


def test_body_over_the_limit_is_413_also_when_streamed(
    start_relay: Callable[..., RunningRelay],
) -> None:
    relay = start_relay(max_body_bytes=8192, batch_window_seconds=60.0)
    big = json.dumps({**webhook_body(), "Padding": "x" * 9000}).encode()
    assert relay.post(big).status_code == 413

    def chunks():  # no Content-Length: the limit must hold while streaming
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    assert relay.post(chunks()).status_code == 413
    small = json.dumps(webhook_body()).encode()
    assert len(small) < 8192
    assert relay.post(small).status_code == 202
    assert len(relay.rows()) == 1


def test_stripped_payload_over_256kb_is_accepted_from_primary_entity_id(
    relay: RunningRelay,
) -> None:
    body = webhook_body(message="Create")
    for removed in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
        del body[removed]
    response = relay.post(body, headers={"x-ms-dynamics-msg-size-exceeded": "true"})
    assert response.status_code == 202
    [row] = relay.rows()
    assert (row["message"], row["entity_id"]) == ("Create", body["PrimaryEntityId"])


def test_what_the_lists_leave_out_is_ignored_and_counted(relay: RunningRelay) -> None:
    # contact Delete under on_contact_removed: ignore, an entity and a message not listed
    for body in (
        webhook_body(message="Delete"),
        webhook_body(entity="lead"),
        webhook_body(message="Assign"),
    ):
        response = relay.post(body)
        assert response.status_code == 202
        assert response.json()["status"] == "ignored"
    assert relay.rows() == []
    assert "relay_webhooks_ignored_total 3" in relay.client.get("/metrics").text


def test_an_account_create_goes_to_the_dag_which_says_why_it_writes_nothing(
    relay: RunningRelay,
) -> None:
    # The relay filters by its lists only; the DAG refuses with the reason (events.ACTED_ON).
    assert relay.post(webhook_body(entity="account", message="Create")).json()["status"] == (
        "accepted"
    )
    [row] = relay.rows()
    assert (row["entity"], row["message"]) == ("account", "Create")


def test_account_update_is_accepted_by_default(relay: RunningRelay) -> None:
    body = webhook_body(entity="account", message="Update")
    response = relay.post(body)
    assert response.json()["status"] == "accepted"
    [row] = relay.rows()
    assert (row["message"], row["entity_id"]) == ("Update", body["PrimaryEntityId"])


def test_contact_delete_is_accepted_when_the_removal_policy_acts(
    start_relay: Callable[..., RunningRelay],
) -> None:
    relay = start_relay(batch_window_seconds=60.0, accept_contact_delete=True)
    body = webhook_body(message="Delete")
    assert relay.post(body).json()["status"] == "accepted"
    [row] = relay.rows()
    assert row["message"] == "Delete"


def test_redelivery_with_the_same_operation_id_is_stored_once(relay: RunningRelay) -> None:
    body = webhook_body()
    first, second = relay.post(body), relay.post(body)
    assert (first.status_code, second.status_code) == (202, 202)
    assert (first.json()["status"], second.json()["status"]) == ("accepted", "duplicate")
    assert len(relay.rows()) == 1
    metrics = relay.client.get("/metrics").text
    assert "relay_webhooks_duplicate_total 1" in metrics
    assert "relay_webhooks_accepted_total 1" in metrics


def test_stored_rows_hold_ids_only(relay: RunningRelay) -> None:
    assert relay.post(webhook_body()).status_code == 202
    [row] = relay.rows()
    stored = json.dumps(dict(row))
    assert "James" not in stored
    assert "Glynn" not in stored
    assert row["state"] == "pending"
    assert row["occurred_at"] == "2017-09-26T07:04:08Z"


def test_logs_carry_no_pii_or_secrets(
    relay: RunningRelay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = webhook_body()
    body["InputParameters"][0]["value"]["Attributes"].append(
        {"key": "emailaddress1", "value": "james.glynn@example.com"}
    )
    relay.post(body)
    relay.post(body, code="wrong-key")
    relay.post({"MessageName": "james.glynn@example.com"})
    # Only the relay's own records: the test's HTTP client logs its request URLs itself.
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("relay"))
    assert body["PrimaryEntityId"] in text  # ids are logged ...
    for secret in ("james", "example.com", "Glynn", *CODE_KEYS, "wrong-key", PASSWORD):
        assert secret not in text  # ... names, emails and keys are not


def test_healthz_and_metrics_report_the_spool(start_relay: Callable[..., RunningRelay]) -> None:
    relay = start_relay(batch_window_seconds=60.0, health_max_pending_age_seconds=3600.0)
    for _ in range(2):
        relay.post(webhook_body())
    relay.post(webhook_body(), code="bad")
    health = relay.client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["spool_pending"] == 2
    assert health.json()["failed_events"] == 0
    assert 0 <= health.json()["oldest_pending_age_seconds"] < 60
    metrics = relay.client.get("/metrics").text
    assert "relay_webhooks_received_total 3" in metrics
    assert 'relay_webhooks_rejected_total{reason="unauthorized"} 1' in metrics
    assert "relay_spool_pending_events 2" in metrics


def test_healthz_is_503_when_pending_events_are_too_old(
    start_relay: Callable[..., RunningRelay],
) -> None:
    relay = start_relay(batch_window_seconds=60.0, health_max_pending_age_seconds=0.0)
    assert relay.client.get("/healthz").status_code == 200  # empty spool: nothing is late
    relay.post(webhook_body())
    health = relay.client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_context_keys = ("MessageName", "PrimaryEntityName", "PrimaryEntityId", "OperationId")


@st.composite
def _broken_contexts(draw: st.DrawFn) -> bytes:
    """A real webhook with its key fields replaced by arbitrary JSON values, or dropped."""
    body = webhook_body()
    for key in draw(st.lists(st.sampled_from(_context_keys), min_size=1, unique=True)):
        if draw(st.booleans()):
            del body[key]
        else:
            body[key] = draw(_json_values)
    return json.dumps(body).encode()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.binary(max_size=300)
    | _json_values.map(lambda value: json.dumps(value).encode())
    | _broken_contexts()
)
def test_fuzz_malformed_bodies_never_5xx_and_store_nothing_invalid(
    relay: RunningRelay, raw: bytes
) -> None:
    before = len(relay.rows())
    response = relay.client.post(WEBHOOK_PATH, params={"code": CODE_KEYS[0]}, content=raw)
    assert response.status_code in (202, 400)
    try:
        valid = event_from_webhook(json.loads(raw)) is not None
    except (ValueError, EventError):
        valid = False
    # 400 exactly when our own parser refuses the body; only an accepted body adds a row.
    assert (response.status_code == 400) == (not valid)
    if response.status_code == 400 or response.json()["status"] != "accepted":
        assert len(relay.rows()) == before
    else:
        assert len(relay.rows()) == before + 1


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_json_is_400_not_500(relay: RunningRelay, opener: str) -> None:
    # Python's JSON decoder recurses per level: 100,000 levels exceed its recursion limit.
    raw = (opener * 100_000).encode()
    response = relay.post(raw)
    assert response.status_code == 400
    assert response.json()["reason"] == "too_deep"
    assert relay.rows() == []
    assert relay.post(webhook_body()).status_code == 202  # still serving


def test_messages_are_matched_case_insensitively_as_the_dag_does(relay: RunningRelay) -> None:
    # contact_sync.events.refusal_reason casefolds the message; the relay must not drop what the
    # DAG would sync.
    response = relay.post(webhook_body(message="update"))
    assert response.json()["status"] == "accepted"
    [row] = relay.rows()
    assert row["message"] == "update"


def test_without_operation_id_and_time_two_updates_of_one_contact_are_both_kept(
    relay: RunningRelay,
) -> None:
    contact = webhook_body()["PrimaryEntityId"]
    bodies = []
    for city in ("Redmond", "Seattle"):
        body = webhook_body(contact_id=contact)
        del body["OperationId"], body["OperationCreatedOn"]
        body["InputParameters"][0]["value"]["Attributes"].append(
            {"key": "address1_city", "value": city}
        )
        bodies.append(body)
    statuses = [relay.post(body).json()["status"] for body in (*bodies, bodies[1])]
    # Two distinct changes are both stored; Dataverse's resend of the second is recognised.
    assert statuses == ["accepted", "accepted", "duplicate"]
    assert [row["entity_id"] for row in relay.rows()] == [contact, contact]


def test_a_redelivery_reserialised_differently_is_still_a_duplicate(relay: RunningRelay) -> None:
    body = webhook_body()
    del body["OperationId"]
    compact = json.dumps(body, separators=(",", ":")).encode()
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    assert relay.post(compact).json()["status"] == "accepted"
    assert relay.post(reordered).json()["status"] == "duplicate"
    assert len(relay.rows()) == 1


@pytest.mark.parametrize("depth", [500, 900, 990])
def test_a_context_without_operation_id_nested_near_the_limit_is_never_500(
    relay: RunningRelay, depth: int
) -> None:
    # Decodable, but hashing it for the dedupe key recurses deeper than decoding did.
    body = webhook_body()
    del body["OperationId"]
    raw = json.dumps(body).encode()[:-1] + b',"Deep":' + b"[" * depth + b"]" * depth + b"}"
    response = relay.post(raw)
    assert response.status_code in (202, 400)
    if response.status_code == 400:
        assert response.json()["reason"] == "too_deep"
    assert len(relay.rows()) == (response.status_code == 202)


def test_past_the_spool_cap_webhooks_are_503_unread_and_the_alarm_shows(
    start_relay: Callable[..., RunningRelay],
) -> None:
    relay = start_relay(batch_window_seconds=60.0)
    assert relay.post(webhook_body()).status_code == 202
    relay.stop()
    # The same spool, reopened with its cap at what it holds now.
    spool = Spool(relay.settings.spool_path)
    size = spool.live_bytes()
    spool.close()
    assert size > 0
    limits = RelayLimits(spool_alarm_bytes=size // 2, spool_max_bytes=size)
    full = start_relay(batch_window_seconds=60.0, limits=limits)
    response = full.post(webhook_body())
    assert response.status_code == 503
    assert response.json()["reason"] == "spool_full"
    assert len(full.rows()) == 1  # nothing more stored
    health = full.client.get("/healthz")
    assert health.status_code == 503
    assert (health.json()["spool_alarm"], health.json()["spool_full"]) == (True, True)
    assert full.metric("relay_spool_alarm") == 1
    assert full.metric("relay_spool_max_bytes") == size
    assert full.metric('relay_webhooks_rejected_total{reason="spool_full"}') == 1


def test_below_the_alarm_the_spool_size_is_reported_and_healthy(relay: RunningRelay) -> None:
    relay.post(webhook_body())
    health = relay.client.get("/healthz").json()
    assert (health["spool_alarm"], health["spool_full"]) == (False, False)
    assert relay.metric("relay_spool_bytes") == health["spool_bytes"] > 0
    assert relay.metric("relay_spool_alarm") == 0


def test_a_body_that_trickles_in_past_the_timeout_is_408_and_not_stored(
    start_relay: Callable[..., RunningRelay],
) -> None:
    relay = start_relay(batch_window_seconds=60.0, limits=RelayLimits(body_timeout_seconds=0.5))
    raw = json.dumps(webhook_body()).encode()

    def trickle():  # half the body, then nothing until well past the timeout
        yield raw[: len(raw) // 2]
        stop.wait(5)
        yield raw[len(raw) // 2 :]

    stop = threading.Event()
    try:
        response = relay.post(trickle())
    finally:
        stop.set()
    assert response.status_code == 408
    assert response.json()["reason"] == "too_slow"
    assert relay.rows() == []
    assert relay.post(raw).status_code == 202


def test_headers_over_the_limit_are_431_and_not_stored(
    start_relay: Callable[..., RunningRelay],
) -> None:
    relay = start_relay(batch_window_seconds=60.0, limits=RelayLimits(max_header_bytes=4096))
    response = relay.post(webhook_body(), headers={"x-padding": "p" * 5000})
    assert response.status_code == 431
    assert response.json()["reason"] == "headers_too_large"
    assert relay.rows() == []
    assert relay.post(webhook_body(), headers={"x-padding": "p" * 3000}).status_code == 202
