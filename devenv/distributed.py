"""PostgreSQL and Redis as our own processes, for Airflow on CeleryExecutor without Docker.

``LocalPostgres`` and ``LocalRedis`` run the Debian binaries (``apt-get install postgresql
redis-server``; ``devenv/test_distributed.sh`` does it) on free loopback ports, with their data in
a fresh temporary directory removed again by ``stop()``. No system service is used or left
running: each server is a ``ProcessGroup`` member like the Airflow components. Both require a
password, generated per instance, and listen on 127.0.0.1 only.

PostgreSQL refuses to run as root: when we are root it runs as the ``postgres`` user the Debian
package creates, so its directory lives under the system temp dir (which that user can reach)
rather than under a caller's private one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import tempfile
from pathlib import Path

import psutil
import psycopg2
import redis

from devenv.processes import ProcessGroup, free_port, wait_for

# Debian keeps the server binaries out of PATH, one directory per major version.
_DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
_POSTGRES_SYSTEM_USER = "postgres"


def find_postgres_bin_dir() -> Path | None:
    """The directory holding ``postgres`` and ``initdb``: PATH first, else Debian's newest."""
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        (path.parent for path in _DEBIAN_POSTGRES_ROOT.glob("*/bin/postgres")),
        key=lambda bin_dir: _major_version(bin_dir.parent.name),
    )
    return candidates[-1] if candidates else None


def find_redis_server() -> Path | None:
    """The ``redis-server`` binary on PATH (Debian installs it to /usr/bin)."""
    found = shutil.which("redis-server")
    return Path(found) if found else None


def _major_version(name: str) -> int:
    return int(name) if name.isdigit() else -1


class _ThrowawayServer:
    """What both servers share: a free port, a generated password, one process group, and a temp
    directory that ``stop()`` deletes."""

    def __init__(self, name: str, port: int, log_dir: Path | None) -> None:
        self.port = port or free_port()
        self._password = secrets.token_urlsafe(24)
        self._log_dir = log_dir
        self._group = ProcessGroup(name)
        self._dir: Path | None = None

    def _make_dir(self) -> Path:
        self._dir = Path(tempfile.mkdtemp(prefix=f"devenv-{self._group.label}-"))
        return self._dir

    def stop(self, grace: float = 10.0) -> None:
        """Stop the server and delete its directory. Safe to call twice."""
        self._group.stop(grace)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def leftovers(self) -> list[psutil.Process]:
        """Live processes of this server; empty after ``stop()``."""
        return self._group.leftovers()


class LocalPostgres(_ThrowawayServer):
    """A throwaway PostgreSQL server with one database owned by one (superuser) role.

    Durability is switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the data
    dies with the instance, and Airflow's migrations run several times faster without it.
    """

    def __init__(
        self,
        *,
        database: str = "airflow",
        user: str = "airflow",
        port: int = 0,
        bin_dir: Path | None = None,
        log_dir: Path | None = None,
    ) -> None:
        found = bin_dir or find_postgres_bin_dir()
        if found is None:
            raise FileNotFoundError(
                "PostgreSQL server binaries not found (apt-get install postgresql)"
            )
        super().__init__("postgres", port, log_dir)
        self.bin_dir = found
        self.database = database
        self.user = user
        # Root may not run postgres; anyone else runs it as themselves.
        self._run_as = _POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database (psycopg2 driver), password included: do not log it."""
        return (
            f"postgresql+psycopg2://{self.user}:{self._password}@127.0.0.1:{self.port}/"
            f"{self.database}"
        )

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster, start the server, create the database; stop again on failure."""
        try:
            self._make_dir()
            log_dir = self._log_dir or self._dir
            data_dir = self._dir / "data"
            password_file = self._dir / "password"
            password_file.write_text(self._password + "\n")
            if self._run_as is not None:
                owner = pwd.getpwnam(self._run_as)
                for path in (self._dir, password_file):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            self._group.run(
                [
                    str(self.bin_dir / "initdb"),
                    f"--pgdata={data_dir}",
                    f"--username={self.user}",
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                env=self._env(),
                log_path=log_dir / "initdb.log",
                timeout=timeout,
                cwd=self._dir,
                user=self._run_as,
            )
            password_file.unlink()
            self._group.spawn(
                "postgres",
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(data_dir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"port={self.port}",
                    # TCP only: no socket file whose path could be too long or collide.
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                env=self._env(),
                log_path=log_dir / "postgres.log",
                cwd=self._dir,
                user=self._run_as,
                # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to leave.
                stop_signal=signal.SIGINT,
            )
            wait_for(
                self._accepts_connections,
                timeout=timeout,
                what=f"PostgreSQL on port {self.port}",
                check=self._group.raise_if_exited,
            )
            self._create_database()
        except BaseException:
            self.stop()
            raise

    def _env(self) -> dict[str, str]:
        # Nothing of the caller's (PGDATA, PGPORT, ...) may steer the server.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}

    def _connect(self, database: str) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self._password,
            dbname=database,
            connect_timeout=2,
        )

    def _accepts_connections(self) -> bool:
        try:
            self._connect("postgres").close()
        except psycopg2.OperationalError:
            return False
        return True

    def _create_database(self) -> None:
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """Create another database on this server (e.g. the sync ledger, beside Airflow's) and
        return its ``postgresql://`` URI, as an Airflow Connection takes it (password included:
        do not log it)."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be letters, digits and _; got {name!r}")
        connection = self._connect("postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return f"postgresql://{self.user}:{self._password}@127.0.0.1:{self.port}/{name}"


class LocalRedis(_ThrowawayServer):
    """A throwaway Redis server: no persistence, password required, loopback only."""

    def __init__(
        self, *, port: int = 0, binary: Path | None = None, log_dir: Path | None = None
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise FileNotFoundError("redis-server not found (apt-get install redis-server)")
        super().__init__("redis", port, log_dir)
        self.binary = found

    def url(self, database: int = 0) -> str:
        """``redis://`` URL of ``database``, password included: do not log it."""
        return f"redis://:{self._password}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and return once it answers PING; stop again on failure."""
        try:
            self._make_dir()
            config = self._dir / "redis.conf"
            # A config file rather than arguments, so the password is not in the process list.
            config.write_text(
                "\n".join(
                    [
                        "bind 127.0.0.1",
                        f"port {self.port}",
                        f"requirepass {self._password}",
                        f"dir {self._dir}",
                        'save ""',
                        "appendonly no",
                        "daemonize no",
                        'logfile ""',
                    ]
                )
                + "\n"
            )
            self._group.spawn(
                "redis",
                [str(self.binary), str(config)],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                log_path=(self._log_dir or self._dir) / "redis.log",
                cwd=self._dir,
            )
            wait_for(
                self._answers_ping,
                timeout=timeout,
                what=f"Redis on port {self.port}",
                check=self._group.raise_if_exited,
            )
        except BaseException:
            self.stop()
            raise

    def _answers_ping(self) -> bool:
        client = redis.Redis.from_url(self.url(), socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            with contextlib.suppress(redis.RedisError):
                client.close()
