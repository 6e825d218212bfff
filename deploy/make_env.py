"""Write the ``.env`` that docker-compose.yaml reads: fresh random secrets, ports, connections.

``make env`` runs it (``python -m deploy.make_env``); ``make test-compose`` writes its own file the
same way. It refuses to replace an existing file without ``--force``: that file's
``POSTGRES_PASSWORD`` and ``AIRFLOW_FERNET_KEY`` open the data already in the volumes.

The connections point at the compose file's sandbox service (``http://sandbox:8701`` and
``:8702``, the ports inside the compose network); for a real tenant, replace
``AIRFLOW_CONN_DYNAMICS365_DEFAULT`` and ``AIRFLOW_CONN_MARKETO_DEFAULT`` with its Connection JSON.
``--set NAME=VALUE`` adds or replaces any other line (the published ports, say).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from devenv.sandbox import connection_env
from sandbox import defaults

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = PROJECT_ROOT / ".env"
SANDBOX_DATAVERSE_URL = f"http://sandbox:{defaults.DATAVERSE_PORT}"
SANDBOX_MARKETO_URL = f"http://sandbox:{defaults.MARKETO_PORT}"
# Published (host) ports, the compose file's defaults.
DEFAULT_PORTS = {
    "AIRFLOW_API_PORT": "8080",
    "RELAY_PORT": "8703",
    "SANDBOX_DATAVERSE_PORT": str(defaults.DATAVERSE_PORT),
    "SANDBOX_MARKETO_PORT": str(defaults.MARKETO_PORT),
}
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class EnvFileError(RuntimeError):
    """The file exists already, or a ``--set`` is malformed."""


def _secret() -> str:
    # URL-safe base64: no character that a URL (the database URL holds POSTGRES_PASSWORD), a shell
    # or compose's variable interpolation would treat specially.
    return secrets.token_urlsafe(32)


def generate(
    *,
    dataverse_url: str = SANDBOX_DATAVERSE_URL,
    marketo_url: str = SANDBOX_MARKETO_URL,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every variable docker-compose.yaml needs, secrets freshly drawn."""
    postgres_password = _secret()
    values = {
        "POSTGRES_PASSWORD": postgres_password,
        # Fernet wants 32 random bytes in URL-safe base64, exactly what Fernet.generate_key() makes.
        "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AIRFLOW_JWT_SECRET": _secret(),
        "AIRFLOW_API_SECRET_KEY": _secret(),
        "AIRFLOW_ADMIN_PASSWORD": _secret(),
        "RELAY_AIRFLOW_PASSWORD": _secret(),
        "RELAY_WEBHOOK_KEY": _secret(),
        **connection_env(dataverse_url, marketo_url),
        **DEFAULT_PORTS,
    }
    for name, value in (overrides or {}).items():
        if not _NAME.match(name):
            raise EnvFileError(f"--set {name}: not a variable name (A-Z, 0-9, _)")
        values[name] = value
    return values


def render(values: Mapping[str, str]) -> str:
    """``NAME=value`` lines; values holding quotes or spaces (the JSON) in single quotes, which
    compose reads literally (no ``$`` interpolation)."""
    lines = ["# Written by `make env` (deploy/make_env.py). Secrets: keep this file private."]
    for name, value in values.items():
        if "'" in value or "\n" in value:
            raise EnvFileError(f"{name}: a value with a single quote or newline cannot be written")
        plain = re.fullmatch(r"[A-Za-z0-9_./:@%+=,-]*", value)
        lines.append(f"{name}={value}" if plain else f"{name}='{value}'")
    return "\n".join(lines) + "\n"


def read(path: Path) -> dict[str, str]:
    """The variables of a file ``render`` wrote (the test reads the secrets it needs back)."""
    values = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[name] = value
    return values


def write(path: Path, values: Mapping[str, str], *, force: bool = False) -> None:
    """Write ``values`` to ``path``, readable by its owner only; EnvFileError if it exists."""
    if path.exists() and not force:
        raise EnvFileError(
            f"{path} exists: its POSTGRES_PASSWORD and AIRFLOW_FERNET_KEY open the data in the "
            "volumes already created; pass --force to replace it (then `docker-compose down -v`)"
        )
    text = render(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.make_env", description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_PATH, help="default: ./.env")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("--dataverse-url", default=SANDBOX_DATAVERSE_URL)
    parser.add_argument("--marketo-url", default=SANDBOX_MARKETO_URL)
    parser.add_argument("--set", type=_assignment, action="append", default=[], metavar="N=V")
    args = parser.parse_args(argv)
    try:
        values = generate(
            dataverse_url=args.dataverse_url, marketo_url=args.marketo_url, overrides=dict(args.set)
        )
        write(args.output, values, force=args.force)
    except EnvFileError as exc:
        print(f"make env: {exc}", file=sys.stderr)
        return 1
    # Names only: the values are secrets.
    print(f"wrote {args.output} ({len(values)} variables, fresh secrets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
