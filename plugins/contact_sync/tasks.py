"""The Airflow side of both DAGs: what each task does, the pool and the retry policy they share.

The DAG files (``dags/``) only wire these functions into tasks. Besides the hooks this is the only
module that imports Airflow: :mod:`contact_sync.pipeline`, :mod:`~contact_sync.reconcile` and
:mod:`~contact_sync.report` stay plain Python.

**What crosses XCom.** Ids, statuses, reason codes and texts, the *names* of changed fields and API
call counts; never a contact field value. Reading, mapping, looking up and writing happen inside
one task (:func:`sync_contacts`), so emails, names and phones never reach Airflow's metadata
database (``xcom``, and ``rendered_task_instance_fields``, which the UI's "Rendered Templates" tab
shows to anyone who may view the DAG). One task instead of five also saves four task starts of
the webhook → lead latency, and a retry of it stays safe: every write is decided against the
leads Marketo holds at that moment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import ExceptionRetryPolicy, Param, RetryAction, RetryRule, get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from contact_sync.errors import NEVER_RETRY
from contact_sync.events import EventError, Refusal, SyncRequest, parse_run_conf
from contact_sync.ledger import LEDGER_CONN_ID, Ledger
from contact_sync.mapping import Mappings, load_mappings
from contact_sync.models import Outcome
from contact_sync.report import RunReport, summarise_api_calls

if TYPE_CHECKING:
    from contact_sync.hooks.dynamics import DynamicsHook
    from contact_sync.hooks.marketo import MarketoHook

# The hooks, the pipeline and the reconciliation (requests, urllib3, jsonschema and the rest,
# ~0.5 s of imports on a 2-core machine) are imported by the functions that call them: every
# DAG file parse and every task process imports this module, and parse_events and report,
# two of the real-time DAG's three tasks, never call Dataverse or Marketo.

__all__ = [
    "DEFAULT_ARGS",
    "MARKETO_POOL",
    "RETRY_POLICY",
    "SUMMARY_KEY",
    "dry_run_param",
    "fail_on_rejections",
    "ledger_source",
    "parse_events",
    "plan_windows",
    "reconcile_window",
    "record_in_ledger",
    "report_reconciliation",
    "report_sync",
    "sync_contacts",
]

log = logging.getLogger(__name__)

#: The pool of every task that calls Marketo (created by devenv/ and docker-compose): its slots
#: keep the concurrent Marketo calls of all runs under Marketo's limit of 10 per instance
#: ("Rate Limits", https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/rest-api).
MARKETO_POOL = "marketo_api"
#: The XCom key of the real-time ``report`` task's summary (:meth:`RunReport.to_dict`).
SUMMARY_KEY = "summary"

#: One retry policy for both DAGs. Retrying helps with outages and rate limits (the hooks already
#: retried each request); it cannot fix configuration, credentials, a refused request or a spent
#: daily quota (``contact_sync.errors.NEVER_RETRY``, mapping errors included), nor a Connection
#: that is not defined, so those fail at once.
RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[*NEVER_RETRY, AirflowNotFoundException],
            action=RetryAction.FAIL,
            reason="configuration, credentials, a refused request or the daily quota: "
            "retrying cannot help; fix the cause (or wait for the quota) and clear the task",
        ),
    ]
)


def dry_run_param() -> Param:
    """The ``dry_run`` param of both DAGs: every read and lookup, no Marketo write.

    A new ``Param`` per DAG: Airflow keeps a param's value on the object.
    """
    return Param(
        False,
        type="boolean",
        description="Read and look up everything, write nothing to Marketo; the report says "
        "what would be created, updated, flagged or deleted",
    )


#: Task defaults of both DAGs. Every task is safe to repeat (see the module docstring).
DEFAULT_ARGS: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "retry_policy": RETRY_POLICY,
    # Return values hold ids and counts only; the report logs them as a table already.
    "show_return_value_in_logs": False,
}


def _api_calls(dynamics: DynamicsHook, marketo: MarketoHook | None = None) -> dict[str, Any]:
    """The requests this task's hooks sent, read once at the task's end."""
    counters = {"dataverse": dynamics.api_calls}
    if marketo is not None:
        counters["marketo"] = marketo.api_calls
    return summarise_api_calls([counters])


# --- The sync ledger (both DAGs' ``report`` tasks) -----------------------------------------------

#: The ledger's source of a real-time run, by run conf form: the relay forwards ``events``; a
#: person or the Contact sync page's Re-sync names ids or pastes a webhook body.
_SOURCE_BY_FORM = {
    "events": "webhook",
    "contact_ids": "on-demand",
    "account_ids": "on-demand",
    "webhookRequest": "on-demand",
}


def _run() -> tuple[str, str]:
    """This task's DAG id and run id."""
    dag_run = get_current_context()["dag_run"]
    return dag_run.dag_id, dag_run.run_id


