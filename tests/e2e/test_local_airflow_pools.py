"""``LocalAirflow`` creates its pools through the REST API at start; on SQLite that write can meet
a running task's lock and answer 500, which start() must ride out rather than fail on (seen when the
reconciliation DAG's first run started as Airflow came up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devenv import airflow as local_airflow
from devenv.airflow import AirflowApiError, LocalAirflow


class Answers:
    """Stands in for ``LocalAirflow.request``: raises the scripted errors, then succeeds."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, method: str, path: str, *, json: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, json))
        if self.statuses:
            status = self.statuses.pop(0)
            raise AirflowApiError(method, path, status, '{"detail": "Database error"}')
        return self

    def json(self) -> dict[str, Any]:
        return {"create": {"success": ["marketo_api"], "errors": []}}


@pytest.fixture
def airflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalAirflow:
    monkeypatch.setattr(local_airflow, "_POLL_SECONDS", 0.0)
    return LocalAirflow(tmp_path, tmp_path, port=0)


def test_pools_are_created_again_after_a_database_error(airflow, monkeypatch):
    answers = Answers(500, 500)
    monkeypatch.setattr(airflow, "request", answers)

    airflow._create_pools()

    assert len(answers.calls) == 3
    method, path, body = answers.calls[-1]
    assert (method, path) == ("PATCH", "/api/v2/pools")
    [action] = body["actions"]
    assert action["action_on_existence"] == "overwrite"  # what makes sending it again safe
    assert [pool["name"] for pool in action["entities"]] == ["marketo_api"]


def test_a_lasting_database_error_or_a_refusal_fails_the_start(airflow, monkeypatch):
    monkeypatch.setattr(airflow, "request", Answers(500, 500, 500))
    with pytest.raises(AirflowApiError, match="answered 500"):
        airflow._create_pools()

    refused = Answers(400)
    monkeypatch.setattr(airflow, "request", refused)
    with pytest.raises(AirflowApiError, match="answered 400"):
        airflow._create_pools()
    assert len(refused.calls) == 1
