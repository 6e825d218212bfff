"""``make demo``: the whole product on one machine, wired as an operator would wire it.

``python -m devenv.demo`` starts the sandbox (Dataverse + Entra ID on 8701, Marketo on 8702), the
webhook relay (8703) and Airflow 3 (API server + UI on 8080, scheduler, DAG processor; LocalExecutor
on SQLite) as process groups; points Airflow's connections at the sandbox; adds the Marketo custom
field that holds the Dynamics contact id; registers a Dataverse webhook (auth type WebhookKey) that
calls the relay; then creates sample records through the Dataverse Web API, which fire real
webhooks. It shows the DAG runs as they go (read through Airflow's REST API), prints the resulting
Marketo leads and the rejected contacts, and keeps running until Ctrl-C, which stops every process
it started.

``--once`` runs the same scenario, prints the result, stops everything and exits 0 when the leads
are what the sample data calls for, 1 otherwise: the proof that the demo works.

State (Airflow's database, the relay's spool, every log) lives in ``.demo/``, emptied at each start
so every demo begins from the same clean slate; after the demo it stays for a look at the logs.

The sample data is also what the end-to-end tests sync: ``create_sample_records`` and
``wait_for_contacts`` are public for them.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn, TextIO

from contact_sync.mapping import load_mappings
from contact_sync.report import text_table
from devenv.airflow import DEFAULT_ADMIN, DEFAULT_RELAY, AirflowApiError, LocalAirflow
from devenv.processes import ProcessExitedError
from devenv.relay import LocalRelay
from devenv.sandbox import LocalSandbox, ledger_env
from devenv.service import PROJECT_ROOT, PortInUseError, require_free_port
from devenv.session import deaf_to_stop_signals, reset_state_dir, sigterm_as_exit
from relay.settings import DEFAULT_PORT as RELAY_PORT
from relay.settings import RelaySettings
from sandbox import defaults
from sandbox.dataverse.admin import DataverseAdmin

#: The Contact sync page (plugins/contact_sync_plugin.py) on Airflow's API server.
CONTACT_SYNC_PAGE = "/contact-sync/"

SYNC_DAG_ID = "dynamics_contact_to_marketo"
RECONCILIATION_DAG_ID = "dynamics_marketo_reconciliation"
# Where the real-time DAG's `report` task pushes its summary (dags/dynamics_contact_to_marketo.py;
# not imported, as that would load Airflow into this process).
REPORT_TASK_ID = "report"
SUMMARY_XCOM_KEY = "summary"
# The Marketo custom field holding the Dynamics contact id (include/mappings/settings.yaml).
CONTACT_ID_FIELD = "dynamicsContactId"
AIRFLOW_PORT = 8080
DEMO_DIR = PROJECT_ROOT / ".demo"
# Tasks wait on HTTP, not on the CPU: four at once keep a 2-core machine busy but responsive.
PARALLELISM = 4
TERMINAL_STATES = frozenset({"success", "failed"})

_POLL_SECONDS = 1.0
# The demo's removal policy (issue 12): a deleted contact's lead gets this Boolean field set.
REMOVED_FLAG_FIELD = "removedFromCrm"
# The account edit the demo makes, and the contact it deletes (SampleContact.label).
RENAMED_ACCOUNT = "Fourth Coffee Roasters"
DELETED_SAMPLE = "no account"

# --- sample data ----------------------------------------------------------------------------------

# Names from Microsoft's own samples; addresses in reserved example domains.
SAMPLE_ACCOUNT: dict[str, Any] = {
    "name": "Fourth Coffee",
    "address1_line1": "1 Microsoft Way",
    "address1_line2": "Building 92",
    "address1_city": "Redmond",
    "address1_stateorprovince": "WA",
    "address1_country": "USA",
    "address1_postalcode": "98052",
    "telephone1": "+1 425 555 0100",
    "sic": "5812",
    "description": "Coffee roaster and retailer",
    "revenue": 2500000,
    "numberofemployees": 120,
    "websiteurl": "https://fourthcoffee.example",
}


@dataclass(frozen=True)
class SampleContact:
    """A contact the demo creates; ``with_account`` links it to ``SAMPLE_ACCOUNT``."""

    label: str
    columns: Mapping[str, Any]
    with_account: bool

    @property
    def name(self) -> str:
        return f"{self.columns.get('firstname', '')} {self.columns.get('lastname', '')}".strip()

    @property
    def email(self) -> str | None:
        return self.columns.get("emailaddress1")


SAMPLE_CONTACTS = (
    SampleContact(
        "with account",
        {
            "firstname": "Yvonne",
            "lastname": "McKay",
            "emailaddress1": "yvonne.mckay@fourthcoffee.example",
            "jobtitle": "Purchasing Manager",
            "telephone1": "+1 425 555 0101",
            "mobilephone": "+1 425 555 0102",
            "address1_line1": "12 Pike Street",
            "address1_city": "Seattle",
            "address1_stateorprovince": "WA",
            "address1_country": "USA",
            "address1_postalcode": "98101",
            "description": "Met at the Seattle roasters' fair",
        },
        with_account=True,
    ),
    SampleContact(
        "no account",
        {
            "firstname": "Rene",
            "lastname": "Valdes",
            "emailaddress1": "rene.valdes@example.com",
            "jobtitle": "Freelance barista",
            "address1_city": "Portland",
            "address1_country": "USA",
        },
        with_account=False,
    ),
    SampleContact(
        "no email",
        {"firstname": "Paul", "lastname": "Cannon", "jobtitle": "Store Manager"},
        with_account=True,
    ),
)


@dataclass(frozen=True)
class SampleRecords:
    """Ids of the records created from the sample data."""

    account_id: str
    contact_ids: dict[str, str]  # SampleContact.label → contactid

    def contact(self, contact_id: str) -> SampleContact | None:
        labels = {cid: label for label, cid in self.contact_ids.items()}
        return next((c for c in SAMPLE_CONTACTS if c.label == labels.get(contact_id)), None)


def create_sample_records(
    dataverse: DataverseAdmin, contacts: Sequence[SampleContact] = SAMPLE_CONTACTS
) -> SampleRecords:
    """Create ``SAMPLE_ACCOUNT`` and ``contacts`` through the Web API, as a Dynamics user would:
    each contact's Create fires the registered webhooks."""
    session = dataverse.api_session()
    # return=representation hands back the new row, id included, in the same call.
    session.headers["Prefer"] = "return=representation"

    def create(entity_set: str, body: Mapping[str, Any], id_column: str) -> str:
        response = session.post(f"{dataverse.api_url}/{entity_set}", json=dict(body), timeout=10)
        response.raise_for_status()
        return response.json()[id_column]

    with session:
        account_id = create("accounts", SAMPLE_ACCOUNT, "accountid")
        contact_ids = {}
        for contact in contacts:
            body = dict(contact.columns)
            if contact.with_account:
                body["parentcustomerid_account@odata.bind"] = f"/accounts({account_id})"
            contact_ids[contact.label] = create("contacts", body, "contactid")
    return SampleRecords(account_id, contact_ids)


