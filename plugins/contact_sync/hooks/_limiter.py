"""A client-side call limiter: a sliding window of calls plus a cap on calls in flight.

Marketo counts calls per instance (100 per 20 s, 10 at once) and answers 606/615 past that; staying
under the limits on our side is cheaper than retrying. Every hook in the process that talks to the
same instance with the same client id and settings shares one limiter (:func:`shared_limiter`).
Other processes (other Airflow workers) are not seen: cap those with an Airflow pool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimiterSettings:
    max_calls: int  # in any trailing ``window_s``
    window_s: float
    max_concurrent: int


class CallLimiter:
    """Blocks callers until a call fits both the window and the concurrency cap; thread-safe."""

    def __init__(
        self,
        settings: LimiterSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._started: deque[float] = deque()
        self._lock = threading.Lock()
        self._in_flight = threading.BoundedSemaphore(settings.max_concurrent)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the concurrent slots and one call of the window for the ``with`` body."""
        with self._in_flight:
            self._wait_for_window()
            yield

    def _wait_for_window(self) -> None:
        window = self.settings.window_s
        while True:
            with self._lock:
                now = self._clock()
                while self._started and self._started[0] <= now - window:
                    self._started.popleft()
                if len(self._started) < self.settings.max_calls:
                    self._started.append(now)
                    return
                wait = self._started[0] + window - now
            log.debug("Client-side rate limit reached; waiting %.2f s", wait)
            self._sleep(wait)


_shared: dict[tuple[str, str, LimiterSettings], CallLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(base_url: str, client_id: str, settings: LimiterSettings) -> CallLimiter:
    """The process-wide limiter for one instance and client id (and limiter settings)."""
    key = (base_url.lower(), client_id, settings)
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None:
            limiter = _shared[key] = CallLimiter(settings)
        return limiter
