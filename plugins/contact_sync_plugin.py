"""Airflow plugin: the "Contact sync" pages in Airflow 3's UI.

``fastapi_apps`` mounts :mod:`contact_sync.ui.app` on the API server at ``/contact-sync``;
``external_views`` adds "Contact sync" to the navigation and a "Contacts" tab to every DAG run
(Airflow replaces ``{DAG_ID}`` and ``{RUN_ID}`` in the link). See "Plugins" in Airflow's docs:
https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/plugins.html
The app checks Airflow's auth manager itself: Airflow does not protect plugin apps.
``listeners`` adds :mod:`contact_sync.run_note`: each finished run's outcome in its note.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from contact_sync import run_note
from contact_sync.ui.app import create_app

URL_PREFIX = "/contact-sync"


class ContactSyncPlugin(AirflowPlugin):
    """Mounts the pages and links them into Airflow's UI."""

    name = "contact_sync"
    listeners: ClassVar[list[Any]] = [run_note]
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Contact sync"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Contact sync",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "contact-sync",
        },
        {
            "name": "Contacts",
            "href": f"{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "contact-sync-run",
        },
    ]
