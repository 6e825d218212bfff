"""``python -m relay``: serve the webhook relay with uvicorn (settings: ``RELAY_*`` env vars)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from relay.app import create_app
from relay.limits import RelayLimits
from relay.settings import RelaySettings, SettingsError


def main() -> None:
    try:
        settings = RelaySettings.from_env()
        limits = RelayLimits.from_env()
    except SettingsError as exc:
        sys.exit(f"relay: {exc}")
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # uvicorn turns SIGTERM/SIGINT into a lifespan shutdown: the forwarder finishes its in-flight
    # batch and the spool is closed. Its access log is off because query strings carry ?code=.
    uvicorn.run(
        create_app(settings, limits),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(sum(settings.airflow_timeout)) + 5,
        **limits.uvicorn_options(),
    )


if __name__ == "__main__":
    main()