# --- watching DAG runs through the REST API -------------------------------------------------------


def contact_ids_of(run: Mapping[str, Any]) -> set[str]:
    """The contact ids a run of the real-time DAG was asked to sync, from its conf."""
    conf = run.get("conf") or {}
    ids = {str(event.get("id", "")).lower() for event in conf.get("events", [])}
    ids |= {str(contact_id).lower() for contact_id in conf.get("contact_ids", [])}
    request = conf.get("webhookRequest") or {}
    if request.get("PrimaryEntityId"):
        ids.add(str(request["PrimaryEntityId"]).lower())
    return ids - {""}


def wait_for_contacts(
    airflow: LocalAirflow,
    contact_ids: Iterable[str],
    *,
    timeout: float,
    on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
    dag_id: str = SYNC_DAG_ID,
) -> list[dict[str, Any]]:
    """Wait until runs of ``dag_id`` have been asked for every contact and all of them have ended;
    return those runs. ``on_poll`` sees every listing (the demo prints progress from it)."""
    wanted = {contact_id.lower() for contact_id in contact_ids}
    deadline = time.monotonic() + timeout
    while True:
        runs = [run for run in airflow.dag_runs(dag_id) if contact_ids_of(run) & wanted]
        if on_poll is not None:
            on_poll(runs)
        covered = set().union(*(contact_ids_of(run) for run in runs)) if runs else set()
        if wanted <= covered and all(run["state"] in TERMINAL_STATES for run in runs):
            return runs
        if time.monotonic() > deadline:
            states = {run["dag_run_id"]: run["state"] for run in runs}
            raise TimeoutError(
                f"after {timeout:.0f} s: {len(wanted - covered)} contact(s) in no run yet; "
                f"runs: {states}"
            )
        airflow_alive_or_raise(airflow)
        time.sleep(_POLL_SECONDS)


