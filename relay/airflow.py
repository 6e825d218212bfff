"""What the relay asks of Airflow (``AirflowClient``: trigger a run, count active runs, probe
health), and the outcomes and errors of those calls.

The calls go through the official ``apache-airflow-client`` (``relay.airflow_rest``). Its package
imports every API and model at once, seconds of CPU on a busy machine, and a restarted relay must
answer webhooks at once (Dataverse does not resend a webhook that met a closed port): so
``AirflowClient`` loads it in a worker thread while the relay already serves (``load()``, started
by the app's lifespan), or at the first call that needs it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from relay.settings import RelaySettings

if TYPE_CHECKING:
    from relay.airflow_rest import RestClient

log = logging.getLogger(__name__)

# Logged once the REST client is built: until then the relay serves, but the import competes for
# its CPU (a load test waits for this line to measure the relay at its steady state).
REST_CLIENT_LOADED = "Airflow REST client loaded"


class TriggerOutcome(enum.Enum):
    CREATED = "created"
    ALREADY_EXISTS = "already_exists"  # 409: the run id is known, so this batch was delivered


class AirflowError(Exception):
    """A trigger or token request did not succeed; ``status`` is None for connection errors."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AirflowUnavailable(AirflowError):
    """Try again later: connection error, 5xx, throttling, auth or deployment not ready."""


class AirflowRejected(AirflowError):
    """Airflow refused this batch (400, 422, ...); sending it again will not help."""


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified: we only need to know when to ask for a new one."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
    except (IndexError, ValueError, binascii.Error):
        return None
    return float(exp) if isinstance(exp, int | float) else None


class AirflowClient:
    """The relay's calls to Airflow; the REST client behind them is built on first use."""

    def __init__(self, settings: RelaySettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._rest: RestClient | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the REST client now (blocking, seconds: call it in a thread)."""
        self._client()

    def _client(self) -> RestClient:
        with self._lock:
            if self._rest is None:
                began = time.monotonic()
                # Here, not at the top: importing it is what a restarted relay must not wait for.
                from relay.airflow_rest import RestClient

                self._rest = RestClient(self._settings, clock=self._clock)
                log.info("%s in %.1f s", REST_CLIENT_LOADED, time.monotonic() - began)
            return self._rest

    def token(self, *, renew: bool = False) -> str:
        """The cached JWT; a new one when asked, when none is cached, or when ``exp`` is near."""
        return self._client().token(renew=renew)

    def probe(self) -> bool:
        """True when Airflow's API server answers its health endpoint (no token needed)."""
        return self._client().probe()

    def active_runs(self) -> int | None:
        """How many runs of the DAG Airflow has queued or running; None when it cannot say
        (unreachable, refused). Blocking: call it in a thread."""
        return self._client().active_runs()

    def trigger(self, dag_run_id: str, conf: dict[str, Any], note: str) -> TriggerOutcome:
        """Create the run ``dag_run_id``; 409 counts as done. Blocking: call it in a thread."""
        return self._client().trigger(dag_run_id, conf, note)
