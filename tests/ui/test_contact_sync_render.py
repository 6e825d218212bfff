"""The Contact sync page's HTML, without Airflow: every ledger value is escaped, links stay inside
the app or open Airflow's run page on top, and the Re-sync button appears only when allowed."""

from __future__ import annotations

from datetime import UTC, datetime

from contact_sync.ledger import LedgerEntry
from contact_sync.ui import render
from contact_sync.ui.render import Links

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
