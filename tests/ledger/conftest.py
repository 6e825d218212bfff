"""The ledger's DAG tests run the real-time DAG with ``tests/pipeline``'s fixtures, and register
the run-note listener as the plugin registers it in the scheduler."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contact_sync import run_note
from tests.pipeline.conftest import run_sync, sandboxes, sync_dag  # noqa: F401 (fixtures)


@pytest.fixture
def notes() -> Iterator[None]:
    """The run-note listener registered as the plugin registers it in the scheduler."""
    from airflow.listeners.listener import get_listener_manager

    manager = get_listener_manager()
    manager.add_listener(run_note)
    try:
        yield
    finally:
        manager.pm.unregister(run_note)
