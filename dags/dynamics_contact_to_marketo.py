"""
# Dynamics 365 contacts → Marketo leads (real time)

Triggered through the Airflow REST API (`POST /api/v2/dags/dynamics_contact_to_marketo/dagRuns`),
normally by the webhook relay; never scheduled. Each run re-reads the contacts and their parent
accounts from Dataverse, maps them to Marketo leads and creates or updates those leads.

## Run conf (exactly one of)

- `{"events": [{"message": "Update", "entity": "contact", "id": "<guid>"}, ...]}`: what the
  relay sends, ids only (optional keys `operation_id`, `correlation_id`, `occurred_at`);
- `{"webhookRequest": {<RemoteExecutionContext>}}`: a Dataverse webhook body, pasted by hand;
- `{"contact_ids": ["<guid>", ...]}`: re-sync chosen contacts on demand.

A malformed conf is refused when the run is triggered (HTTP 400, the message names the problem).
Only `Create` and `Update` of `contact` are acted on; other events are refused with their reason
and listed by the `report` task, without failing the run.

## Outcomes

Every contact ends in exactly one outcome: **created**, **updated**, **unchanged** (Marketo already
holds the values: no write) or **rejected** with a reason (no email, invalid email, contact not
found, duplicate email in the run, Marketo skipped it with code X). Good records are always
written; then, if any contact was rejected, the `report` task fails with every rejected contact id
and its reason in its log. `report` pushes the summary (counts per outcome and reason, refused
events, API calls per service and endpoint) as the XCom `summary`.

## Replay

- A task failed on an outage (Dataverse or Marketo unreachable, rate limits past the retries,
  daily quota): fix the cause and **clear the failed task** (with downstream). Every task is safe to
  repeat: the data is re-read and each write is decided against what Marketo holds now.
- A rejected contact: fix it in Dynamics (an Update webhook then syncs it), or trigger a run with
  `{"contact_ids": ["<guid>"]}`. The nightly reconciliation also picks it up.

## Settings

Field maps and `company_mode` (`lead_fields` or `company_record`) live in `include/mappings/`
(or `$CONTACT_SYNC_MAPPINGS_DIR`). Connections `dynamics365_default` and `marketo_default`.
Tasks calling Marketo run in the pool `marketo_api`, which keeps concurrent Marketo calls of all
runs under Marketo's limit of 10.

**Privacy:** the run conf holds ids only, and logs show ids and counts, never email addresses.
XCom does carry contact fields (emails, names, phones) between tasks, so they are stored in the
Airflow metadata database: restrict who may read XCom and purge old runs (`airflow db clean`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from contact_sync import pipeline
from contact_sync.errors import ConfigurationError, CredentialsError, DailyQuotaError
from contact_sync.events import RUN_CONF_PARAM_SCHEMAS, EventError, SyncRequest, parse_run_conf
from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import MarketoHook
from contact_sync.mapping import MappingError, load_mappings
from contact_sync.models import LeadDraft, Outcome, Rejection
from contact_sync.report import SyncReport

log = logging.getLogger(__name__)

MARKETO_POOL = "marketo_api"
API_CALLS_KEY = "api_calls"
SUMMARY_KEY = "summary"
_CALLING_TASKS = ["fetch_contacts", "check_accounts", "find_leads", "upsert_leads"]

# Retrying helps with outages and rate limits (the hooks already retried each request a few
# times); it cannot fix credentials, a bad mapping or a spent daily quota, so those fail at once.
_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[
                AirflowNotFoundException,  # the Connection is not defined
                ConfigurationError,
                MappingError,
                CredentialsError,
            ],
            action=RetryAction.FAIL,
            reason="configuration or credentials: retrying cannot help",
        ),
        RetryRule(
            exception=DailyQuotaError,
            action=RetryAction.FAIL,
            reason="Marketo's daily quota is spent until midnight US Central; replay then",
        ),
    ]
)


@contextmanager
def _counting_calls(**hooks: DynamicsHook | MarketoHook) -> Iterator[None]:
    """Push the requests each hook sent as XCom ``api_calls``, also when the step fails."""
    try:
        yield
    finally:
        get_current_context()["ti"].xcom_push(
            key=API_CALLS_KEY, value={name: dict(hook.api_calls) for name, hook in hooks.items()}
        )


@dag(
    dag_id="dynamics_contact_to_marketo",
    dag_display_name="Dynamics 365 contacts → Marketo leads (real time)",
    description="Sync Dynamics 365 contacts named by webhook events or ids to Marketo leads",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["contact-sync", "dynamics365", "marketo", "real-time"],
    params={
        name: Param(None, description=f"run conf form {name!r}", **schema)
        for name, schema in RUN_CONF_PARAM_SCHEMAS.items()
    },
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "retry_policy": _RETRY_POLICY,
        "execution_timeout": timedelta(minutes=30),
        # Return values carry contact fields (emails); Airflow would print them in task logs.
        "show_return_value_in_logs": False,
    },
)
def dynamics_contact_to_marketo() -> None:
    # Tasks returning a dict would otherwise push each key as an extra XCom too (contact fields
    # stored twice): ``multiple_outputs=False`` keeps one XCom per task.
    @task(multiple_outputs=False)
    def parse_events() -> dict[str, Any]:
        """Validate the run conf into the contact ids to sync (and the events refused)."""
        conf = get_current_context()["dag_run"].conf
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

    @task(multiple_outputs=False)
    def fetch_contacts(request: dict[str, Any]) -> dict[str, Any]:
        """Read the contacts from Dataverse (one query), whatever the events said."""
        dynamics = DynamicsHook()
        with _counting_calls(dynamics=dynamics):
            contacts, not_found = pipeline.fetch_contacts(
                dynamics, request["contact_ids"], load_mappings()
            )
        return {"contacts": contacts, "not_found": not_found}

    @task(multiple_outputs=False)
    def check_accounts(fetched: dict[str, Any]) -> dict[str, Any]:
        """Read the parent accounts of the contacts (one query; none when no parent is one)."""
        dynamics = DynamicsHook()
        with _counting_calls(dynamics=dynamics):
            return pipeline.fetch_accounts(dynamics, fetched["contacts"], load_mappings())

    @task(multiple_outputs=False)
    def map_to_leads(
        request: dict[str, Any], fetched: dict[str, Any], accounts: dict[str, Any]
    ) -> dict[str, Any]:
        """Map each contact to a lead draft, or reject it with its reason."""
        drafts, rejections = pipeline.map_to_leads(
            request["contact_ids"], fetched["contacts"], accounts, load_mappings()
        )
        return {
            "drafts": [draft.to_dict() for draft in drafts],
            "rejections": [rejection.to_dict() for rejection in rejections],
        }

    @task(pool=MARKETO_POOL)
    def find_leads(mapped: dict[str, Any]) -> list[dict[str, Any]]:
        """Look the leads up in Marketo: by email and by contact id (two lookups at most)."""
        marketo = MarketoHook()
        drafts = [LeadDraft.from_dict(draft) for draft in mapped["drafts"]]
        with _counting_calls(marketo=marketo):
            return pipeline.find_leads(marketo, drafts, load_mappings())

    @task(pool=MARKETO_POOL)
    def upsert_leads(mapped: dict[str, Any], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create or update the leads that changed (companies first in company_record mode)."""
        marketo = MarketoHook()
        drafts = [LeadDraft.from_dict(draft) for draft in mapped["drafts"]]
        with _counting_calls(marketo=marketo):
            outcomes = pipeline.upsert_leads(marketo, drafts, found, load_mappings())
        return [outcome.to_dict() for outcome in outcomes]

    @task
    def report(
        request: dict[str, Any], mapped: dict[str, Any], written: list[dict[str, Any]]
    ) -> None:
        """One outcome per contact; fails the run, after the writes, when a contact was rejected."""
        sync_request = SyncRequest.from_dict(request)
        outcomes = pipeline.collect_outcomes(
            sync_request.contact_ids,
            [Rejection.from_dict(rejection) for rejection in mapped["rejections"]],
            [Outcome.from_dict(outcome) for outcome in written],
        )
        sync_report = SyncReport.build(outcomes, sync_request.refused)
        ti = get_current_context()["ti"]
        calls = ti.xcom_pull(task_ids=_CALLING_TASKS, key=API_CALLS_KEY) or []
        summary = {
            **sync_report.as_dict(),
            "api_calls": pipeline.summarise_api_calls(step for step in calls if step),
        }
        ti.xcom_push(key=SUMMARY_KEY, value=summary)
        if sync_report.failed:
            log.error("Sync report:\n%s", sync_report.as_text())
            raise AirflowFailException(
                f"{len(sync_report.rejected)} of {len(outcomes)} contact(s) rejected "
                f"({sync_report.reasons}); the others were synced"
            )
        log.info("Sync report:\n%s", sync_report.as_text())

    request = parse_events()
    fetched = fetch_contacts(request)
    accounts = check_accounts(fetched)
    mapped = map_to_leads(request, fetched, accounts)
    found = find_leads(mapped)
    written = upsert_leads(mapped, found)
    report(request, mapped, written)


dynamics_contact_to_marketo()
