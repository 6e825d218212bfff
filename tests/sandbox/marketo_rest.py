"""A deliberately thin REST caller for the Marketo sandbox tests: real HTTP, no product code.

It adds nothing the tests assert on: no retries, no envelope checks, so every answer the sandbox
gives reaches the test as it was sent.
"""

from __future__ import annotations

from typing import Any

import requests

from sandbox import defaults

TOKEN_PATH = "/identity/oauth/token"


class MarketoRest:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self._token: str | None = None

    def identity(self, method: str = "GET", **overrides: str) -> requests.Response:
        params = {
            "grant_type": "client_credentials",
            "client_id": defaults.MARKETO_CLIENT_ID,
            "client_secret": defaults.MARKETO_CLIENT_SECRET,
            **overrides,
        }
        return self.session.request(method, self.base_url + TOKEN_PATH, params=params, timeout=10)

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.identity().json()["access_token"]
        return self._token

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        anonymous: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """One REST call with ``Authorization: Bearer`` (this caller's token unless ``token``
        is given; none at all when ``anonymous``)."""
        headers = kwargs.pop("headers", {})
        if not anonymous:
            headers["Authorization"] = f"Bearer {token or self.token}"
        return self.session.request(
            method, self.base_url + path, headers=headers, timeout=10, **kwargs
        )

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.call("GET", path, params=params).json()

    def sync(self, input_: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        return self.call("POST", "/rest/v1/leads.json", json={"input": input_, **options}).json()

    def lookup(self, filter_type: str, values: list[str], **params: Any) -> dict[str, Any]:
        return self.get(
            "/rest/v1/leads.json", filterType=filter_type, filterValues=",".join(values), **params
        )


def error_code(answer: dict[str, Any]) -> str:
    """The code of a ``success:false`` envelope (fails the test when the call succeeded)."""
    assert answer["success"] is False, answer
    return answer["errors"][0]["code"]


def reasons(answer: dict[str, Any]) -> list[str | None]:
    """Per record: the first skip reason's code, or None for a written record."""
    assert answer["success"] is True, answer
    return [r["reasons"][0]["code"] if r["status"] == "skipped" else None for r in answer["result"]]
