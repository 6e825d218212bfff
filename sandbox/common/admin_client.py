"""A small client for the admin endpoints (``/_sandbox/...``) both sandboxes serve."""

from __future__ import annotations

from typing import Any

import requests


class SandboxAdmin:
    """Inspect, seed, reset and break a sandbox over HTTP, as a test or the demo would."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def get(self, path: str, **params: Any) -> Any:
        response = self._session.get(
            f"{self.base_url}/_sandbox/{path.lstrip('/')}", params=params, timeout=self.timeout
        )
        response.raise_for_status()
        return response.json()

    def post(self, path: str, json: Any = None) -> Any:
        response = self._session.post(
            f"{self.base_url}/_sandbox/{path.lstrip('/')}", json=json, timeout=self.timeout
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def calls(self) -> dict[str, Any]:
        """``{"total": n, "by_endpoint": {"GET /route": n}, "answers": {"200": n}}``."""
        return self.get("calls")

    def reset(self) -> None:
        """Back to the start: no records, no counters, no faults, default settings."""
        self.post("reset")

    def set_faults(self, plan: dict[str, Any]) -> None:
        self.post("faults", plan)

    def clear_faults(self) -> None:
        self.post("faults", {})

    def settings(self, **changes: Any) -> dict[str, Any]:
        """Change settings (limits, token lifetime, ...) and return them all."""
        return self.post("settings", changes) if changes else self.get("settings")

    def advance_clock(self, seconds: float) -> None:
        self.post("clock", {"advance_s": seconds})
