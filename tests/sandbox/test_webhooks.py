"""Webhooks as Dataverse sends them, checked against Microsoft's sample payload (the fixture)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from devenv.processes import wait_for
from sandbox.dataverse.webhooks import MAX_CONCURRENT_DELIVERIES
from tests.fixtures import WEBHOOK_FIXTURE

FIXTURE = WEBHOOK_FIXTURE
DATE = re.compile(r"\\?/Date\(\d+([+-]\d{4})?\)\\?/")


@pytest.fixture
def api(dataverse):
    return dataverse.admin.api_session(), dataverse.admin.api_url


def create_contact(api, **values) -> str:
    session, url = api
    response = session.post(f"{url}/contacts", json=values)
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def attributes(entity: dict) -> dict:
    return {a["key"]: a["value"] for a in entity["Attributes"]}


def target(body: dict) -> dict:
    [parameter] = [p for p in body["InputParameters"] if p["key"] == "Target"]
    return parameter["value"]


def assert_same_shape(mine, reference, path="$"):
    """Same keys at every level and the same value encodings as Microsoft's sample."""
    if isinstance(reference, dict):
        assert isinstance(mine, dict), path
        assert set(mine) == set(reference), f"{path}: {sorted(set(mine) ^ set(reference))}"
        for key, value in reference.items():
            assert_same_shape(mine[key], value, f"{path}.{key}")
    elif isinstance(reference, list):
        assert isinstance(mine, list), path
        if reference and all(isinstance(i, dict) and "key" in i for i in reference):
            by_key = {item["key"]: item for item in reference}
            for item in mine:
                model = by_key.get(item["key"], reference[0])
                assert set(item) == set(model), f"{path}[{item['key']}]"
                if item["key"] in by_key:
                    assert_same_shape(item["value"], model["value"], f"{path}[{item['key']}]")
        elif reference:
            for index, item in enumerate(mine):
                assert_same_shape(item, reference[0], f"{path}[{index}]")
    elif reference is None:
        assert mine is None, path
    elif isinstance(reference, str) and DATE.fullmatch(reference):
        assert DATE.fullmatch(str(mine)), f"{path}: {mine!r}"
    else:
        assert type(mine) is type(reference), f"{path}: {mine!r}"


def test_update_payload_matches_microsofts_sample(api, dataverse, receiver):
    contact_id = create_contact(api, firstname="Jim", lastname="Glynn (sample)")
    dataverse.admin.register_webhook(
        receiver.url, "WebhookKey", "k3y", filtering_attributes=["firstname", "lastname"]
    )
    session, url = api

    assert (
        session.patch(f"{url}/contacts({contact_id})", json={"firstname": "James"}).status_code
        == 204
    )
    [job] = dataverse.admin.wait_for_deliveries(1)

    assert job["statuscode"] == 30
    [request] = receiver.requests
    reference = json.loads(FIXTURE.read_text())
    body = request.body
    assert_same_shape(body, reference)
    assert list(attributes(target(body))) == list(attributes(target(reference)))
    assert attributes(target(body))["fullname"] == "James Glynn (sample)"
    assert attributes(target(body))["firstname"] == "James"
    assert list(attributes(target(body["ParentContext"]))) == ["firstname", "contactid"]
    assert (body["MessageName"], body["Mode"], body["Stage"]) == ("Update", 1, 40)
    assert body["ParentContext"]["Stage"] == 30
    assert body["PrimaryEntityId"] == contact_id
    assert body["OwningExtension"]["Id"] == job["_owningextensionid_value"]
    # serialized as DataContractJsonSerializer does: "/" escaped
    assert b'"\\/Date(' in request.raw
    assert request.query == {"code": ["k3y"]}
    assert request.headers["x-ms-dynamics-entity-name"] == "contact"
    assert request.headers["x-ms-dynamics-request-name"] == "Update"
    assert request.headers["x-ms-dynamics-organization"] == urlsplit(dataverse.url).netloc
    assert request.headers["x-ms-correlation-request-id"] == body["CorrelationId"]
    assert request.headers["x-request-id"]
    assert "x-ms-dynamics-msg-size-exceeded" not in request.headers


