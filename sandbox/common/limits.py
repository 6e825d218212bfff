"""Rate and concurrency limits as the real services enforce them (thread-safe, clock-driven)."""

from __future__ import annotations

import threading
from collections import deque

from sandbox.common.clock import Clock


class SlidingWindowLimiter:
    """At most ``max_calls`` in any trailing ``window_s`` seconds.

    ``acquire`` records the call and returns ``None`` when it is allowed, or the seconds until a
    slot frees (what a ``Retry-After`` should say) when it is refused. Refused calls are not
    recorded, as neither service counts them against the window.
    """

    def __init__(self, max_calls: int | None, window_s: float, clock: Clock) -> None:
        self.max_calls = max_calls
        self.window_s = window_s
        self._clock = clock
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float | None:
        if not self.max_calls:
            return None
        now = self._clock.monotonic()
        with self._lock:
            while self._calls and self._calls[0] <= now - self.window_s:
                self._calls.popleft()
            if len(self._calls) >= self.max_calls:
                return max(self._calls[0] + self.window_s - now, 0.001)
            self._calls.append(now)
            return None

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()


class ConcurrencyGate:
    """At most ``limit`` requests in flight; ``enter`` refuses at once past that."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.limit and self._in_flight >= self.limit:
                return False
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
            return True

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def reset(self) -> None:
        with self._lock:
            self.peak = self._in_flight


class Quota:
    """A plain counter with a ceiling (Marketo's daily quota)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                return False
            self.used += 1
            return True

    def reset(self) -> None:
        with self._lock:
            self.used = 0
