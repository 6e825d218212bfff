"""What every benchmark shares: the sandboxes in this process, a worker process to measure, live
progress, the results file and the summary table.

The sandboxes run in threads of the benchmark's own process and the code under test in a *spawned*
worker, so the worker's peak RSS counts only what the sync itself holds: not the
sandboxes' 100,000 records, and not pages a ``fork`` would have copied from this process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench import PROJECT_ROOT, RESULTS_DIR
from contact_sync.report import text_table
from devenv.sandbox import connection_env
from sandbox.common.server import ServerThread
from sandbox.dataverse import DataverseService
from sandbox.marketo import MarketoService
from sandbox.marketo.admin import MarketoAdmin

ResultT = TypeVar("ResultT")


@dataclass
class Sandboxes:
    """Both sandbox services, served on loopback from threads of this process."""

    dataverse: DataverseService
    marketo: MarketoService
    dataverse_url: str
    marketo_url: str

    def reset(self, *, marketo_settings: Mapping[str, Any]) -> None:
        """Empty both services, then apply the Marketo settings (limits) of the next run."""
        self.dataverse.reset()
        self.marketo.reset()
        self.marketo.update_settings(dict(marketo_settings))

    def add_lead_field(self, name: str) -> None:
        """A custom Marketo lead field, through the admin API as an operator would add it."""
        MarketoAdmin(self.marketo_url).add_field(name)

    def api_calls(self) -> dict[str, dict[str, Any]]:
        """The sandboxes' own count of API calls (not what the hooks think): per service,
        ``{"total": n, "by_endpoint": {...}, "answers": {status or error code: n}}``."""
        return {
            "dataverse": self.dataverse.calls.snapshot(),
            "marketo": self.marketo.calls.snapshot(),
        }

    def connection_env(
        self, *, marketo_extra: Mapping[str, Any], dynamics_extra: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` for the worker's hooks."""
        return connection_env(
            self.dataverse_url,
            self.marketo_url,
            dynamics_extra=dynamics_extra,
            marketo_extra=marketo_extra,
        )


@contextmanager
def running_sandboxes() -> Iterator[Sandboxes]:
    """Both sandboxes on free loopback ports until the block ends."""
    dataverse, marketo = DataverseService(), MarketoService()
    servers = [ServerThread(dataverse.app).start(), ServerThread(marketo.app).start()]
    try:
        yield Sandboxes(dataverse, marketo, servers[0].url, servers[1].url)
    finally:
        for server in servers:
            server.stop()


def run_in_worker(function: Callable[..., ResultT], *args: Any) -> ResultT:
    """``function(*args)`` in a fresh spawned process; its result (picklable) comes back."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def prepare_worker(env: Mapping[str, str]) -> None:
    """Environment of a worker that imports the hooks (and so Airflow).

    Airflow writes its config under ``AIRFLOW_HOME`` on first import; the Makefile's default keeps
    it inside the project rather than in the user's home.
    """
    os.environ.setdefault("AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow"))
    os.environ.update(env)


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage().ru_maxrss``: Linux carries that high-water mark over an ``exec``, so a
    spawned worker would report the RSS of the benchmark's process (holding the sandboxes) at the
    moment it was forked. ``VmHWM`` belongs to the worker's own address space.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status: peak RSS is measured on Linux only")


class Progress:
    """One status line, rewritten in place on a terminal; elsewhere (CI logs) a line every few
    seconds and at the end."""

    _LOG_EVERY_S = 5.0

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._started = self._printed = time.monotonic()
        self._tty = sys.stdout.isatty()

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        finished = self.done >= self.total
        if not (self._tty or finished or now - self._printed >= self._LOG_EVERY_S):
            return
        self._printed = now
        line = f"  {self.label}: {self.done:,}/{self.total:,} ({now - self._started:.1f} s)"
        if self._tty:
            print(f"\r{line}", end="\n" if finished else "", flush=True)
        else:
            print(line, flush=True)


def add_sizes_argument(parser: argparse.ArgumentParser, sizes: Sequence[int]) -> None:
    """``--contacts N [N ...]``: the dataset sizes a benchmark runs, ``sizes`` by default."""
    parser.add_argument(
        "--contacts",
        type=int,
        nargs="+",
        default=list(sizes),
        metavar="N",
        help=f"contact counts to run (default: {' '.join(map(str, sizes))})",
    )


def save_results(benchmark: str, results: Mapping[str, Any]) -> Path:
    """Write ``results`` to ``bench/results/<benchmark>-<UTC time>.json``; the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{benchmark}-{stamp}.json"
    path.write_text(json.dumps({"benchmark": benchmark, "at": stamp, **results}, indent=2) + "\n")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [headers, *[[_cell(value) for value in row] for row in rows]]
    return "\n".join(text_table(cells, right_align=True))


def ratio(value: float, reference: float) -> str:
    """``value`` beside its reference, as the issue asks for every figure."""
    return f"{value / reference:.2f}×" if reference else "-"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0.5 for p50) of ``values``, interpolated between the two nearest
    ranks, as numpy's default does."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * fraction
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


# Marketo's answers to a call over the rate (606) or concurrency (615) limit (Adobe's error
# codes page, https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes).
LIMIT_REFUSALS = ("606", "615")


def marketo_calls(snapshot: Mapping[str, Any]) -> dict[str, int]:
    """A Marketo sandbox's call count split as the limits see it: ``rest`` (counted by the rate
    limit), ``identity`` (tokens, not counted) and ``refused`` (REST calls answered 606/615)."""
    rest = sum(
        count
        for endpoint, count in snapshot["by_endpoint"].items()
        if endpoint.split(" ", 1)[-1].startswith("/rest/")
    )
    refused = sum(snapshot["answers"].get(code, 0) for code in LIMIT_REFUSALS)
    return {"rest": rest, "identity": snapshot["total"] - rest, "refused": refused}


def calls_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The calls a sandbox counted from snapshot ``before`` to ``after`` (same shape)."""

    def minus(new: Mapping[str, int], old: Mapping[str, int]) -> dict[str, int]:
        return {
            key: count - old.get(key, 0) for key, count in new.items() if count > old.get(key, 0)
        }

    return {
        "total": after["total"] - before["total"],
        "by_endpoint": minus(after["by_endpoint"], before["by_endpoint"]),
        "answers": minus(after["answers"], before["answers"]),
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
