"""The nightly reconciliation: Dataverse contacts streamed page by page through the sync pipeline.

The real-time DAG syncs the contacts a webhook names; this module repairs what it missed (lost
webhooks, outages, rejected records) by walking every contact modified in a window of
``modifiedon`` (or every active contact, for a full pass) and sending each page through the same
steps of :mod:`contact_sync.pipeline`. No Airflow import here: the DAG passes the hooks in.

Per page of ≤ 5,000 contacts (Dataverse's maximum page size, "Page results using OData",
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results)::

    page   = next(dynamics.iter_contact_pages(...))   # 1 Dataverse call, accounts $expand-ed
    outcomes = sync_contacts(dynamics, marketo, page, mappings)
        # accounts: 0 calls, they came with the page
        # lead lookups: ceil(n/300) by email, + ids of the unmatched (pipeline.find_leads)
        # writes: ceil(creates/300) + ceil(updates/300)

Only the page in hand and the running counts are held, so memory is bounded by a page, not by the
table: the page iterator is a generator that asks Dataverse for the next page only when the loop
comes back for it.

**Why the parent accounts are expanded into the page** (``$expand=parentcustomerid_account``): a
page of 5,000 contacts can name thousands of accounts, which ``get_accounts`` would have to split
into several URL-sized ``In`` queries; expanded, they cost no request at all. A contact whose
parent is another contact comes back with no expanded account, so ``fetch_accounts`` still asks
for its parent id (and finds no account): that is the only account query a page can make.

Leads are looked up as in the real-time DAG (``pipeline.find_leads``: by email first, by contact
id only where needed), so once leads are linked a steady-state night costs ``ceil(n/300)``
lookups per page.

Rerunning a window writes nothing: every write is decided against what Marketo holds now, and an
update sends only the fields that differ after normalisation (``decide.same_value``).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from contact_sync.events import format_utc
from contact_sync.hooks.dynamics import MAX_PAGE_SIZE
from contact_sync.mapping import Mappings
from contact_sync.models import OUTCOME_STATUSES, Outcome
from contact_sync.pipeline import (
    ContactReader,
    LeadWriter,
    contact_columns,
    remove_contacts,
    sync_account_contacts,
    sync_contacts,
)
from contact_sync.removal import Cause, Removal, removal_of
from contact_sync.report import RunReport

__all__ = [
    "DEFAULT_LOOKBACK",
    "ContactPages",
    "Window",
    "parse_moment",
    "plan_windows",
    "reconcile",
    "resolve_window",
]

log = logging.getLogger(__name__)

#: The window of a run Airflow gave no data interval (a REST trigger without a logical date):
#: the period of the default nightly schedule, ending when the run was triggered.
DEFAULT_LOOKBACK = timedelta(days=1)
# Contact "Status" (statecode): 0 Active, 1 Inactive (the contact table reference,
# https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact).
_ACTIVE = "statecode eq 0"


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

    def iter_contact_pages(
        self,
        *,
        filter: str,
        select: Sequence[str],
        page_size: int = ...,
        account_select: Sequence[str] | None = None,
    ) -> Iterator[list[dict[str, Any]]]: ...

    def iter_account_ids(self, *, filter: str) -> Iterator[list[str]]: ...


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


# --- Reconciling ---------------------------------------------------------------------------------


def reconcile(
    dynamics: ContactPages,
    marketo: LeadWriter,
    window: Window,
    mappings: Mappings,
    *,
    page_size: int = MAX_PAGE_SIZE,
    dry_run: bool = False,
) -> RunReport:
    """Make the Marketo leads of every contact in ``window`` match Dynamics, page by page.

    Three passes, each streamed page by page:

    1. the contacts modified in the window, within ``sync_filter`` (ANDed by Dataverse); inactive
       or merged ones get the ``on_contact_removed`` treatment, the masters of merges are synced;
    2. when ``sync_filter`` is set and the policy is not ``ignore``: the contacts modified in the
       window *outside* the filter (``not (...)``), whose leads get the policy ("filtered");
    3. for a bounded window: the accounts modified in it (ids only), then their active contacts
       the first pass did not cover, so an account-only edit reaches its contacts' leads.

    A contact that cannot go to Marketo (no email, invalid email, Marketo skipped it) is counted
    and listed by id, not raised: the report carries it. A service failure that outlasts the
    hooks' retries raises, after the pages before it were written (a rerun repeats nothing).
    The caller adds the API calls (``contact_sync.tasks`` reads the hooks' counters at task end).
    ``dry_run``: no Marketo write; the outcomes say what would happen.
    """
    report = RunReport(windows=[window.label])
    settings = mappings.settings
    base = window.odata_filter()
    sync_filter = settings.sync_filter
    seen: set[str] = set()

    def count(outcomes: Sequence[Outcome]) -> None:
        report.pages += 1
        report.add(outcomes)
        seen.update(outcome.contact_id for outcome in outcomes)
        _log_page(report.pages, outcomes)

    pages = dynamics.iter_contact_pages(
        filter=f"{base} and ({sync_filter})" if sync_filter else base,
        select=contact_columns(mappings),
        account_select=mappings.account_select,
        page_size=page_size,
    )
    for page in pages:
        count(sync_contacts(dynamics, marketo, page, mappings, dry_run=dry_run))
    if sync_filter and settings.on_contact_removed != "ignore":
        outside = dynamics.iter_contact_pages(
            filter=f"{base} and not ({sync_filter})",
            select=contact_columns(mappings),
            page_size=page_size,
        )
        for page in outside:
            removals = [
                removal_of(record) or Removal(str(record["contactid"]), Cause.FILTERED)
                for record in page
            ]
            count(remove_contacts(marketo, removals, mappings, dry_run=dry_run))
    if window.since is not None or window.until is not None:
        for account_ids in dynamics.iter_account_ids(filter=_modified(window)):
            if account_ids:
                sync_account_contacts(
                    dynamics,
                    marketo,
                    account_ids,
                    mappings,
                    done=seen,
                    dry_run=dry_run,
                    on_page=count,
                )
    log.info(
        "Reconciled %s: %d contact(s) in %d page(s), %d written",
        window.label,
        report.total,
        report.pages,
        report.writes,
    )
    return report


def _modified(window: Window) -> str:
    """The ``modifiedon`` bounds of ``window`` alone (no ``statecode``): for accounts."""
    return Window(since=window.since, until=window.until).odata_filter()


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
