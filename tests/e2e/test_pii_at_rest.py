"""No contact field at rest in Airflow's metadata database (issue 16, "PII at rest").

A live Airflow runs the real-time DAG twice, fed ids only as the relay feeds it: one contact, then
50. Afterwards every table and every column of its metadata database (the SQLite file) is read
and searched for the seeded contacts' email addresses, first and last names and phones: there
must be none, in XCom and in the rendered template fields (which the UI's "Rendered Templates"
tab shows) as anywhere else. The same scan finds the contact ids there, so it does read the rows
where contact data would have been.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import pytest

from devenv.airflow import LocalAirflow
from devenv.demo import CONTACT_ID_FIELD, SYNC_DAG_ID
from tests.support import sandbox_airflow_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONTACTS = 51  # one run of 1, one of 50


def contact_id(n: int) -> str:
    return f"d1500000-0000-4000-8000-{n:012d}"


def seeded_contact(n: int) -> dict[str, Any]:
    """A contact whose every personal value is distinctive enough to search a database for."""
    return {
        "contactid": contact_id(n),
        "emailaddress1": f"pii.person{n:03d}@example.org",
        "firstname": f"Zelphine{n:03d}",
        "lastname": f"Quarrington{n:03d}",
        "telephone1": f"+44 20 7946 {n:04d}",
        "mobilephone": f"+44 7700 9{n:05d}",
    }


def personal_values(contact: dict[str, Any]) -> list[str]:
    return [contact[column] for column in contact if column != "contactid"]


@pytest.fixture(scope="module")
def airflow_env(sandbox_servers: Any) -> dict[str, str]:
    return sandbox_airflow_env(sandbox_servers)


@pytest.fixture(scope="module")
def airflow_dag_ids() -> list[str]:
    return [SYNC_DAG_ID]


@pytest.fixture(scope="module")
def synced(sandbox_servers: Any, airflow_live: LocalAirflow) -> list[dict[str, Any]]:
    """Two runs fed ids only (1 contact, then 50) to their end; the seeded contacts."""
    dataverse, marketo = sandbox_servers.dataverse, sandbox_servers.marketo
    dataverse.service.reset()
    marketo.service.reset()
    marketo.admin.add_field(CONTACT_ID_FIELD)
    contacts = [seeded_contact(n) for n in range(CONTACTS)]
    dataverse.admin.seed(contacts=contacts)

    for batch in (contacts[:1], contacts[1:]):
        conf = {"contact_ids": [contact["contactid"] for contact in batch]}
        run_id = airflow_live.trigger(SYNC_DAG_ID, conf)
        assert airflow_live.wait_for_run(SYNC_DAG_ID, run_id, timeout=240) == "success"
    return contacts


def metadata_hits(database: str, needles: Iterable[str]) -> dict[str, list[str]]:
    """``table.column`` → the needles found in it (case-insensitive), over every table and column
    of the SQLite database; text and blob values alike (JSON columns are text in SQLite)."""
    wanted = [needle.lower() for needle in needles]
    hits: dict[str, list[str]] = {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                # Names read from the database's own catalogue, not from input.
                query = f'SELECT "{column}" FROM "{table}"'  # noqa: S608
                for (value,) in connection.execute(query):
                    if isinstance(value, bytes):
                        text = value.decode("utf-8", "replace").lower()
                    elif isinstance(value, str):
                        text = value.lower()
                    else:
                        continue
                    found = [needle for needle in wanted if needle in text]
                    if found:
                        hits.setdefault(f"{table}.{column}", []).extend(found)
    return hits


def test_no_contact_field_is_stored_in_the_metadata_database(
    synced: list[dict[str, Any]], sandbox_servers: Any, airflow_live: LocalAirflow
):
    # The runs did sync every contact: their data went through Airflow's workers.
    leads = sandbox_servers.marketo.admin.leads()
    assert sorted(lead["email"] for lead in leads) == sorted(c["emailaddress1"] for c in synced)
    database = airflow_live.database_url.removeprefix("sqlite:///")

    leaking = metadata_hits(database, [v for c in synced for v in personal_values(c)])

    assert leaking == {}


def test_the_scan_reads_xcom_and_rendered_fields(
    synced: list[dict[str, Any]], airflow_live: LocalAirflow
):
    """The ids the tasks pass are found where contact fields would have been: the scan works."""
    database = airflow_live.database_url.removeprefix("sqlite:///")

    found = metadata_hits(database, [synced[-1]["contactid"]])

    assert {"xcom.value", "rendered_task_instance_fields.rendered_fields"} <= set(found)
