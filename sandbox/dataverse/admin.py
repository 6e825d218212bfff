"""Typed helpers over the Dataverse sandbox's admin endpoints (``/_sandbox/...``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from sandbox import defaults
from sandbox.common.admin_client import SandboxAdmin

FINISHED = (30, 31)  # asyncoperation statuscode Succeeded, Failed


class DataverseAdmin(SandboxAdmin):
    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/data/v9.2"

    def access_token(
        self,
        client_id: str = defaults.DYNAMICS_CLIENT_ID,
        client_secret: str = defaults.DYNAMICS_CLIENT_SECRET,
    ) -> str:
        """A token from the sandbox's Entra ID (v2.0 endpoint) for its Web API."""
        response = self._session.post(
            f"{self.base_url}/{defaults.TENANT_ID}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "scope": f"{self.base_url}/.default",
            },
            timeout=self.timeout,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def api_session(self, token: str | None = None) -> requests.Session:
        """A session that sends what Dataverse clients send: a Bearer token (``token``, or a new
        one) and OData headers."""
        session = requests.Session()
        session.headers.update(
            {
                "Authorization": f"Bearer {token or self.access_token()}",
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            }
        )
        return session

    def seed(
        self,
        contacts: Iterable[Mapping[str, Any]] = (),
        accounts: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, list[str]]:
        """Insert rows (accounts first) without firing webhooks; returns the new ids by set."""
        return self.post("seed", {"contacts": list(contacts), "accounts": list(accounts)})

    def records(self, entity_set: str) -> list[dict[str, Any]]:
        """Every row of ``contacts`` or ``accounts``, with all columns."""
        return self.get(f"records/{entity_set}")["value"]

    def record(self, entity_set: str, record_id: str) -> dict[str, Any] | None:
        response = self._session.get(
            f"{self.base_url}/_sandbox/records/{entity_set}/{record_id}", timeout=self.timeout
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def register_webhook(
        self,
        url: str,
        auth_type: str,
        auth_value: str | Mapping[str, str],
        messages: Iterable[str] = ("Create", "Update"),
        filtering_attributes: Iterable[str] | None = None,
        entity: str = "contact",
        pre_image: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register a webhook endpoint with a step per message on ``entity`` (``contact`` or
        ``account``).

        ``auth_value`` is the key for ``WebhookKey`` and ``{name: value}`` pairs for
        ``HttpHeader`` / ``HttpQueryString``. ``messages`` are among Create, Update, Delete and
        Merge; ``pre_image`` (``{"alias": ..., "attributes": [...] or None}``) registers an image
        on the Update and Delete steps.
        """
        return self.post(
            "webhooks",
            {
                "url": url,
                "auth_type": auth_type,
                "auth_value": auth_value if isinstance(auth_value, str) else dict(auth_value),
                "messages": list(messages),
                "filtering_attributes": list(filtering_attributes or []) or None,
                "entity": entity,
                "pre_image": dict(pre_image) if pre_image else None,
            },
        )

    def webhooks(self) -> list[dict[str, Any]]:
        return self.get("webhooks")["value"]

    def delete_webhooks(self) -> None:
        response = self._session.delete(f"{self.base_url}/_sandbox/webhooks", timeout=self.timeout)
        response.raise_for_status()

    def deliveries(self) -> list[dict[str, Any]]:
        """The system-job-like log of webhook deliveries, oldest first."""
        return self.get("deliveries")["value"]

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Poll until at least ``count`` deliveries have finished; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            done = [d for d in self.deliveries() if d["statuscode"] in FINISHED]
            if len(done) >= count:
                return done
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)} of {count} webhook deliveries finished")
            time.sleep(0.02)
