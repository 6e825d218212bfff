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

# The port stays visible, and must be filled in, because of the UI's Test button: the connection
# list posts the stored connection with ``port: Number(port)``, which is 0 for a connection saved
# without one, and ``POST /api/v2/connections/test`` then answers 400 "The host or port to test
# differs from the stored connection" (Airflow 3.3.2: ``_same_endpoint`` in apache/airflow's
# ``airflow/api_fastapi/core_api/routes/public/connections.py`` treats "" and None as unset, not
# 0). A saved port makes both sides equal; tests/ui/test_connection_form.py pins both cases.
# The hooks accept the URL's own port (443 for https) and never write a default port into the
# URL (see ``hooks._http.with_port``).
PORT_LABEL = "Port (443, or the one in the URL)"
PORT_PLACEHOLDER = "443 (Airflow's Test button needs it)"


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
        "hidden-fields": ["schema"],
        "relabeling": {
            "host": "Environment URL",
            "port": PORT_LABEL,
            "login": "Client ID",
            "password": "Client secret",
        },
        "placeholders": {
            "host": "https://contoso.crm.dynamics.com",
            "port": PORT_PLACEHOLDER,
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
        "hidden-fields": ["schema"],
        "relabeling": {
            "host": "REST endpoint or Munchkin ID",
            "port": PORT_LABEL,
            "login": "Client ID",
            "password": "Client secret",
        },
        "placeholders": {
            "host": "https://123-ABC-456.mktorest.com or 123-ABC-456",
            "port": PORT_PLACEHOLDER,
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
