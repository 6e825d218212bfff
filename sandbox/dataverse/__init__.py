"""The Entra ID + Dataverse Web API sandbox (Microsoft Learn:
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/overview).

One Starlette app serves Entra ID's token endpoints, the Web API v9.2 for ``contacts`` and
``accounts`` (with the ``EntityDefinitions`` Microsoft's Python SDK reads), webhooks on contact
create/update, and the ``/_sandbox/`` admin API.
"""

from sandbox.dataverse.service import DataverseService
from sandbox.dataverse.settings import DataverseSettings

__all__ = ["DataverseService", "DataverseSettings"]
