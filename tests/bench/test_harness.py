"""The arithmetic behind the benchmarks' figures: percentiles and the accounting of API calls."""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness import calls_between, marketo_calls, percentile
from bench.latency import LEAD_TASKS, lead_task
from bench.live import component_of, cpu_by_component, cpu_seconds, sync_calls
from tests.support import REALTIME_TASK_IDS


@given(st.lists(st.floats(0, 1e6), min_size=2, max_size=60))
def test_percentiles_agree_with_the_standard_librarys_inclusive_quantiles(values):
    cuts = statistics.quantiles(values, n=20, method="inclusive")

    assert percentile(values, 0.5) == pytest.approx(statistics.median(values))
    assert percentile(values, 0.95) == pytest.approx(cuts[18])
    assert percentile(values, 0.05) == pytest.approx(cuts[0])


def test_a_single_value_is_every_percentile_and_none_is_an_error():
    assert percentile([3.5], 0.95) == 3.5
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def snapshot(by_endpoint: dict[str, int], answers: dict[str, int]) -> dict:
    return {"total": sum(by_endpoint.values()), "by_endpoint": by_endpoint, "answers": answers}


def test_calls_between_two_snapshots_keeps_only_what_grew():
    before = snapshot({"GET /a": 2, "POST /b": 1}, {"200": 3})
    after = snapshot({"GET /a": 5, "POST /b": 1, "GET /c": 1}, {"200": 6, "429": 1})

    assert calls_between(before, after) == {
        "total": 4,
        "by_endpoint": {"GET /a": 3, "GET /c": 1},
        "answers": {"200": 3, "429": 1},
    }


def test_marketo_calls_split_rest_from_token_requests_and_count_limit_refusals():
    counted = snapshot(
        {
            "POST /identity/oauth/token": 2,
            "GET /rest/v1/leads.json": 5,
            "POST /rest/v1/leads.json": 3,
        },
        {"200": 8, "606": 1, "615": 1},
    )

    assert marketo_calls(counted) == {"rest": 8, "identity": 2, "refused": 2}


def test_the_sync_calls_leave_out_the_benchmarks_own_creates():
    empty = snapshot({}, {})
    before = {"dataverse": empty, "marketo": empty}
    after = {
        "dataverse": snapshot(
            {
                "POST /api/data/v9.2/contacts": 10,
                "POST /{tenant}/oauth2/v2.0/token": 1,
                "GET /api/data/v9.2/contacts": 1,
            },
            {"201": 10, "200": 2},
        ),
        "marketo": snapshot({"GET /rest/v1/leads.json": 1}, {"200": 1}),
    }

    calls = sync_calls(before, after)

    assert calls["dataverse"] == {
        "total": 2,
        "by_endpoint": {"POST /{tenant}/oauth2/v2.0/token": 1, "GET /api/data/v9.2/contacts": 1},
        "answers": {"200": 2},
    }
    assert calls["marketo"]["total"] == 1


def test_the_lead_task_is_found_in_the_products_shape_and_in_the_recipes():
    assert lead_task(REALTIME_TASK_IDS) in LEAD_TASKS
    assert lead_task(["parse_events", "sync_contacts", "report"]) == "sync_contacts"
    assert lead_task(["parse_events", "upsert_leads", "report"]) == "upsert_leads"
    with pytest.raises(ValueError, match="no lead-writing task"):
        lead_task(["parse_events", "report"])


def test_cpu_seconds_counts_what_a_process_burned():
    me = psutil.Process(os.getpid())
    before = cpu_seconds([me])[me.pid]
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn 0.2 s of CPU, whatever the wall clock does
        pass
    assert cpu_seconds([me])[me.pid] - before >= 0.19


def test_a_lead_counts_from_the_end_of_its_created_second():
    from bench.burst import lead_written_at

    written = lead_written_at({"createdAt": "2026-01-02T03:04:05Z"})
    assert written == datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC).timestamp()


def test_cpu_between_samples_is_summed_per_component():
    before = {1: 10.0, 2: 5.0, 3: 1.0}
    after = {1: 12.5, 2: 5.5, 4: 0.75, 5: 0.25}  # 3 ended; 4 and 5 started meanwhile
    owners = {1: "scheduler", 2: "dag-processor", 4: "scheduler"}

    used = cpu_by_component(before, after, owners)

    assert used == {"scheduler": 3.25, "dag-processor": 0.5, "other": 0.25}


def test_a_process_belongs_to_the_component_whose_session_it_is_in():
    me = psutil.Process(os.getpid())
    session = os.getsid(me.pid)
    assert component_of(me, {"scheduler": session}) == "scheduler"
    assert component_of(me, {"api-server": me.ppid()}) == "api-server"  # by its parent
    assert component_of(me, {}) == "other"


def test_a_relay_metric_is_read_from_prometheus_text():
    from bench.burst import FORWARDED, metric

    text = (
        "# TYPE relay_events_forwarded_total counter\n"
        'relay_batches_total{outcome="sent"} 3\n'
        "relay_events_forwarded_total 4999\n"
    )
    assert metric(text, FORWARDED) == 4999
    assert metric("relay_events_forwarded_total_created 5\n", FORWARDED) == 0
