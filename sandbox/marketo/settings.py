"""Every knob of the Marketo sandbox, with the real service's values as defaults.

Settings are a flat dataclass of JSON types so ``/_sandbox/settings`` can show and change them.
Where Adobe's pages are silent, the chosen behaviour is a setting and says so.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from sandbox import defaults

LinkedCompanyWrite = typing.Literal["reject", "write_through"]


@dataclass
class MarketoSettings:
    # LaunchPoint custom service of the API-only user (https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/authentication).
    client_id: str = defaults.MARKETO_CLIENT_ID
    client_secret: str = defaults.MARKETO_CLIENT_SECRET
    api_user: str = defaults.MARKETO_API_USER
    token_lifetime_s: int = 3600
    # Real tokens end in ":<suffix>" ("int", "sj", ...); its meaning is not documented.
    token_suffix: str = "int"  # noqa: S105 - not a secret
    # Adobe removes the ``access_token`` query/form parameter on 2026-08-31 (Authentication
    # page); off by default so clients are tested the way the service will behave. When off,
    # such a token is treated as absent (what the real service answers then is not documented).
    accept_query_token: bool = False

    # Limits (https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/rest-api
    # and .../error-codes): None switches a limit off.
    rate_limit_calls: int | None = 100
    rate_limit_window_s: float = 20.0
    concurrency_limit: int | None = 10
    daily_quota: int | None = 50_000
    max_body_bytes: int = 1_048_576
    max_uri_bytes: int = 8_192

    # Lead database (https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/leads).
    max_filter_values: int = 300
    max_batch_size: int = 300
    max_filter_matches: int = 1_000
    max_sync_records: int = 300
    # Email lookups: case-insensitive per community evidence, unverified by Adobe.
    email_case_insensitive: bool = True
    partitions: list[str] = field(default_factory=lambda: ["Default"])

    # Companies (https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/companies;
    # ``company_mode`` in settings.yaml).
    # Native CRM sync makes the Company API read-only: writes answer 1018.
    crm_sync_enabled: bool = False
    # Sync Leads setting company fields on a lead linked to a company record: Adobe's docs say
    # 1021 ("reject"); a Marketo KB says the write lands on the company and so on every lead
    # linked to it ("write_through"). Conflicting sources, so both are offered.
    linked_company_write: LinkedCompanyWrite = "reject"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MarketoSettings:
        return cls().updated(data)

    def updated(self, changes: dict[str, Any]) -> MarketoSettings:
        """A copy with ``changes`` applied; ``ValueError`` names an unknown key or a wrong type."""
        hints = typing.get_type_hints(type(self))
        for key, value in changes.items():
            if key not in hints:
                raise ValueError(f"unknown Marketo sandbox setting {key!r}")
            if not _fits(value, hints[key]):
                raise ValueError(f"setting {key!r} cannot be {value!r}")
        return dataclasses.replace(self, **changes)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a settings annotation (the few shapes used above)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)
