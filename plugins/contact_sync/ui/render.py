"""HTML of the "Contact sync" pages: plain functions from ledger data to a page, no template engine.

Everything dynamic goes through :func:`esc`. The CSS is inline (deployments may be offline) and
follows the look of Airflow 3's UI: system font, white cards with light grey borders, Airflow's
blue for links and primary buttons, coloured badges per outcome. Links into Airflow's own UI
target ``_top``: the pages are shown in an iframe inside it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from contact_sync.ledger import LedgerEntry, RunSummary

__all__ = ["Links", "esc", "page"]

# The order outcomes are shown in; others (the set is open) follow alphabetically.
OUTCOME_ORDER = ("created", "updated", "unchanged", "flagged", "deleted", "skipped", "rejected")
_BADGE = {
    "created": ("#e6f4ea", "#1e7b34"),
    "updated": ("#e8f0fe", "#1a56b8"),
    "unchanged": ("#f1f3f4", "#4d5156"),
    "rejected": ("#fce8e6", "#b3261e"),
    "flagged": ("#fef7e0", "#8a5a00"),
    "deleted": ("#f3e8fd", "#6b2fa0"),
}

_CSS = """
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
  Roboto, "Helvetica Neue", Arial, sans-serif; color: #1a202c; background: #f7f8fa; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0 0 10px; }
