"""The nightly reconciliation: Dataverse contacts streamed page by page through the sync pipeline.

The real-time DAG syncs the contacts a webhook names; this module repairs what it missed (lost
webhooks, outages, rejected records) by walking every contact modified in a window of
``modifiedon`` (or every active contact, for a full pass) and sending each page through the same
steps of :mod:`contact_sync.pipeline`. No Airflow import here: the DAG passes the hooks in.

Per page of ≤ 5,000 contacts (Dataverse's page size, dynamics365-api.md §3.3)::

    page   = next(dynamics.iter_contact_pages(...))   # 1 Dataverse call, accounts $expand-ed
    accounts = fetch_accounts(...)                    # 0 calls: the accounts came with the page
    drafts, rejections = map_to_leads(...)
    found  = find_leads_email_first(...)              # ceil(n/300) by email, + ids of the unmatched
    written = upsert_leads(...)                       # ceil(creates/300) + ceil(updates/300)

Only the page in hand and the running counts are held, so memory is bounded by a page, not by the
table: the page iterator is a generator that asks Dataverse for the next page only when the loop
comes back for it.

**Why the parent accounts are expanded into the page** (``$expand=parentcustomerid_account``): a
page of 5,000 contacts can name thousands of accounts, which ``get_accounts`` would have to split
into several URL-sized ``In`` queries; expanded, they cost no request at all. A contact whose
parent is another contact comes back with no expanded account, so ``fetch_accounts`` still asks
for its parent id (and finds no account): that is the only account query a page can make.

**Lookups: by email first, by contact id only where needed** (the email-change rule of
:mod:`contact_sync.decide`: a lead linked to the contact by the contact-id field wins, whatever its
email). A contact whose email lookup already returned a lead linked to it *with that same email*
needs nothing more: every lead with its email was found, so ``decide`` would pick that lead (or an
equal one) even knowing every lead linked to it. For every other contact (new ones, changed
emails, leads not linked yet) the contact-id lookup runs, so an email change still updates the old
lead instead of creating a duplicate. Once leads are linked, a steady-state night costs
``ceil(n/300)`` lookups per page. (``pipeline.find_leads`` looks both ways for every contact, which
is simpler and, for the ≤ 300 contacts of a real-time batch, at most one call dearer.)

Rerunning a window writes nothing: every write is decided against what Marketo holds now, and an
update sends only the fields that differ after normalisation (``decide.same_value``).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from contact_sync.decide import contact_key, email_key, lead_lookups
from contact_sync.events import format_utc
from contact_sync.hooks.dynamics import MAX_PAGE_SIZE
from contact_sync.mapping import EMAIL_FIELD, Mappings
from contact_sync.models import OUTCOME_STATUSES, LeadDraft, Outcome
from contact_sync.pipeline import (
    ContactReader,
    LeadWriter,
    summarise_api_calls,
    sync_contacts,
)
from contact_sync.report import text_table

__all__ = [
    "DEFAULT_LOOKBACK",
    "MAX_LISTED",
    "ContactPages",
    "ReconcileReport",
    "Window",
    "find_leads_email_first",
    "parse_moment",
    "plan_windows",
    "reconcile",
    "resolve_window",
]

log = logging.getLogger(__name__)

#: The window of a run Airflow gave no data interval (a REST trigger without a logical date):
#: the period of the default nightly schedule, ending when the run was triggered.
DEFAULT_LOOKBACK = timedelta(days=1)
#: Rejected contacts listed by id in the report (XCom lives in the metadata DB; a full pass over a
#: large table may reject many). The task log lists every one of them, page by page.
MAX_LISTED = 1_000
_ACTIVE = "statecode eq 0"  # dynamics365-api.md §4: 0 Active, 1 Inactive


# --- The window ----------------------------------------------------------------------------------


def parse_moment(value: str, *, what: str) -> datetime:
    """An ISO-8601 timestamp with an offset, or a bare date (midnight UTC), as an aware datetime."""
    text = value.strip()
    try:
        if len(text) == len("2024-01-31"):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} is not an ISO-8601 date or timestamp: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{what} needs a UTC offset (e.g. 'Z'): {text[:40]!r}")
    return moment.astimezone(UTC)


def _plain_utc(moment: datetime, *, what: str) -> datetime:
    """``moment`` as a plain ``datetime`` in UTC. Airflow's context holds pendulum datetimes, and
    ``dataclasses.replace`` on slices computed from them lost the time zone."""
    if moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    utc = moment.astimezone(UTC)
    return datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """Contacts with ``since <= modifiedon < until`` (an open end when None), optionally only the
    active ones. Half-open, so consecutive nightly windows neither overlap nor leave a gap."""

    since: datetime | None = None
    until: datetime | None = None
    active_only: bool = False

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                object.__setattr__(self, name, _plain_utc(moment, what=name))
        if self.since and self.until and self.since >= self.until:
            raise ValueError(f"since ({self.since:%Y-%m-%dT%H:%M:%SZ}) must be before until")
        if self.since is None and self.until is None and not self.active_only:
            raise ValueError("a window needs a bound or active_only (a full pass)")

    def odata_filter(self) -> str:
        """The ``$filter`` for ``DynamicsHook.iter_contact_pages`` (datetime literals unquoted)."""
        terms = []
        if self.since is not None:
            terms.append(f"modifiedon ge {format_utc(self.since)}")
        if self.until is not None:
            terms.append(f"modifiedon lt {format_utc(self.until)}")
        if self.active_only:
            terms.append(_ACTIVE)
        return " and ".join(terms)

    @property
    def label(self) -> str:
        """How logs and the UI name the window."""
        since = format_utc(self.since) if self.since else "…"
        until = format_utc(self.until) if self.until else "…"
        return f"{since} → {until}" + (" (active contacts)" if self.active_only else "")

    def split(self, parts: int, *, end: datetime) -> list[Window]:
        """``parts`` consecutive windows of equal length (whole seconds) covering this one.

        ``end`` stands in for an open ``until`` when measuring; the last window keeps the open end,
        so a contact modified while the run goes on is still read.
        """
        if self.since is None:
            raise ValueError("only a window with a start can be split")
        if parts < 1:
            raise ValueError(f"parts must be ≥ 1, not {parts}")
        span = (self.until or _plain_utc(end, what="end")) - self.since
        step = timedelta(seconds=math.ceil(span.total_seconds() / parts))
        if parts == 1 or step <= timedelta(0):
            return [self]
        starts = [self.since + step * i for i in range(parts) if step * i < span]
        ends = [*starts[1:], self.until]
        return [
            replace(self, since=start, until=stop) for start, stop in zip(starts, ends, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for XCom."""
        return {
            "since": format_utc(self.since) if self.since else None,
            "until": format_utc(self.until) if self.until else None,
            "active_only": self.active_only,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Window:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            since=parse_moment(data["since"], what="since") if data.get("since") else None,
            until=parse_moment(data["until"], what="until") if data.get("until") else None,
            active_only=bool(data.get("active_only", False)),
        )


