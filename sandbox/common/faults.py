"""Fault injection: a share of answers replaced by a given error, and added latency.

A plan is JSON so tests and the demo can set it over the admin API::

    {"seed": 7, "latency_ms": 50,
     "rules": [{"answer": "606", "share": 0.3, "path": "/rest/v1/leads", "limit": 20}]}

``answer`` is service-specific (an HTTP status such as ``"429"``/``"503"``, a Marketo code such as
``"606"``, or ``"drop"`` to close the connection); each service decides how to render it.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FaultRule:
    answer: str
    share: float = 1.0
    path: str = ""  # prefix of the request path the rule applies to ("" = every API path)
    method: str = ""  # "" = any method
    limit: int | None = None  # stop after this many injections
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.limit is not None and self.fired >= self.limit:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return path.startswith(self.path)


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)
    latency_ms: int = 0
    seed: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultPlan:
        known = {"answer", "share", "path", "method", "limit"}
        rules = []
        for raw in data.get("rules", []):
            unknown = set(raw) - known
            if unknown or "answer" not in raw:
                raise ValueError(f"a fault rule takes {sorted(known)}; got {sorted(raw)}")
            share = float(raw.get("share", 1.0))
            if not 0.0 <= share <= 1.0:
                raise ValueError("share must be between 0 and 1")
            rules.append(FaultRule(**{k: raw[k] for k in raw if k in known}))
        return cls(rules=rules, latency_ms=int(data.get("latency_ms", 0)), seed=data.get("seed"))

    def to_json(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "seed": self.seed,
            "rules": [
                {
                    "answer": r.answer,
                    "share": r.share,
                    "path": r.path,
                    "method": r.method,
                    "limit": r.limit,
                    "fired": r.fired,
                }
                for r in self.rules
            ],
        }


class FaultInjector:
    """Holds the current plan and draws from it, deterministically when the plan has a seed."""

    def __init__(self) -> None:
        self._plan = FaultPlan()
        self._random = random.Random()  # noqa: S311 - not for security
        self._lock = threading.Lock()

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._random = random.Random(plan.seed)  # noqa: S311

    def clear(self) -> None:
        self.set_plan(FaultPlan())

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    @property
    def latency_s(self) -> float:
        return self._plan.latency_ms / 1000.0

    def draw(self, method: str, path: str) -> str | None:
        """The answer to inject for this request, or None to serve it normally."""
        with self._lock:
            for rule in self._plan.rules:
                if rule.matches(method, path) and self._random.random() < rule.share:
                    rule.fired += 1
                    return rule.answer
        return None