def ledger_source(form: str | None, *, dry_run: bool) -> str:
    """The ledger source of a run: ``dry run``, else by conf form, else ``reconciliation``."""
    if dry_run:
        return "dry run"
    if form is None:
        return "reconciliation"
    return _SOURCE_BY_FORM.get(form, "on-demand")


def record_in_ledger(
    dag_id: str,
    run_id: str,
    source: str,
    outcomes: list[Mapping[str, Any]],
    *,
    dry_run: bool,
    counts: Mapping[str, int] | None = None,
    purge: bool = False,
) -> None:
    """Write the run's outcomes to the ledger (replacing a previous attempt's), optionally purge.

    Called after the Marketo writes, from the outcomes in XCom: no Dataverse or Marketo call. A
    missing Connection fails the task at once (ConfigurationError); an unreachable database raises
    :class:`~contact_sync.ledger.LedgerUnavailableError`, naming the connection, and the task's
    retries replay the write.
    """
    ledger = Ledger.from_connection(LEDGER_CONN_ID)
    try:
        ledger.record_run(dag_id, run_id, source, outcomes, dry_run=dry_run, counts=counts)
        if purge:
            ledger.purge()
    finally:
        ledger.close()


# --- The real-time DAG ---------------------------------------------------------------------------


def parse_events(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run conf as a :class:`SyncRequest` dict (contact ids and refused items; ids only)."""
    try:
        request = parse_run_conf(conf or {})
    except EventError as error:
        raise AirflowFailException(f"invalid run conf: {error}") from None
    log.info(
        "Run conf %r: %d contact(s) to sync, %d event(s) refused",
        request.source,
        len(request.contact_ids),
        len(request.refused),
    )
    return request.to_dict()


def _mappings_for(marketo: MarketoHook) -> Mappings:
    """The settings, checked against Marketo's describe when ``on_contact_removed`` is ``flag``
    (the flag field must exist and be a Boolean) — one call, before any write."""
    mappings = load_mappings()
    if mappings.settings.on_contact_removed == "flag":
        mappings = load_mappings(describe=marketo.describe_leads())
    return mappings


def sync_contacts(request: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Read the contacts and their accounts, map, look the leads up and write them, in this task.

    Returns ``{"outcomes": [...], "refused": [...], "api_calls": {...}, "dry_run": bool}``: one
    :class:`Outcome` dict per contact (id, status, lead id, reason, changed field names), the
    account ids refused ("account not found"), the requests sent per service, and whether this
    was a dry run (no Marketo write; the outcomes say what would happen, and ``report`` must not
    fail the run for rejections).
    """
    from contact_sync import pipeline
    from contact_sync.hooks.dynamics import DynamicsHook
    from contact_sync.hooks.marketo import MarketoHook

    dynamics, marketo = DynamicsHook(), MarketoHook()
    mappings = _mappings_for(marketo)  # a MappingError names the setting and fails at once
    result = pipeline.sync_request(
        dynamics, marketo, SyncRequest.from_dict(request), mappings, dry_run=dry_run
    )
    return {
        "outcomes": [outcome.to_dict() for outcome in result.outcomes],
        "refused": [vars(refusal) for refusal in result.refused],
        "api_calls": _api_calls(dynamics, marketo),
        "dry_run": dry_run,
    }


def report_sync(request: Mapping[str, Any], synced: Mapping[str, Any]) -> dict[str, Any]:
    """The run's report, logged; raises after the writes when a contact was rejected.

    Returns the summary (:meth:`RunReport.to_dict`) the DAG pushes as XCom ``summary``.
    """
    sync_request = SyncRequest.from_dict(request)
    # Refused before the run (conf items it does not act on) and by the sync (accounts not found).
    refused = [*sync_request.refused, *(Refusal(**item) for item in synced.get("refused", ()))]
    report = RunReport.build(
        (Outcome.from_dict(outcome) for outcome in synced["outcomes"]), refused
    )
    report.api_calls = synced["api_calls"]
    dag_id, run_id = _run()
    # The flag the sync ran with (it came through XCom), not the params read again.
    dry_run = report.dry_run = bool(synced["dry_run"])
    # XCom keeps the counts and the rejected; the ledger keeps every contact, unchanged ones too.
    report.outcomes, report.unrecorded = [], 0
    summary = report.to_dict()
    if report.failed:
        log.error("Sync report: %s\n%s", report.headline(), report.as_text())
    else:
        log.info("Sync report: %s\n%s", report.headline(), report.as_text())
    source = ledger_source(sync_request.source, dry_run=dry_run)
    record_in_ledger(dag_id, run_id, source, list(synced["outcomes"]), dry_run=dry_run)
    return summary


def fail_on_rejections(summary: Mapping[str, Any]) -> None:
    """Fail the ``report`` task when a contact was rejected (the good records are written).

    Not for a dry run (nothing was written; the report lists what would be), nor with
    ``fail_run_on_rejection: false`` in ``settings.yaml`` (the rejected are on the Contact sync
    page's errors list and in the ledger).
    """
    rejected = summary["counts"]["rejected"]
    if not rejected:
        return
    if summary.get("dry_run"):
        log.warning("Dry run: %d contact(s) would be rejected; a dry run never fails", rejected)
        return
    if not load_mappings().settings.fail_run_on_rejection:
        log.warning(
            "%d of %d contact(s) rejected; the run succeeds (fail_run_on_rejection: false)",
            rejected,
            summary["total"],
        )
        return
    if rejected:
        raise AirflowFailException(
            f"{rejected} of {summary['total']} contact(s) rejected ({summary['reasons']}); "
            "the others were synced"
        )


# --- The reconciliation --------------------------------------------------------------------------


def plan_windows(params: Mapping[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's window from its params and data interval, cut into time slices."""
    from contact_sync import reconcile as reconciliation
    from contact_sync.hooks.dynamics import DynamicsHook

    run_after: datetime = context["dag_run"].run_after
    window = reconciliation.resolve_window(
        since=params["since"],
        until=params["until"],
        full_pass=params["full_pass"],
        interval_start=context.get("data_interval_start"),
        interval_end=context.get("data_interval_end"),
        run_after=run_after,
    )
    windows = reconciliation.plan_windows(DynamicsHook(), window, params["slices"], now=run_after)
    return [slice_.to_dict() for slice_ in windows]


def reconcile_window(window: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Reconcile one time slice; its report (counts, rejected ids, API calls) as a dict, with
    ``dry_run`` (no Marketo write happened; the counts say what would have)."""
    from contact_sync import reconcile as reconciliation
    from contact_sync.hooks.dynamics import DynamicsHook
    from contact_sync.hooks.marketo import MarketoHook

    slice_ = reconciliation.Window.from_dict(window)
    dynamics, marketo = DynamicsHook(), MarketoHook()
    mappings = _mappings_for(marketo)
    report = reconciliation.reconcile(dynamics, marketo, slice_, mappings, dry_run=dry_run)
    report.api_calls = _api_calls(dynamics, marketo)
    report.dry_run = dry_run
    return report.to_dict()


def report_reconciliation(reports: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the slices' reports and log the table; the merged report as a dict."""
    merged = RunReport.merge(RunReport.from_dict(item) for item in reports)
    dag_id, run_id = _run()  # merged.dry_run: the slices ran dry (RunReport.merge)
    log.info("Reconciliation report: %s\n%s", merged.headline(), merged.as_text())
    if merged.unrecorded:
        log.warning(
            "ledger: %d outcome(s) beyond the first %d are recorded as counts only",
            merged.unrecorded,
            len(merged.outcomes),
        )
    # The ledger gets every written or rejected contact and the run's full counts; unchanged
    # contacts are counted only. Rows past the retention setting go in the same task.
    record_in_ledger(
        dag_id,
        run_id,
        ledger_source(None, dry_run=merged.dry_run),
        merged.outcomes,
        dry_run=merged.dry_run,
        counts=dict(merged.counts),
        purge=True,
    )
    # The ledger holds the per-contact outcomes now: XCom keeps counts and the rejected list.
    merged.outcomes, merged.unrecorded = [], 0
    return merged.to_dict()
