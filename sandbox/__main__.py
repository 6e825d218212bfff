"""``python -m sandbox``: serve the Dataverse (+ Entra ID) and Marketo sandboxes in the foreground.

State lives in memory; ``--state-dir`` loads it at start and saves it at exit, so a demo can be
stopped and started again with its contacts and leads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from types import FrameType

from sandbox import defaults
from sandbox.common.server import serve_all
from sandbox.dataverse import DataverseService
from sandbox.marketo import MarketoService


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", defaults.HOST))
    parser.add_argument(
        "--dataverse-port",
        type=int,
        default=int(os.environ.get("SANDBOX_DATAVERSE_PORT", defaults.DATAVERSE_PORT)),
    )
    parser.add_argument(
        "--marketo-port",
        type=int,
        default=int(os.environ.get("SANDBOX_MARKETO_PORT", defaults.MARKETO_PORT)),
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=os.environ.get("SANDBOX_STATE_DIR") or None,
        help="load state from here at start and save it here at exit",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    services = {"dataverse": DataverseService(), "marketo": MarketoService()}
    if args.state_dir:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        for name, service in services.items():
            path = args.state_dir / f"{name}.json"
            if path.exists():
                service.load_state(json.loads(path.read_text()))
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default handler that
    # would end the process before the state is saved (``docker compose stop`` sends SIGTERM).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(
            serve_all(
                [
                    (services["dataverse"].app, args.host, args.dataverse_port),
                    (services["marketo"].app, args.host, args.marketo_port),
                ]
            )
        )
    except KeyboardInterrupt:
        pass
    finally:
        if args.state_dir:
            for name, service in services.items():
                (args.state_dir / f"{name}.json").write_text(json.dumps(service.dump_state()))


if __name__ == "__main__":
    main()
