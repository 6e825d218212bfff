"""The "Contact sync" page in a real browser (Debian's Chromium through Playwright) against a live
Airflow 3 with the plugin loaded, a SQLite ledger behind the ``contact_sync_ledger`` Connection,
and simple-auth-manager users of each role.

The ledger is seeded through its API, as the DAGs' ``report`` tasks write it; that a real run's
rejected contact lands there is proven on a live Airflow by ``tests/ledger/test_live_report.py``
and ``tests/e2e/test_demo.py`` (seeding keeps this module free of the sandbox and of DAG runs,
whose timing on a crowded machine would make the browser steps wait). The DAGs stay
paused: a Re-sync queues a run, which is what this page is responsible for; running it is the
real-time DAG's business and has end-to-end tests of its own. Screenshots land in each test's
``tmp_path``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from contact_sync.ledger import Ledger
from contact_sync.models import Outcome
from devenv.airflow import DEFAULT_ADMIN, DEFAULT_RELAY, PROJECT_ROOT, AirflowUser, LocalAirflow
from devenv.browser import chromium_missing, chromium_page
from devenv.pytest_plugin import AirflowInstances

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]

REALTIME = "dynamics_contact_to_marketo"
NIGHTLY = "dynamics_marketo_reconciliation"
VIEWER = AirflowUser("viewer", "viewer", "viewer-local")
OPERATOR = AirflowUser("operator", "op", "operator-local")
REJECTED = "0c5e8a11-7d2f-4b6e-9a3c-00000000000a"  # no email
REJECTED_TOO = "0c5e8a11-7d2f-4b6e-9a3c-00000000000b"  # invalid email
SYNCED = "0c5e8a11-7d2f-4b6e-9a3c-00000000000c"
SEED_RUN = "relay__seed-0001"
PAGE = "/contact-sync"


@pytest.fixture(scope="module")
def ledger_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ledger") / "ledger.db"


@pytest.fixture(scope="module")
def airflow(
    airflow_instances: AirflowInstances, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalAirflow]:
    """Airflow with the project's DAGs and plugins, paused DAGs, and a viewer and an operator."""
    airflow_instances.close()  # two Airflows would crowd a 2-core machine
    airflow = LocalAirflow(
        tmp_path_factory.mktemp("airflow-ui-home"),
        PROJECT_ROOT / "dags",
        port=0,
        env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"},
        service_users=(DEFAULT_RELAY, VIEWER, OPERATOR),
    )
    airflow.start([REALTIME, NIGHTLY], timeout=480)  # slow only on a crowded machine
    yield airflow
    airflow.stop()
    assert airflow.live_processes() == []


@pytest.fixture(scope="module")
def ledger(airflow: LocalAirflow, ledger_file: Path) -> Iterator[Ledger]:
    """The ledger, defined as an Airflow Connection in the metadata DB (so a test can break and
    restore it through the REST API), seeded as the report tasks will write it."""
    connection = {
        "connection_id": "contact_sync_ledger",
        "conn_type": "sqlite",
        "host": str(ledger_file),
    }
    airflow.request("POST", "/api/v2/connections", json=connection)
    ledger = Ledger(f"sqlite:///{ledger_file}")
    now = datetime.now(UTC)
    ledger.record_run(
        NIGHTLY,
        "scheduled__2026-11-30T02:00:00+00:00",
        "reconciliation",
        [Outcome(SYNCED, "unchanged", lead_id=41), Outcome(REJECTED_TOO, "created", lead_id=42)],
        at=now - timedelta(hours=30),
    )
    ledger.record_run(
        REALTIME,
        SEED_RUN,
        "webhook",
        [
            Outcome(SYNCED, "updated", lead_id=41),
            Outcome(REJECTED, "rejected", reason_code="no email", reason="no email"),
            Outcome(
                REJECTED_TOO,
                "rejected",
                reason_code="invalid email",
                reason="invalid email: Marketo refused <email>",
            ),
        ],
        at=now - timedelta(minutes=20),
    )
    yield ledger
    ledger.close()


def sign_in(page, airflow: LocalAirflow, user: AirflowUser, next_path: str) -> None:
    """Sign in through Airflow's login page, as a person would, and land on ``next_path``."""
    # Airflow's React UI is slow to settle on a busy 2-core machine: wait for elements, not for
    # the "load" event, and give them time (no assertion here is about speed).
    page.set_default_timeout(120_000)
    page.goto(f"{airflow.url}{next_path}", wait_until="commit")
    page.wait_for_url(re.compile(r"/auth/login"))
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/auth/login)"))
    page.goto(f"{airflow.url}{next_path}", wait_until="commit")


def runs_of(airflow: LocalAirflow, dag_id: str) -> dict[str, dict]:
    return {run["dag_run_id"]: run for run in airflow.dag_runs(dag_id)}


