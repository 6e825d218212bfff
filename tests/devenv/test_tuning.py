"""deploy/airflow-tuning.env: the one place for tuned Airflow settings, read by the demo and the
benchmarks (devenv.airflow.read_tuning) and by docker compose (env_file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.airflow import TUNING_FILE, LocalAirflow, read_tuning


def test_the_deployment_file_holds_only_airflow_settings_each_explained() -> None:
    settings = read_tuning()
    assert settings, "deploy/airflow-tuning.env sets nothing"
    assert all(key.startswith("AIRFLOW__") and key.isupper() for key in settings)
    # Every setting has its reason in a comment right above it (the file's own rule).
    lines = TUNING_FILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("AIRFLOW__"):
            assert lines[number - 1].startswith("#") or lines[number - 1].startswith("AIRFLOW__"), (
                f"line {number + 1} has no comment above it"
            )


def test_comments_and_blank_lines_are_skipped_and_values_kept(tmp_path: Path) -> None:
    path = tmp_path / "tuning.env"
    path.write_text("# why\n\nAIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.25\n")
    assert read_tuning(path) == {"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25"}


@pytest.mark.parametrize(
    "line", ["SCHEDULER_IDLE_SLEEP_TIME=1", "AIRFLOW__CORE__PARALLELISM", "AIRFLOW__CORE__X="]
)
def test_a_bad_line_is_refused_with_its_file_and_number(tmp_path: Path, line: str) -> None:
    path = tmp_path / "tuning.env"
    path.write_text(f"# ok\n{line}\n")
    with pytest.raises(ValueError, match=r"tuning.env:2: expected AIRFLOW__SECTION__KEY=value"):
        read_tuning(path)


def test_local_airflow_runs_the_file_by_default_and_stock_on_request(tmp_path: Path) -> None:
    tuned = LocalAirflow(tmp_path / "a", tmp_path, port=1)
    stock = LocalAirflow(tmp_path / "b", tmp_path, port=1, tuning={})
    env = tuned._environment({"fernet_key": "f", "jwt_secret": "j", "api_secret_key": "s"})
    assert {key: env[key] for key in read_tuning()} == read_tuning()
    env = stock._environment({"fernet_key": "f", "jwt_secret": "j", "api_secret_key": "s"})
    assert not set(read_tuning()) & set(env)  # Airflow's own defaults apply
