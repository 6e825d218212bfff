"""``docker-compose.yaml`` started for real, by ``make test-compose`` (run by ``make test``).

One stack per module, in the order a user meets it: a Docker Engine (started here when none runs,
and stopped again), the stand-in base images where no registry is reachable, a fresh ``.env`` from
``deploy/make_env.py`` (what ``make env`` runs), ``docker-compose up -d --build`` with the
host-network override (the only difference from what a user runs, see deploy/compose_stack.py),
every healthcheck green. Then, through the stack only: a contact created in the sandbox fires a
webhook to the relay, which triggers a run that the Celery worker executes, and the lead appears
in the sandbox's Marketo; the reconciliation DAG succeeds; the UI answers behind FAB's login
(screenshots in ``.compose/screenshots``); the relay's account may do only its job. Restarts:
``restart`` and ``down`` + ``up`` keep Postgres' data and the relay's spool, and a webhook
accepted while Airflow was down is delivered when it is back. ``down -v`` leaves nothing.

Outside ``make test-compose`` (``COMPOSE_TEST=1``) the module is skipped, with that reason: it
takes minutes and builds images. When Docker cannot run here, it is skipped with the reason why.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deploy import make_env
from deploy.compose_stack import (
    ComposeAirflow,
    ComposeStack,
    DockerEngine,
    DockerUnavailable,
    HostPorts,
    build_standins,
    relay_health,
    write_override,
)
from devenv.browser import chromium_missing, chromium_page
from devenv.demo import (
    CONTACT_ID_FIELD,
    RECONCILIATION_DAG_ID,
    SYNC_DAG_ID,
    SampleContact,
    contact_ids_of,
    create_sample_records,
    wait_for_contacts,
)
from relay.app import WEBHOOK_PATH
from sandbox.dataverse.admin import DataverseAdmin
from sandbox.dataverse.webhooks import SUCCEEDED
from sandbox.marketo.admin import MarketoAdmin

pytestmark = [
    pytest.mark.compose,
    pytest.mark.skipif(
        os.environ.get("COMPOSE_TEST") != "1",
        reason="the docker-compose deployment runs in `make test-compose` (COMPOSE_TEST=1)",
    ),
]

WORK_DIR = Path(__file__).resolve().parents[2] / ".compose"
SCREENSHOTS = WORK_DIR / "screenshots"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
)
# A crowded 2-core machine took over a minute to start each task process (import Airflow).
RUN_TIMEOUT = 900.0
# The asyncoperation statuscode of a webhook delivery that the relay accepted.
_, SUCCEEDED_STATUS = SUCCEEDED


@dataclass
class Deployment:
    engine: DockerEngine
    stack: ComposeStack
    ports: HostPorts
    env: dict[str, str]
    airflow: ComposeAirflow
    dataverse: DataverseAdmin
    marketo: MarketoAdmin
    up_seconds: float


def _say(text: str) -> None:
    # Figures for the log of `make test-compose` (pytest -s shows them).
    print(f"[compose] {text}", flush=True)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    log_dir = WORK_DIR / "logs"
    engine = DockerEngine(log_dir)
    began = time.monotonic()
    try:
        engine.ensure()
    except DockerUnavailable as exc:
        pytest.skip(f"NO DOCKER, the compose deployment is NOT tested: {exc}")
    stack: ComposeStack | None = None
    try:
        build_standins(log_dir / "standins.log")
        _say(f"engine and stand-in images ready in {time.monotonic() - began:.0f} s")
        ports = HostPorts.free()
        env_file = WORK_DIR / "test.env"
        # The helper a user runs (`make env`), with the sandbox and published ports of this run.
        assert make_env.main([
            "--output", str(env_file), "--force",
            "--dataverse-url", f"http://sandbox:{ports.dataverse}",
            "--marketo-url", f"http://sandbox:{ports.marketo}",
            "--set", f"AIRFLOW_API_PORT={ports.api}",
            "--set", f"RELAY_PORT={ports.relay}",
            "--set", f"SANDBOX_DATAVERSE_PORT={ports.dataverse}",
            "--set", f"SANDBOX_MARKETO_PORT={ports.marketo}",
        ]) == 0  # fmt: skip
        override = WORK_DIR / "host-network.override.yaml"
        write_override(override, ports)
        project = f"dmscompose{uuid.uuid4().hex[:6]}"
        stack = ComposeStack(project, env_file, override, log_dir)
        started = time.monotonic()
        stack.compose("up", "-d", "--build")
        built = time.monotonic() - started
        healthy = stack.wait_healthy()
        up_seconds = time.monotonic() - started
        _say(f"`up -d --build` returned in {built:.0f} s; all healthy {healthy:.0f} s later")
        env = make_env.read(env_file)
        airflow = ComposeAirflow(stack, ports.api, env["AIRFLOW_ADMIN_PASSWORD"], log_dir)
        airflow.wait_for_dags([SYNC_DAG_ID, RECONCILIATION_DAG_ID], timeout=180)
        yield Deployment(
            engine,
            stack,
            ports,
            env,
            airflow,
            DataverseAdmin(f"http://127.0.0.1:{ports.dataverse}"),
            MarketoAdmin(f"http://127.0.0.1:{ports.marketo}"),
            up_seconds,
        )
    finally:
        if stack is not None:
            # Every container's output, for a failure's post-mortem.
            (log_dir / "services.log").write_text(stack.logs(lines=5000))
            stack.compose("down", "-v", "--remove-orphans", timeout=600)
        engine.stop()
        _say(f"whole compose run: {time.monotonic() - began:.0f} s")
    # Nothing left running: no dockerd (nor containerd, nor a shim) that this run started.
    assert engine.leftovers() == [], engine.leftovers()


# -- up ------------------------------------------------------------------------------------------


def test_every_service_is_healthy_and_the_init_job_succeeded(deployment: Deployment):
    states = deployment.stack.states()
    assert states.pop("airflow-init") == "exited(0)"
    assert set(states.values()) == {"healthy"}, states
    assert set(states) == set(deployment.stack.services) - {"airflow-init"}


def test_the_stack_uses_the_fab_auth_manager_and_the_tuned_scheduler(deployment: Deployment):
    config = deployment.stack.containers()["airflow-scheduler"]["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
    tuning = Path(__file__).resolve().parents[2] / "deploy" / "airflow-tuning.env"
    for line in tuning.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            assert env[name] == value


def test_the_init_job_created_the_ledgers_database(deployment: Deployment):
    # psql inside the Postgres container, as the compose file's POSTGRES_USER (PGPORT is set).
    out = deployment.stack.compose(
        "exec", "-T", "postgres",
        "psql", "-U", "airflow", "-d", "contact_sync", "-tAc", "SELECT current_database()",
    )  # fmt: skip
    assert out.strip() == "contact_sync"


def test_the_contact_sync_page_reads_the_ledger_on_postgres(deployment: Deployment):
    # The plugin's page answers 503 naming the connection when the ledger cannot be opened.
    airflow = deployment.airflow
    token = airflow.token("admin", deployment.env["AIRFLOW_ADMIN_PASSWORD"])
    response = httpx.get(
        f"{airflow.url}/contact-sync/",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[-500:]
    assert "Contact outcomes" in response.text


# -- auth ----------------------------------------------------------------------------------------


def _token(deployment: Deployment, username: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{deployment.airflow.url}/auth/token",
        json={"username": username, "password": password},
        timeout=30,
    )


def test_the_relay_account_may_trigger_and_read_its_dag_and_nothing_else(deployment: Deployment):
    response = _token(deployment, "relay", deployment.env["RELAY_AIRFLOW_PASSWORD"])
    assert response.status_code in (200, 201), response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    api = f"{deployment.airflow.url}/api/v2"

    def status(method: str, path: str, **kwargs: object) -> int:
        return httpx.request(
            method, f"{api}{path}", headers=headers, timeout=30, **kwargs
        ).status_code

    assert status("GET", f"/dags/{SYNC_DAG_ID}/dagRuns") == 200
    assert status("GET", f"/dags/{RECONCILIATION_DAG_ID}/dagRuns") == 403
    body = {"logical_date": None, "conf": {}}
    assert status("POST", f"/dags/{RECONCILIATION_DAG_ID}/dagRuns", json=body) == 403
    assert status("GET", "/connections") == 403
    assert status("GET", "/variables") == 403
    assert status("GET", "/pools") == 403


def test_wrong_passwords_get_no_token(deployment: Deployment):
    assert _token(deployment, "relay", "not-the-password").status_code == 401
    assert _token(deployment, "admin", deployment.env["RELAY_AIRFLOW_PASSWORD"]).status_code == 401


# -- the product through the stack ---------------------------------------------------------------


def test_a_contact_created_in_dynamics_becomes_a_lead_through_relay_and_celery_worker(
    deployment: Deployment,
):
    dataverse, marketo, airflow = deployment.dataverse, deployment.marketo, deployment.airflow
    marketo.add_field(CONTACT_ID_FIELD)
    # The sandbox container posts to the relay container, by service name.
    relay_url = f"http://relay:{deployment.ports.relay}{WEBHOOK_PATH}"
    dataverse.register_webhook(relay_url, "WebhookKey", deployment.env["RELAY_WEBHOOK_KEY"])

    began = time.monotonic()
    records = create_sample_records(dataverse)
    runs = wait_for_contacts(airflow, records.contact_ids.values(), timeout=RUN_TIMEOUT)
    _say(f"3 contacts: webhook → runs done in {time.monotonic() - began:.1f} s")

    # The contact without an email is rejected: its run's report fails after the others synced.
    rejected_id = records.contact_ids["no email"].lower()
    for run in runs:
        expected = "failed" if rejected_id in contact_ids_of(run) else "success"
        assert run["state"] == expected, run["dag_run_id"]
    # Every webhook was accepted by the relay (not retried by the sandbox).
    assert {d["statuscode"] for d in dataverse.deliveries()} == {SUCCEEDED_STATUS}, (
        dataverse.deliveries()
    )
    leads = {lead.get(CONTACT_ID_FIELD): lead for lead in marketo.leads()}
    with_email = {
        label: contact_id
        for label, contact_id in records.contact_ids.items()
        if label != "no email"
    }
    assert {contact_id.lower() for contact_id in with_email.values()} <= {
        str(key).lower() for key in leads
    }
    # The tasks ran on the Celery worker: its log names each run it executed.
    worker_log = deployment.stack.logs("airflow-worker", lines=2000)
    assert all(run["dag_run_id"] in worker_log for run in runs)


def test_the_reconciliation_dag_runs_successfully(deployment: Deployment):
    airflow = deployment.airflow
    run_id = airflow.trigger(RECONCILIATION_DAG_ID, {})
    assert airflow.wait_for_run(RECONCILIATION_DAG_ID, run_id, timeout=RUN_TIMEOUT) == "success"


def test_the_airflow_ui_answers_behind_the_fab_login(deployment: Deployment):
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    airflow = deployment.airflow
    url = airflow.url
    # The UI shows a DAG by its display name; its runs by id, with the user who triggered them.
    display_name = airflow.request("GET", f"/api/v2/dags/{SYNC_DAG_ID}").json()["dag_display_name"]
    (run_id, *_) = [run["dag_run_id"] for run in airflow.dag_runs(SYNC_DAG_ID)]
    with chromium_page() as page:
        page.goto(f"{url}/", wait_until="networkidle")
        # Not logged in: FAB's login form.
        page.wait_for_selector("input[name=username]", timeout=60_000)
        page.screenshot(path=str(SCREENSHOTS / "1-login.png"))
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", deployment.env["AIRFLOW_ADMIN_PASSWORD"])
        # FAB's login answers with the UI's token cookie and a redirect: wait for it.
        with page.expect_navigation(timeout=60_000):
            page.click("input[type=submit], button[type=submit]")
        page.goto(f"{url}/dags", wait_until="networkidle")
        page.get_by_text(display_name).first.wait_for(timeout=60_000)
        page.screenshot(path=str(SCREENSHOTS / "2-dags.png"))
        page.goto(f"{url}/dags/{SYNC_DAG_ID}/runs", wait_until="networkidle")
        page.get_by_text(run_id).first.wait_for(timeout=60_000)
        # Triggered through the REST API by the relay's own account.
        page.get_by_role("cell", name="relay", exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(SCREENSHOTS / "3-sync-runs.png"))
    assert (SCREENSHOTS / "3-sync-runs.png").stat().st_size > 0


# -- restarts ------------------------------------------------------------------------------------


def test_restart_keeps_the_runs_and_the_sync_keeps_working(deployment: Deployment):
    stack, airflow = deployment.stack, deployment.airflow
    runs_before = {run["dag_run_id"] for run in airflow.dag_runs(SYNC_DAG_ID)}
    assert runs_before
    began = time.monotonic()
    stack.compose("restart")
    stack.wait_healthy()
    _say(f"`restart`: healthy again in {time.monotonic() - began:.0f} s")
    airflow.forget_token()
    assert runs_before <= {run["dag_run_id"] for run in airflow.dag_runs(SYNC_DAG_ID)}

    records = create_sample_records(deployment.dataverse, [_contact("after-restart")])
    runs = wait_for_contacts(airflow, records.contact_ids.values(), timeout=RUN_TIMEOUT)
    assert {run["state"] for run in runs} == {"success"}


def test_a_webhook_accepted_while_airflow_is_down_is_delivered_after_down_and_up(
    deployment: Deployment,
):
    stack, airflow, dataverse = deployment.stack, deployment.airflow, deployment.dataverse
    runs_before = {run["dag_run_id"] for run in airflow.dag_runs(SYNC_DAG_ID)}
    stack.compose("stop", *AIRFLOW_SERVICES)

    records = create_sample_records(dataverse, [_contact("while-down")])
    (contact_id,) = records.contact_ids.values()
    # The relay took the webhook (the sandbox's delivery succeeded) and keeps it in its spool.
    deliveries = dataverse.wait_for_deliveries(len(dataverse.deliveries()), timeout=30)
    assert {d["statuscode"] for d in deliveries} == {SUCCEEDED_STATUS}
    health = relay_health(deployment.ports.relay)
    assert health["spool_pending"] >= 1, health

    # `down` removes the containers, the volumes stay: the spool and Postgres' data with them.
    began = time.monotonic()
    stack.compose("down")
    assert stack.containers() == {}
    assert stack.volumes(), "down without -v must keep the volumes"
    stack.compose("up", "-d")
    stack.wait_healthy()
    _say(f"`down` + `up`: healthy again in {time.monotonic() - began:.0f} s")
    airflow.forget_token()

    assert runs_before <= {run["dag_run_id"] for run in airflow.dag_runs(SYNC_DAG_ID)}
    runs = wait_for_contacts(airflow, [contact_id], timeout=RUN_TIMEOUT)
    assert {run["state"] for run in runs} == {"success"}
    leads = deployment.marketo.leads()
    assert contact_id.lower() in {str(lead.get(CONTACT_ID_FIELD)).lower() for lead in leads}
    assert relay_health(deployment.ports.relay)["spool_pending"] == 0


def test_down_with_volumes_leaves_nothing(deployment: Deployment):
    stack = deployment.stack
    assert stack.volumes()
    stack.compose("down", "-v", "--remove-orphans")
    assert stack.containers() == {}
    assert stack.volumes() == []
    # The fixture then stops the dockerd it started and checks that no process of it is left.


def _contact(label: str) -> SampleContact:
    suffix = uuid.uuid4().hex[:8]
    return SampleContact(
        label,
        {"firstname": "Test", "lastname": label, "emailaddress1": f"{label}-{suffix}@example.com"},
        with_account=False,
    )
