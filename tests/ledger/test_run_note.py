"""The one-line outcome (``RunReport.headline``), its dry-run labels, the run note it goes into,
and the ledger's source for each kind of run."""

from __future__ import annotations

import pytest

from contact_sync.events import Refusal
from contact_sync.ledger import Ledger
from contact_sync.models import Outcome
from contact_sync.report import RunReport
from contact_sync.run_note import NOTE_PREFIX, headline_of, note_with_outcome
from contact_sync.tasks import ledger_source, record_in_ledger

A, B, C, D = (f"0c5e8a11-7d2f-4b6e-9a3c-00000000000{n}" for n in range(1, 5))


def report(*outcomes: Outcome, dry_run: bool = False) -> RunReport:
    built = RunReport.build(outcomes)
    built.dry_run = dry_run
    return built


def test_the_headline_counts_outcomes_and_names_the_rejection_reason():
    built = report(
        Outcome(A, "created", lead_id=1),
        Outcome(B, "created", lead_id=2),
        Outcome(C, "rejected", reason_code="no email", reason="no email"),
    )
    assert built.headline() == "2 created, 1 rejected: no email"


def test_several_reasons_are_listed_and_refused_items_counted():
    built = RunReport.build(
        [
            Outcome(A, "unchanged", lead_id=1),
            Outcome(B, "rejected", reason_code="no email", reason="no email"),
            Outcome(C, "rejected", reason_code="no email", reason="no email"),
            Outcome(D, "rejected", reason_code="invalid email", reason="invalid email: x"),
        ],
        [Refusal(item="events[3]", id=None, reason="account Create is not synced")],
    )
    assert built.headline() == (
        "1 unchanged, 3 rejected (2 no email, 1 invalid email), 1 conf item(s) refused"
    )


def test_a_dry_run_says_what_it_would_write():
    built = report(
        Outcome(A, "created"),
        Outcome(B, "updated", lead_id=2),
        Outcome(C, "unchanged", lead_id=3),
        Outcome(D, "rejected", reason_code="no email", reason="no email"),
        dry_run=True,
    )
    assert built.headline() == (
        "dry run: would create 1, would update 1, 1 unchanged, 1 rejected: no email"
    )
    assert built.as_text().startswith("Dry run: nothing was written to Marketo")
    # The flag survives XCom.
    assert RunReport.from_dict(built.to_dict()).headline() == built.headline()
    assert "would" not in report(Outcome(A, "created")).as_text()


def test_a_run_without_contacts_or_report_says_so():
    assert report().headline() == "no contacts"
    assert headline_of(None).startswith("no report")


def test_the_outcome_line_keeps_the_relays_note_and_replaces_itself():
    relay = "relay: 3 event(s) from Dataverse"
    first = note_with_outcome(relay, "1 created")
    assert first == f"{relay}\n{NOTE_PREFIX}1 created"
    # A cleared run finishing again: one outcome line, the new one.
    assert note_with_outcome(first, "1 unchanged") == f"{relay}\n{NOTE_PREFIX}1 unchanged"
    assert note_with_outcome(None, "1 created") == f"{NOTE_PREFIX}1 created"


def test_a_long_outcome_is_cut_to_the_note_column_keeping_the_other_text():
    relay = "r" * 900
    note = note_with_outcome(relay, "x" * 500)
    assert len(note) <= 1000
    assert note.startswith(relay + "\n" + NOTE_PREFIX)
    assert note.endswith("…")


@pytest.mark.parametrize(
    ("form", "dry_run", "source"),
    [
        ("events", False, "webhook"),
        ("contact_ids", False, "on-demand"),
        ("account_ids", False, "on-demand"),
        ("webhookRequest", False, "on-demand"),
        (None, False, "reconciliation"),
        ("events", True, "dry run"),
        (None, True, "dry run"),
    ],
)
def test_the_ledger_source_of_each_kind_of_run(form, dry_run, source):
    assert ledger_source(form, dry_run=dry_run) == source


def test_a_dry_run_is_recorded_as_one_and_stays_off_the_errors_list(
    contact_sync_ledger: Ledger,
):
    rejected = {"contact_id": A, "status": "rejected", "reason_code": "no email"}
    planned = {"contact_id": B, "status": "created", "changed": ["email", "firstName"]}

    record_in_ledger(
        "dynamics_contact_to_marketo", "manual__dry", "dry run", [rejected, planned], dry_run=True
    )

    entries = contact_sync_ledger.run_entries("dynamics_contact_to_marketo", "manual__dry")
    assert {(e.contact_id, e.outcome, e.dry_run, e.source) for e in entries} == {
        (A, "rejected", True, "dry run"),
        (B, "created", True, "dry run"),
    }
    assert contact_sync_ledger.open_rejections() == []
