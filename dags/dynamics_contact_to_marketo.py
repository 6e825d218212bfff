"""
# Dynamics 365 contacts → Marketo leads (real time)

Triggered through the Airflow REST API (`POST /api/v2/dags/dynamics_contact_to_marketo/dagRuns`),
normally by the webhook relay; never scheduled. Each run re-reads the contacts and their parent
accounts from Dataverse, maps them to Marketo leads and creates or updates those leads.

## Run conf (exactly one of)

- `{"events": [{"message": "Update", "entity": "contact", "id": "<guid>"}, ...]}`: what the
  relay sends, ids only (optional keys `operation_id`, `correlation_id`, `occurred_at`);
- `{"webhookRequest": {<RemoteExecutionContext>}}`: a Dataverse webhook body, pasted by hand;
- `{"contact_ids": ["<guid>", ...]}`: re-sync chosen contacts on demand;
- `{"account_ids": ["<guid>", ...]}`: re-sync every active contact of these accounts.

Plus the param `dry_run` (default false): read and look up everything, write nothing to Marketo;
the outcomes say what would happen. A malformed conf is refused when the run is triggered (HTTP
400, the message names the problem). Acted on: contact `Create`/`Update`/`Delete` and account
`Update` (its active contacts, read page by page); other events are refused with their reason and
listed by the `report` task, without failing the run. An account id Dataverse does not have is
refused "account not found"; the others are synced.

## Tasks

`parse_events` → `sync_contacts` (pool `marketo_api`) → `report`. `sync_contacts` reads the
contacts and their parent accounts from Dataverse, maps them, looks the leads up in Marketo and
writes them, all inside one task, and returns only ids, outcomes, reasons, the names of the
changed fields and the API calls. Why one task: contact data never rests in Airflow's metadata
database (XCom and rendered template fields hold ids only); each task start costs about 0.5-1 s of
the webhook → lead latency; and a retry is safe all the same, since every write is decided against
the values Marketo holds at that moment.

## Outcomes

Every contact ends in exactly one outcome: **created**, **updated**, **unchanged** (Marketo already
holds the values: no write), **flagged** / **deleted** (a deleted, deactivated, merged or
filtered-out contact's lead under `on_contact_removed: flag | delete`), **skipped** (such a
contact under `ignore`, or outside `sync_filter` with no lead: "filtered") or **rejected** with a
reason (no email, invalid email, contact not found, duplicate email: contact X owns it, Marketo
skipped it with code X). The master of a merged contact is synced in the same run. Good records
are always written; then, if any contact was rejected, the `report` task fails with every
rejected contact id and its reason in its log. `report` pushes the summary (counts per outcome
and reason, refused events, API calls per service and endpoint) as the XCom `summary`.

## Replay

- A task failed on an outage (Dataverse or Marketo unreachable, rate limits past the retries,
  daily quota): fix the cause and **clear the failed task** (with downstream). Every task is safe to
  repeat: the data is re-read and each write is decided against what Marketo holds now.
- A rejected contact: fix it in Dynamics (an Update webhook then syncs it), or trigger a run with
  `{"contact_ids": ["<guid>"]}`. The nightly reconciliation also picks it up.

## Settings

Field maps and `company_mode` (`lead_fields` or `company_record`) live in `include/mappings/`
(or `$CONTACT_SYNC_MAPPINGS_DIR`). Connections `dynamics365_default` and `marketo_default`.
`sync_contacts` runs in the pool `marketo_api`, which keeps concurrent Marketo calls of all
runs under Marketo's limit of 10.

**Privacy:** the run conf, XCom, rendered template fields and logs hold ids, statuses, reasons,
changed field names and counts, never a contact's email, name or phone: contact fields live only
in the memory of the `sync_contacts` task.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from contact_sync import tasks
from contact_sync.events import RUN_CONF_PARAM_SCHEMAS


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
        **{
            name: Param(None, description=f"run conf form {name!r}", **schema)
            for name, schema in RUN_CONF_PARAM_SCHEMAS.items()
        },
        "dry_run": tasks.dry_run_param(),
    },
    default_args={**tasks.DEFAULT_ARGS, "execution_timeout": timedelta(minutes=30)},
)
def dynamics_contact_to_marketo() -> None:
    # multiple_outputs=False: a returned dict is one XCom, not one more per key.
    @task(multiple_outputs=False)
    def parse_events() -> dict[str, Any]:
        """Validate the run conf into the contact ids to sync (and the events refused)."""
        return tasks.parse_events(get_current_context()["dag_run"].conf)

    @task(pool=tasks.MARKETO_POOL, multiple_outputs=False)
    def sync_contacts(request: dict[str, Any]) -> dict[str, Any]:
        """Read, map, look up and write the contacts; only ids, outcomes and call counts out."""
        dry_run = bool(get_current_context()["params"].get("dry_run"))
        return tasks.sync_contacts(request, dry_run=dry_run)

    @task
    def report(request: dict[str, Any], synced: dict[str, Any]) -> None:
        """One outcome per contact; fails the run, after the writes, when a contact was rejected."""
        summary = tasks.report_sync(request, synced)
        get_current_context()["ti"].xcom_push(key=tasks.SUMMARY_KEY, value=summary)
        tasks.fail_on_rejections(summary)

    request = parse_events()
    report(request, sync_contacts(request))


dynamics_contact_to_marketo()
