"""``AirflowClient``'s calls through the official ``apache-airflow-client`` (Airflow 3 REST API).

The client models ``POST /api/v2/dags/{dag_id}/dagRuns`` (``TriggerDAGRunPostBody`` has ``note`` and
always sends ``logical_date: null``) and maps statuses to typed exceptions (409 is
``ConflictException``). It has no method for the simple auth manager's ``POST /auth/token`` (its
``LoginApi`` is the browser redirect flow), so the token request goes through the same
``ApiClient.call_api``: one connection pool, one timeout, one exception tree.

The client is synchronous (urllib3); the forwarder calls it in a worker thread. Imported only by
``relay.airflow.AirflowClient``, on first use (it takes seconds to import).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from airflow_client.client import (
    ApiClient,
    Configuration,
    DagRunApi,
    MonitorApi,
    TriggerDAGRunPostBody,
)
from airflow_client.client.exceptions import ApiException, ConflictException
from airflow_client.client.rest import RESTResponse

from relay.airflow import (
    AirflowError,
    AirflowRejected,
    AirflowUnavailable,
    TriggerOutcome,
    jwt_expiry,
)
from relay.settings import RelaySettings

log = logging.getLogger(__name__)

# Statuses that say "not now" rather than "never for this batch": server errors, throttling, a
# token refused even after renewal, and the DAG not being there or not allowed yet (401/403/404
# happen while a deployment starts or is being fixed; failing every batch for them would need a
# manual replay of each one).
_RETRYABLE_STATUSES = frozenset({401, 403, 404, 408, 429})
_EXCERPT = 200


def _excerpt(exc: ApiException) -> str:
    body = (exc.body or "").replace("\n", " ")
    return body[:_EXCERPT]


def _bearer(token: str) -> dict[str, str]:
    """The generated client's per-request auth setting for a Bearer token."""
    return {"in": "header", "type": "bearer", "key": "Authorization", "value": f"Bearer {token}"}


class RestClient:
    """One ``ApiClient`` and one cached JWT, renewed before ``exp`` and once on a 401."""

    def __init__(self, settings: RelaySettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        configuration = Configuration(host=settings.airflow_url.rstrip("/"))
        # Retrying is the forwarder's job (bounded, with backoff, visible in the spool); urllib3's
        # own silent retries would hide outages and stretch the shutdown.
        configuration.retries = False
        self._api_client = ApiClient(configuration)
        self._dag_runs = DagRunApi(self._api_client)
        self._monitor = MonitorApi(self._api_client)
        self._token: str | None = None
        self._renew_at = float("inf")
        self._token_lock = threading.Lock()

    def _fetch_token(self) -> str:
        settings = self._settings
        try:
            response = self._api_client.call_api(
                "POST",
                f"{self._api_client.configuration.host}/auth/token",
                header_params={"Content-Type": "application/json", "Accept": "application/json"},
                body={"username": settings.airflow_username, "password": settings.airflow_password},
                _request_timeout=settings.airflow_timeout,
            )
            response.read()
            data = self._api_client.response_deserialize(response, {"2XX": "object"}).data
        except ApiException as exc:
            # 401/403 here means wrong credentials: an operator must fix the settings, the
            # events wait in the spool meanwhile.
            raise AirflowUnavailable(
                f"token request answered {exc.status}: {_excerpt(exc)}", exc.status
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise AirflowUnavailable(f"token request failed: {type(exc).__name__}") from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise AirflowUnavailable("token response has no access_token")
        log.info("obtained an Airflow API token")
        return token

    def token(self, *, renew: bool = False) -> str:
        """The cached JWT; a new one when asked, when none is cached, or when ``exp`` is near."""
        with self._token_lock:
            if renew or self._token is None or self._clock() >= self._renew_at:
                self._token = self._fetch_token()
                expiry = jwt_expiry(self._token)
                # A token without ``exp`` is kept until Airflow refuses it with a 401.
                self._renew_at = (
                    float("inf")
                    if expiry is None
                    else expiry - self._settings.token_refresh_margin_seconds
                )
            return self._token

    def probe(self) -> bool:
        """True when Airflow's API server answers its health endpoint (no token needed)."""
        try:
            response = self._monitor.get_health_without_preload_content(
                _request_timeout=self._settings.airflow_timeout
            )
            response.read()
        except urllib3.exceptions.HTTPError:
            return False
        return response.status < 500

    def active_runs(self) -> int | None:
        """How many runs of the DAG Airflow has queued or running; None when it cannot say
        (unreachable, refused). Blocking: call it in a thread."""
        try:
            raw = self._dag_runs.get_dag_runs_without_preload_content(
                self._settings.dag_id,
                state=["queued", "running"],
                limit=1,
                _request_timeout=self._settings.airflow_timeout,
                _request_auth=_bearer(self.token()),
            )
            body = raw.read()
        except (AirflowError, ApiException, urllib3.exceptions.HTTPError) as exc:
            log.debug("could not ask Airflow for active runs: %s", exc)
            return None
        if raw.status != 200:
            log.debug("asking Airflow for active runs answered %s", raw.status)
            return None
        try:
            total = json.loads(body)["total_entries"]
        except (ValueError, KeyError, TypeError):
            return None
        return total if isinstance(total, int) else None

    def trigger(self, dag_run_id: str, conf: dict[str, Any], note: str) -> TriggerOutcome:
        """Create the run ``dag_run_id``; 409 counts as done. Blocking: call it in a thread."""
        body = TriggerDAGRunPostBody(dag_run_id=dag_run_id, logical_date=None, conf=conf, note=note)
        try:
            return self._post_run(body, self.token())
        except AirflowUnavailable as exc:
            if exc.status != 401:
                raise
        log.warning("Airflow answered 401; renewing the token (attempt 2 of 2)")
        return self._post_run(body, self.token(renew=True))

    def _post_run(self, body: TriggerDAGRunPostBody, token: str) -> TriggerOutcome:
        try:
            # The response body is not used, so it is not parsed into a DAGRunResponse: a model
            # mismatch must not turn a created run into a failure.
            raw = self._dag_runs.trigger_dag_run_without_preload_content(
                self._settings.dag_id,
                body,
                _request_timeout=self._settings.airflow_timeout,
                _request_auth=_bearer(token),
            )
            # Wrapped as call_api would: the error body must stay readable for the exception.
            response = RESTResponse(raw)
            response.read()
            self._api_client.response_deserialize(response, {"2XX": None})
        except ConflictException:
            return TriggerOutcome.ALREADY_EXISTS
        except ApiException as exc:
            message = f"trigger answered {exc.status}: {_excerpt(exc)}"
            if exc.status is not None and (exc.status >= 500 or exc.status in _RETRYABLE_STATUSES):
                raise AirflowUnavailable(message, exc.status) from None
            raise AirflowRejected(message, exc.status) from None
        except urllib3.exceptions.HTTPError as exc:
            raise AirflowUnavailable(f"trigger failed: {type(exc).__name__}") from None
        return TriggerOutcome.CREATED
