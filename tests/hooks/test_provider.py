"""The provider registers both connection types, their form, and the hooks' own Test button."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

from contact_sync.hooks import dynamics, marketo
from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import MarketoHook
from contact_sync.provider import PACKAGE_NAME, PORT_LABEL, get_provider_info

# Run in a fresh interpreter with no PYTHONPATH: the entry point and the hook classes must be
# found from the installed distribution alone, as in an Airflow component started anywhere.
DISCOVER = """
import json, sys
from airflow.providers_manager import ProvidersManager
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
pm = ProvidersManager()
hooks = {t: pm.hooks[t] for t in ("dynamics365", "marketo")}
meta = {m.connection_type: m.model_dump() for m in HookMetaService.hook_meta_data()
        if m.connection_type in hooks}
print(json.dumps({
    "hooks": {t: [h.hook_class_name, h.connection_id_attribute_name, h.connection_testable]
              for t, h in hooks.items()},
    "meta": meta,
}))
"""


def discover() -> dict:
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": "/nonexistent-airflow-home"}
    out = subprocess.run(
        [sys.executable, "-c", DISCOVER], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_distribution_declares_the_entry_point():
    entry_points = importlib.metadata.distribution(PACKAGE_NAME).entry_points
    assert [(e.group, e.value) for e in entry_points] == [
        ("apache_airflow_provider", "contact_sync.provider:get_provider_info")
    ]


def test_airflow_finds_both_connection_types_without_pythonpath():
    found = discover()

    assert found["hooks"] == {
        "dynamics365": ["contact_sync.hooks.dynamics.DynamicsHook", "dynamics365_conn_id", True],
        "marketo": ["contact_sync.hooks.marketo.MarketoHook", "marketo_conn_id", True],
    }
    dv, mk = found["meta"]["dynamics365"], found["meta"]["marketo"]
    assert dv["hook_name"] == DynamicsHook.hook_name
    assert mk["hook_name"] == MarketoHook.hook_name
    assert dv["standard_fields"]["host"]["title"] == "Environment URL"
    assert mk["standard_fields"]["host"]["title"] == "REST endpoint or Munchkin ID"
    for meta in (dv, mk):
        assert meta["standard_fields"]["login"]["title"] == "Client ID"
        assert meta["standard_fields"]["password"]["title"] == "Client secret"
        # Shown: the UI's Test button needs a stored port (see contact_sync.provider).
        assert meta["standard_fields"]["port"]["hidden"] is False
        assert meta["standard_fields"]["port"]["title"] == PORT_LABEL
        assert meta["standard_fields"]["url_schema"]["hidden"] is True
    titles = {k: v["schema"]["title"] for k, v in dv["extra_fields"].items()}
    assert titles == {
        "tenant_id": "Tenant ID",
        "authority_host": "Authority host",
        "api_version": "Web API version",
    }
    assert dv["extra_fields"]["api_version"]["value"] == "v9.2"


def test_the_form_fields_are_extras_the_hooks_read():
    by_type = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}

    assert set(by_type["dynamics365"]["conn-fields"]) <= set(dynamics._EXTRAS)
    assert set(by_type["marketo"].get("conn-fields", {})) <= set(marketo._EXTRAS)
    assert by_type["dynamics365"]["hook-class-name"].endswith(DynamicsHook.__name__)
    assert by_type["marketo"]["connection-type"] == MarketoHook.conn_type
