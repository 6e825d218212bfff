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
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
from airflow.providers.fab.www.security import permissions

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


LEDGER_ENV = "AIRFLOW_CONN_CONTACT_SYNC_LEDGER"


def ensure_ledger_database(environ: Mapping[str, str]) -> None:
    """Create the sync ledger's PostgreSQL database when it is on Airflow's server and missing.

    The ledger creates its own tables on first use; the database itself must exist. The official
    postgres image creates only ``POSTGRES_DB`` (Airflow's), so this job adds the ledger's, with
    Airflow's database role, at every start (a no-op once it exists). A ledger on another server
    is that server's owner's to create.
    """
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    uri = environ.get(LEDGER_ENV, "")
    if not uri.startswith(("postgresql://", "postgres://")):
        return
    ledger = make_url(uri.replace("postgres://", "postgresql://", 1))
    airflow = make_url(environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    if (ledger.host, ledger.port or 5432) != (airflow.host, airflow.port or 5432):
        return
    connection = psycopg2.connect(
        host=airflow.host,
        port=airflow.port or 5432,
        user=airflow.username,
        password=airflow.password,
        dbname=airflow.database,
    )
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (ledger.database,))
            if cursor.fetchone() is None:
                create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ledger.database))
                cursor.execute(create)
                log.info("created the sync ledger's database %s", ledger.database)
    finally:
        connection.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        ensure_ledger_database(os.environ)
        ensure_users(passwords_from(os.environ))
    except InitError as exc:
        print(f"airflow-init: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
