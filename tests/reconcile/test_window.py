"""Windows, time slices and the report, without any service."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from contact_sync.models import Outcome
from contact_sync.reconcile import (
    DEFAULT_LOOKBACK,
    Window,
    parse_moment,
    resolve_window,
)
from contact_sync.report import MAX_LISTED, RunReport

START = datetime(2025, 3, 1, 2, tzinfo=UTC)
END = START + timedelta(days=1)


def resolve(**overrides):
    options = {
        "since": None,
        "until": None,
        "full_pass": False,
        "interval_start": START,
        "interval_end": END,
        "run_after": END + timedelta(minutes=5),
    }
    return resolve_window(**{**options, **overrides})


def test_a_scheduled_night_is_its_data_interval_over_modifiedon():
    window = resolve()

    assert window == Window(since=START, until=END)
    assert window.odata_filter() == (
        "modifiedon ge 2025-03-01T02:00:00Z and modifiedon lt 2025-03-02T02:00:00Z"
    )


def test_backfill_params_override_the_interval_and_a_missing_bound_falls_back_to_it():
    assert resolve(since="2024-12-01", until="2025-01-01T00:00:00+01:00") == Window(
        since=datetime(2024, 12, 1, tzinfo=UTC), until=datetime(2024, 12, 31, 23, tzinfo=UTC)
    )
    assert resolve(since="2025-02-01T00:00:00Z").until == END


def test_a_full_pass_reads_active_contacts_without_bounds_unless_given():
    assert resolve(full_pass=True).odata_filter() == "statecode eq 0"
    assert resolve(full_pass=True, since="2025-01-01").odata_filter() == (
        "modifiedon ge 2025-01-01T00:00:00Z and statecode eq 0"
    )


def test_a_run_without_a_data_interval_reconciles_the_day_before_it_was_triggered():
    triggered = datetime(2025, 3, 5, 9, 30, tzinfo=UTC)

    window = resolve(interval_start=None, interval_end=None, run_after=triggered)

    assert window == Window(since=triggered - DEFAULT_LOOKBACK, until=triggered)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"since": "2025-03-05", "until": "2025-03-01"}, "must be before until"),
        ({"since": "2025-03-05T10:00:00"}, "needs a UTC offset"),
        ({"until": "yesterday"}, "not an ISO-8601"),
    ],
)
def test_bad_bounds_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve(**overrides)


def test_slices_cover_the_window_without_gap_or_overlap():
    slices = Window(since=START, until=END).split(5, end=END)

    assert len(slices) == 5
    assert (slices[0].since, slices[-1].until) == (START, END)
    assert all(a.until == b.since for a, b in itertools.pairwise(slices))
    assert {s.until - s.since for s in slices[:-1]} == {timedelta(seconds=17_280)}


def test_the_last_slice_of_an_open_window_stays_open():
    slices = Window(since=START, active_only=True).split(2, end=END)

    assert [(s.since, s.until) for s in slices] == [
        (START, START + timedelta(hours=12)),
        (
            START + timedelta(hours=12),
            None,
        ),
    ]
    assert all(s.active_only for s in slices)


def test_a_window_shorter_than_its_slices_gives_fewer_slices():
    assert len(Window(since=START, until=START + timedelta(seconds=2)).split(4, end=END)) == 2


def test_a_window_survives_xcom():
    window = Window(since=START, until=END, active_only=True)

    assert Window.from_dict(window.to_dict()) == window


def test_parse_moment_reads_dates_as_midnight_utc():
    assert parse_moment("2025-03-01", what="since") == datetime(2025, 3, 1, tzinfo=UTC)


def _outcomes(status: str, count: int, offset: int = 0, **extra) -> list[Outcome]:
    return [Outcome(f"c{offset + n}", status, **extra) for n in range(count)]


def test_reports_of_slices_merge_into_the_run_report_through_xcom():
    first, second = RunReport(windows=["a"], pages=1), RunReport(windows=["b"], pages=2)
    first.add(_outcomes("created", 2) + _outcomes("unchanged", 3))
    second.add(
        _outcomes("updated", 1)
        + _outcomes("rejected", 2, reason_code="no email", reason="no email")
    )
    first.api_calls = {"marketo": {"total": 3, "by_endpoint": {"GET /rest/v1/leads.json": 3}}}
    second.api_calls = {
        "marketo": {"total": 1, "by_endpoint": {"GET /rest/v1/leads.json": 1}},
        "dataverse": {"total": 2, "by_endpoint": {"GET /api/data/v9.2/contacts": 2}},
    }

    merged = RunReport.merge(
        RunReport.from_dict(report.to_dict()) for report in (first, second)
    ).to_dict()

    assert merged["windows"] == ["a", "b"]
    assert (merged["pages"], merged["total"]) == (3, 8)
    assert merged["counts"] == {
        "created": 2,
        "updated": 1,
        "unchanged": 3,
        "flagged": 0,
        "deleted": 0,
        "skipped": 0,
        "rejected": 2,
    }
    assert merged["reasons"] == {"no email": 2}
    assert [item["contact_id"] for item in merged["rejected"]] == ["c0", "c1"]
    assert {service: calls["total"] for service, calls in merged["api_calls"].items()} == {
        "marketo": 4,
        "dataverse": 2,
    }


def test_the_log_table_names_every_count_and_no_more_than_ids():
    report = RunReport(windows=["w"], pages=1)
    report.add(_outcomes("rejected", 1, reason_code="invalid email", reason="invalid email: x"))
    report.api_calls = {"marketo": {"total": 1, "by_endpoint": {"GET /rest/v1/leads.json": 1}}}

    text = report.as_text()

    for row in ("total", "unchanged", "created", "updated", "rejected", "  invalid email", "c0"):
        assert row in text
    assert "GET /rest/v1/leads.json" in text


def test_rejected_contacts_beyond_the_listing_limit_are_counted_not_listed():
    report = RunReport()
    report.add(_outcomes("rejected", MAX_LISTED + 5, reason_code="no email", reason="no email"))

    assert len(report.rejected) == MAX_LISTED
    assert report.unlisted == 5
    assert report.reasons["no email"] == MAX_LISTED + 5
    assert "5 more rejected" in report.as_text()
