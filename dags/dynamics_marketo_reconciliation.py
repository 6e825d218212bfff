"""
# Nightly reconciliation: Dynamics 365 contacts → Marketo leads

Repairs what the real-time DAG `dynamics_contact_to_marketo` missed (lost webhooks, outages,
rejected records): every contact modified in the run's window is read from Dataverse, page by page
(≤ 5,000 contacts), mapped, compared field by field with its Marketo lead, and only missing or
drifted leads are written. Rerunning a window writes nothing.

**Window.** A scheduled run (02:00 UTC by default; cron in `CONTACT_SYNC_RECONCILE_CRON`) covers
its data interval over `modifiedon`: the 24 hours before it. Trigger with params to choose another:

- `since`, `until`: backfill any range (ISO-8601 with offset, or a date = midnight UTC; `until`
  is exclusive); one left out falls back to the data interval's.
- `full_pass`: every **active** contact (`statecode eq 0`), bounded by `since`/`until` if given.
- `slices`: the window is cut into this many time slices, reconciled as parallel mapped tasks.

**Tasks.** `plan_windows` → `reconcile_window` (one mapped task per slice, in pool `marketo_api`;
a failed slice retries alone) → `report`. Retries as in the real-time DAG: outages and rate limits
are retried; configuration, credentials, mapping errors and Marketo's daily quota fail at once.

**Report.** `report` logs a table (contacts per outcome, rejected by reason, API calls per
service), the same report as the real-time DAG's, and returns it as XCom (`return_value`, see the
XCom tab). Contacts that cannot go to Marketo (no email, invalid email, skipped by Marketo) are
listed by id and do not fail the run; an API failure that outlasts the retries does. XCom holds
contact ids and reason codes only.

**Limits.** Marketo allows 10 concurrent calls per instance; each task's hook uses at most 5, so
keep the `marketo_api` pool at 2 slots or fewer for this DAG and the real-time one together.
Dataverse 429 `Retry-After` is honoured by the hook.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from contact_sync import tasks
from contact_sync.reconcile import Window

# Read from the environment at parse time (no Variable, no DB): the scheduler must know it then.
SCHEDULE = os.environ.get("CONTACT_SYNC_RECONCILE_CRON", "0 2 * * *")
DEFAULT_SLICES = 4
# ISO-8601 date, or timestamp with an explicit offset; checked when the run is triggered.
_MOMENT = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2}))?$"


def _moment_param(description: str) -> Param:
    return Param(None, type=["null", "string"], pattern=_MOMENT, description=description)


@dag(
    dag_id="dynamics_marketo_reconciliation",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    # Catching up would replay every missed night at once; backfill a gap with since/until.
    catchup=False,
    # Two runs at once would split Marketo's limits and race on the same leads.
    max_active_runs=1,
    tags=["contact-sync", "dynamics365", "marketo", "reconciliation"],
    default_args=tasks.DEFAULT_ARGS,
    params={
        "since": _moment_param("Start of a backfill (inclusive), e.g. 2025-01-31T00:00:00Z"),
        "until": _moment_param("End of a backfill (exclusive), e.g. 2025-02-01"),
        "full_pass": Param(
            False, type="boolean", description="Reconcile every active contact (statecode eq 0)"
        ),
        "slices": Param(
            DEFAULT_SLICES,
            type="integer",
            minimum=1,
            maximum=48,
            description="Time slices to reconcile as parallel mapped tasks",
        ),
        "dry_run": tasks.dry_run_param(),
    },
    doc_md=__doc__,
)
def dynamics_marketo_reconciliation() -> None:
    @task
    def plan_windows() -> list[dict[str, Any]]:
        """The run's window from its params and data interval, cut into time slices."""
        context = get_current_context()
        return tasks.plan_windows(context["params"], context)

    # multiple_outputs=False: the dict is one report, not one XCom per key.
    @task(pool=tasks.MARKETO_POOL, map_index_template="{{ window_label }}", multiple_outputs=False)
    def reconcile_window(window: dict[str, Any]) -> dict[str, Any]:
        """Reconcile one time slice; its report (counts, rejected ids, API calls) as XCom."""
        # Names the mapped task instance in the UI by its window (map_index_template).
        label = Window.from_dict(window).label
        get_current_context()["window_label"] = label  # type: ignore[typeddict-unknown-key]
        dry_run = bool(get_current_context()["params"].get("dry_run"))
        return tasks.reconcile_window(window, dry_run=dry_run)

    @task(multiple_outputs=False)
    def report(reports: list[dict[str, Any]]) -> dict[str, Any]:
        """Merge the slices' reports, log the table and return it (the XCom the UI shows)."""
        return tasks.report_reconciliation(reports)

    report(reconcile_window.expand(window=plan_windows()))


dynamics_marketo_reconciliation()
