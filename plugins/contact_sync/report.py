"""The run report: counts by outcome and reason, rejected contacts by id. Never an email address."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contact_sync.events import Refusal
from contact_sync.models import OUTCOME_STATUSES, Outcome

__all__ = ["SyncReport", "text_table"]


@dataclass(frozen=True)
class SyncReport:
    """What a run did, for the task log (:meth:`as_text`) and XCom (:meth:`as_dict`)."""

    outcomes: tuple[Outcome, ...]
    refused: tuple[Refusal, ...] = ()

    @classmethod
    def build(cls, outcomes: Iterable[Outcome], refused: Iterable[Refusal] = ()) -> SyncReport:
        """A report over one run's outcomes and the conf items it refused."""
        return cls(tuple(outcomes), tuple(refused))

    @property
    def counts(self) -> dict[str, int]:
        """Contacts per outcome; every outcome is listed, 0 included, so columns stay stable."""
        found = Counter(outcome.status for outcome in self.outcomes)
        return {status: found[status] for status in OUTCOME_STATUSES}

    @property
    def rejected(self) -> tuple[Outcome, ...]:
        return tuple(outcome for outcome in self.outcomes if outcome.status == "rejected")

    @property
    def reasons(self) -> dict[str, int]:
        """Rejections per reason code, most frequent first."""
        return dict(
            Counter(outcome.reason_code or "unknown" for outcome in self.rejected).most_common()
        )

    @property
    def failed(self) -> bool:
        """True when a contact was rejected: the run should end failed, after the good writes."""
        return bool(self.rejected)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary; ids and reasons only."""
        return {
            "total": len(self.outcomes),
            "counts": self.counts,
            "reasons": self.reasons,
            "rejected": [
                {"contact_id": outcome.contact_id, "reason": outcome.reason}
                for outcome in self.rejected
            ],
            "refused": [
                {"item": refusal.item, "id": refusal.id, "reason": refusal.reason}
                for refusal in self.refused
            ],
        }

    def as_text(self) -> str:
        """A plain-text table for the task log."""
        rows = [("outcome", "contacts"), *self.counts.items(), ("total", len(self.outcomes))]
        lines = text_table(rows)
        if self.reasons:
            lines += ["", *text_table([("rejection reason", "contacts"), *self.reasons.items()])]
        if self.rejected:
            lines += [
                "",
                *text_table(
                    [
                        ("rejected contact", "reason"),
                        *((o.contact_id, o.reason) for o in self.rejected),
                    ]
                ),
            ]
        if self.refused:
            lines += [
                "",
                *text_table(
                    [("refused item", "reason"), *((r.item, r.reason) for r in self.refused)]
                ),
            ]
        return "\n".join(lines)


def text_table(rows: list[tuple[Any, Any]]) -> list[str]:
    width = max(len(str(left)) for left, _ in rows)
    header, *body = rows
    lines = [f"{header[0]:<{width}}  {header[1]}", f"{'-' * width}  {'-' * len(str(header[1]))}"]
    return lines + [f"{left!s:<{width}}  {right}" for left, right in body]
