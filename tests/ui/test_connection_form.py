"""The two connection types in Airflow's own UI, in a real browser against a live Airflow.

Signed in through the simple auth manager's login page, a user adds a Dynamics 365 and a Marketo
connection through the form (the relabelled and custom fields visible), presses **Test** and sees
the hook's own answer: success against the sandbox, and a message naming the credentials when the
secret is wrong. The port is filled in: without one, Airflow 3.3.2's Test button posts port 0 and
the API refuses the test (the last test pins that, see ``contact_sync.provider``). Screenshots of
each step are saved under the test's ``tmp_path``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from contact_sync.provider import PORT_LABEL
from devenv.airflow import DEFAULT_ADMIN, LocalAirflow
from devenv.browser import chromium_missing, chromium_page
from sandbox import defaults

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

# Slow machines: every page and API answer of a freshly started Airflow may take a while.
STEP_MS = 120_000
START_S = 600
TEST_PATH = "/api/v2/connections/test"


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


def add_connection(
    page,
    airflow: LocalAirflow,
    conn_id: str,
    type_name: str,
    standard: dict[str, str],
    extra: dict[str, tuple[str, str]] | None = None,
    shot: Shots | None = None,
) -> None:
    """Fill the Add Connection form (Standard Fields open, then Extra Fields) and save it."""
    page.goto(f"{airflow.url}/connections", wait_until="domcontentloaded")
    page.get_by_role("button", name="Add Connection").click()
    page.locator("input[name=connection_id]").fill(conn_id)
    page.get_by_role("combobox").click()
    page.keyboard.type(type_name)
    page.keyboard.press("Enter")
    page.get_by_label("Client secret").wait_for()
    # The service's words on the standard fields; schema is hidden, the port shown (the Test
    # button needs a stored port: see contact_sync.provider).
    assert page.get_by_label(PORT_LABEL, exact=True).count() == 1
    assert page.get_by_label("Schema", exact=True).count() == 0
    for label, value in standard.items():
        page.get_by_label(label).first.fill(value)
    if shot:
        shot(f"{conn_id}-standard-fields")
    if extra is not None:
        # The custom fields: the form's "Extra Fields" section (one section open at a time).
        # Airflow 3.3 does not tie their labels to the inputs (``for`` names another id), so
        # the label is checked as text and the input found by its name, element_<extra key>.
        page.get_by_role("button", name="Extra Fields", exact=True).click()
        for label, (key, value) in extra.items():
            assert page.get_by_text(label, exact=True).first.is_visible(), label
            page.locator(f"input[name=element_{key}]").fill(value)
        assert page.locator("input[name=element_api_version]").input_value() == "v9.2"
        if shot:
            shot(f"{conn_id}-extra-fields")
    page.get_by_role("button", name="Save").click()
    row(page, conn_id).wait_for()


def row(page, conn_id: str):
    return page.get_by_role("row").filter(has_text=conn_id)


def press_test(page, conn_id: str, expected: str | None = None) -> tuple[str, dict, object]:
    """Press the list's Test button of ``conn_id``.

    Answers the toast's text once it says ``expected`` (or "" when None), the JSON body the UI
    posted to the test endpoint, and the endpoint's answer (a Playwright ``Response``).
    """
    # The previous Test button keeps focus and its tooltip, which can cover this row's button.
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement?.blur()")
    with page.expect_response(lambda r: r.url.endswith(TEST_PATH)) as answer:
        row(page, conn_id).get_by_role("button", name="Test Connection").click()
    sent = answer.value.request.post_data_json
    if expected is None:
        return "", sent, answer.value
    message = page.get_by_text(expected).first
    message.wait_for()
    return message.inner_text(), sent, answer.value


def saved_connection(airflow: LocalAirflow, conn_id: str) -> dict:
    return airflow.request("GET", f"/api/v2/connections/{conn_id}").json()


def test_dynamics365_connection_through_the_form(airflow_live, sandbox_servers, page, tmp_path):
    shot = Shots(page, tmp_path)
    dataverse = sandbox_servers.dataverse.url
    sign_in(page, airflow_live)
    extra = {
        "Tenant ID": ("tenant_id", defaults.TENANT_ID),
        "Authority host": ("authority_host", dataverse),
    }
    for conn_id, secret in (("dv_form", defaults.DYNAMICS_CLIENT_SECRET), ("dv_wrong", "nope")):
        standard = {
            "Environment URL": dataverse,
            PORT_LABEL: str(urlsplit(dataverse).port),
            "Client ID": defaults.DYNAMICS_CLIENT_ID,
            "Client secret": secret,
        }
        add_connection(page, airflow_live, conn_id, "Dynamics 365", standard, extra, shot=shot)

    success, sent, answer = press_test(page, "dv_form", "contacts are readable")
    shot("dynamics-test-success")
    failure, _, _ = press_test(page, "dv_wrong", "Credentials: Entra ID refused")
    shot("dynamics-test-wrong-secret")

    assert dataverse in success
    assert "AADSTS7000215" in failure
    assert "connection '" not in failure  # Airflow tests it under a random transient id
    saved = saved_connection(airflow_live, "dv_form")
    assert (saved["conn_type"], saved["host"]) == ("dynamics365", dataverse)
    # What the UI posts: the stored connection, masked secret and stored port included.
    assert (sent["port"], sent["password"]) == (saved["port"], "***")
    assert answer.json()["status"] is True
    assert json.loads(saved["extra"])["tenant_id"] == defaults.TENANT_ID


def test_marketo_connection_through_the_form(airflow_live, sandbox_servers, page, tmp_path):
    shot = Shots(page, tmp_path)
    marketo = sandbox_servers.marketo.url
    sign_in(page, airflow_live)
    for conn_id, secret in (("mk_form", defaults.MARKETO_CLIENT_SECRET), ("mk_wrong", "nope")):
        standard = {
            "REST endpoint or Munchkin ID": marketo,
            PORT_LABEL: str(urlsplit(marketo).port),
            "Client ID": defaults.MARKETO_CLIENT_ID,
            "Client secret": secret,
        }
        add_connection(page, airflow_live, conn_id, "Adobe Marketo", standard, shot=shot)

    success, _, _ = press_test(page, "mk_form", "lead fields")
    shot("marketo-test-success")
    failure, _, _ = press_test(page, "mk_wrong", "Credentials: Marketo refused")
    shot("marketo-test-wrong-secret")

    assert marketo in success
    assert "invalid_client" in failure
    assert "connection '" not in failure
    saved = saved_connection(airflow_live, "mk_form")
    assert (saved["conn_type"], saved["host"]) == ("marketo", marketo)
    assert saved["port"] == urlsplit(marketo).port


def test_without_a_port_airflow_refuses_the_test(airflow_live, sandbox_servers, page, tmp_path):
    """Why the form shows the port: Airflow 3.3.2's Test button posts 0 for a missing port.

    If this starts failing, Airflow has fixed it: the port can be hidden again.
    """
    shot = Shots(page, tmp_path)
    marketo = sandbox_servers.marketo.url
    sign_in(page, airflow_live)
    standard = {
        "REST endpoint or Munchkin ID": marketo,
        "Client ID": defaults.MARKETO_CLIENT_ID,
        "Client secret": defaults.MARKETO_CLIENT_SECRET,
    }
    add_connection(page, airflow_live, "mk_no_port", "Adobe Marketo", standard)

    _, sent, answer = press_test(page, "mk_no_port")
    shot("marketo-test-without-port")

    assert saved_connection(airflow_live, "mk_no_port")["port"] is None
    assert sent["port"] == 0
    assert answer.status == 400
    assert "differs from the stored connection" in answer.json()["detail"]
