"""Fuzzing kept in the suite: a bounded hypothesis profile in ``make test``, a long one on demand.

``HYPOTHESIS_PROFILE=long`` (what ``make fuzz`` sets) multiplies the examples per property. The
profiles are applied per test (``@FUZZ``), not loaded globally, so other hypothesis tests keep
their own settings. Every property counts the inputs it tried; the total is printed at the end.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

_BOUNDED = 100
_LONG = 5000
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "bounded")
if PROFILE not in ("bounded", "long"):
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE must be 'bounded' or 'long', not {PROFILE!r}")

# No deadline: a slow example on a busy 2-core machine is not a failure; a hang is caught by the
# suite's pytest-timeout. Fixtures are module-scoped state the properties reset themselves.
FUZZ = settings(
    max_examples=_LONG if PROFILE == "long" else _BOUNDED,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: inputs tried, by target; printed by ``pytest_terminal_summary``.
TRIED: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TRIED:
        return
    parts = ", ".join(f"{target} {count}" for target, count in sorted(TRIED.items()))
    terminalreporter.write_line(
        f"fuzz ({PROFILE} profile): {sum(TRIED.values())} inputs tried: {parts}"
    )
