"""Relay settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.settings import RelaySettings, SettingsError


def test_settings_are_read_from_env_and_secrets_stay_out_of_repr() -> None:
    settings = RelaySettings.from_env(
        {
            "RELAY_AIRFLOW_URL": "http://airflow:8080",
            "RELAY_AIRFLOW_USERNAME": "relay",
            "RELAY_AIRFLOW_PASSWORD": "s3cret-password",
            "RELAY_WEBHOOK_KEYS": " key-a , key-b ,",
            "RELAY_WEBHOOK_HEADER_NAME": "x-key",
            "RELAY_WEBHOOK_HEADER_VALUES": "header-secret",
            "RELAY_ACCEPTED_MESSAGES": "Create",
            "RELAY_ACCEPTED_ENTITIES": "Contact",
            "RELAY_SPOOL_PATH": "/data/spool.sqlite3",
            "RELAY_BATCH_WINDOW_SECONDS": "2.5",
            "RELAY_BATCH_MAX_EVENTS": "100",
            "RELAY_BATCH_MAX_WAIT_SECONDS": "12",
            "RELAY_BATCH_HOLD_ACTIVE_RUNS": "4",
            "RELAY_BATCH_LEADING_EDGE": " False ",
            "RELAY_PORT": "9000",
        }
    )
    assert settings.batch_leading_edge is False
    assert settings.webhook_keys == ("key-a", "key-b")
    assert settings.accepted_messages == ("Create",)
    assert settings.accepted_entities == ("contact",)
    assert settings.spool_path == Path("/data/spool.sqlite3")
    assert (settings.batch_window_seconds, settings.batch_max_events) == (2.5, 100)
    assert (settings.batch_max_wait_seconds, settings.batch_hold_active_runs) == (12.0, 4)
    assert (settings.host, settings.port) == ("127.0.0.1", 9000)
    for secret in ("s3cret-password", "key-a", "header-secret"):
        assert secret not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "RELAY_WEBHOOK_KEYS"),
        ({"RELAY_WEBHOOK_HEADER_VALUES": "v"}, "RELAY_WEBHOOK_HEADER_NAME"),
        ({"RELAY_WEBHOOK_KEYS": "k", "RELAY_PORT": "eighty"}, "RELAY_PORT is not a number"),
        ({"RELAY_WEBHOOK_KEYS": "k", "RELAY_BATCH_MAX_EVENTS": "0"}, "RELAY_BATCH_MAX_EVENTS"),
        (
            {"RELAY_WEBHOOK_KEYS": "k", "RELAY_BATCH_HOLD_ACTIVE_RUNS": "0"},
            "RELAY_BATCH_HOLD_ACTIVE_RUNS must be at least 1",
        ),
        (
            {"RELAY_WEBHOOK_KEYS": "k", "RELAY_BATCH_MAX_WAIT_SECONDS": "-1"},
            "RELAY_BATCH_MAX_WAIT_SECONDS must not be negative",
        ),
        (
            {"RELAY_WEBHOOK_KEYS": "k", "RELAY_BATCH_LEADING_EDGE": "maybe"},
            "RELAY_BATCH_LEADING_EDGE must be true or false, not 'maybe'",
        ),
        (
            {"RELAY_WEBHOOK_KEYS": "k", "RELAY_BACKOFF_INITIAL_SECONDS": "0"},
            "RELAY_BACKOFF_INITIAL_SECONDS must be positive",
        ),
    ],
)
def test_invalid_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        RelaySettings.from_env(env)


def test_the_leading_edge_is_on_by_default_and_can_be_turned_off() -> None:
    assert RelaySettings.from_env({"RELAY_WEBHOOK_KEYS": "k"}).batch_leading_edge is True
    for word in ("true", "1", "ON"):
        env = {"RELAY_WEBHOOK_KEYS": "k", "RELAY_BATCH_LEADING_EDGE": word}
        assert RelaySettings.from_env(env).batch_leading_edge is True
