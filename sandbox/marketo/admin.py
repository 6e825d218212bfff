"""Typed helpers over the Marketo sandbox's admin API, for tests and the demo."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import requests

from sandbox.common.admin_client import SandboxAdmin


class MarketoAdmin(SandboxAdmin):
    def seed_leads(self, leads: list[dict[str, Any]]) -> list[int]:
        """Insert leads as given (no dedupe, no limits, not counted); their new ids in order."""
        return self.post("leads", leads)["ids"]

    def leads(self, **filters: Any) -> list[dict[str, Any]]:
        """Every lead whose fields equal ``filters`` (all leads without filters), as the API shows
        them: company fields of a linked lead come from its company record."""
        return self.get("leads", **filters)

    def lead(self, lead_id: int) -> dict[str, Any] | None:
        try:
            return self.get(f"leads/{lead_id}")
        except requests.HTTPError as error:
            if error.response is not None and error.response.status_code == HTTPStatus.NOT_FOUND:
                return None
            raise

    def writes(self) -> dict[int, dict[str, int]]:
        """Lead id → how often Sync Leads created it, changed it, or wrote it again unchanged
        (a sandbox-only count: real Marketo keeps no such tally)."""
        return {int(lead_id): counts for lead_id, counts in self.get("writes").items()}

    def quota(self) -> dict[str, Any]:
        """Today's daily quota: ``{"limit": n or None, "used": n, "day": "YYYY-MM-DD"}`` (CST)."""
        return self.get("quota")

    def add_field(
        self, name: str, data_type: str = "string", display_name: str | None = None
    ) -> dict[str, Any]:
        """Add a custom lead field; returns its describe item (as ``describe.json`` lists it)."""
        return self.post(
            "fields", {"name": name, "data_type": data_type, "display_name": display_name}
        )

    def companies(self) -> list[dict[str, Any]]:
        return self.get("companies")

    def seed_companies(self, companies: list[dict[str, Any]]) -> list[int]:
        """Insert company records (each needs a unique ``externalCompanyId``); their ids."""
        return self.post("companies", companies)["ids"]
