"""The Contact sync page's HTML, without Airflow: every ledger value is escaped, links stay inside
the app or open Airflow's run page on top, and the Re-sync button appears only when allowed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from contact_sync.ledger import LedgerEntry
from contact_sync.ui import render
from contact_sync.ui.app import RELAY_URL_ENV, _relay_health
from contact_sync.ui.render import Links
from devenv.processes import free_port
from relay.app import create_app
from relay.settings import RelaySettings
from sandbox.common.server import ServerThread

LINKS = Links(base="/contact-sync", airflow="")
ENTRY = LedgerEntry(
    contact_id="5bd0dc04-1111-4aaa-8bbb-000000000001",
    outcome="rejected",
    dag_id="dynamics_contact_to_marketo",
    run_id="manual__2026-12-01T12:00:00+00:00",
    source="on-demand",
    dry_run=False,
    recorded_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    reason='<script>alert("x")</script>',
)


def test_values_are_escaped_and_run_links_open_airflow_on_top():
    html = render.entries_table([ENTRY], LINKS)

    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    run_link = (
        '<a target="_top" href="/dags/dynamics_contact_to_marketo/runs/'
        'manual__2026-12-01T12%3A00%3A00%2B00%3A00"'
    )
    assert run_link in html
    assert 'href="/contact-sync/history?id=5bd0dc04-1111-4aaa-8bbb-000000000001"' in html


def test_the_resync_button_only_when_an_action_is_given():
    without = render.entries_table([ENTRY], LINKS)
    with_button = render.entries_table([ENTRY], LINKS, resync="/contact-sync/resync")

    assert "Re-sync" not in without
    assert 'action="/contact-sync/resync"' in with_button
    assert 'name="contact_id" value="5bd0dc04-1111-4aaa-8bbb-000000000001"' in with_button


def test_counts_follow_the_outcome_order_and_total():
    html = render.counts_table([("24 h", {"rejected": 2, "created": 1, "skipped": 4})])

    assert html.index("created") < html.index("skipped") < html.index("rejected")
    assert '<td class="num"><b>7</b></td>' in html


def test_the_status_card_shows_a_live_relays_backlog_and_says_when_it_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A real relay on loopback (its Airflow unreachable: the card shows that too).
    settings = RelaySettings(
        airflow_url=f"http://127.0.0.1:{free_port()}",
        webhook_keys=("render-test-key",),
        spool_path=tmp_path / "spool.sqlite3",
    )
    server = ServerThread(create_app(settings)).start()
    try:
        monkeypatch.setenv(RELAY_URL_ENV, server.url)
        health, error = _relay_health()
    finally:
        server.stop()
    assert error is None
    assert health is not None
    assert health["spool_pending"] == 0
    card = render.relay_card(health, error)
    assert "<dt>Events waiting</dt><dd>0</dd>" in card
    assert "Relay status: <b>" in card

    monkeypatch.setenv(RELAY_URL_ENV, f"http://127.0.0.1:{free_port()}")
    health, error = _relay_health()
    assert health is None
    assert error is not None
    assert "ConnectError" in error
    assert "The relay did not answer" in render.relay_card(health, error)

    monkeypatch.delenv(RELAY_URL_ENV)
    assert "Not configured" in render.relay_card(*_relay_health())
