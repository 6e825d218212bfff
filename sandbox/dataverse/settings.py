"""Every knob of the Entra ID + Dataverse sandbox, with the documented defaults.

The settings travel as JSON over ``/_sandbox/settings``: ``to_json`` and ``updated`` are the only
ways in and out, so an unknown or mistyped key is refused instead of silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sandbox import defaults


@dataclass
class DataverseSettings:
    # --- Entra ID -------------------------------------------------------------------------------
    tenant_id: str = defaults.TENANT_ID
    # client id -> client secret of the app registrations that may ask for tokens
    clients: dict[str, str] = field(
        default_factory=lambda: {defaults.DYNAMICS_CLIENT_ID: defaults.DYNAMICS_CLIENT_SECRET}
    )
    token_lifetime_s: int = 3599
    # Entra's HTTP status for invalid_client is not verified (docs say 400 for errors in general,
    # clients in the wild see 401); 401 is what MSAL-based clients observe.
    invalid_client_status: int = 401
    # The environment URL a token's scope/resource must name, and the base of every absolute URL
    # the Web API returns. None = the origin the request arrived on, so a random port works.
    org_url: str | None = None

    # --- Organization (webhook payloads) --------------------------------------------------------
    organization_id: str = "0d365a4d-5a1d-4b0c-8e55-5a4db0c00001"
    organization_name: str = "unq0d365a4d5a1d4b0c8e555a4db0c0"
    business_unit_id: str = "0d365a4d-5a1d-4b0c-8e55-5a4db0c00002"

    # --- Web API --------------------------------------------------------------------------------
    max_page_size: int = 5000
    count_limit: int = 5000
    max_url_length: int = 32768
    # Too-long URLs: IIS answers 414; the docs only give the limit (NOT FOUND: the exact status).
    url_too_long_status: int = 414

    # --- Service protection limits (per client, i.e. per application user) ----------------------
    requests_per_window: int = 6000
    window_s: float = 300.0
    max_concurrent: int = 52
    # Concurrency refusals carry a Retry-After too; its value is NOT FOUND in the docs.
    concurrency_retry_after_s: int = 1
    # Retry-After of a 429 injected by a fault plan (small, so tests of retrying clients are fast)
    fault_retry_after_s: int = 1

    # --- Webhooks -------------------------------------------------------------------------------
    webhook_timeout_s: float = 60.0
    webhook_max_payload_bytes: int = 256 * 1024
    # NOT FOUND: the value of x-ms-dynamics-msg-size-exceeded and the POST's Content-Type.
    webhook_size_exceeded_header_value: str = "true"
    webhook_content_type: str = "application/json; charset=utf-8"
    # NOT FOUND: whether a Merge fires Update steps on the subordinate it deactivates (it is an
    # update of statecode, statuscode, merged and masterid). On by default: a sync must then act
    # on either signal, and off shows the Merge step alone.
    merge_fires_subordinate_update: bool = True

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: dict[str, Any]) -> DataverseSettings:
        """A copy with ``changes`` applied; unknown keys and wrong types raise ``ValueError``."""
        known = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown settings: {unknown}; known: {sorted(known)}")
        current = self.to_json()
        for name, value in changes.items():
            current[name] = _coerce(name, value, current[name])
        return DataverseSettings(**current)


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name == "org_url":
        if value is not None and not isinstance(value, str):
            raise ValueError("org_url must be a string or null")
        return value.rstrip("/") if value else None
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(value, bool):
        raise ValueError(f"{name} does not take a boolean")
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be an object")
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(current, float):
        if not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        return float(value)
    if isinstance(current, int):
        if not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value
