"""The reconciliation against both sandboxes, wired through ``AIRFLOW_CONN_*`` as in production."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from contact_sync.hooks.dynamics import DynamicsHook
from contact_sync.hooks.marketo import MarketoHook
from contact_sync.mapping import Mappings, load_mappings
from contact_sync.reconcile import Window, reconcile
from contact_sync.report import RunReport, summarise_api_calls
from tests.support import connect_dynamics, connect_marketo

# A night the tests reconcile, and moments inside and outside it.
NIGHT = Window(since=datetime(2025, 3, 1, tzinfo=UTC), until=datetime(2025, 3, 2, tzinfo=UTC))
INSIDE = "2025-03-01T12:00:00Z"
BEFORE = "2025-02-27T12:00:00Z"
AFTER = "2025-03-02T00:00:00Z"  # the window's end is exclusive


@dataclass
class Sandboxes:
    dataverse: Any
    marketo: Any
    mappings: Mappings

    def calls(self, service: str) -> dict[str, int]:
        """The sandbox's own count of API calls per endpoint (not what our hooks think)."""
        admin = self.dataverse.admin if service == "dataverse" else self.marketo.admin
        return admin.calls()["by_endpoint"]

    def marketo_calls(self) -> tuple[int, int]:
        """(lead lookups, Sync Leads writes) served by the Marketo sandbox so far."""
        calls = self.calls("marketo")
        return calls.get("GET /rest/v1/leads.json", 0), calls.get("POST /rest/v1/leads.json", 0)

    def leads(self, **filters: Any) -> list[dict[str, Any]]:
        return self.marketo.admin.leads(**filters)


@pytest.fixture
def sandboxes(dataverse, marketo, monkeypatch) -> Sandboxes:
    """Connections to fresh sandboxes; Marketo has the contact-id field settings.yaml names."""
    connect_dynamics(monkeypatch, dataverse.url)
    connect_marketo(monkeypatch, marketo.url)
    mappings = load_mappings()
    if mappings.settings.contact_id_field:
        marketo.admin.add_field(mappings.settings.contact_id_field)
    return Sandboxes(dataverse, marketo, mappings)


@pytest.fixture
def run(sandboxes) -> Callable[..., RunReport]:
    """``run(window=NIGHT, page_size=5000, dynamics=None)``: one reconciliation, fresh hooks, its
    API calls counted as ``contact_sync.tasks`` counts them (the hooks' counters at the end)."""

    def reconcile_once(
        window: Window = NIGHT, *, page_size: int = 5000, dynamics: DynamicsHook | None = None
    ) -> RunReport:
        dynamics = dynamics or DynamicsHook()
        marketo = MarketoHook()
        report = reconcile(dynamics, marketo, window, sandboxes.mappings, page_size=page_size)
        report.api_calls = summarise_api_calls(
            [{"dataverse": dynamics.api_calls, "marketo": marketo.api_calls}]
        )
        return report

    return reconcile_once


def contact(n: int, **columns: Any) -> dict[str, Any]:
    """A Dataverse contact with a predictable id and email, modified inside the night."""
    return {
        "contactid": contact_id(n),
        "firstname": f"First{n}",
        "lastname": f"Last{n}",
        "emailaddress1": f"person{n}@example.com",
        "modifiedon": INSIDE,
        **columns,
    }


def contact_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def account_id(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


def lead(n: int, **fields: Any) -> dict[str, Any]:
    """The Marketo lead that is in sync with ``contact(n)`` (no account), linked to it."""
    return {
        "email": f"person{n}@example.com",
        "firstName": f"First{n}",
        "lastName": f"Last{n}",
        "dynamicsContactId": contact_id(n),
        **fields,
    }
