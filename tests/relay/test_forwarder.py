"""The forwarder against the Airflow stand-in: batching, run ids, outages, refusals, tokens."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from relay import forwarder
from relay.airflow import jwt_expiry
from sandbox.common.server import ServerThread
from tests.relay.airflow_standin import CREATE_THEN_500, AirflowStandIn
from tests.relay.conftest import RunningRelay, free_port, wait_until, webhook_body


def _post_contacts(relay: RunningRelay, count: int) -> list[dict]:
    bodies = [webhook_body() for _ in range(count)]
    for body in bodies:
        assert relay.post(body).status_code == 202
    return bodies


def _all_sent(relay: RunningRelay, count: int) -> Callable[[], bool]:
    return lambda: relay.states() == ["sent"] * count


@pytest.fixture
def events_keep_coming(monkeypatch: pytest.MonkeyPatch) -> None:
    """Holding as long as an import goes on: these tests post their events with pauses."""
    monkeypatch.setattr(forwarder, "HOLD_QUIET_SECONDS", 600.0)


def _expected_run_id(bodies: list[dict]) -> str:
    keys = sorted(f"op:{b['OperationId']}:{b['PrimaryEntityId']}" for b in bodies)
    return "relay__" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]


def test_many_events_become_few_runs_within_window_and_max_size(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    relay = start_relay(batch_window_seconds=1.0, batch_max_events=5)
    bodies = _post_contacts(relay, 12)
    wait_until(_all_sent(relay, 12), what="12 events sent")

    runs = [request.body for request in airflow.triggers]
    assert [len(run["conf"]["events"]) for run in runs] == [5, 5, 2]
    sent_ids = [event["id"] for run in runs for event in run["conf"]["events"]]
    assert sent_ids == [body["PrimaryEntityId"] for body in bodies]
    assert [run["dag_run_id"] for run in runs] == [
        _expected_run_id(bodies[0:5]),
        _expected_run_id(bodies[5:10]),
        _expected_run_id(bodies[10:12]),
    ]
    first = runs[0]
    assert first["logical_date"] is None
    assert airflow.triggers[0].path == "/api/v2/dags/dynamics_contact_to_marketo/dagRuns"
    assert first["conf"]["events"][0] == {
        "message": "Update",
        "entity": "contact",
        "id": bodies[0]["PrimaryEntityId"],
        "operation_id": bodies[0]["OperationId"],
        "correlation_id": "b374239d-4233-41a9-8b17-a86cb4f737b5",
        "occurred_at": "2017-09-26T07:04:08Z",
    }
    assert first["note"] == (
        "Relay batch of 5 event(s) for 5 record(s); 5 contact Update; "
        "occurred 2017-09-26T07:04:08Z to 2017-09-26T07:04:08Z."
    )
    metrics = relay.client.get("/metrics").text
    assert "relay_events_forwarded_total 12" in metrics
    assert 'relay_batches_total{outcome="sent"} 3' in metrics


@pytest.mark.usefixtures("events_keep_coming")
def test_a_due_batch_grows_while_airflow_has_enough_active_runs(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.runs_end = False
    relay = start_relay(batch_window_seconds=0.2, batch_max_wait_seconds=30.0, batch_max_events=50)
    for sent in (1, 2):  # the default lets two runs be active before holding
        _post_contacts(relay, 1)
        wait_until(_all_sent(relay, sent), what=f"batch {sent} sent")
    later = _post_contacts(relay, 3)
    wait_until(lambda: relay.metric("relay_batches_held_total") >= 2, what="the batch held")
    _post_contacts(relay, 1)
    assert len(airflow.triggers) == 2

    airflow.end_runs()

    wait_until(_all_sent(relay, 6), what="the grown batch sent")
    runs = [request.body for request in airflow.triggers]
    assert [len(run["conf"]["events"]) for run in runs] == [1, 1, 4]
    assert runs[2]["conf"]["events"][0]["id"] == later[0]["PrimaryEntityId"]
    assert airflow.run_questions[0].path == "/api/v2/dags/dynamics_contact_to_marketo/dagRuns"
    assert airflow.last_states == {"queued", "running"}


@pytest.mark.usefixtures("events_keep_coming")
def test_a_held_batch_goes_after_the_maximum_wait_if_runs_never_end(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.runs_end = False  # e.g. the DAG is paused
    relay = start_relay(
        batch_window_seconds=0.1, batch_max_wait_seconds=1.0, batch_hold_active_runs=1
    )
    _post_contacts(relay, 1)
    wait_until(_all_sent(relay, 1), what="the first batch sent")

    _post_contacts(relay, 1)

    wait_until(_all_sent(relay, 2), what="the held batch sent after its maximum wait")
    assert relay.metric("relay_batches_held_total") >= 1
    assert len(airflow.triggers) == 2


def test_a_held_batch_goes_once_events_stop_arriving(
    start_relay: Callable[..., RunningRelay],
    airflow: AirflowStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The end of a bulk import: Airflow still busy, but nothing more to wait for.
    monkeypatch.setattr(forwarder, "HOLD_QUIET_SECONDS", 1.5)
    airflow.runs_end = False
    relay = start_relay(
        batch_window_seconds=0.1, batch_max_wait_seconds=600.0, batch_hold_active_runs=1
    )
    _post_contacts(relay, 1)
    wait_until(_all_sent(relay, 1), what="the first batch sent")
    last = _post_contacts(relay, 3)

    wait_until(_all_sent(relay, 4), timeout=10.0, what="the held batch sent once no event came")
    assert relay.metric("relay_batches_held_total") >= 1  # it was held while events were new
    runs = [request.body for request in airflow.triggers]
    assert [len(run["conf"]["events"]) for run in runs] == [1, 3]
    assert runs[1]["dag_run_id"] == _expected_run_id(last)


@pytest.mark.parametrize("answer", [500, 403])
def test_a_batch_is_not_held_when_airflow_cannot_say_what_is_active(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn, answer: int
) -> None:
    airflow.runs_end, airflow.list_status = False, answer
    relay = start_relay(
        batch_window_seconds=0.1, batch_max_wait_seconds=30.0, batch_hold_active_runs=1
    )
    _post_contacts(relay, 1)
    wait_until(_all_sent(relay, 1), what="the first batch sent")

    _post_contacts(relay, 1)

    wait_until(_all_sent(relay, 2), what="the second batch sent without holding")
    assert relay.metric("relay_batches_held_total") == 0
    assert airflow.run_questions


def test_full_batches_never_wait_for_active_runs(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.runs_end = False
    relay = start_relay(batch_window_seconds=30.0, batch_max_events=3, batch_hold_active_runs=1)

    _post_contacts(relay, 9)

    wait_until(_all_sent(relay, 9), what="three full batches sent")
    assert len(airflow.triggers) == 3
    assert not airflow.run_questions


def test_leading_edge_a_lone_event_is_sent_at_once(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    # A 60 s window: the event could only be delivered within wait_until's 5 s without it.
    relay = start_relay(batch_leading_edge=True, batch_window_seconds=60.0)
    [body] = _post_contacts(relay, 1)
    wait_until(_all_sent(relay, 1), what="the lone event sent without waiting for the window")
    [run] = airflow.triggers
    assert run.body["dag_run_id"] == _expected_run_id([body])
    assert not airflow.run_questions  # nothing sent lately: Airflow is not asked first


def test_leading_edge_events_arriving_together_are_still_coalesced(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    relay = start_relay(batch_leading_edge=True, batch_window_seconds=3.0, batch_max_events=5)
    first = _post_contacts(relay, 1)
    wait_until(_all_sent(relay, 1), what="the first event sent at once")

    # Within the window after that trigger: full batches go at once, the rest at its end.
    later = _post_contacts(relay, 11)
    wait_until(_all_sent(relay, 12), what="12 events sent")

    runs = [request.body for request in airflow.triggers]
    assert [len(run["conf"]["events"]) for run in runs] == [1, 5, 5, 1]
    sent_ids = [event["id"] for run in runs for event in run["conf"]["events"]]
    assert sent_ids == [body["PrimaryEntityId"] for body in first + later]
    assert runs[3]["dag_run_id"] == _expected_run_id(later[10:])


@pytest.mark.usefixtures("events_keep_coming")
def test_leading_edge_still_holds_a_partial_batch_while_airflow_is_busy(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.runs_end = False
    relay = start_relay(
        batch_leading_edge=True,
        batch_window_seconds=0.1,
        batch_max_wait_seconds=30.0,
        batch_hold_active_runs=1,
    )
    _post_contacts(relay, 1)
    wait_until(_all_sent(relay, 1), what="the first event sent at once")
    later = _post_contacts(relay, 3)
    wait_until(lambda: relay.metric("relay_batches_held_total") >= 2, what="the batch held")
    assert len(airflow.triggers) == 1

    airflow.end_runs()

    wait_until(_all_sent(relay, 4), what="the held batch sent")
    runs = [request.body for request in airflow.triggers]
    assert [len(run["conf"]["events"]) for run in runs] == [1, 3]
    assert runs[1]["dag_run_id"] == _expected_run_id(later)


def test_events_of_one_contact_all_go_into_the_batch(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    relay = start_relay(batch_window_seconds=0.3)
    contact = "6d81597f-0f9f-e711-8122-000d3aa2331c"
    for message in ("Create", "Update", "Update"):
        assert relay.post(webhook_body(message=message, contact_id=contact)).status_code == 202
    wait_until(_all_sent(relay, 3), what="3 events sent")
    [run] = airflow.triggers
    assert [e["message"] for e in run.body["conf"]["events"]] == ["Create", "Update", "Update"]
    assert run.body["note"].startswith("Relay batch of 3 event(s) for 1 record(s); 1 contact ")


def test_airflow_5xx_keeps_events_pending_then_delivers_under_one_run_id(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.script(500, 502, 503)
    relay = start_relay()
    bodies = _post_contacts(relay, 2)
    wait_until(_all_sent(relay, 2), what="events sent after the 5xx answers")
    assert [t.status for t in airflow.triggers] == [500, 502, 503, 200]
    assert {t.body["dag_run_id"] for t in airflow.triggers} == {_expected_run_id(bodies)}
    assert relay.rows()[0]["attempts"] == 4
    metrics = relay.client.get("/metrics").text
    assert 'relay_forward_failures_total{kind="http_503"} 1' in metrics


def test_airflow_down_then_back_delivers_what_was_accepted(
    start_relay: Callable[..., RunningRelay],
) -> None:
    port = free_port()
    relay = start_relay(airflow_url=f"http://127.0.0.1:{port}")
    bodies = _post_contacts(relay, 3)
    wait_until(
        lambda: relay.metric('relay_forward_failures_total{kind="connection"}') >= 2,
        what="two connection failures",
    )
    health = relay.client.get("/healthz").json()
    assert health["airflow_reachable"] is False
    assert health["spool_pending"] == 3
    assert relay.states() == ["pending"] * 3

    standin = AirflowStandIn()
    server = ServerThread(standin.app, port=port).start()
    try:
        wait_until(_all_sent(relay, 3), what="delivery once Airflow is back")
        [run] = [t for t in standin.triggers if t.status == 200]
        assert [e["id"] for e in run.body["conf"]["events"]] == [
            b["PrimaryEntityId"] for b in bodies
        ]
        health = relay.client.get("/healthz").json()
        assert (health["airflow_reachable"], health["spool_pending"]) == (True, 0)
    finally:
        server.stop()


def test_restart_resends_the_same_batch_under_the_same_run_id(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.script(*[503] * 1000)
    # A window the four posts surely fit in, also on a loaded machine: one batch.
    first = start_relay(batch_window_seconds=2.0)
    bodies = _post_contacts(first, 4)
    wait_until(lambda: len(airflow.triggers) >= 2, what="failed attempts")
    first.stop()
    [claimed] = {row["batch_id"] for row in first.rows()}
    assert claimed == _expected_run_id(bodies)
    assert first.states() == ["pending"] * 4

    airflow.scripted.clear()
    second = start_relay()
    wait_until(_all_sent(second, 4), what="delivery after the restart")
    assert {t.body["dag_run_id"] for t in airflow.triggers} == {claimed}
    assert list(airflow.runs) == [claimed]


def test_a_run_that_already_exists_counts_as_delivered(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.script(CREATE_THEN_500)  # Airflow created the run but the answer was lost
    relay = start_relay()
    _post_contacts(relay, 2)
    wait_until(_all_sent(relay, 2), what="events sent after the 409")
    assert [t.status for t in airflow.triggers] == [500, 409]
    assert len(airflow.runs) == 1
    assert "relay_events_forwarded_total 2" in relay.client.get("/metrics").text


def test_a_400_marks_the_batch_failed_with_the_reason_and_goes_on(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.script(400, detail="conf: events[0].id is not a GUID")
    relay = start_relay()
    _post_contacts(relay, 2)
    wait_until(lambda: relay.states() == ["failed"] * 2, what="batch failed")
    health = relay.client.get("/healthz").json()
    assert health["failed_events"] == 2
    [failed] = health["failed_batches"]
    assert failed["events"] == 2
    assert "400" in failed["reason"]
    assert "events[0].id is not a GUID" in failed["reason"]
    assert relay.rows()[0]["last_error"] == failed["reason"]

    _post_contacts(relay, 1)  # the next batch is not held up by the failed one
    wait_until(lambda: relay.states() == ["failed", "failed", "sent"], what="next batch sent")
    assert len(airflow.triggers) == 2
    assert 'relay_batches_total{outcome="failed"} 1' in relay.client.get("/metrics").text


def test_a_401_renews_the_token_once_and_retries(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    relay = start_relay()
    _post_contacts(relay, 1)
    wait_until(_all_sent(relay, 1), what="first event sent")
    airflow.revoke_tokens()  # e.g. the API server's JWT secret changed
    _post_contacts(relay, 1)
    wait_until(_all_sent(relay, 2), what="second event sent")

    assert [t.status for t in airflow.triggers] == [200, 401, 200]
    assert len(airflow.token_requests) == 2
    used = [t.headers["authorization"] for t in airflow.triggers]
    assert used[0] == used[1] != used[2]
    issued = airflow.token_requests[1]
    assert issued.body == {"username": "relay", "password": "relay-airflow-password"}


@pytest.mark.parametrize(("lifetime", "renewed_at_each_use"), [(3600.0, False), (30.0, True)])
def test_the_token_is_renewed_before_it_expires(
    start_relay: Callable[..., RunningRelay],
    airflow: AirflowStandIn,
    lifetime: float,
    renewed_at_each_use: bool,
) -> None:
    # The relay renews 60 s before exp, so a 30 s token is renewed before every use.
    airflow.token_lifetime_seconds = lifetime
    relay = start_relay(token_refresh_margin_seconds=60.0)
    for sent in (1, 2):
        _post_contacts(relay, 1)
        wait_until(_all_sent(relay, sent), what=f"event {sent} sent")
    # The second batch, due soon after the first was sent, asked how many runs were active.
    uses = len(airflow.triggers) + len(airflow.run_questions)
    assert uses == 3
    assert len(airflow.token_requests) == (uses if renewed_at_each_use else 1)
    assert all(t.status == 200 for t in airflow.triggers)  # never waited for a 401


def test_jwt_expiry_reads_exp_and_tolerates_other_tokens() -> None:
    assert jwt_expiry("e30.eyJleHAiOiAxNzAwMDAwMDAwfQ.sig") == 1700000000.0
    for token in ("opaque", "a.b.c", "e30.e30.sig", "e30.WzFd.sig"):
        assert jwt_expiry(token) is None


def test_shutdown_finishes_the_in_flight_batch(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    airflow.trigger_delay_seconds = 0.5
    relay = start_relay()
    _post_contacts(relay, 2)
    wait_until(lambda: airflow.triggers, what="trigger in flight")
    relay.stop()  # returns once the lifespan shut down: forwarder stopped, spool closed
    assert relay.states() == ["sent", "sent"]
    assert len(airflow.runs) == 1


def test_an_idle_forwarder_probes_airflow_health(
    start_relay: Callable[..., RunningRelay], airflow: AirflowStandIn
) -> None:
    relay = start_relay(airflow_probe_seconds=0.05)
    wait_until(lambda: airflow.of("/monitor/health"), what="a health probe")
    wait_until(lambda: relay.client.get("/healthz").json()["airflow_reachable"], what="reachable")
    assert airflow.triggers == []
    assert airflow.token_requests == []  # the probe needs no token