def resolve_window(
    *,
    since: str | None,
    until: str | None,
    full_pass: bool,
    interval_start: datetime | None,
    interval_end: datetime | None,
    run_after: datetime,
) -> Window:
    """The window a run reconciles, from its params and data interval.

    - no params: the run's data interval (a scheduled night: the day before 02:00 UTC);
    - ``since`` / ``until``: a backfill; a missing one falls back to the data interval's;
    - ``full_pass``: every active contact, bounded only by ``since`` / ``until`` when given.

    A run without a data interval (triggered through the REST API without a logical date) gets
    the :data:`DEFAULT_LOOKBACK` before it was triggered.
    """
    start = parse_moment(since, what="since") if since else None
    stop = parse_moment(until, what="until") if until else None
    if not full_pass:
        stop = stop or interval_end or run_after
        start = start or interval_start or stop - DEFAULT_LOOKBACK
    return Window(since=start, until=stop, active_only=full_pass)


class ContactPages(ContactReader, Protocol):
    """What the reconciliation needs of ``DynamicsHook``, beyond the pipeline's reads."""

    api_calls: Counter[str]

    def iter_contact_pages(
        self,
        *,
        filter: str,
        select: Sequence[str],
        page_size: int = ...,
        account_select: Sequence[str] | None = None,
    ) -> Iterator[list[dict[str, Any]]]: ...


class CountingWriter(LeadWriter, Protocol):
    """``MarketoHook`` as the reconciliation uses it: the pipeline's calls and a call counter."""

    api_calls: Counter[str]


