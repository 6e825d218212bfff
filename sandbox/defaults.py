"""Fixed sandbox credentials and ports, documented in the README and used by tests and the demo.

They are not secrets: they only open the local sandbox.
"""

from __future__ import annotations

HOST = "127.0.0.1"
DATAVERSE_PORT = 8701
MARKETO_PORT = 8702

# Entra ID + Dataverse (the recipe's Tenant_ID, Client_ID, Client_Secret, Resource_URL).
TENANT_ID = "8d3a5c1e-2f4b-4e6a-9c7d-0d365a4d0001"
DYNAMICS_CLIENT_ID = "4f1c2b3a-5d6e-4f70-8a9b-0d365a4d0002"
DYNAMICS_CLIENT_SECRET = "sandbox-dynamics-client-secret"  # noqa: S105 - public sandbox value

# Marketo LaunchPoint custom service of an API-only user.
MARKETO_MUNCHKIN_ID = "123-ABC-456"
MARKETO_CLIENT_ID = "5b2e9c4d-sandbox-marketo-client"
MARKETO_CLIENT_SECRET = "sandbox-marketo-client-secret"  # noqa: S105 - public sandbox value
MARKETO_API_USER = "sync@sandbox.example"
