"""The forwarder: spooled events → DAG runs, in batches, until Airflow has every one.

One asyncio task in the relay process, started and stopped with the app's lifespan:

1. A batch claimed earlier but not finished (the relay stopped mid-delivery) is resent first,
   under the same ``dag_run_id``.
2. Otherwise it claims pending events as a new batch when one is due (leading edge, then
   batching). A full batch is always due. A partial one is due at once when no batch went
   within the batch window (a lone event after a quiet spell waits for nothing), and else when
   the window since the last batch has passed: events arriving together, or while a trigger
   was in flight, go in one run. A due partial batch waits longer (up to the maximum wait after
   its oldest event) while Airflow already has enough runs of the DAG queued or running (asked
   only when a batch went lately): another run would only compete for task slots, so the batch
   grows instead. A slow bulk import makes a few full runs, not one per window. Holding ends
   once no event came for ``HOLD_QUIET_SECONDS``: the import is over, the batch cannot grow,
   and waiting on would only delay its last contacts (up to the maximum wait). With
   ``batch_leading_edge`` off the window counts from the oldest pending event instead, so every
   event waits it whole (the rule before the leading edge, kept to compare with).
3. It triggers the run. Created or 409 (Airflow already has that run id) → ``sent``. Connection
   errors, 5xx and other "not now" answers → the batch stays pending and is retried after a
   bounded exponential backoff. Any other 4xx → ``failed`` with Airflow's reason.

Every event of a batch goes into the conf, also several of one contact: the DAG de-duplicates,
and each event is ~250 bytes of ids, so a full batch of 300 stays under 100 KB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from relay.airflow import AirflowClient, AirflowRejected, AirflowUnavailable, TriggerOutcome
from relay.metrics import Metrics
from relay.settings import RelaySettings
from relay.spool import FAILED, SENT, Batch, Spool

log = logging.getLogger(__name__)

# While a due batch is held, Airflow is asked this often how many runs it has.
_HOLD_RECHECK_SECONDS = 1.0
# A held batch goes once no event came for this long: the events stopped (a bulk import ended),
# so it cannot grow, and holding it to the maximum wait (30 s) only delayed the last contacts of
# a 5,000-contact burst by that much. Longer than the gaps of a slow import's webhooks.
HOLD_QUIET_SECONDS = 3.0


def batch_note(batch: Batch) -> str:
    """The run's note: what the batch holds, for an operator reading the Airflow UI."""
    events = batch.events
    kinds = Counter(f"{event.entity} {event.message}" for event in events)
    times = sorted(event.occurred_at for event in events if event.occurred_at)
    records = len({(event.entity, event.id) for event in events})
    parts = [
        f"Relay batch of {len(events)} event(s) for {records} record(s)",
        ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())),
    ]
    if times:
        parts.append(f"occurred {times[0]} to {times[-1]}")
    return "; ".join(parts) + "."


