"""On the wire: the JSON envelope, error codes, request ids, timestamps, paging tokens."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

# Real responses say exactly this (Adobe's Authentication page and real recordings), not
# Starlette's "application/json".
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"

# Response-level messages from the error-code table
# (https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes); the rate
# and concurrency texts are built by ``rate_limit_message``/``concurrency_message`` instead.
MESSAGES = {
    "600": "Access token not specified",
    "601": "Access token invalid",
    "602": "Access token expired",
    "603": "Access denied",
    "604": "Request time-out",
    "605": "HTTP Method not supported",
    "607": "Daily quota reached",
    "608": "API Temporarily Unavailable",
    "609": "Invalid JSON",
    "610": "Requested resource not found",
    "611": "System error",
    "612": "Invalid Content Type",
    "713": "Transient Error",
    "1018": "CRM Enabled",
}

# Codes the table marks with an asterisk: they count neither toward the rate limit nor the quota.
UNCOUNTED_CODES = frozenset({"601", "602", "604", "605", "608", "611"})


def rate_limit_message(calls: int | None, window_s: float) -> str:
    return f"Max rate limit '{calls}' exceeded with in '{window_s:g}' secs"


def concurrency_message(limit: int | None) -> str:
    return f"Concurrent access limit '{limit}' reached"


class ApiError(Exception):
    """A response-level failure: HTTP 200 with ``success:false`` and this code."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message if message is not None else MESSAGES[code]


def reason(code: str, message: str) -> dict[str, str]:
    """A record-level reason as it appears in ``reasons[]`` of a skipped record."""
    return {"code": code, "message": message}


class RequestIds:
    """``<hex>#<hex>`` like ``60e#1742d32d58e``: a counter and the epoch milliseconds."""

    def __init__(self) -> None:
        self._counter = itertools.count(0x1000)
        self._lock = threading.Lock()

    def next(self, now: float) -> str:
        with self._lock:
            serial = next(self._counter)
        return f"{serial:x}#{int(now * 1000):x}"


class MarketoJSONResponse(Response):
    media_type = JSON_CONTENT_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def success(request_id: str, result: list[Any], **extra: Any) -> MarketoJSONResponse:
    # Lead-database answers leave out empty ``errors``/``warnings`` (real recordings).
    return MarketoJSONResponse(
        {"requestId": request_id, "result": result, "success": True, **extra}
    )


def failure(request_id: str, code: str, message: str) -> MarketoJSONResponse:
    return MarketoJSONResponse(
        {"requestId": request_id, "success": False, "errors": [{"code": code, "message": message}]}
    )


def iso(timestamp: float) -> str:
    """Lead timestamps as real responses show them: ISO-8601 UTC with ``Z``, whole seconds."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_values(raw: Iterable[str]) -> list[str]:
    """``fields``/``filterValues`` arrive comma-separated, repeated, or both (Swagger ``multi``)."""
    return [part.strip() for value in raw for part in value.split(",") if part.strip()]


class PagingTokens:
    """Opaque, position-based ``nextPageToken``s bound to the query that issued them.

    Real tokens look like ``BFRV7OMVSNJWDVKVTUFS3XHT4E======`` (base32); these carry the next
    offset and a fingerprint of the query, so a token replayed with another filter is refused.
    """

    @staticmethod
    def issue(query_key: str, offset: int) -> str:
        payload = struct.pack(">I", offset) + _fingerprint(query_key)
        return base64.b32encode(payload).decode("ascii")

    @staticmethod
    def offset(token: str, query_key: str) -> int:
        """The offset a token stands for; ``ApiError`` 1003 for a foreign or broken token."""
        try:
            payload = base64.b32decode(token)
        except ValueError:
            payload = b""
        if len(payload) != 12 or payload[4:] != _fingerprint(query_key):
            # The real code and text for a bad token are not documented; 1003 is the lead
            # database's "invalid data".
            raise ApiError("1003", "Invalid nextPageToken")
        return struct.unpack(">I", payload[:4])[0]


def _fingerprint(query_key: str) -> bytes:
    return hashlib.sha256(query_key.encode("utf-8")).digest()[:8]
