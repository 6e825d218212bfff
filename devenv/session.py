"""What a foreground run of local services (the demo, the live benchmarks) needs around it: a state
directory emptied at each start, SIGTERM unwinding like Ctrl-C through the ``finally`` that stops
every process, and deafness to both signals while stopping.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def reset_state_dir(state_dir: Path, marker: str, owner: str) -> None:
    """Empty ``state_dir`` (creating it) and mark it with the file ``marker``, naming ``owner``.

    Only a directory marked so (or an empty one) is emptied: a mistyped path must not wipe
    anything else.
    """
    if state_dir.exists() and any(state_dir.iterdir()) and not (state_dir / marker).exists():
        raise SystemExit(f"{state_dir} is not empty and not a state directory of {owner}")
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    (state_dir / marker).write_text(f"state of {owner}; emptied at each start\n")


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises ``SystemExit`` in the block, which unwinds like Ctrl-C."""

    def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deaf_to_stop_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored in the block: an impatient second Ctrl-C while stopping must
    not leave orphans behind."""
    handlers = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
