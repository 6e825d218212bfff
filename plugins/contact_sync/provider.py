"""The Airflow provider info of this project: the connection types ``dynamics365`` and ``marketo``.

Airflow discovers it through the ``apache_airflow_provider`` entry point of the distribution in
``provider/`` (see the comment in its ``pyproject.toml``). Airflow 3.2+ builds the connection
form from the declarative ``conn-fields`` and ``ui-field-behaviour`` keys below, without importing
the hooks; the hook methods ``get_connection_form_widgets`` / ``get_ui_field_behaviour`` are
deprecated since then (``airflow/providers_manager.py``, and
https://airflow.apache.org/docs/apache-airflow-providers/howto/create-custom-providers.html), so
the hooks do not define them. The form's extra fields are stored in the Connection's ``extra``
under their own names, which are the extras the hooks read. Importing this module imports no
Airflow code: every Airflow process calls it at start-up.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "contact-sync-airflow-provider"  # the distribution's name, as Airflow checks it


def _text(label: str, description: str, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    return {"label": label, "description": description, "schema": schema}


DYNAMICS365 = {
    "connection-type": "dynamics365",
    "hook-class-name": "contact_sync.hooks.dynamics.DynamicsHook",
    "hook-name": "Dynamics 365 (Dataverse Web API)",
    "conn-fields": {
        "tenant_id": _text(
            "Tenant ID",
            "Required. The Entra ID directory (tenant) id of the app registration, or its domain "
            "(contoso.onmicrosoft.com).",
        ),
        "authority_host": _text(
            "Authority host",
            "Entra ID's sign-in host. Change it only for a national cloud "
            "(https://login.microsoftonline.us for US Government).",
            "https://login.microsoftonline.com",
        ),
        "api_version": _text("Web API version", "The Dataverse Web API version.", "v9.2"),
    },
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port"],
        "relabeling": {
            "host": "Environment URL",
            "login": "Client ID",
            "password": "Client secret",
        },
        "placeholders": {
            "host": "https://contoso.crm.dynamics.com",
            "login": "Application (client) id of the app registration",
            "password": "A client secret of the app registration",
        },
    },
}

MARKETO = {
    "connection-type": "marketo",
    "hook-class-name": "contact_sync.hooks.marketo.MarketoHook",
    "hook-name": "Adobe Marketo Engage",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port"],
        "relabeling": {
            "host": "REST endpoint or Munchkin ID",
            "login": "Client ID",
            "password": "Client secret",
        },
        "placeholders": {
            "host": "https://123-ABC-456.mktorest.com or 123-ABC-456",
            "login": "Client id of the LaunchPoint custom service",
            "password": "Client secret of the LaunchPoint custom service",
        },
    },
}


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads (``airflow/provider_info.schema.json``)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Dynamics 365 to Marketo contact sync",
        "description": "Connection types for Dataverse (Dynamics 365) and Adobe Marketo Engage.",
        "versions": ["0.1.0"],
        "connection-types": [DYNAMICS365, MARKETO],
    }