class Forwarder:
    """Delivers the spool to Airflow; ``airflow_reachable`` caches what it last saw."""

    def __init__(
        self,
        settings: RelaySettings,
        spool: Spool,
        metrics: Metrics,
        client: AirflowClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._metrics = metrics
        self._client = client
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = settings.backoff_initial_seconds
        self._last_claimed_at = float("-inf")  # when the last new batch was claimed
        # When the webhook handler last stored an event (-inf after a start: the spooled events
        # are not arriving, nothing to wait for).
        self._last_event_at = float("-inf")
        self.airflow_reachable: bool | None = None

    def notify(self) -> None:
        """A new event is in the spool (called by the webhook handler)."""
        self._last_event_at = self._clock()
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay-forwarder")

    async def stop(self) -> None:
        """Finish the in-flight request (bounded by its timeouts), start nothing new."""
        self._stopping.set()
        self._wakeup.set()
        if self._task is None:
            return
        grace = sum(self._settings.airflow_timeout) * 2 + 1
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            log.error("forwarder did not stop within %.0f s; its batch is resent at start", grace)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pause(self, seconds: float | None) -> bool:
        """Sleep until woken, stopped or ``seconds`` passed; True when woken or stopped."""
        if self._stopping.is_set():
            return True
        try:
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        log.info("forwarder started (dag %s)", self._settings.dag_id)
        while not self._stopping.is_set():
            try:
                batch = await asyncio.to_thread(self._spool.open_batch)
                if batch is None:
                    batch = await self._next_batch()
                if batch is not None and not await self._deliver(batch):
                    await self._back_off()
            except Exception:
                # The loop must outlive a bad moment (disk full, locked DB): the events are safe
                # in the spool and the next round retries.
                log.exception("forwarder round failed")
                await self._back_off()
        log.info("forwarder stopped")

    async def _back_off(self) -> None:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._settings.backoff_max_seconds)
        await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _next_batch(self) -> Batch | None:
        """Claim a batch when one is due; None after waiting (the caller loops)."""
        # Cleared before counting, so an event stored after the count still wakes us.
        self._wakeup.clear()
        count, oldest = await asyncio.to_thread(self._spool.unassigned)
        # ``oldest`` is None only with ``count == 0`` (one query reads both): no events yet.
        if count == 0 or oldest is None:
            if not await self._pause(self._settings.airflow_probe_seconds):
                self.airflow_reachable = await asyncio.to_thread(self._client.probe)
            return None
        settings, now = self._settings, self._clock()
        if count < settings.batch_max_events:
            due_in = self._due_at(oldest) - now
            if due_in > 0:
                await self._pause(due_in)
                return None
            hold_left = oldest + settings.batch_max_wait_seconds - now
            # Only after a batch sent lately is Airflow likely busy: an isolated event is not
            # worth a question.
            recent = now - self._last_claimed_at < settings.batch_max_wait_seconds
            arriving = now - self._last_event_at < HOLD_QUIET_SECONDS
            if hold_left > 0 and recent and arriving and await self._airflow_busy():
                self._metrics.inc("relay_batches_held_total")
                # Not woken by each new event: that would ask Airflow once per event.
                quiet_left = self._last_event_at + HOLD_QUIET_SECONDS - now
                await self._sleep(min(_HOLD_RECHECK_SECONDS, hold_left, quiet_left))
                return None
        self._last_claimed_at = now
        return await asyncio.to_thread(self._spool.claim_batch, settings.batch_max_events)

    def _due_at(self, oldest: float) -> float:
        """When a partial batch whose oldest event came at ``oldest`` may go."""
        window = self._settings.batch_window_seconds
        if self._settings.batch_leading_edge:
            # At once after a quiet window; else one trigger per window, the events in between
            # together. Counted from the last claim: a slow trigger call already coalesced.
            return max(oldest, self._last_claimed_at + window)
        return oldest + window

    async def _airflow_busy(self) -> bool:
        """Airflow has the runs a partial batch waits for; False when it cannot say."""
        active = await asyncio.to_thread(self._client.active_runs)
        return active is not None and active >= self._settings.batch_hold_active_runs

    async def _deliver(self, batch: Batch) -> bool:
        """Send one batch; False when it must be retried later."""
        conf = {"events": [event.to_conf() for event in batch.events]}
        try:
            outcome = await asyncio.to_thread(
                self._client.trigger, batch.batch_id, conf, batch_note(batch)
            )
        except AirflowRejected as exc:
            self.airflow_reachable = True
            await asyncio.to_thread(self._spool.finish_batch, batch.batch_id, FAILED, str(exc))
            self._metrics.inc("relay_batches_total", label=("outcome", "failed"))
            self._metrics.inc("relay_forward_failures_total", label=("kind", "rejected"))
            log.error(
                "Airflow refused batch %s (%d events), marked failed: %s",
                batch.batch_id,
                len(batch.events),
                exc,
            )
            return True
        except AirflowUnavailable as exc:
            # An answer below 500 (throttled, DAG missing) still means the server is there.
            self.airflow_reachable = exc.status is not None and exc.status < 500
            await asyncio.to_thread(self._spool.record_attempt, batch.batch_id, str(exc))
            kind = "connection" if exc.status is None else f"http_{exc.status}"
            self._metrics.inc("relay_forward_failures_total", label=("kind", kind))
            log.warning(
                "batch %s not delivered (attempt %d, retrying in %.1f s): %s",
                batch.batch_id,
                batch.attempts + 1,
                self._backoff,
                exc,
            )
            return False
        self.airflow_reachable = True
        self._backoff = self._settings.backoff_initial_seconds
        await asyncio.to_thread(self._spool.finish_batch, batch.batch_id, SENT)
        self._metrics.inc("relay_events_forwarded_total", len(batch.events))
        self._metrics.inc("relay_batches_total", label=("outcome", "sent"))
        log.info(
            "batch %s delivered: %d events (%s)",
            batch.batch_id,
            len(batch.events),
            "run created" if outcome is TriggerOutcome.CREATED else "run already existed",
        )
        await asyncio.to_thread(
            self._spool.prune_sent, self._clock() - self._settings.sent_retention_seconds
        )
        return True
