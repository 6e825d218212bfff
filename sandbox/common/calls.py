"""Counts API calls per endpoint and answers per status/code, for tests and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class CallCounter:
    def __init__(self) -> None:
        self._by_endpoint: Counter[str] = Counter()
        self._answers: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, endpoint: str, answer: str) -> None:
        """``endpoint`` is ``"METHOD /route/template"``; ``answer`` a status or error code."""
        with self._lock:
            self._by_endpoint[endpoint] += 1
            self._answers[answer] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self._by_endpoint.values()),
                "by_endpoint": dict(self._by_endpoint),
                "answers": dict(self._answers),
            }

    def count(self, endpoint: str) -> int:
        with self._lock:
            return self._by_endpoint[endpoint]

    def reset(self) -> None:
        with self._lock:
            self._by_endpoint.clear()
            self._answers.clear()
