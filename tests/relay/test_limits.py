"""``relay.limits``: the variables, their errors, and what uvicorn is given."""

from __future__ import annotations

import pytest

from relay.limits import RelayLimits
from relay.settings import SettingsError


def test_defaults_and_environment_round_trip() -> None:
    limits = RelayLimits.from_env(
        {"RELAY_MAX_CONNECTIONS": "7", "RELAY_SPOOL_MAX_BYTES": "900000000"}
    )
    assert limits.max_connections == 7
    assert limits.header_timeout_seconds == RelayLimits().header_timeout_seconds
    assert RelayLimits.from_env(limits.to_env()) == limits


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RELAY_MAX_CONNECTIONS": "many"}, "RELAY_MAX_CONNECTIONS is not a number"),
        ({"RELAY_MAX_CONNECTIONS": "2.5"}, "RELAY_MAX_CONNECTIONS is not a number"),
        ({"RELAY_HEADER_TIMEOUT_SECONDS": "0"}, "RELAY_HEADER_TIMEOUT_SECONDS must be positive"),
        (
            {"RELAY_SPOOL_ALARM_BYTES": "2000", "RELAY_SPOOL_MAX_BYTES": "1000"},
            "RELAY_SPOOL_MAX_BYTES is below RELAY_SPOOL_ALARM_BYTES",
        ),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        RelayLimits.from_env(env)


def test_uvicorn_gets_the_h11_limits_and_the_header_timeout() -> None:
    options = RelayLimits(max_connections=5, max_header_bytes=1000).uvicorn_options()
    assert options["limit_concurrency"] == 5
    assert options["h11_max_incomplete_event_size"] == 1000
    assert options["http"].timeout_headers == RelayLimits().header_timeout_seconds