def test_the_plugin_registers_the_pages_in_airflows_ui(airflow: LocalAirflow):
    plugins = airflow.request("GET", "/api/v2/plugins").json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "contact_sync")

    views = {v["destination"]: v["href"] for v in ours["external_views"]}
    assert views == {"nav": f"{PAGE}/", "dag_run": f"{PAGE}/runs/{{DAG_ID}}/{{RUN_ID}}"}
    assert [app["url_prefix"] for app in ours["fastapi_apps"]] == [PAGE]


def test_a_signed_out_visitor_gets_nothing(airflow: LocalAirflow, ledger: Ledger, tmp_path: Path):
    with httpx.Client(base_url=airflow.url, timeout=30) as client:
        for path in ("/", "/errors", f"/history?id={REJECTED}", f"/runs/{REALTIME}/{SEED_RUN}"):
            answer = client.get(PAGE + path)
            assert answer.status_code == 303, path
            assert "/auth/login" in answer.headers["location"]
            assert REJECTED not in answer.text
        refused = client.post(f"{PAGE}/resync", data={"contact_id": REJECTED})
        forged = client.get(f"{PAGE}/errors", headers={"Authorization": "Bearer not-a-jwt"})
    assert refused.status_code == 401
    assert forged.status_code == 303
    assert not [r for r in runs_of(airflow, REALTIME).values() if r["run_type"] == "manual"]

    with chromium_page() as page:
        page.set_default_timeout(120_000)
        page.goto(f"{airflow.url}{PAGE}/errors")
        page.wait_for_url(re.compile(r"/auth/login"))
        page.screenshot(path=tmp_path / "signed-out.png", full_page=True)
        assert REJECTED not in page.content()


def test_an_operator_sees_the_rejected_contacts_and_resyncs_one(
    airflow: LocalAirflow, ledger: Ledger, tmp_path: Path
):
    with chromium_page() as page:
        sign_in(page, airflow, OPERATOR, f"{PAGE}/errors")
        row = page.locator("tr", has_text=REJECTED)
        assert "no email" in row.inner_text()
        assert SEED_RUN in row.inner_text()
        assert page.locator("tr", has_text=REJECTED_TOO).count() == 1
        assert page.locator("tr", has_text=SYNCED).count() == 0
        assert page.get_by_role("button", name="Re-sync all 2").is_visible()
        # The run link opens the run in Airflow's UI, outside the page's iframe.
        link = row.get_by_role("link", name=SEED_RUN)
        assert link.get_attribute("href") == f"/dags/{REALTIME}/runs/{quote(SEED_RUN)}"
        assert link.get_attribute("target") == "_top"
        page.screenshot(path=tmp_path / "errors-operator.png", full_page=True)

        row.get_by_role("button", name="Re-sync").click()
        page.wait_for_selector("text=Re-sync started for 1 contact(s)")
        page.screenshot(path=tmp_path / "errors-after-resync.png", full_page=True)
        run_id = page.locator(".banner.ok a").first.inner_text()

        run = runs_of(airflow, REALTIME)[run_id]
        assert run["conf"] == {"contact_ids": [REJECTED]}
        assert run["triggering_user_name"] == OPERATOR.username
        assert run["run_type"] == "manual"

        # Until a later run syncs it, the contact stays listed; then it leaves. (This write
        # stands in for the real-time DAG's report task, wired to the ledger in a later change.)
        assert page.locator("tr", has_text=REJECTED).count() == 1
        ledger.record_run(REALTIME, run_id, "on-demand", [Outcome(REJECTED, "created", lead_id=43)])
        page.goto(f"{airflow.url}{PAGE}/errors")
        assert page.locator("tr", has_text=REJECTED).count() == 0
        assert page.locator("tr", has_text=REJECTED_TOO).count() == 1

        # The contact's history: both syncs, newest first.
        page.goto(f"{airflow.url}{PAGE}/history?id={REJECTED.upper()}")
        outcomes = page.locator("tbody tr td:nth-child(3)").all_inner_texts()
        assert [o.split()[0] for o in outcomes] == ["created", "rejected"]
        page.screenshot(path=tmp_path / "history.png", full_page=True)

        # The status page counts the last 24 h and 7 days and shows the reconciliation.
        page.goto(f"{airflow.url}{PAGE}/")
        text = page.inner_text("body")
        assert "1 contact(s) are not in Marketo" in text
        assert "scheduled__2026-11-30T02:00:00+00:00" in text
        assert "Not configured: set CONTACT_SYNC_RELAY_URL" in text
        page.screenshot(path=tmp_path / "status.png", full_page=True)

        # The tab on the seeded run, as Airflow's UI fills in {DAG_ID} and {RUN_ID}.
        page.goto(f"{airflow.url}{PAGE}/runs/{REALTIME}/{quote(SEED_RUN)}")
        assert page.locator("tbody tr").count() == 3
        assert "3 contact(s): 1 updated, 2 rejected" in page.inner_text("body")
        page.screenshot(path=tmp_path / "run-tab.png", full_page=True)