def wait_for_new_runs(
    airflow: LocalAirflow,
    record_id: str,
    seen: set[str],
    *,
    timeout: float,
    on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Wait until a run not in ``seen`` was asked about ``record_id`` (a contact or an account
    event) and every such run has ended; return them."""
    wanted = record_id.lower()
    deadline = time.monotonic() + timeout
    while True:
        runs = [
            run
            for run in airflow.dag_runs(SYNC_DAG_ID)
            if run["dag_run_id"] not in seen and wanted in contact_ids_of(run)
        ]
        if on_poll is not None:
            on_poll(runs)
        if runs and all(run["state"] in TERMINAL_STATES for run in runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f} s: no finished run for {wanted}")
        airflow_alive_or_raise(airflow)
        time.sleep(_POLL_SECONDS)


def write_demo_mappings(target: Path) -> Path:
    """A copy of ``include/mappings`` whose settings flag the leads of removed contacts."""
    import shutil

    import yaml

    from contact_sync.mapping import DEFAULT_DIRECTORY

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(DEFAULT_DIRECTORY, target)
    settings_path = target / "settings.yaml"
    settings = yaml.safe_load(settings_path.read_text(encoding="utf-8"))
    settings.update(on_contact_removed="flag", removed_flag_field=REMOVED_FLAG_FIELD)
    settings_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return target


def airflow_alive_or_raise(airflow: LocalAirflow) -> None:
    """Fail at once, not at a timeout, when an Airflow component died."""
    if not airflow.running:
        raise ProcessExitedError(f"an Airflow component exited; logs in {airflow.log_dir}")


class RunPrinter:
    """Prints a line when a run appears or changes state; once it ends, the tasks that did not
    succeed and the outcomes its report counted."""

    def __init__(self, airflow: LocalAirflow, out: TextIO, dag_id: str = SYNC_DAG_ID) -> None:
        self.airflow = airflow
        self.out = out
        self.dag_id = dag_id
        self._seen: dict[str, str] = {}

    def __call__(self, runs: list[dict[str, Any]]) -> None:
        for run in runs:
            run_id, state = run["dag_run_id"], run["state"]
            previous = self._seen.get(run_id)
            if previous == state:
                continue
            self._seen[run_id] = state
            detail = ""
            if previous is None:
                detail = f"{len(contact_ids_of(run))} contact(s)"
            if state in TERMINAL_STATES:
                detail = self._task_summary(run_id)
            stamp = time.strftime("%H:%M:%S")
            line = f"  {stamp}  {run_id}  {state:<8}  {detail}"
            print(line.rstrip(), file=self.out, flush=True)

    def watch(self) -> None:
        """Print changes to every run of the DAG (after the scenario: runs the user causes)."""
        self(self.airflow.dag_runs(self.dag_id))

    def _task_summary(self, run_id: str) -> str:
        """The tasks that did not succeed, and the outcomes the run's report counted."""
        tasks = self.airflow.task_instances(self.dag_id, run_id)
        parts = [
            f"{task['task_id']} {task['state']}" for task in tasks if task["state"] != "success"
        ]
        summary = run_summary(self.airflow, run_id)
        if summary is not None:
            counts = ", ".join(f"{n} {status}" for status, n in summary["counts"].items() if n)
            reasons = ", ".join(summary["reasons"])
            parts.append(f"{counts} ({reasons})" if reasons else counts)
        return "; ".join(parts)


def run_summary(airflow: LocalAirflow, run_id: str) -> dict[str, Any] | None:
    """The summary a real-time run's report pushed: counts per outcome, rejections with reasons;
    None when the run ended before its report."""
    try:
        return airflow.xcom(SYNC_DAG_ID, run_id, REPORT_TASK_ID, SUMMARY_XCOM_KEY)
    except AirflowApiError as error:
        if error.status_code == HTTPStatus.NOT_FOUND:
            return None
        raise


# --- the outcome ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the scenario produced: leads, rejections, and what differs from the expectation."""

    leads: list[dict[str, Any]]
    rejected: dict[str, str]  # contact id → reason, from the runs' summaries
    problems: list[str] = field(default_factory=list)


def collect_outcome(
    airflow: LocalAirflow, sandbox: LocalSandbox, records: SampleRecords, runs: list[dict[str, Any]]
) -> Outcome:
    """Read back the leads and rejections, and check them against the sample data."""
    rejected: dict[str, str] = {}
    for run in runs:
        summary = run_summary(airflow, run["dag_run_id"])
        if summary is not None:
            rejected.update({r["contact_id"]: r["reason"] for r in summary["rejected"]})
    leads = [lead for lead in sandbox.marketo.leads() if lead.get(CONTACT_ID_FIELD)]
    outcome = Outcome(leads, rejected)
    by_contact = {str(lead[CONTACT_ID_FIELD]).lower(): lead for lead in leads}
    for contact in SAMPLE_CONTACTS:
        contact_id = records.contact_ids[contact.label].lower()
        lead = by_contact.get(contact_id)
        if contact.email is None:
            if lead is not None:
                outcome.problems.append(f"{contact.name} has no email but got a lead")
            if contact_id not in rejected:
                outcome.problems.append(f"{contact.name} has no email but was not rejected")
            continue
        if lead is None:
            outcome.problems.append(f"{contact.name}: no Marketo lead")
            continue
        if lead.get("email") != contact.email:
            outcome.problems.append(f"{contact.name}: the lead has another email")
        if bool(lead.get("company")) != contact.with_account:
            outcome.problems.append(f"{contact.name}: company fields do not match the account")
    return outcome


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Left-aligned columns, a rule under the headers; empty values as '-'."""
    return text_table([headers, *rows], empty="-")


# --- the demo -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    dataverse: int = defaults.DATAVERSE_PORT
    marketo: int = defaults.MARKETO_PORT
    relay: int = RELAY_PORT
    airflow: int = AIRFLOW_PORT

    def check_free(self) -> None:
        """``PortInUseError`` naming the first taken port, before anything starts."""
        for what, port in (
            ("the Dataverse sandbox", self.dataverse),
            ("the Marketo sandbox", self.marketo),
            ("the relay", self.relay),
            ("Airflow's API server and UI", self.airflow),
        ):
            require_free_port(defaults.HOST, port, what)


class Demo:
    """The processes of one demo, started and wired by ``start()``, all stopped by ``stop()``."""

    def __init__(self, state_dir: Path, ports: Ports, out: TextIO) -> None:
        self.state_dir = state_dir
        self.ports = ports
        self.out = out
        self.log_dir = state_dir / "logs"
        self.sandbox = LocalSandbox(
            self.log_dir, dataverse_port=ports.dataverse, marketo_port=ports.marketo
        )
        # A fresh key per demo: it is the relay's only protection, even on loopback.
        self._webhook_key = secrets.token_urlsafe(24)
        self.relay = LocalRelay(
            RelaySettings(
                airflow_url=f"http://{defaults.HOST}:{ports.airflow}",
                airflow_username=DEFAULT_RELAY.username,
                airflow_password=DEFAULT_RELAY.password,
                webhook_keys=(self._webhook_key,),
                spool_path=state_dir / "relay-spool.sqlite3",
                port=ports.relay,
                # the demo's settings.yaml flags removed contacts, so their Delete matters
                accept_contact_delete=True,
            ),
            self.log_dir,
        )
        self.mappings_dir = write_demo_mappings(state_dir / "mappings")
        self.airflow = LocalAirflow(
            state_dir / "airflow",
            PROJECT_ROOT / "dags",
            port=ports.airflow,
            env={
                **self.sandbox.connection_env(),
                "CONTACT_SYNC_MAPPINGS_DIR": str(self.mappings_dir),
                # The sync ledger the report tasks write and the Contact sync page reads, and
                # the relay whose backlog that page shows.
                **ledger_env(state_dir / "ledger.db"),
                "CONTACT_SYNC_RELAY_URL": self.relay.url,
            },
            parallelism=PARALLELISM,
        )
        self.printer = RunPrinter(self.airflow, out)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def start(self) -> None:
        """Start the three services and wire them; on any failure ``stop()`` is the caller's."""
        self.say("Starting")
        self._step("sandbox", self.sandbox.start)
        self.say(f"    Dataverse + Entra ID  {self.sandbox.dataverse_url}")
        self.say(f"    Marketo               {self.sandbox.marketo_url}")
        self._step("relay", self.relay.start)
        self.say(f"    webhooks              {self.relay.url}/webhooks/dynamics365")
        self._step(
            "Airflow 3 (API server, scheduler, DAG processor)",
            lambda: self.airflow.start([SYNC_DAG_ID, RECONCILIATION_DAG_ID]),
        )
        self.say(f"    DAGs                  {SYNC_DAG_ID}, {RECONCILIATION_DAG_ID}")
        self.say()
        self.say("Wiring")
        self.sandbox.marketo.add_field(CONTACT_ID_FIELD)
        self.say(f"  Marketo custom field {CONTACT_ID_FIELD} added (holds the Dynamics contact id)")
        self.sandbox.dataverse.register_webhook(
            self.relay.webhook_url, "WebhookKey", self._webhook_key
        )
        self.sandbox.marketo.add_field(REMOVED_FLAG_FIELD, data_type="boolean")
        self.say(
            f"  Marketo Boolean field {REMOVED_FLAG_FIELD} added "
            "(on_contact_removed: flag in the demo's settings)"
        )
        self.sandbox.dataverse.register_webhook(
            self.relay.webhook_url,
            "WebhookKey",
            self._webhook_key,
            messages=("Update",),
            entity="account",
            # Filtering Attributes: the mapped account columns (not the id)
            filtering_attributes=load_mappings(self.mappings_dir).account_select[1:],
        )
        self.sandbox.dataverse.register_webhook(
            self.relay.webhook_url, "WebhookKey", self._webhook_key, messages=("Delete",)
        )
        self.say("  Dataverse webhook on contact Create/Update → relay (auth type WebhookKey)")
        self.say("  Dataverse webhooks on account Update (mapped columns) and contact Delete")
        self.say(
            "  Airflow connections dynamics365_default, marketo_default → sandbox; pool marketo_api"
        )

    def run_scenario(self, timeout: float) -> Outcome:
        """Create the sample records, follow the runs they cause, and read the result back."""
        self.say()
        self.say("Creating sample records through the Dataverse Web API (each fires a webhook)")
        records = create_sample_records(self.sandbox.dataverse)
        created = [("account", SAMPLE_ACCOUNT["name"], records.account_id)] + [
            ("contact", f"{c.name} ({c.label})", records.contact_ids[c.label])
            for c in SAMPLE_CONTACTS
        ]
        for line in format_table(("record", "name", "id"), created):
            self.say(f"  {line}")
        self.say()
        self.say(f"DAG runs of {SYNC_DAG_ID} (polled through the REST API)")
        runs = wait_for_contacts(
            self.airflow, records.contact_ids.values(), timeout=timeout, on_poll=self.printer
        )
        outcome = collect_outcome(self.airflow, self.sandbox, records, runs)
        self._print_outcome(outcome, records)
        seen = {run["dag_run_id"] for run in runs}
        outcome.problems += self._account_and_removal(records, seen, timeout)
        self.say(
            f"Contact sync {self.airflow.url}{CONTACT_SYNC_PAGE}  "
            "(every contact's outcome; the rejected under Errors)"
        )
        return outcome

    def _account_and_removal(
        self, records: SampleRecords, seen: set[str], timeout: float
    ) -> list[str]:
        """Rename the account (its Update webhook reaches its contacts' leads), then delete a
        contact (its Delete webhook flags its lead); what differs from that, as problems."""
        dataverse = self.sandbox.dataverse
        problems: list[str] = []
        self.say()
        self.say(f"Renaming the account to {RENAMED_ACCOUNT!r} (its Update webhook fires)")
        with dataverse.api_session() as session:
            session.patch(
                f"{dataverse.api_url}/accounts({records.account_id})",
                json={"name": RENAMED_ACCOUNT},
                timeout=10,
            ).raise_for_status()
        runs = wait_for_new_runs(
            self.airflow, records.account_id, seen, timeout=timeout, on_poll=self.printer
        )
        seen |= {run["dag_run_id"] for run in runs}
        members = [c for c in SAMPLE_CONTACTS if c.with_account and c.email]
        for contact in members:
            lead = self._lead_of(records.contact_ids[contact.label])
            company = lead.get("company") if lead else None
            self.say(f"  {contact.name}'s lead: company {company!r}")
            if company != RENAMED_ACCOUNT:
                problems.append(f"{contact.name}: the account edit did not reach the lead")

        deleted = next(c for c in SAMPLE_CONTACTS if c.label == DELETED_SAMPLE)
        deleted_id = records.contact_ids[deleted.label]
        self.say()
        self.say(f"Deleting contact {deleted.name} (its Delete webhook fires; policy: flag)")
        with dataverse.api_session() as session:
            session.delete(
                f"{dataverse.api_url}/contacts({deleted_id})", timeout=10
            ).raise_for_status()
        wait_for_new_runs(self.airflow, deleted_id, seen, timeout=timeout, on_poll=self.printer)
        lead = self._lead_of(deleted_id)
        flagged = bool(lead and lead.get(REMOVED_FLAG_FIELD) is True)
        self.say(f"  {deleted.name}'s lead: {REMOVED_FLAG_FIELD} = {flagged}")
        if not flagged:
            problems.append(f"{deleted.name}: the deleted contact's lead is not flagged")
        self.say()
        if problems:
            self.say("NOT as expected:")
            for problem in problems:
                self.say(f"  - {problem}")
        else:
            self.say("As expected: the account's new name on its contacts' leads, the deleted")
            self.say(f"contact's lead flagged ({REMOVED_FLAG_FIELD}), not deleted nor left live.")
        return problems

    def _lead_of(self, contact_id: str) -> dict[str, Any] | None:
        leads = self.sandbox.marketo.leads(**{CONTACT_ID_FIELD: contact_id})
        return leads[0] if leads else None

    def serve(self) -> NoReturn:
        """Show runs the user causes until Ctrl-C (or a component dies)."""
        self.say()
        self.say(
            f"Airflow UI {self.airflow.url}   "
            f"login {DEFAULT_ADMIN.username} / {DEFAULT_ADMIN.password}"
        )
        self.say(f"Logs       {self.log_dir} (sandbox, relay), {self.airflow.log_dir}")
        self.say(
            f"Try it     in the UI, trigger {SYNC_DAG_ID} with "
            '{"contact_ids": ["<an id above>"]};'
        )
        self.say(
            "           or change a contact through the Web API (credentials: README). "
            "Runs show below."
        )
        self.say("Ctrl-C stops everything.")
        self.say()
        while True:
            for service in (self.sandbox, self.relay):
                if not service.running:
                    raise ProcessExitedError(
                        f"the {service.name} exited; its log: {service.log_path}"
                    )
            airflow_alive_or_raise(self.airflow)
            self.printer.watch()
            time.sleep(_POLL_SECONDS)

    def stop(self) -> None:
        """Stop everything this demo started: the relay first (it calls Airflow), then Airflow,
        then the sandbox."""
        self.relay.stop()
        self.airflow.stop()
        self.sandbox.stop()

    def leftovers(self) -> list[int]:
        """Pids of processes this demo started that are still alive."""
        found = [*self.relay.leftovers(), *self.airflow.live_processes(), *self.sandbox.leftovers()]
        return sorted(process.pid for process in found)

    def _step(self, what: str, start: Callable[[], object]) -> None:
        began = time.monotonic()
        print(f"  {what} ...", end="", file=self.out, flush=True)
        start()
        print(f" up in {time.monotonic() - began:.1f} s", file=self.out, flush=True)

    def _print_outcome(self, outcome: Outcome, records: SampleRecords) -> None:
        self.say()
        self.say("Marketo leads")
        rows = [
            (
                lead.get("id"),
                lead.get("email"),
                lead.get("firstName"),
                lead.get("lastName"),
                lead.get("company"),
                lead.get("billingCity"),
                str(lead.get(CONTACT_ID_FIELD))[:8] + "…",
            )
            for lead in outcome.leads
        ]
        headers = (
            "id",
            "email",
            "first name",
            "last name",
            "company",
            "billing city",
            "contact id",
        )
        for line in format_table(headers, rows):
            self.say(f"  {line}")
        if outcome.rejected:
            self.say()
            self.say("Rejected contacts (not sent to Marketo; their run failed with the reason)")
            for contact_id, reason in outcome.rejected.items():
                contact = records.contact(contact_id)
                self.say(f"  {contact.name if contact else contact_id}: {reason}")
        self.say()
        if outcome.problems:
            self.say("NOT as expected:")
            for problem in outcome.problems:
                self.say(f"  - {problem}")
        else:
            self.say("As expected: a lead per contact with an email, company fields only from an")
            self.say("account, the contact without an email rejected.")


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m devenv.demo",
        description="The Dynamics 365 → Marketo sync on this machine: sandbox, relay and "
        "Airflow 3, sample contacts synced through real webhooks. Ctrl-C stops everything.",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run the scenario, print the result, stop everything; exit 0 or 1",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEMO_DIR,
        help=f"Airflow's database, the relay's spool and logs (default {DEMO_DIR})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds the scenario's runs may take (default 180)",
    )
    # The README's URLs assume the default ports; tests move them to free ones.
    for name, default in vars(Ports()).items():
        parser.add_argument(f"--{name}-port", type=int, default=default, help=f"default {default}")
    args = parser.parse_args(argv)
    # Services log to their own files; here only warnings would disturb the user's terminal.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ports = Ports(args.dataverse_port, args.marketo_port, args.relay_port, args.airflow_port)
    try:
        ports.check_free()
    except PortInUseError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    state_dir = args.state_dir.resolve()
    reset_state_dir(state_dir, ".demo-state", "`python -m devenv.demo`")
    print(f"Dynamics 365 → Marketo sync demo   (state and logs in {state_dir})\n", file=out)
    demo = Demo(state_dir, ports, out)
    try:
        with sigterm_as_exit():
            status = _run(demo, once=args.once, timeout=args.timeout)
    finally:
        clean = _stop(demo, out)
    return status if clean else 1


def _run(demo: Demo, *, once: bool, timeout: float) -> int:
    try:
        demo.start()
        outcome = demo.run_scenario(timeout)
        if once:
            return 1 if outcome.problems else 0
        demo.serve()
    except KeyboardInterrupt:
        # Ctrl-C is how the interactive demo ends; it interrupts a --once run.
        return 130 if once else 0
    except (ProcessExitedError, TimeoutError) as error:
        print(f"\ndemo: {error}", file=sys.stderr)
        return 1


def _stop(demo: Demo, out: TextIO) -> bool:
    """Stop everything; True when no process is left. Deaf to Ctrl-C and SIGTERM meanwhile: a
    second, impatient Ctrl-C must not leave orphans behind."""
    with deaf_to_stop_signals():
        print("\nStopping ...", end="", file=out, flush=True)
        demo.stop()
        left = demo.leftovers()
        print(" done." if not left else f" processes left: {left}", file=out, flush=True)
        return not left


if __name__ == "__main__":
    sys.exit(main())