def plan_windows(
    dynamics: ContactPages, window: Window, parts: int, *, now: datetime
) -> list[Window]:
    """``window`` cut into ``parts`` time slices, to reconcile as parallel (mapped) tasks.

    A window without a start (a full pass) starts at the oldest ``modifiedon`` it holds, which
    costs one one-row query; a window holding no contact at all stays whole (and reads nothing).
    """
    if parts > 1 and window.since is None:
        oldest = _oldest_modifiedon(dynamics, window)
        if oldest is None:
            return [window]
        window = replace(window, since=oldest)
    windows = window.split(parts, end=now) if window.since is not None else [window]
    log.info("Window %s in %d slice(s)", window.label, len(windows))
    return windows


def _oldest_modifiedon(dynamics: ContactPages, window: Window) -> datetime | None:
    pages = dynamics.iter_contact_pages(
        filter=window.odata_filter(), select=("contactid", "modifiedon"), page_size=1
    )
    # The hook's pages are a generator: no second page is requested unless asked for.
    first = next(iter(pages), [])
    if not first:
        return None
    # Dataverse keeps whole seconds; flooring keeps the ``ge`` bound on the record itself.
    return parse_moment(first[0]["modifiedon"], what="modifiedon").replace(microsecond=0)


# --- The report ----------------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    """Running counts of a reconciliation; ids and reason codes only, never a field value.

    ``api_calls`` is :func:`pipeline.summarise_api_calls`' shape:
    ``{service: {"total": n, "by_endpoint": {"METHOD /path": n}}}``.
    """

    windows: list[str] = field(default_factory=list)
    pages: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    rejected: list[dict[str, str | None]] = field(default_factory=list)
    unlisted: int = 0
    api_calls: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def scanned(self) -> int:
        """Contacts read from Dataverse (each ends in exactly one outcome)."""
        return sum(self.counts.values())

    @property
    def writes(self) -> int:
        """Leads created or updated."""
        return self.counts["created"] + self.counts["updated"]

    def add(self, outcomes: Iterable[Outcome]) -> None:
        """Count one page's outcomes; rejected contacts are listed up to :data:`MAX_LISTED`."""
        for outcome in outcomes:
            self.counts[outcome.status] += 1
            if outcome.status != "rejected":
                continue
            self.reasons[outcome.reason_code or "unknown"] += 1
            self._list({"contact_id": outcome.contact_id, "reason": outcome.reason})

    def _list(self, rejected: dict[str, str | None]) -> None:
        if len(self.rejected) < MAX_LISTED:
            self.rejected.append(rejected)
        else:
            self.unlisted += 1

    @classmethod
    def merge(cls, reports: Iterable[ReconcileReport]) -> ReconcileReport:
        """One report over several (the time slices of a run)."""
        merged = cls()
        calls: list[dict[str, dict[str, int]]] = []
        for report in reports:
            merged.windows += report.windows
            merged.pages += report.pages
            merged.counts.update(report.counts)
            merged.reasons.update(report.reasons)
            for rejected in report.rejected:
                merged._list(rejected)
            merged.unlisted += report.unlisted
            calls.append(
                {service: calls["by_endpoint"] for service, calls in report.api_calls.items()}
            )
        merged.api_calls = summarise_api_calls(calls)
        return merged

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for XCom: what the run did, readable in the UI's XCom tab."""
        return {
            "windows": list(self.windows),
            "pages": self.pages,
            "scanned": self.scanned,
            "in_sync": self.counts["unchanged"],
            "created": self.counts["created"],
            "updated": self.counts["updated"],
            "rejected": self.counts["rejected"],
            "rejected_by_reason": dict(self.reasons.most_common()),
            "rejected_contacts": list(self.rejected),
            "rejected_not_listed": self.unlisted,
            "api_calls": self.api_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReconcileReport:
        """Rebuild from :meth:`to_dict` output."""
        statuses = {"unchanged": "in_sync", "created": "created", "updated": "updated"}
        counts = Counter({status: data[key] for status, key in statuses.items()})
        counts["rejected"] = data["rejected"]
        return cls(
            windows=list(data["windows"]),
            pages=data["pages"],
            counts=counts,
            reasons=Counter(data["rejected_by_reason"]),
            rejected=[dict(item) for item in data["rejected_contacts"]],
            unlisted=data["rejected_not_listed"],
            api_calls={service: dict(calls) for service, calls in data["api_calls"].items()},
        )

    def as_text(self) -> str:
        """The report as plain-text tables for the task log."""
        rows: list[tuple[Any, Any]] = [
            ("reconciliation", "contacts"),
            ("scanned", self.scanned),
            ("in sync", self.counts["unchanged"]),
            ("created", self.counts["created"]),
            ("updated", self.counts["updated"]),
            ("rejected", self.counts["rejected"]),
            *((f"  {reason}", count) for reason, count in self.reasons.most_common()),
        ]
        lines = [f"Windows: {'; '.join(self.windows) or 'none'} ({self.pages} page(s))", ""]
        lines += text_table(rows)
        lines += ["", *text_table([("API calls", "requests"), *self._call_rows()])]
        if self.rejected:
            listed = [(item["contact_id"], item["reason"]) for item in self.rejected]
            lines += ["", *text_table([("rejected contact", "reason"), *listed])]
        if self.unlisted:
            lines.append(f"… and {self.unlisted} more rejected contact(s), listed in the task logs")
        return "\n".join(lines)

    def _call_rows(self) -> list[tuple[str, int]]:
        rows = []
        for service, calls in sorted(self.api_calls.items()):
            rows.append((service, calls["total"]))
            rows += [(f"  {endpoint}", n) for endpoint, n in calls["by_endpoint"].items()]
        return rows


# --- Reconciling ---------------------------------------------------------------------------------


def find_leads_email_first(
    marketo: LeadWriter, drafts: Sequence[LeadDraft], mappings: Mappings
) -> list[dict[str, Any]]:
    """The leads ``decide`` needs, looked up by email and, only for the drafts that need it, by
    contact id (see the module docstring for why this keeps the email-change rule).

    Same signature and result as ``pipeline.find_leads``; each lookup is split into calls of 300
    values by the hook.
    """
    lookups = lead_lookups(drafts, mappings)
    if not lookups:
        return []
    by_email, *by_contact = lookups
    leads = {
        lead["id"]: lead
        for lead in marketo.find_leads(
            by_email.filter_type, by_email.values, fields=by_email.fields
        )
    }
    contact_field = mappings.settings.contact_id_field
    if by_contact and contact_field:
        (lookup,) = by_contact
        # The same keys decide() matches leads with, so this test cannot drift from its rule.
        settled = {
            (contact_key(lead.get(contact_field)), email_key(lead.get(EMAIL_FIELD)))
            for lead in leads.values()
        }
        pending = [
            draft.contact_id
            for draft in drafts
            if (draft.contact_id, email_key(draft.email)) not in settled
        ]
        if pending:
            for lead in marketo.find_leads(lookup.filter_type, pending, fields=lookup.fields):
                leads.setdefault(lead["id"], lead)
    return list(leads.values())


def reconcile(
    dynamics: ContactPages,
    marketo: CountingWriter,
    window: Window,
    mappings: Mappings,
    *,
    page_size: int = MAX_PAGE_SIZE,
) -> ReconcileReport:
    """Make the Marketo leads of every contact in ``window`` match Dynamics, page by page.

    A contact that cannot go to Marketo (no email, invalid email, Marketo skipped it) is counted
    and listed by id, not raised: the report carries it. A service failure that outlasts the
    hooks' retries raises, after the pages before it were written (a rerun repeats nothing).
    """
    before = {"dataverse": Counter(dynamics.api_calls), "marketo": Counter(marketo.api_calls)}
    report = ReconcileReport(windows=[window.label])
    pages = dynamics.iter_contact_pages(
        filter=window.odata_filter(),
        select=mappings.contact_select,
        account_select=mappings.account_select,
        page_size=page_size,
    )
    for page in pages:
        outcomes = sync_contacts(dynamics, marketo, page, mappings, find=find_leads_email_first)
        report.pages += 1
        report.add(outcomes)
        _log_page(report.pages, outcomes)
    used = {
        "dataverse": dynamics.api_calls - before["dataverse"],
        "marketo": marketo.api_calls - before["marketo"],
    }
    report.api_calls = summarise_api_calls([used])
    log.info(
        "Reconciled %s: %d contact(s) in %d page(s), %d written",
        window.label,
        report.scanned,
        report.pages,
        report.writes,
    )
    return report


def _log_page(number: int, outcomes: Sequence[Outcome]) -> None:
    counts = Counter(outcome.status for outcome in outcomes)
    log.info(
        "Page %d: %d contact(s): %s",
        number,
        len(outcomes),
        ", ".join(f"{counts[status]} {status}" for status in OUTCOME_STATUSES),
    )
    rejected: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.status == "rejected":
            rejected.setdefault(outcome.reason_code or "unknown", []).append(outcome.contact_id)
    for reason, ids in sorted(rejected.items()):
        log.warning("Page %d: %d contact(s) rejected (%s): %s", number, len(ids), reason, ids)