p.lead { margin: 0 0 16px; color: #4a5568; }
a { color: #0b6bcb; text-decoration: none; } a:hover { text-decoration: underline; }
nav.tabs { display: flex; gap: 4px; border-bottom: 1px solid #d9dde3; margin: 12px 0 18px; }
nav.tabs a { padding: 8px 14px; color: #4a5568; border-bottom: 2px solid transparent; }
nav.tabs a.active { color: #0b6bcb; border-bottom-color: #0b6bcb; font-weight: 600; }
nav.tabs a:hover { text-decoration: none; color: #1a202c; }
.count { display: inline-block; min-width: 20px; padding: 0 6px; margin-left: 4px;
  border-radius: 10px; background: #b3261e; color: #fff; font-size: 12px; text-align: center; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid #e2e6eb; border-radius: 8px; padding: 16px;
  margin-bottom: 16px; }
table { width: 100%; border-collapse: collapse; background: #fff; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid #edf0f3;
  vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: #5f6b7a;
  background: #f9fafb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; }
td .id { white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; background: #f1f3f4; color: #4d5156; }
.muted { color: #6b7785; } .small { font-size: 12px; }
.banner { border-radius: 6px; padding: 10px 14px; margin-bottom: 16px; border: 1px solid; }
.banner.error { background: #fdecea; border-color: #f5c2bd; color: #8c1d18; }
.banner.ok { background: #e6f4ea; border-color: #b7dfc1; color: #1e5b2c; }
.banner.info { background: #eef4fd; border-color: #c6dbf7; color: #17427a; }
button { font: inherit; cursor: pointer; white-space: nowrap; border-radius: 6px; padding: 5px 12px;
  border: 1px solid #0b6bcb; background: #fff; color: #0b6bcb; }
button.primary { background: #0b6bcb; color: #fff; }
button:hover { filter: brightness(0.95); }
form.inline { display: inline; margin: 0; }
input[type=search] { font: inherit; padding: 6px 10px; width: 420px; max-width: 100%;
  border: 1px solid #c9ced6; border-radius: 6px; }
.toolbar { display: flex; justify-content: space-between; align-items: center;
  margin-bottom: 10px; gap: 12px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.kv dt { color: #5f6b7a; } dl.kv dd { margin: 0; }
"""


def esc(value: Any) -> str:
    """``value`` as HTML text (None as an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Links:
    """URLs of this app's pages and of Airflow's UI, from the request's mount points."""

    base: str  # this app's mount point, e.g. "/contact-sync"
    airflow: str  # Airflow's root path ("" when served at /)

    def page(self, path: str = "") -> str:
        return f"{self.base}/{path}"

    def run(self, dag_id: str, run_id: str) -> str:
        """The run in Airflow's UI."""
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def run_tab(self, dag_id: str, run_id: str) -> str:
        """This app's list of the run's contacts."""
        return self.page(f"runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}")

    def history(self, contact_id: str) -> str:
        return self.page(f"history?id={quote(contact_id, safe='')}")


def page(
    title: str,
    body: str,
    *,
    links: Links,
    active: str | None = None,
    open_errors: int | None = None,
    tabs: bool = True,
) -> str:
    """A whole HTML document: heading, the three tabs, and ``body``."""
    nav = ""
    if tabs:
        items = [
            ("status", "Status", ""),
            ("errors", "Errors", "errors"),
            ("history", "History", "history"),
        ]
        parts = []
        for key, label, path in items:
            badge = ""
            if key == "errors" and open_errors:
                badge = f'<span class="count" title="contacts rejected">{open_errors}</span>'
            css = ' class="active"' if key == active else ""
            parts.append(f'<a{css} href="{esc(links.page(path))}">{label}{badge}</a>')
        nav = f'<nav class="tabs">{"".join(parts)}</nav>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · Contact sync</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>"
        "<h1>Contact sync</h1>"
        '<p class="lead">Dynamics 365 contacts → Marketo leads, contact by contact, from the sync '
        "ledger. Ids only: open the CRM for names and emails.</p>"
        f"{nav}{body}</body></html>"
    )


def banner(kind: str, text_html: str) -> str:
    """A coloured message box; ``text_html`` must be escaped already."""
    return f'<div class="banner {kind}" role="status">{text_html}</div>'


def badge(outcome: str) -> str:
    background, colour = _BADGE.get(outcome, ("#f1f3f4", "#4d5156"))
    return (
        f'<span class="badge" style="background:{background};color:{colour}">{esc(outcome)}</span>'
    )


def when(moment: datetime, now: datetime | None = None) -> str:
    """UTC time with how long ago, e.g. ``2026-12-01 12:00 UTC (5 min ago)``."""
    now = now or datetime.now(UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        ago = "just now"
    elif seconds < 3600:
        ago = f"{seconds // 60} min ago"
    elif seconds < 86400:
        ago = f"{seconds // 3600} h ago"
    else:
        ago = f"{seconds // 86400} d ago"
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    shown = f'<span title="{esc(stamp)}">{esc(stamp[:-7])} UTC</span>'
    return f'{shown} <span class="muted small">({ago})</span>'


def ordered(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Counts in the display order of outcomes."""
    known = [(o, counts[o]) for o in OUTCOME_ORDER if o in counts]
    return known + sorted((o, n) for o, n in counts.items() if o not in OUTCOME_ORDER)


def counts_table(columns: Sequence[tuple[str, Mapping[str, int]]]) -> str:
    """One row per outcome, one column per window."""
    outcomes = {o for _, counts in columns for o in counts}
    rows = ordered({o: 0 for o in outcomes})
    head = "".join(f'<th class="num">{esc(label)}</th>' for label, _ in columns)
    if not rows:
        return '<p class="muted">No contact outcomes recorded in these windows.</p>'
    body = "".join(
        f"<tr><td>{badge(o)}</td>"
        + "".join(f'<td class="num">{counts.get(o, 0)}</td>' for _, counts in columns)
        + "</tr>"
        for o, _ in rows
    )
    totals = "".join(f'<td class="num"><b>{sum(c.values())}</b></td>' for _, c in columns)
    return (
        f"<table><thead><tr><th>Outcome</th>{head}</tr></thead><tbody>{body}"
        f"<tr><td><b>all contacts</b></td>{totals}</tr></tbody></table>"
    )


def run_summary(summary: RunSummary, links: Links) -> str:
    parts = ", ".join(f"{n} {esc(o)}" for o, n in ordered(summary.counts)) or "no contacts"
    return (
        '<dl class="kv">'
        f'<dt>Run</dt><dd><a target="_top" href="{esc(links.run(summary.dag_id, summary.run_id))}">'
        f'<span class="id">{esc(summary.run_id)}</span></a></dd>'
        f"<dt>Recorded</dt><dd>{when(summary.recorded_at)}</dd>"
        f"<dt>Contacts</dt><dd>{summary.total}: {parts}</dd>"
        f'<dt></dt><dd><a href="{esc(links.run_tab(summary.dag_id, summary.run_id))}">'
        "Every contact of this run →</a></dd></dl>"
    )


def relay_card(relay: Mapping[str, Any] | None, error: str | None) -> str:
    if relay is None and error is None:
        return (
            '<p class="muted">Not configured: set <code>CONTACT_SYNC_RELAY_URL</code> on the API '
            "server to show the webhook relay's backlog.</p>"
        )
    if error is not None or relay is None:
        return banner("error", f"The relay did not answer: {esc(error or 'no answer')}")
    age = relay.get("oldest_pending_age_seconds")
    status = relay.get("status", "?")
    kind = "ok" if status == "ok" else "error"
    return (
        banner(kind, f"Relay status: <b>{esc(status)}</b>") + '<dl class="kv">'
        f"<dt>Events waiting</dt><dd>{esc(relay.get('spool_pending'))}</dd>"
        f"<dt>Oldest waiting</dt><dd>{'-' if age is None else f'{float(age):.0f} s'}</dd>"
        f"<dt>Failed events</dt><dd>{esc(relay.get('failed_events'))}</dd>"
        f"<dt>Airflow reachable</dt><dd>{esc(relay.get('airflow_reachable'))}</dd></dl>"
    )


def entries_table(
    entries: Iterable[LedgerEntry],
    links: Links,
    *,
    show_run: bool = True,
    show_contact: bool = True,
    resync: str | None = None,
) -> str:
    """Outcome rows. ``resync`` is the form action of a per-row Re-sync button (None: no button)."""
    head = [
        "When",
        "Contact id" if show_contact else None,
        "Lead id",
        "Outcome",
        "Reason",
        "Changed fields",
        "Run" if show_run else None,
        "" if resync else None,
    ]
    rows = []
    for entry in entries:
        cells = [when(entry.recorded_at)]
        if show_contact:
            cells.append(
                f'<a class="id" href="{esc(links.history(entry.contact_id))}" '
                f'title="History of this contact">{esc(entry.contact_id)}</a>'
            )
        cells.append(f'<span class="id">{esc(entry.lead_id) or "-"}</span>')
        dry = ' <span class="muted small">(dry run)</span>' if entry.dry_run else ""
        cells.append(badge(entry.outcome) + dry)
        cells.append(esc(entry.reason) or '<span class="muted">-</span>')
        cells.append(esc(", ".join(entry.changed_fields)) or '<span class="muted">-</span>')
        if show_run:
            cells.append(
                f'<a target="_top" href="{esc(links.run(entry.dag_id, entry.run_id))}" '
                f'title="Open the run in Airflow">{esc(entry.run_id)}</a>'
                f'<div class="muted small">{esc(entry.dag_id)} · {esc(entry.source)}</div>'
            )
        if resync:
            cells.append(
                f'<form class="inline" method="post" action="{esc(resync)}">'
                f'<input type="hidden" name="contact_id" value="{esc(entry.contact_id)}">'
                '<button type="submit" title="Trigger dynamics_contact_to_marketo for this '
                'contact">Re-sync</button></form>'
            )
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head if h is not None)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
