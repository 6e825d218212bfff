"""LocalAirflow's admin token is renewed before it expires and on a 401 (issue 16: the demo cached
it forever and got 401 after Airflow's JWT lifetime). Against the relay tests' Airflow stand-in,
which issues JWTs with a real ``exp`` over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devenv.airflow import AirflowUser, LocalAirflow
from tests.relay.airflow_standin import PASSWORD, USERNAME, AirflowStandIn, running_standin

RUNS_PATH = "/api/v2/dags/dynamics_contact_to_marketo/dagRuns"


@pytest.fixture
def standin() -> Iterator[AirflowStandIn]:
    with running_standin() as standin:
        yield standin


@pytest.fixture
def local_airflow(tmp_path: Path, standin: AirflowStandIn) -> Iterator[LocalAirflow]:
    port = int(standin.url.rsplit(":", 1)[1])
    airflow = LocalAirflow(
        tmp_path, tmp_path, port=port, admin=AirflowUser(USERNAME, "admin", PASSWORD)
    )
    # The REST client start() would open once the components are up; nothing is started here.
    airflow._http = httpx.Client(base_url=airflow.url)
    yield airflow
    airflow.stop()


def test_the_admin_token_is_reused_while_it_is_valid(
    local_airflow: LocalAirflow, standin: AirflowStandIn
) -> None:
    for _ in range(3):
        local_airflow.request("GET", RUNS_PATH)
    assert len(standin.token_requests) == 1
    assert [question.status for question in standin.run_questions] == [200] * 3


def test_the_admin_token_is_renewed_before_it_expires(
    local_airflow: LocalAirflow, standin: AirflowStandIn
) -> None:
    # A 30 s lifetime is inside the 60 s renewal margin: every request finds it about to expire.
    standin.token_lifetime_seconds = 30.0
    for _ in range(2):
        local_airflow.request("GET", RUNS_PATH)
    assert len(standin.token_requests) == 2
    assert [question.status for question in standin.run_questions] == [200, 200]  # never a 401


def test_a_401_renews_the_admin_token_once_and_retries(
    local_airflow: LocalAirflow, standin: AirflowStandIn
) -> None:
    local_airflow.request("GET", RUNS_PATH)
    standin.revoke_tokens()  # e.g. the token outlived Airflow's jwt_expiration_time

    answer = local_airflow.request("GET", RUNS_PATH)

    assert answer.json()["total_entries"] == 0
    assert [question.status for question in standin.run_questions] == [200, 401, 200]
    assert len(standin.token_requests) == 2
