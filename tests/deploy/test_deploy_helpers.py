"""The helpers around docker-compose.yaml, without Docker: ``make env``'s writer, the host-network
override the live test runs with, the init job's check of its settings, and its creation of the
ledger's database (on a real PostgreSQL server)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
import yaml
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from deploy import airflow_init, make_env
from deploy.compose_stack import (
    CLI_CHECK_SECONDS,
    COMPOSE_FILE,
    HostPorts,
    host_network_override,
)
from devenv.distributed import LocalPostgres

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
REQUIRED = {
    name for name in __import__("re").findall(r"\$\{([A-Z][A-Z0-9_]*):\?", COMPOSE_FILE.read_text())
}


def test_make_env_writes_every_required_variable_with_fresh_private_secrets(tmp_path: Path):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert make_env.main(["--output", str(first)]) == 0
    assert make_env.main(["--output", str(second)]) == 0

    values, other = make_env.read(first), make_env.read(second)
    assert set(values) >= REQUIRED
    secrets = {"POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_ADMIN_PASSWORD"}
    assert all(len(values[name]) >= 32 and values[name] != other[name] for name in secrets)
    Fernet(values["AIRFLOW_FERNET_KEY"].encode())  # a key Airflow can use
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    dynamics = json.loads(values["AIRFLOW_CONN_DYNAMICS365_DEFAULT"])
    assert urlsplit(dynamics["host"]).hostname == "sandbox"
    assert values["AIRFLOW_API_PORT"] == "8080"


def test_make_env_refuses_to_replace_a_file_unless_forced(tmp_path: Path, capsys):
    path = tmp_path / ".env"
    assert make_env.main(["--output", str(path)]) == 0
    before = path.read_text()

    assert make_env.main(["--output", str(path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert path.read_text() == before

    assert make_env.main(["--output", str(path), "--force", "--set", "RELAY_PORT=9999"]) == 0
    assert make_env.read(path)["RELAY_PORT"] == "9999"
    assert path.read_text() != before


def test_make_env_names_a_bad_setting(tmp_path: Path):
    with pytest.raises(make_env.EnvFileError, match="lower"):
        make_env.generate(overrides={"lower": "x"})
    with pytest.raises(make_env.EnvFileError, match="RELAY_PORT"):
        make_env.render({"RELAY_PORT": "it's"})


def test_values_compose_would_misread_are_quoted_and_read_back(tmp_path: Path):
    values = {"A": "plain-value_1", "B": '{"x": "y z"}'}
    make_env.write(tmp_path / ".env", values)
    text = (tmp_path / ".env").read_text()
    assert "A=plain-value_1\n" in text
    assert "B='{" in text
    assert make_env.read(tmp_path / ".env") == values


def test_the_override_puts_every_service_on_the_hosts_network_at_distinct_ports():
    ports = HostPorts.free()
    override = host_network_override(ports)["services"]
    assert set(override) == set(COMPOSE["services"])
    assert len(set(vars(ports).values())) == len(vars(ports))
    for name, service in override.items():
        assert service["network_mode"] == "host"
        assert {host.split(":")[0] for host in service["extra_hosts"]} == set(COMPOSE["services"])
        assert {host.split(":")[1] for host in service["extra_hosts"]} == {"127.0.0.1"}
        if "build" in COMPOSE["services"][name]:
            assert service["build"]["network"] == "host"
    api = override["airflow-apiserver"]["environment"]
    # After the `@`: the password is a ${...} reference to .env, which urlsplit cannot parse.
    database = api["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("@", 1)[1]
    assert database == f"postgres:{ports.postgres}/airflow"
    assert urlsplit(api["AIRFLOW__CELERY__BROKER_URL"]).port == ports.redis
    assert api["AIRFLOW__API__PORT"] == str(ports.api)
    assert override["postgres"]["environment"]["PGPORT"] == str(ports.postgres)
    assert str(ports.redis) in override["redis"]["command"]
    relay = override["relay"]["environment"]
    assert urlsplit(relay["RELAY_AIRFLOW_URL"]).port == ports.api
    # The override changes where services listen, not what they are: no image, no secret.
    for service in override.values():
        assert "image" not in service
        for value in service.get("environment", {}).values():
            assert "dummy" not in value


def test_the_override_names_only_environment_the_compose_file_already_sets():
    override = host_network_override(HostPorts.free())["services"]
    common = COMPOSE["services"]["airflow-apiserver"]["environment"]
    new = set(override["airflow-apiserver"]["environment"]) - set(common)
    # Only the port settings are new; everything else replaces a value of the file.
    assert all("PORT" in name or name.endswith("__HOST") for name in new)


def test_the_init_job_names_the_missing_passwords():
    with pytest.raises(
        airflow_init.InitError, match="AIRFLOW_ADMIN_PASSWORD, RELAY_AIRFLOW_PASSWORD"
    ):
        airflow_init.passwords_from({})
    assert airflow_init.passwords_from(
        {"AIRFLOW_ADMIN_PASSWORD": "a", "RELAY_AIRFLOW_PASSWORD": "r"}
    ) == {"admin": "a", "relay": "r"}


def test_the_relay_role_is_limited_to_its_dag():
    resources = {resource for _, resource in airflow_init.RELAY_PERMISSIONS}
    assert resources == {
        f"DAG:{airflow_init.SYNC_DAG_ID}",
        f"DAG Run:{airflow_init.SYNC_DAG_ID}",
    }


def test_the_override_gives_the_cli_healthchecks_more_time_and_keeps_them_killed():
    override = host_network_override(HostPorts.free())["services"]
    for name in ("airflow-dag-processor", "airflow-triggerer", "airflow-worker"):
        (test,) = COMPOSE["services"][name]["healthcheck"]["test"][1:]
        check = override[name]["healthcheck"]
        # The same command, under a longer `timeout` that still ends before Docker's.
        assert check["test"][1] == f"timeout {CLI_CHECK_SECONDS} " + test.split(" ", 2)[2]
        assert int(check["timeout"].rstrip("s")) > CLI_CHECK_SECONDS


def test_the_override_moves_the_ledger_to_the_postgres_port_of_the_run():
    ports = HostPorts.free()
    api = host_network_override(ports)["services"]["airflow-apiserver"]["environment"]
    ledger = api["AIRFLOW_CONN_CONTACT_SYNC_LEDGER"].rsplit("@", 1)[1]
    assert ledger == f"postgres:{ports.postgres}/contact_sync"


def test_the_init_job_creates_the_ledger_database_once(tmp_path: Path):
    # A real PostgreSQL server, its superuser as POSTGRES_USER is in the compose file.
    server = LocalPostgres(log_dir=tmp_path)
    server.start()
    try:
        ledger = make_url(server.url).set(database="contact_sync")
        assert airflow_init.ensure_database(ledger) is True
        assert airflow_init.ensure_database(ledger) is False  # already there: left alone
        engine = sa.create_engine(ledger)
        try:
            with engine.connect() as connection:
                assert connection.execute(sa.text("SELECT current_database()")).scalar() == (
                    "contact_sync"
                )
        finally:
            engine.dispose()
    finally:
        server.stop()
    assert server.leftovers() == []


def test_the_init_job_creates_nothing_for_a_sqlite_ledger(tmp_path: Path):
    url = make_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert airflow_init.ensure_database(url) is False
    assert not (tmp_path / "ledger.db").exists()
