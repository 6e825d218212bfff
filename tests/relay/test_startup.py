"""A restarted relay must serve webhooks at once: Dataverse does not resend a webhook that met a
closed port. The Airflow REST client takes seconds to import on a busy machine, so the relay
loads it beside serving, never before (``AirflowClient.load``, started by the app's lifespan)."""

from __future__ import annotations

import subprocess
import sys

from devenv.service import PROJECT_ROOT

CHECK = """
import sys
import relay.app
from relay.airflow import AirflowClient
from relay.settings import RelaySettings
print("after import:", "airflow_client.client" in sys.modules)
settings = RelaySettings(airflow_url="http://127.0.0.1:9", airflow_username="u",
                         airflow_password="p", webhook_keys=("k",), spool_path="unused")
AirflowClient(settings).load()
print("after load:", "airflow_client.client" in sys.modules)
"""


def test_the_relay_imports_the_rest_client_only_when_loading_it():
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={"PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}"},
        timeout=120,
        check=True,
    )
    assert result.stdout.splitlines() == ["after import: False", "after load: True"]