def test_the_run_tab_inside_airflows_own_run_page(
    airflow: LocalAirflow, ledger: Ledger, tmp_path: Path
):
    run_id = airflow.trigger(REALTIME, {"contact_ids": [SYNCED]})
    ledger.record_run(REALTIME, run_id, "on-demand", [Outcome(SYNCED, "unchanged", lead_id=41)])

    with chromium_page() as page:
        # The Contacts tab's own address in Airflow's UI (/plugin/<url_route> of the run).
        run_page = f"/dags/{REALTIME}/runs/{quote(run_id)}/plugin/contact-sync-run"
        sign_in(page, airflow, VIEWER, run_page)
        frame = page.frame_locator("iframe")
        frame.locator("tbody tr", has_text=SYNCED).wait_for()
        assert "unchanged" in frame.locator("tbody tr").first.inner_text()
        assert page.get_by_role("link", name="Contacts", exact=True).is_visible()
        page.screenshot(path=tmp_path / "airflow-run-contacts-tab.png", timeout=120_000)


def test_a_viewer_sees_the_errors_but_cannot_resync(
    airflow: LocalAirflow, ledger: Ledger, tmp_path: Path
):
    before = set(runs_of(airflow, REALTIME))

    with chromium_page() as page:
        sign_in(page, airflow, VIEWER, f"{PAGE}/errors")
        assert page.locator("tr", has_text=REJECTED_TOO).count() == 1
        assert page.get_by_role("button", name=re.compile("Re-sync")).count() == 0
        assert "You may view, not re-sync" in page.inner_text("body")
        page.screenshot(path=tmp_path / "errors-viewer.png", full_page=True)

    token = airflow.token(VIEWER.username, VIEWER.password)
    refused = httpx.post(
        f"{airflow.url}{PAGE}/resync",
        data={"all": "1"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert refused.status_code == 403
    assert "may not trigger" in refused.text
    assert set(runs_of(airflow, REALTIME)) == before


def test_a_malformed_search_gets_a_clear_message(
    airflow: LocalAirflow, ledger: Ledger, tmp_path: Path
):
    token = airflow.token(VIEWER.username, VIEWER.password)
    headers = {"Authorization": f"Bearer {token}"}

    answer = httpx.get(
        f"{airflow.url}{PAGE}/history", params={"id": "yvonne@x.example"}, headers=headers
    )
    by_lead = httpx.get(f"{airflow.url}{PAGE}/history", params={"id": "42"}, headers=headers)

    assert answer.status_code == 400
    assert "is neither a Dynamics contact id" in answer.text
    assert by_lead.status_code == 200
    assert REJECTED_TOO in by_lead.text  # lead 42's contact, rejected since


def test_a_missing_or_unreachable_ledger_is_said_on_the_page(
    airflow: LocalAirflow, ledger: Ledger, tmp_path: Path
):
    token = airflow.token(DEFAULT_ADMIN.username, DEFAULT_ADMIN.password)
    headers = {"Authorization": f"Bearer {token}"}
    path = "/api/v2/connections/contact_sync_ledger"
    original = airflow.request("GET", path).json()
    try:
        broken = {**original, "host": "/nonexistent-dir/ledger.db"}
        airflow.request("PATCH", path, json=broken)
        unreachable = httpx.get(f"{airflow.url}{PAGE}/errors", headers=headers, timeout=30)
        airflow.request("DELETE", path)
        missing = httpx.get(f"{airflow.url}{PAGE}/", headers=headers, timeout=30)
        with chromium_page() as page:
            page.set_content(missing.text)
            page.screenshot(path=tmp_path / "ledger-missing.png", full_page=True)
    finally:
        restored = {k: original[k] for k in ("connection_id", "conn_type", "host")}
        airflow.request("POST", "/api/v2/connections", json=restored)

    assert unreachable.status_code == 503
    assert "The sync ledger is not available" in unreachable.text
    assert "unable to open database file" in unreachable.text
    assert missing.status_code == 503
    assert "connection &#x27;contact_sync_ledger&#x27; is not defined" in missing.text
    assert httpx.get(f"{airflow.url}{PAGE}/", headers=headers, timeout=30).status_code == 200


def test_pages_show_ids_never_emails_or_names(airflow: LocalAirflow, ledger: Ledger):
    token = airflow.token(DEFAULT_ADMIN.username, DEFAULT_ADMIN.password)
    headers = {"Authorization": f"Bearer {token}"}
    paths = ["/", "/errors", f"/history?id={REJECTED_TOO}", f"/runs/{REALTIME}/{SEED_RUN}"]

    for path in paths:
        text = httpx.get(f"{airflow.url}{PAGE}{path}", headers=headers, timeout=30).text
        assert REJECTED_TOO in text or path == "/"
        assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text), path
