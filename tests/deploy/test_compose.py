"""``docker-compose.yaml`` checked without a Docker engine: its services, their wiring, secrets,
volumes, healthchecks and dependencies, and that every command it runs exists: Airflow commands
against Airflow's own CLI parser, the relay and sandbox against their modules and settings.

What the file cannot show (images building, containers starting, the sync through them) is
proven by starting it: ``make test-compose`` (tests/deploy/test_compose_live.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from deploy import airflow_init
from devenv.airflow import DEFAULT_POOLS, PROJECT_ROOT
from relay.settings import RelaySettings
from sandbox import defaults

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())
# Compose reads it with docker-compose.yaml when no -f is given: the published ports.
PUBLISHED = yaml.safe_load((PROJECT_ROOT / "docker-compose.override.yaml").read_text())["services"]
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
AIRFLOW_SERVICES = sorted(name for name in SERVICES if name.startswith("airflow-"))
OUR_IMAGE_SERVICES = sorted(name for name, service in SERVICES.items() if "build" in service)
CONNECTION_IDS = ("dynamics365_default", "marketo_default")
# A whole value that is one `${VAR}` reference, with or without a default or required message.
REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?[-?][^}]*)?\}$")
REFERENCE_ANYWHERE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
# Settings holding a secret, by name; a Connection's JSON holds its password.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|KEYS?)$|^AIRFLOW_CONN_")
# Secrets only Airflow's components (and the init job) may see.
AIRFLOW_ONLY_SECRETS = {
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
}
# Directories the official Airflow image already has, owned by its airflow user.
BASE_IMAGE_DIRS = {"/opt/airflow/logs"}


def env(service: str) -> dict[str, str]:
    """A service's environment as a dict (compose also allows a list of ``NAME=value``)."""
    raw = SERVICES[service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {name: str(value) for name, value in raw.items()}


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def runs(service: str) -> list[str]:
    """What the container runs: its entrypoint override, if any, followed by its command."""
    spec = SERVICES[service]
    return argv(spec.get("entrypoint", [])) + argv(spec.get("command", []))


def with_dummy_secrets(value: str) -> str:
    """``value`` as Docker would run it, every ``${VAR}`` replaced by a stand-in."""
    return REFERENCE_ANYWHERE.sub(lambda match: f"dummy-{match.group(1).lower()}", value)


def url(service: str, setting: str) -> Any:
    return urlsplit(with_dummy_secrets(env(service)[setting]))


def container_port(service: str) -> int:
    (mapping,) = PUBLISHED[service]["ports"]
    return int(str(mapping).rsplit(":", 1)[1])


def init_script_lines() -> list[str]:
    """The init job's shell script, one command per entry (split at ``&&`` and newlines)."""
    command = argv(SERVICES["airflow-init"]["command"])
    assert command[0] == "-c", "airflow-init runs a bash -c script"
    return [part.strip() for part in re.split(r"&&|\n", command[1]) if part.strip()]


# -- services and wiring ------------------------------------------------------------------------


def test_ports_are_published_only_by_the_override_file_compose_reads_by_itself():
    assert not any("ports" in service for service in SERVICES.values())
    assert set(PUBLISHED) == {"airflow-apiserver", "relay", "sandbox"}
    for name, service in PUBLISHED.items():
        assert set(service) == {"ports"}, f"{name}: the override only publishes ports"
        for mapping in service["ports"]:
            host = str(mapping).rsplit(":", 1)[0]
            assert REFERENCE.match(host), f"{name}: host port {host} is not set from .env"


def test_every_service_of_the_deployment_is_there():
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-triggerer",
        "airflow-init",
        "relay",
        "sandbox",
    }


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_runs_celery_on_the_postgres_and_redis_services(service: str):
    settings = env(service)
    database = url(service, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    results = url(service, "AIRFLOW__CELERY__RESULT_BACKEND")
    broker = url(service, "AIRFLOW__CELERY__BROKER_URL")
    execution_api = url(service, "AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    postgres = env("postgres")

    assert settings["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert database.scheme.startswith("postgresql")
    for db in (database, results):
        assert (db.hostname, db.port or 5432) == ("postgres", 5432)
        assert db.username == postgres["POSTGRES_USER"]
        assert db.path == f"/{postgres['POSTGRES_DB']}"
        assert db.password == with_dummy_secrets(postgres["POSTGRES_PASSWORD"])
    assert results.scheme.startswith("db+postgresql")
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    assert execution_api.hostname == "airflow-apiserver"
    assert execution_api.port == container_port("airflow-apiserver")
    assert execution_api.path == "/execution/"


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_connections_and_shared_keys_come_from_the_environment(service: str):
    settings = env(service)
    for conn_id in CONNECTION_IDS:
        assert REFERENCE.match(settings[f"AIRFLOW_CONN_{conn_id.upper()}"])
    # Components that disagree on these cannot read each other's data or tokens.
    for shared in (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
    ):
        assert REFERENCE.match(settings[shared]), f"{service}: {shared} is not a ${{VAR}}"
        assert settings[shared] == env("airflow-apiserver")[shared]


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_the_ledger_is_a_database_of_its_own_on_the_postgres_service(service: str):
    from airflow.models.connection import Connection

    from contact_sync.ledger import LEDGER_CONN_ID, url_from_connection

    uri = with_dummy_secrets(env(service)[f"AIRFLOW_CONN_{LEDGER_CONN_ID.upper()}"])
    ledger = url_from_connection(Connection(conn_id=LEDGER_CONN_ID, uri=uri))
    metadata = url(service, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    assert ledger.get_backend_name() == "postgresql"
    assert (ledger.host, ledger.port) == ("postgres", 5432)
    assert (ledger.username, ledger.password) == (metadata.username, metadata.password)
    assert ledger.database
    assert f"/{ledger.database}" != metadata.path


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_the_connection_forms_test_button_is_enabled(service: str):
    assert env(service)["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_secret_is_a_reference_to_the_environment(service: str):
    for name, value in env(service).items():
        if SECRET_NAME.search(name):
            if "://" in value:
                # A Connection URI may spell out its user and host; its password is a reference
                # (split by hand: urlsplit stops at the `?` of `${VAR:?message}`).
                credentials = value.split("://", 1)[1].rsplit("@", 1)[0]
                password = credentials.partition(":")[2]
                assert password, f"{service}: {name} has no password"
                assert REFERENCE.match(password), f"{service}: {name} holds a literal"
            else:
                assert REFERENCE.match(value), f"{service}: {name} holds a literal"
        if "://" in value:
            password = urlsplit(value).password
            assert not password or REFERENCE.match(password), f"{service}: {name} has a password"


@pytest.mark.parametrize("service", ["relay", "sandbox"])
def test_relay_and_sandbox_see_none_of_airflows_secrets(service: str):
    referenced = {
        variable
        for value in env(service).values()
        for variable in REFERENCE_ANYWHERE.findall(value)
    }
    assert not referenced & AIRFLOW_ONLY_SECRETS
    assert not any(name.startswith("AIRFLOW_") for name in env(service))


def test_named_volumes_are_declared_used_and_owned_by_the_services_user():
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith((".", "/")):
                continue  # a bind mount, not a named volume
            used.add(source)
            assert source in declared, f"{name} mounts undeclared volume {source}"
            # A new volume takes the owner of its mount point in the image: our image must
            # create it for the airflow user, or the services cannot write to it.
            if name in OUR_IMAGE_SERVICES:
                assert target in BASE_IMAGE_DIRS or target in _created_in_dockerfile(), target
    assert used == declared


def _created_in_dockerfile() -> set[str]:
    created = set()
    joined = DOCKERFILE.replace("\\\n", " ")  # continuation lines
    for line in re.findall(r"^RUN (.*)$", joined, flags=re.MULTILINE):
        words = line.split()
        if "mkdir" in words and "chown" in words:
            created |= {word for word in words if word.startswith("/")}
    return created


@pytest.mark.parametrize("service", sorted(set(SERVICES) - {"airflow-init"}))
def test_every_long_running_service_has_a_healthcheck(service: str):
    check = SERVICES[service].get("healthcheck") or {}
    assert check.get("test"), f"{service} has no healthcheck"
    assert SERVICES[service].get("restart") == "always"


def test_the_init_job_runs_once():
    assert "healthcheck" not in SERVICES["airflow-init"]
    assert "restart" not in SERVICES["airflow-init"]


def test_dependencies_exist_and_their_conditions_can_be_met():
    for name, service in SERVICES.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert "restart" not in SERVICES[target], f"{target} never completes"
            else:
                assert condition == "service_started"


def test_healthchecks_ask_ports_the_services_listen_on():
    scheduler_check = " ".join(argv(SERVICES["airflow-scheduler"]["healthcheck"]["test"]))
    # The scheduler's health server (port 8974) only runs when enabled.
    assert ":8974/health" in scheduler_check
    assert env("airflow-scheduler")["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    for service in ("airflow-apiserver", "relay"):
        check = " ".join(argv(SERVICES[service]["healthcheck"]["test"]))
        assert f"localhost:{container_port(service)}/" in check


def _cli_checks() -> dict[str, list[str]]:
    """Service → its healthcheck's words, for the checks that start a Python CLI."""
    checks = {}
    for name, service in SERVICES.items():
        check = argv(service.get("healthcheck", {}).get("test", []))
        if check[:1] == ["CMD-SHELL"]:
            words = shlex.split(check[1].replace("$$", "$"))
            if unwrapped(words)[0] in ("airflow", "celery"):
                checks[name] = words
    return checks


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60}
    return float(duration[:-1]) * units[duration[-1]]


def test_checks_that_start_a_cli_are_killed_before_dockers_timeout():
    # Docker does not kill a check that overruns its timeout: on a busy host, slow `airflow jobs
    # check` processes piled up by the dozen. coreutils' `timeout` ends each one first.
    checks = _cli_checks()
    assert set(checks) == {"airflow-dag-processor", "airflow-triggerer", "airflow-worker"}
    for name, words in checks.items():
        assert words[0] == "timeout", f"{name}: its CLI healthcheck runs without `timeout`"
        limit = float(words[1])
        docker_timeout = _seconds(SERVICES[name]["healthcheck"]["timeout"])
        assert limit < docker_timeout, name
        assert docker_timeout <= _seconds(SERVICES[name]["healthcheck"]["interval"]) * 2, name


# -- commands -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def airflow_cli() -> argparse.ArgumentParser:
    """Airflow's own CLI parser, with the commands providers add (``celery`` among them)."""
    from airflow.cli.cli_parser import get_parser

    return get_parser()


def parses(parser: argparse.ArgumentParser, args: list[str]) -> bool:
    # Airflow's parser prints its help and exits 2 on an unknown command or option.
    with contextlib.redirect_stderr(None), contextlib.suppress(SystemExit):
        parser.parse_args(args)
        return True
    return False


def unwrapped(words: list[str]) -> list[str]:
    """A command without its ``timeout SECONDS`` prefix (coreutils), if any."""
    return words[2:] if words[:1] == ["timeout"] else words


def airflow_commands() -> Iterator[tuple[str, list[str]]]:
    """Every Airflow CLI call in the file: service commands, the init script, healthchecks."""
    for name in AIRFLOW_SERVICES:
        service = SERVICES[name]
        if "entrypoint" not in service:  # the image's entrypoint runs `airflow <command>`
            yield name, argv(service["command"])
        check = argv(service.get("healthcheck", {}).get("test", []))
        if check[:1] == ["CMD-SHELL"]:
            words = unwrapped(shlex.split(check[1].replace("$$", "$")))
            if words[0] == "airflow":
                yield f"{name} healthcheck", words[1:]
    for line in init_script_lines():
        if line.startswith("airflow "):
            yield "airflow-init", shlex.split(line)[1:]


def test_the_file_runs_the_expected_airflow_commands():
    commands = {" ".join(args[:2]) for _, args in airflow_commands()}
    assert {
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "celery worker",
        "db migrate",
        "pools set",
        "jobs check",
    } <= commands


@pytest.mark.parametrize(("where", "args"), list(airflow_commands()), ids=lambda v: str(v))
def test_airflow_commands_exist_in_airflow_3_3(
    airflow_cli: argparse.ArgumentParser, where: str, args: list[str]
):
    assert parses(airflow_cli, args), f"{where}: `airflow {' '.join(args)}` is not a valid command"


def test_a_wrong_command_would_be_caught(airflow_cli: argparse.ArgumentParser):
    assert not parses(airflow_cli, ["celery", "wroker"])
    assert not parses(airflow_cli, ["api-server", "--no-such-option"])


def test_the_worker_healthcheck_names_the_celery_app_airflow_runs():
    words = unwrapped(shlex.split(argv(SERVICES["airflow-worker"]["healthcheck"]["test"])[1]))
    assert words[0] == "celery"
    module, attribute = words[words.index("--app") + 1].rsplit(".", 1)
    app = getattr(importlib.import_module(module), attribute)
    assert type(app).__name__ == "Celery"


def test_the_init_job_creates_the_pools_the_dags_and_devenv_use():
    pools = {}
    for line in init_script_lines():
        args = shlex.split(line)
        if args[:3] == ["airflow", "pools", "set"]:
            pools[args[3]] = int(args[4])
    assert pools == {pool.name: pool.slots for pool in DEFAULT_POOLS}


def test_the_init_job_sets_up_the_users_with_the_script_the_image_carries():
    (script,) = [line for line in init_script_lines() if line.startswith("python ")]
    path = PurePosixPath(shlex.split(script)[1])
    copied = re.findall(r"^COPY \S+ (\S+) (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    (source,) = [src for src, dest in copied if dest == str(path)]
    assert (PROJECT_ROOT / source).is_file()
    # Every password the script reads is given to the init job, and to no long-running service
    # but the relay (its own).
    for _, _, variable in airflow_init.USERS:
        assert REFERENCE.match(env("airflow-init")[variable])
        for service in AIRFLOW_SERVICES:
            if service != "airflow-init":
                assert variable not in env(service)


def test_the_deployment_uses_fabs_auth_manager_which_airflow_can_load():
    path = env("airflow-apiserver")["AIRFLOW__CORE__AUTH_MANAGER"]
    module, name = path.rsplit(".", 1)
    manager = getattr(importlib.import_module(module), name)
    assert manager.__name__ == "FabAuthManager"
    for service in AIRFLOW_SERVICES:
        assert env(service)["AIRFLOW__CORE__AUTH_MANAGER"] == path
        assert not any("SIMPLE_AUTH_MANAGER" in variable for variable in env(service))


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_services_read_the_scheduler_tuning_the_demo_reads(service: str):
    (env_file,) = SERVICES[service]["env_file"]
    assert (PROJECT_ROOT / env_file) == PROJECT_ROOT / "deploy" / "airflow-tuning.env"
    assert (PROJECT_ROOT / env_file).is_file()


# -- relay and sandbox --------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["relay", "sandbox"])
def test_relay_and_sandbox_run_modules_that_exist(service: str):
    command = runs(service)
    assert command[:2] == ["python", "-m"]
    assert importlib.util.find_spec(f"{command[2]}.__main__") is not None


class _RecordingEnv(Mapping[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name))
        return name in self._values

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def test_relay_settings_are_ones_the_relay_reads_and_point_at_the_api_server():
    relay_env = {k: with_dummy_secrets(v) for k, v in env("relay").items()}
    recorded = _RecordingEnv(relay_env)

    settings = RelaySettings.from_env(recorded)

    relay_settings = {name for name in relay_env if name.startswith("RELAY_")}
    assert relay_settings <= recorded.asked, relay_settings - recorded.asked
    airflow = urlsplit(settings.airflow_url)
    assert (airflow.hostname, airflow.port) == (
        "airflow-apiserver",
        container_port("airflow-apiserver"),
    )
    assert settings.port == container_port("relay")
    # The relay's account is the one the init job limits to triggering and reading its DAG.
    relay_users = [user for user, role, _ in airflow_init.USERS if role == airflow_init.RELAY_ROLE]
    assert relay_users == [settings.airflow_username]
    assert settings.dag_id == airflow_init.SYNC_DAG_ID
    assert settings.spool_path.parent.as_posix() in {
        str(v).split(":")[1] for v in SERVICES["relay"]["volumes"]
    }


def test_sandbox_options_are_ones_it_accepts():
    command = runs("sandbox")
    help_text = subprocess.run(
        [sys.executable, "-m", "sandbox", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    ).stdout
    options = [arg for arg in command if arg.startswith("--")]
    assert options
    assert all(option in help_text for option in options)
    ports = {int(str(p).rsplit(":", 1)[1]) for p in PUBLISHED["sandbox"]["ports"]}
    # The command sets no ports: the sandbox listens on its defaults.
    assert ports == {defaults.DATAVERSE_PORT, defaults.MARKETO_PORT}
    check = argv(SERVICES["sandbox"]["healthcheck"]["test"])[1]
    assert {int(port) for port in re.findall(r"localhost:(\d+)/", check)} == ports
