"""The two connection types in Airflow's own UI, in a real browser against a live Airflow.

Signed in through the simple auth manager's login page, a user adds a Dynamics 365 and a Marketo
connection through the form (the relabelled and custom fields visible), presses **Test** and sees
the hook's own answer: success against the sandbox, and a message naming the credentials when the
secret is wrong. Screenshots of each step are saved under the test's ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.airflow import DEFAULT_ADMIN, LocalAirflow
from devenv.browser import chromium_missing, chromium_page
from sandbox import defaults

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

# Slow machines: every page and API answer of a freshly started Airflow may take a while.
STEP_MS = 120_000
START_S = 600


@pytest.fixture(scope="module")
def airflow_live(airflow_instances, tmp_path_factory) -> Iterator[LocalAirflow]:
    """This module's own Airflow: no DAGs (the form needs none) and the Test button enabled.

    Not the shared instance of ``devenv.pytest_plugin``: its start-up deadline is too short for
    a 2-core machine under load, and nothing else uses this configuration. The shared one is
    stopped first, so two never crowd the machine.
    """
    airflow_instances.close()
    airflow = LocalAirflow(
        tmp_path_factory.mktemp("airflow-home"),
        tmp_path_factory.mktemp("no-dags"),
        port=0,
        # Airflow 3 disables the Test button unless this is set; deployments need it too.
        env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
    )
    try:
        airflow.start(timeout=START_S)
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture
def page(tmp_path):
    if reason := chromium_missing():
        pytest.skip(reason)
    with chromium_page() as page:
        page.set_default_timeout(STEP_MS)
        yield page


class Shots:
    def __init__(self, page, folder: Path) -> None:
        self.page, self.folder, self.count = page, folder, 0

    def __call__(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True)
        (path.with_suffix(".html")).write_text(self.page.content())
        return path


def sign_in(page, airflow: LocalAirflow) -> None:
    page.goto(f"{airflow.url}/", wait_until="domcontentloaded")
    page.locator("input[name=username]").fill(DEFAULT_ADMIN.username)
    page.locator("input[name=password]").fill(DEFAULT_ADMIN.password)
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Admin").wait_for()


def open_new_connection(page, airflow: LocalAirflow, conn_id: str, type_name: str) -> None:
    page.goto(f"{airflow.url}/connections", wait_until="domcontentloaded")
    page.get_by_role("button", name="Add Connection").click()
    page.locator("input[name=connection_id]").fill(conn_id)
    page.get_by_role("combobox").click()
    page.keyboard.type(type_name)
    page.keyboard.press("Enter")
    page.get_by_label("Client secret").wait_for()
    # The custom fields sit in the collapsed "Extra Fields" section of Airflow 3's form.
    extra = page.get_by_role("button", name="Extra Fields", exact=True)
    if extra.count():
        extra.click()


def press_test(page, expected: str) -> str:
    page.get_by_role("button", name="Test Connection").click()
    message = page.get_by_text(expected).first
    message.wait_for()
    return message.inner_text()


def saved_connection(airflow: LocalAirflow, conn_id: str) -> dict:
    return airflow.request("GET", f"/api/v2/connections/{conn_id}").json()


def test_dynamics365_connection_through_the_form(airflow_live, sandbox_servers, page, tmp_path):
    shot = Shots(page, tmp_path)
    dataverse = sandbox_servers.dataverse.url
    sign_in(page, airflow_live)
    open_new_connection(page, airflow_live, "dv_form", "Dynamics 365")
    shot("dynamics-form-empty")

    # The standard fields carry the service's words; schema and port are hidden.
    for label in ("Environment URL", "Client ID", "Client secret", "Tenant ID", "Authority host"):
        assert page.get_by_label(label).first.is_visible(), label
    assert page.get_by_label("Port").count() == 0
    assert page.get_by_label("Web API version").first.input_value() == "v9.2"

    page.get_by_label("Environment URL").fill(dataverse)
    page.get_by_label("Client ID").fill(defaults.DYNAMICS_CLIENT_ID)
    page.get_by_label("Client secret").fill("not-the-secret")
    page.get_by_label("Tenant ID").fill(defaults.TENANT_ID)
    page.get_by_label("Authority host").fill(dataverse)
    failure = press_test(page, "Credentials: Entra ID refused")
    shot("dynamics-test-wrong-secret")
    assert "AADSTS7000215" in failure
    assert "not-the-secret" not in failure

    page.get_by_label("Client secret").fill(defaults.DYNAMICS_CLIENT_SECRET)
    success = press_test(page, "contacts are readable")
    shot("dynamics-test-success")
    assert dataverse in success

    page.get_by_role("button", name="Save").click()
    page.get_by_text("dv_form").first.wait_for()
    shot("dynamics-saved")
    saved = saved_connection(airflow_live, "dv_form")
    assert saved["conn_type"] == "dynamics365"
    assert saved["host"] == dataverse
    assert '"tenant_id": "' + defaults.TENANT_ID in saved["extra"].replace('":"', '": "')


def test_marketo_connection_through_the_form(airflow_live, sandbox_servers, page, tmp_path):
    shot = Shots(page, tmp_path)
    marketo = sandbox_servers.marketo.url
    sign_in(page, airflow_live)
    open_new_connection(page, airflow_live, "mk_form", "Adobe Marketo")
    shot("marketo-form-empty")

    for label in ("REST endpoint or Munchkin ID", "Client ID", "Client secret"):
        assert page.get_by_label(label).first.is_visible(), label

    page.get_by_label("REST endpoint or Munchkin ID").fill(marketo)
    page.get_by_label("Client ID").fill(defaults.MARKETO_CLIENT_ID)
    page.get_by_label("Client secret").fill("not-the-secret")
    failure = press_test(page, "Credentials: Marketo refused")
    shot("marketo-test-wrong-secret")
    assert "not-the-secret" not in failure

    page.get_by_label("Client secret").fill(defaults.MARKETO_CLIENT_SECRET)
    success = press_test(page, "lead fields")
    shot("marketo-test-success")
    assert marketo in success

    page.get_by_role("button", name="Save").click()
    page.get_by_text("mk_form").first.wait_for()
    saved = saved_connection(airflow_live, "mk_form")
    assert (saved["conn_type"], saved["host"]) == ("marketo", marketo)
