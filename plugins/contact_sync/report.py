"""The run report of both DAGs: counts by outcome and reason, rejected contacts by id, the conf
items refused, the windows and pages read, the API calls sent. Never a contact field value.

The real-time DAG builds one from its single batch; the reconciliation adds its pages one by one
and merges its time slices (:meth:`RunReport.merge`). The same dict (:meth:`RunReport.to_dict`) is
what each DAG's ``report`` task leaves as XCom, and :meth:`RunReport.as_text` what it logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contact_sync.events import Refusal
from contact_sync.models import OUTCOME_STATUSES, Outcome

__all__ = ["MAX_LISTED", "RunReport", "summarise_api_calls", "text_table"]

#: How a dry run's headline names the writes it did not make (the statuses stay the pipeline's).
_WOULD = {
    "created": "would create",
    "updated": "would update",
    "flagged": "would flag",
    "deleted": "would delete",
}

#: Rejected contacts listed by id in the report (XCom lives in the metadata DB; a full pass over a
#: large table may reject many). The task log lists every one of them, page by page.
MAX_LISTED = 1_000
#: Outcomes other than ``unchanged`` a report carries for the sync ledger (the reconciliation's
#: ``report`` task records them). Each is ~0.3 kB of XCom; a first full pass that creates more
#: leads than this records the rest as counts only (the run row) and says so in its log.
MAX_RECORDED = 20_000


def summarise_api_calls(
    counts: Iterable[Mapping[str, Mapping[str, int]]],
) -> dict[str, dict[str, Any]]:
    """Add up call counts ``{service: {"METHOD /path": n}}`` (the hooks' ``api_calls`` counters,
    read when a task ends) into ``{service: {"total": n, "by_endpoint": {...}}}``."""
    totals: dict[str, Counter[str]] = {}
    for step in counts:
        for service, by_endpoint in step.items():
            totals.setdefault(service, Counter()).update(by_endpoint)
    return {
        service: {"total": sum(calls.values()), "by_endpoint": dict(sorted(calls.items()))}
        for service, calls in sorted(totals.items())
    }


@dataclass
class RunReport:
    """What a run did; ids, statuses, reason codes and texts, counts only.

    ``api_calls`` has :func:`summarise_api_calls`' shape. ``windows``/``pages`` stay empty for the
    real-time DAG, ``refused`` for the reconciliation.
    """

    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    rejected: list[dict[str, str | None]] = field(default_factory=list)
    unlisted: int = 0
    refused: list[dict[str, str | None]] = field(default_factory=list)
    windows: list[str] = field(default_factory=list)
    pages: int = 0
    api_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: True when the run wrote nothing to Marketo: its counts are what it WOULD have done.
    dry_run: bool = False
    #: :meth:`Outcome.to_dict` of every contact that was written, flagged, deleted or rejected
    #: (up to :data:`MAX_RECORDED`): what the ledger records per contact. ``unchanged`` ones are
    #: only counted, so a nightly pass over an in-sync table stays small in XCom.
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    unrecorded: int = 0

    @classmethod
    def build(
        cls,
        outcomes: Iterable[Outcome],
        refused: Iterable[Refusal] = (),
        api_calls: Mapping[str, Mapping[str, int]] | None = None,
    ) -> RunReport:
        """A report over one batch's outcomes, the conf items refused and the hooks' counters."""
        report = cls(
            refused=[{"item": r.item, "id": r.id, "reason": r.reason} for r in refused],
            api_calls=summarise_api_calls([api_calls or {}]),
        )
        report.add(outcomes)
        return report

    @property
    def total(self) -> int:
        """Contacts with an outcome (each contact of the run has exactly one)."""
        return sum(self.counts.values())

    @property
    def writes(self) -> int:
        """Leads written: created, updated, flagged or deleted."""
        return sum(self.counts[status] for status in ("created", "updated", "flagged", "deleted"))

    @property
    def failed(self) -> bool:
        """True when a contact was rejected (the real-time DAG then fails, after the writes)."""
        return bool(self.counts["rejected"])

    def add(self, outcomes: Iterable[Outcome]) -> None:
        """Count outcomes; rejected contacts are listed up to :data:`MAX_LISTED`."""
        for outcome in outcomes:
            self.counts[outcome.status] += 1
            if outcome.status != "unchanged":
                self._record(outcome.to_dict())
            if outcome.status == "rejected":
                self.reasons[outcome.reason_code or "unknown"] += 1
                self._list({"contact_id": outcome.contact_id, "reason": outcome.reason})

    def _record(self, outcome: dict[str, Any]) -> None:
        if len(self.outcomes) < MAX_RECORDED:
            self.outcomes.append(outcome)
        else:
            self.unrecorded += 1

    def _list(self, rejected: dict[str, str | None]) -> None:
        if len(self.rejected) < MAX_LISTED:
            self.rejected.append(rejected)
        else:
            self.unlisted += 1

    @classmethod
    def merge(cls, reports: Iterable[RunReport]) -> RunReport:
        """One report over several (the time slices of a reconciliation)."""
        merged = cls()
        calls: list[dict[str, dict[str, int]]] = []
        for report in reports:
            merged.counts.update(report.counts)
            merged.reasons.update(report.reasons)
            for rejected in report.rejected:
                merged._list(rejected)
            merged.unlisted += report.unlisted
            for outcome in report.outcomes:
                merged._record(outcome)
            merged.unrecorded += report.unrecorded
            merged.refused += report.refused
            merged.windows += report.windows
            merged.pages += report.pages
            merged.dry_run = merged.dry_run or report.dry_run
            calls.append({service: c["by_endpoint"] for service, c in report.api_calls.items()})
        merged.api_calls = summarise_api_calls(calls)
        return merged

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for XCom (the UI's XCom tab shows it)."""
        return {
            "total": self.total,
            # Every outcome is listed, 0 included, so columns stay stable.
            "counts": {status: self.counts[status] for status in OUTCOME_STATUSES},
            "reasons": dict(self.reasons.most_common()),
            "rejected": [dict(item) for item in self.rejected],
            "rejected_not_listed": self.unlisted,
            "refused": [dict(item) for item in self.refused],
            "windows": list(self.windows),
            "pages": self.pages,
            "api_calls": self.api_calls,
            "dry_run": self.dry_run,
            "outcomes": [dict(item) for item in self.outcomes],
            "outcomes_not_recorded": self.unrecorded,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            counts=Counter({k: v for k, v in data["counts"].items() if v}),
            reasons=Counter(data["reasons"]),
            rejected=[dict(item) for item in data["rejected"]],
            unlisted=data["rejected_not_listed"],
            refused=[dict(item) for item in data["refused"]],
            windows=list(data["windows"]),
            pages=data["pages"],
            api_calls={service: dict(calls) for service, calls in data["api_calls"].items()},
            # Summaries written before dry runs existed have no flag: they were real runs.
            dry_run=bool(data.get("dry_run", False)),
            outcomes=[dict(item) for item in data.get("outcomes", [])],
            unrecorded=data.get("outcomes_not_recorded", 0),
        )

    def headline(self) -> str:
        """The outcome in one line, for the run's note: ``2 created, 1 rejected: no email``.

        A dry run says what it would have written: ``dry run: would create 2, 1 unchanged``.
        """
        statuses = [*OUTCOME_STATUSES, *sorted(set(self.counts) - set(OUTCOME_STATUSES))]
        parts = []
        for status in statuses:
            count = self.counts[status]
            if not count:
                continue
            if status == "rejected":
                reasons = self.reasons.most_common()
                if len(reasons) == 1:
                    parts.append(f"{count} rejected: {reasons[0][0]}")
                else:
                    detail = ", ".join(f"{n} {reason}" for reason, n in reasons)
                    parts.append(f"{count} rejected ({detail})")
            elif self.dry_run and status in _WOULD:
                parts.append(f"{_WOULD[status]} {count}")
            else:
                parts.append(f"{count} {status}")
        if self.refused:
            parts.append(f"{len(self.refused)} conf item(s) refused")
        text = ", ".join(parts) or "no contacts"
        return f"dry run: {text}" if self.dry_run else text

    def as_text(self) -> str:
        """Plain-text tables for the task log."""
        lines: list[str] = []
        if self.dry_run:
            lines += [
                "Dry run: nothing was written to Marketo; created/updated/flagged/deleted "
                "are the writes it would have made.",
                "",
            ]
        if self.windows:
            lines += [f"Windows: {'; '.join(self.windows)} ({self.pages} page(s))", ""]
        rows: list[tuple[Any, Any]] = [("outcome", "contacts")]
        rows += [(status, self.counts[status]) for status in OUTCOME_STATUSES]
        rows += [(f"  {reason}", n) for reason, n in self.reasons.most_common()]
        rows.append(("total", self.total))
        lines += text_table(rows)
        if self.api_calls:
            lines += ["", *text_table([("API calls", "requests"), *self._call_rows()])]
        if self.rejected:
            listed = [(item["contact_id"], item["reason"]) for item in self.rejected]
            lines += ["", *text_table([("rejected contact", "reason"), *listed])]
        if self.unlisted:
            lines.append(f"… and {self.unlisted} more rejected contact(s), listed in the task logs")
        if self.refused:
            listed = [(item["item"], item["reason"]) for item in self.refused]
            lines += ["", *text_table([("refused item", "reason"), *listed])]
        return "\n".join(lines)

    def _call_rows(self) -> list[tuple[str, int]]:
        rows = []
        for service, calls in sorted(self.api_calls.items()):
            rows.append((service, calls["total"]))
            rows += [(f"  {endpoint}", n) for endpoint, n in calls["by_endpoint"].items()]
        return rows


def text_table(
    rows: Sequence[Sequence[Any]], *, right_align: bool = False, empty: str = ""
) -> list[str]:
    """The project's one plain-text table (task logs, the demo, the benchmarks): the first row is
    the header, ruled underneath; the first column left-aligned, the others too unless
    ``right_align`` (figures); None and "" shown as ``empty``."""
    cells = [[empty if value in (None, "") else str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for number, row in enumerate(cells):
        padded = [
            value.rjust(width) if right_align and i else value.ljust(width)
            for i, (value, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines
