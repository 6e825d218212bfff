"""The compose deployment's API users, run by its ``airflow-init`` job after ``airflow db migrate``.

With the FAB provider's ``FabAuthManager`` (Airflow's production auth manager), users and roles
live in Airflow's database. This script makes them match ``.env`` at every start:

- ``admin`` in FAB's built-in ``Admin`` role, password ``AIRFLOW_ADMIN_PASSWORD``;
- ``relay`` in the ``RelayTrigger`` role, password ``RELAY_AIRFLOW_PASSWORD``. The role holds only
  what the relay does with the REST API: trigger runs of the real-time DAG and read its runs. FAB
  authorises ``POST /api/v2/dags/{dag_id}/dagRuns`` with "can_create" on the run resource and
  "can_edit" on the DAG, and listing runs with "can_read" on both (``FabAuthManager.
  is_authorized_dag``); per-DAG resources (``DAG:<id>``, ``DAG Run:<id>``) keep it to that DAG.

Passwords are reset to the given ones each time, so changing ``.env`` and running ``up`` again
changes them. Nothing secret is printed.

It also creates the sync ledger's database (the Connection ``contact_sync_ledger``, a second
database on the compose Postgres) when it does not exist yet; the ledger creates its tables itself.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

import sqlalchemy as sa
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
from airflow.providers.fab.www.security import permissions
from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

SYNC_DAG_ID = "dynamics_contact_to_marketo"
ADMIN_ROLE = "Admin"
RELAY_ROLE = "RelayTrigger"
RELAY_PERMISSIONS = (
    (permissions.ACTION_CAN_READ, permissions.resource_name(SYNC_DAG_ID, permissions.RESOURCE_DAG)),
    (permissions.ACTION_CAN_EDIT, permissions.resource_name(SYNC_DAG_ID, permissions.RESOURCE_DAG)),
    (
        permissions.ACTION_CAN_CREATE,
        permissions.resource_name(SYNC_DAG_ID, permissions.RESOURCE_DAG_RUN),
    ),
    (
        permissions.ACTION_CAN_READ,
        permissions.resource_name(SYNC_DAG_ID, permissions.RESOURCE_DAG_RUN),
    ),
)
# (username, role, variable holding the password)
USERS = (
    ("admin", ADMIN_ROLE, "AIRFLOW_ADMIN_PASSWORD"),
    ("relay", RELAY_ROLE, "RELAY_AIRFLOW_PASSWORD"),
)


class InitError(RuntimeError):
    """A setting is missing or FAB refused a change."""


def passwords_from(environ: Mapping[str, str]) -> dict[str, str]:
    """Each user's password from its variable; InitError naming the variable when one is unset."""
    missing = [variable for _, _, variable in USERS if not environ.get(variable)]
    if missing:
        raise InitError(f"set {', '.join(missing)}: the API users' passwords come from .env")
    return {username: environ[variable] for username, _, variable in USERS}


def ensure_users(passwords: Mapping[str, str]) -> None:
    """Create or update the relay's role and both users in FAB's tables."""
    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        relay_role = security.find_role(RELAY_ROLE) or security.add_role(RELAY_ROLE)
        wanted = set(RELAY_PERMISSIONS)
        for permission in list(relay_role.permissions):
            pair = (permission.action.name, permission.resource.name)
            if pair not in wanted:
                security.remove_permission_from_role(relay_role, permission)
        for action, resource in RELAY_PERMISSIONS:
            security.add_permission_to_role(
                relay_role, security.create_permission(action, resource)
            )
        log.info("role %s has %d permissions", RELAY_ROLE, len(RELAY_PERMISSIONS))

        for username, role_name, _ in USERS:
            role = security.find_role(role_name)
            if role is None:
                raise InitError(f"FAB has no role {role_name!r}: did `airflow db migrate` run?")
            user = security.find_user(username=username)
            if user is None:
                # FAB requires an e-mail address; these accounts receive no mail.
                created = security.add_user(
                    username, username, "api", f"{username}@localhost", role, passwords[username]
                )
                if not created:
                    raise InitError(f"FAB could not create the user {username!r}")
                log.info("created user %s (role %s)", username, role_name)
                continue
            user.roles = [role]
            security.update_user(user)
            security.reset_password(user.id, passwords[username])
            log.info("updated user %s (role %s, password reset)", username, role_name)


def ensure_database(url: URL) -> bool:
    """Create the PostgreSQL database ``url`` names unless it exists; True when created.

    Connects to the server's ``postgres`` maintenance database (initdb always creates it) as the
    URL's user, who must be allowed to create databases (the compose file's POSTGRES_USER is the
    cluster's superuser). Other backends (a SQLite ledger) need nothing here.
    """
    if url.get_backend_name() != "postgresql":
        return False
    name = url.database
    if not name:
        raise InitError("the ledger connection names no database (its schema)")
    # CREATE DATABASE cannot run inside a transaction block.
    engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists:
                return False
            quoted = connection.dialect.identifier_preparer.quote_identifier(name)
            connection.execute(sa.text(f"CREATE DATABASE {quoted}"))
    finally:
        engine.dispose()
    log.info("created the database %s", name)
    return True


def ensure_ledger_database() -> None:
    """The ledger connection's database, created when missing (nothing when it is not defined)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from contact_sync.errors import ConfigurationError
    from contact_sync.ledger import LEDGER_CONN_ID, url_from_connection

    try:
        conn = BaseHook.get_connection(LEDGER_CONN_ID)
    except AirflowNotFoundException:
        log.info("no connection %s: no ledger database to create", LEDGER_CONN_ID)
        return
    try:
        ensure_database(url_from_connection(conn))
    except ConfigurationError as exc:
        raise InitError(str(exc)) from None


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        ensure_users(passwords_from(os.environ))
        ensure_ledger_database()
    except InitError as exc:
        print(f"airflow-init: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
