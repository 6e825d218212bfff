"""A clock the tests can move forward, so token expiry and rate windows need no sleeping."""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall-clock seconds plus an offset that only ever grows (``advance``)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, as the sandbox sees them."""
        return time.time() + self._offset

    def monotonic(self) -> float:
        """Monotonic seconds, shifted by the same offset (for windows and lifetimes)."""
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
