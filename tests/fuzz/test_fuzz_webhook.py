"""The webhook endpoint under any body, header, size, encoding and nesting.

Driven through the real ASGI app (httpx's ASGI transport: no sockets, so thousands of inputs fit
in seconds). Invariants for every input: the answer is 2xx or 4xx, never 5xx or an exception;
only an ``accepted`` answer adds a spool row, and that row is the event our own parser reads from
the body; the relay still answers ``/healthz`` and takes a valid webhook afterwards.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contact_sync.events import EventError, event_from_webhook
from relay.app import WEBHOOK_PATH, create_app
from relay.settings import RelaySettings
from tests.fuzz.conftest import FUZZ, TRIED
from tests.fuzz.strategies import contexts, json_values
from tests.relay.conftest import CODE_KEYS, HEADER_NAME, HEADER_VALUE, free_port, webhook_body

MAX_BODY = 16 * 1024


@dataclass
class AsgiRelay:
    settings: RelaySettings
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kwargs))

    def rows(self) -> list[sqlite3.Row]:
        with sqlite3.connect(self.settings.spool_path) as db:
            db.row_factory = sqlite3.Row
            return db.execute("SELECT * FROM events ORDER BY seq").fetchall()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiRelay]:
    settings = RelaySettings(
        airflow_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: nothing is forwarded
        webhook_keys=CODE_KEYS,
        webhook_header_name=HEADER_NAME,
        webhook_header_values=(HEADER_VALUE,),
        spool_path=tmp_path_factory.mktemp("fuzz") / "spool.sqlite3",
        max_body_bytes=MAX_BODY,
        # Nothing is ever forwarded here, so events stay pending: a long run must not turn
        # /healthz unhealthy for their age (the "still serving" check).
        health_max_pending_age_seconds=10.0**9,
    )
    app = create_app(settings)
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relay")
    yield AsgiRelay(settings, loop, client)
    loop.run_until_complete(client.aclose())
    loop.close()
    app.state.relay.spool.close()


def _nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


_encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1"])

_bodies = st.one_of(
    st.binary(max_size=400),
    st.tuples(json_values, _encodings).map(
        lambda v: json.dumps(v[0], ensure_ascii=False).encode(v[1], "replace")
    ),
    st.tuples(contexts(), _encodings).map(
        lambda v: json.dumps(v[0], ensure_ascii=False).encode(v[1], "replace")
    ),
    contexts().map(lambda body: json.dumps(body).encode()),
    st.tuples(st.integers(1, 200_000), st.sampled_from(["[", '{"a":'])).map(lambda v: _nested(*v)),
    st.integers(MAX_BODY - 200, MAX_BODY + 200).map(
        lambda size: json.dumps({**webhook_body(), "Pad": "x" * size}).encode()
    ),
)
_auth = st.sampled_from(["code", "old-code", "header", "wrong-code", "wrong-header", "none"])
_extra_headers = st.dictionaries(
    st.sampled_from(
        ["content-type", "x-ms-dynamics-msg-size-exceeded", "content-encoding", "x-forwarded-for"]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    max_size=3,
)


def _expected_event(raw: bytes) -> Any:
    """What our own parser reads from ``raw``: the event, or None when it refuses the body."""
    try:
        return event_from_webhook(json.loads(raw))
    except (ValueError, RecursionError, EventError):
        return None


@FUZZ
@given(raw=_bodies, auth=_auth, headers=_extra_headers)
def test_any_request_is_answered_2xx_or_4xx_and_only_accepted_events_are_stored(
    relay: AsgiRelay, raw: bytes, auth: str, headers: dict[str, str]
) -> None:
    TRIED["webhook"] += 1
    params = (
        {"code": {"code": CODE_KEYS[0], "old-code": CODE_KEYS[1], "wrong-code": "nope"}[auth]}
        if auth.endswith("code")
        else {}
    )
    if auth.endswith("header"):
        headers = {**headers, HEADER_NAME: HEADER_VALUE if auth == "header" else "nope"}
    before = len(relay.rows())

    response = relay.request("POST", WEBHOOK_PATH, params=params, headers=headers, content=raw)

    assert response.status_code < 500, response.text
    status = response.json()["status"]
    rows = relay.rows()
    if auth.startswith("wrong") or auth == "none":
        assert response.status_code == 401
    elif len(raw) > MAX_BODY:
        assert response.status_code == 413
    elif (event := _expected_event(raw)) is None:
        assert response.status_code == 400
    else:
        assert response.status_code == 202
        assert status in ("accepted", "duplicate", "ignored")
    if status == "accepted":
        assert len(rows) == before + 1
        assert rows[-1]["entity_id"] == event.id
        entity, message = rows[-1]["entity"], rows[-1]["message"].casefold()
        # What the relay's lists accept; a contact Delete only where the removal policy acts.
        assert entity in relay.settings.accepted_entities
        assert message in {m.casefold() for m in relay.settings.accepted_messages}
        assert (entity, message) != ("contact", "delete") or relay.settings.accept_contact_delete
    else:
        assert len(rows) == before  # nothing stored for what was refused, ignored or a resend
    assert relay.request("GET", "/healthz").status_code == 200


def test_after_the_fuzzing_the_relay_still_takes_a_webhook(relay: AsgiRelay) -> None:
    response = relay.request(
        "POST", WEBHOOK_PATH, params={"code": CODE_KEYS[0]}, json=webhook_body()
    )
    assert response.json()["status"] == "accepted"