def test_create_payload_carries_defaults_and_the_new_id(api, dataverse, receiver):
    dataverse.admin.register_webhook(receiver.url, "WebhookKey", "k3y", messages=["Create"])

    contact_id = create_contact(
        api, firstname="Ann", lastname="Lee", emailaddress1="ann@example.com"
    )
    dataverse.admin.wait_for_deliveries(1)

    body = receiver.requests[0].body
    assert_same_shape(body, json.loads(FIXTURE.read_text()))
    values = attributes(target(body))
    assert values["contactid"] == contact_id
    assert values["emailaddress1"] == "ann@example.com"
    assert values["statecode"] == {
        "__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts",
        "Value": 0,
    }
    assert values["ownerid"]["LogicalName"] == "systemuser"
    assert DATE.fullmatch(values["createdon"])
    assert {"key": "statecode", "value": "Active"} in target(body)["FormattedValues"]
    assert body["OutputParameters"] == [{"key": "id", "value": contact_id}]
    assert body["SharedVariables"] == [{"key": "DefaultsAddedFlag", "value": True}]
    assert receiver.requests[0].headers["x-ms-dynamics-request-name"] == "Create"


def test_a_step_on_account_fires_for_accounts_only(api, dataverse, receiver):
    dataverse.admin.register_webhook(
        receiver.url, "WebhookKey", "k3y", messages=["Create"], entity="account"
    )
    session, url = api

    create_contact(api, lastname="Not an account")
    response = session.post(
        f"{url}/accounts",
        json={"name": "Fourth Coffee"},
        headers={"Prefer": "return=representation"},
    )
    [job] = dataverse.admin.wait_for_deliveries(1)

    [request] = receiver.requests
    assert request.body["PrimaryEntityName"] == "account"
    assert request.body["PrimaryEntityId"] == response.json()["accountid"]
    assert job["primaryentitytype"] == "account"
    [registration] = dataverse.admin.webhooks()
    assert [step["primaryobjecttypecode"] for step in registration["steps"]] == ["account"]


def test_operation_and_correlation_ids_are_fresh_per_operation(api, dataverse, receiver):
    dataverse.admin.register_webhook(receiver.url, "WebhookKey", "k3y")

    create_contact(api, lastname="One")
    create_contact(api, lastname="Two")
    dataverse.admin.wait_for_deliveries(2)

    first, second = (r.body for r in receiver.requests)
    assert first["OperationId"] != second["OperationId"]
    assert first["CorrelationId"] != second["CorrelationId"]


def test_update_carries_only_changed_columns(api, dataverse, receiver):
    contact_id = create_contact(api, firstname="Jim", lastname="Glynn", jobtitle="Buyer")
    dataverse.admin.register_webhook(receiver.url, "WebhookKey", "k3y", messages=["Update"])
    session, url = api

    session.patch(
        f"{url}/contacts({contact_id})", json={"lastname": "Glynn", "jobtitle": "Head buyer"}
    )
    dataverse.admin.wait_for_deliveries(1)

    body = receiver.requests[0].body
    changed = attributes(target(body))
    assert changed["jobtitle"] == "Head buyer"
    assert "lastname" not in changed
    assert "fullname" not in changed  # names did not change
    assert set(attributes(target(body["ParentContext"]))) == {"lastname", "jobtitle", "contactid"}


def test_filtering_attributes_suppress_other_updates(api, dataverse, receiver):
    contact_id = create_contact(api, lastname="Glynn", emailaddress1="a@example.com")
    dataverse.admin.register_webhook(
        receiver.url,
        "WebhookKey",
        "k3y",
        messages=["Update"],
        filtering_attributes=["emailaddress1"],
    )
    session, url = api

    session.patch(f"{url}/contacts({contact_id})", json={"jobtitle": "Buyer"})
    session.patch(f"{url}/contacts({contact_id})", json={"emailaddress1": "b@example.com"})
    # deliveries start in order, so the second finishing means the first never started
    jobs = dataverse.admin.wait_for_deliveries(1)

    assert len(jobs) == len(receiver.requests) == 1
    assert attributes(target(receiver.requests[0].body))["emailaddress1"] == "b@example.com"


@pytest.mark.parametrize(
    ("auth_type", "auth_value"),
    [
        ("HttpHeader", {"x-api-key": "s3cret", "x-other": "v2"}),
        ("HttpQueryString", {"key1": "value1", "key2": "value2"}),
        ("HttpQueryString", '<settings><setting name="key1" value="value1" /></settings>'),
    ],
)
def test_auth_values_arrive(api, dataverse, receiver, auth_type, auth_value):
    dataverse.admin.register_webhook(receiver.url, auth_type, auth_value, messages=["Create"])

    create_contact(api, lastname="Auth")
    dataverse.admin.wait_for_deliveries(1)

    [request] = receiver.requests
    pairs = auth_value if isinstance(auth_value, dict) else {"key1": "value1"}
    if auth_type == "HttpHeader":
        assert {k: request.headers[k] for k in pairs} == pairs
        assert request.query == {}
    else:
        assert request.query == {k: [v] for k, v in pairs.items()}
    assert "s3cret" not in json.dumps(dataverse.admin.webhooks())


