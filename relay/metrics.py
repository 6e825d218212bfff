"""Process-local counters rendered in the Prometheus text format (``GET /metrics``).

Counters start at zero with the process, as Prometheus expects; what must survive a restart (the
spool depth, failed events) is read from the spool at scrape time instead.
"""

from __future__ import annotations

import threading
from collections import Counter

from relay.limits import RelayLimits
from relay.spool import SpoolStats

# name -> help text; a name with a label appears as name{label="value"}.
_COUNTERS = {
    "relay_webhooks_received_total": "Webhook requests received.",
    "relay_webhooks_accepted_total": "Webhook events stored in the spool.",
    "relay_webhooks_duplicate_total": "Redelivered webhook events already in the spool.",
    "relay_webhooks_ignored_total": "Valid webhooks for entities or messages the relay ignores.",
    "relay_webhooks_rejected_total": "Webhook requests refused, by reason.",
    "relay_events_forwarded_total": "Events delivered to Airflow (run created or already there).",
    "relay_batches_total": "Batches finished, by outcome.",
    "relay_batches_held_total": "Times a due batch waited while Airflow had enough active runs.",
    "relay_forward_failures_total": "Failed delivery attempts, by kind.",
}


class Metrics:
    """Thread-safe counters; labels are fixed small sets (reasons, outcomes), never ids."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[tuple[str, str, str]] = Counter()

    def inc(self, name: str, amount: int = 1, *, label: tuple[str, str] = ("", "")) -> None:
        if name not in _COUNTERS:
            raise KeyError(f"unknown metric {name}")
        with self._lock:
            self._values[(name, *label)] += amount

    def value(self, name: str, *, label: tuple[str, str] = ("", "")) -> int:
        with self._lock:
            return self._values[(name, *label)]

    def render(self, spool: SpoolStats, airflow_reachable: bool | None, limits: RelayLimits) -> str:
        with self._lock:
            values = dict(self._values)
        lines: list[str] = []
        for name, help_text in _COUNTERS.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            samples = sorted((key, value) for key, value in values.items() if key[0] == name)
            if not samples:
                lines.append(f"{name} 0")
            for (_, label_name, label_value), value in samples:
                labels = f'{{{label_name}="{label_value}"}}' if label_name else ""
                lines.append(f"{name}{labels} {value}")
        gauges = {
            "relay_spool_pending_events": ("Events waiting for Airflow.", spool.pending),
            "relay_spool_failed_events": ("Events in batches Airflow refused.", spool.failed),
            "relay_spool_bytes": (
                "Bytes of the spool's pages in use (see Spool.live_bytes).",
                spool.live_bytes,
            ),
            "relay_spool_alarm_bytes": (
                "/healthz turns unhealthy past this.",
                limits.spool_alarm_bytes,
            ),
            "relay_spool_max_bytes": (
                "Webhooks are refused (503) past this.",
                limits.spool_max_bytes,
            ),
            "relay_spool_alarm": (
                "1 when the spool is past its alarm size.",
                int(spool.live_bytes >= limits.spool_alarm_bytes),
            ),
            "relay_airflow_reachable": (
                "1 if the last Airflow request got an answer, 0 if not, -1 before the first.",
                -1 if airflow_reachable is None else int(airflow_reachable),
            ),
        }
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"