@pytest.mark.parametrize(
    ("answers", "attempts", "statuscode"),
    [([503, 503], [503, 503], 31), ([502, 200], [502, 200], 30), ([500], [500], 31)],
)
def test_only_502_503_504_get_one_more_attempt(
    api, dataverse, receiver, answers, attempts, statuscode
):
    receiver.answers = list(answers)
    dataverse.admin.register_webhook(receiver.url, "WebhookKey", "k3y", messages=["Create"])

    create_contact(api, lastname="Retry")
    [job] = dataverse.admin.wait_for_deliveries(1)

    assert [a["status"] for a in job["attempts"]] == attempts
    assert len(receiver.requests) == len(attempts)
    assert job["statuscode"] == statuscode
    assert (job["message"] is None) == (statuscode == 30)


def test_oversize_payload_is_stripped_with_the_header(api, dataverse, receiver):
    dataverse.admin.settings(webhook_max_payload_bytes=2000)
    dataverse.admin.register_webhook(receiver.url, "WebhookKey", "k3y", messages=["Create"])

    contact_id = create_contact(api, lastname="Big", description="x" * 1500)
    [job] = dataverse.admin.wait_for_deliveries(1)

    [request] = receiver.requests
    body = request.body
    assert request.headers["x-ms-dynamics-msg-size-exceeded"] == "true"
    assert body["ParentContext"] is None
    assert body["InputParameters"] == body["PreEntityImages"] == body["PostEntityImages"] == []
    assert body["PrimaryEntityId"] == contact_id
    assert job["size_exceeded"] is True


@contextlib.contextmanager
def raw_endpoint(reply: bytes | None) -> Iterator[str]:
    """A webhook URL on loopback whose server reads a request and writes ``reply`` as it is,
    then closes; ``None``: it never answers (until the test ends)."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            while not done.is_set():
                connection, _ = server.accept()
                with connection:
                    connection.recv(65536)
                    if reply is None:
                        done.wait()
                    else:
                        connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        done.set()
        server.close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("reply", "statuscode", "message"),
    [
        # No Content-Length: the body runs until the endpoint closes.
        (b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\n\r\naccepted", 30, None),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 30, None),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 31, "answered 404"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", 31, "The webhook call failed: _NotHttp."),
        (None, 31, "The webhook call timed out."),
    ],
)
def test_an_endpoints_answer_decides_the_jobs_outcome(api, dataverse, reply, statuscode, message):
    dataverse.admin.settings(webhook_timeout_s=0.5)
    with raw_endpoint(reply) as url:
        dataverse.admin.register_webhook(url, "WebhookKey", "k3y", messages=["Create"])
        create_contact(api, lastname="Answer")
        [job] = dataverse.admin.wait_for_deliveries(1)

    assert job["statuscode"] == statuscode
    assert (job["message"] is None) if message is None else (message in job["message"])


def test_an_endpoint_nobody_listens_on_fails_the_job_with_the_reason(api, dataverse):
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # free once closed: nothing listens there
    dataverse.admin.register_webhook(
        f"http://127.0.0.1:{port}/hook", "WebhookKey", "k3y", messages=["Create"]
    )
    create_contact(api, lastname="Nobody")
    [job] = dataverse.admin.wait_for_deliveries(1)

    assert job["statuscode"] == 31
    assert job["message"] == "The webhook call failed: ConnectionRefusedError."
    assert [attempt["status"] for attempt in job["attempts"]] == [None]


def test_at_most_a_bounded_number_of_deliveries_are_in_flight(api, dataverse):
    # The endpoint holds every request until released: the deliveries beyond the bound wait
    # (READY) instead of opening more connections, and all go once the endpoint answers.
    release = threading.Event()
    in_flight: list[int] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                in_flight.append(1)
            release.wait(timeout=30)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    bound = MAX_CONCURRENT_DELIVERIES
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        dataverse.admin.register_webhook(url, "WebhookKey", "k3y", messages=["Create"])
        for number in range(bound + 4):
            create_contact(api, lastname=f"Bound{number}")
        wait_for(lambda: len(in_flight) == bound, timeout=10, what="the bound reached")
        states = Counter(job["statecode"] for job in dataverse.admin.deliveries())
        assert states == {2: bound, 0: 4}  # in progress, ready (waiting for a worker)
        assert len(in_flight) == bound

        release.set()
        jobs = dataverse.admin.wait_for_deliveries(bound + 4, timeout=30)
        assert [job["statuscode"] for job in jobs] == [30] * (bound + 4)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
