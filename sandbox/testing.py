"""pytest fixtures for the sandbox: both services on free loopback ports, reset for every test.

Enabled in ``tests/conftest.py`` with ``pytest_plugins = ["sandbox.testing"]``::

    def test_something(dataverse, marketo):
        dataverse.url        # "http://127.0.0.1:<port>"; Entra ID and the Web API both live here
        dataverse.admin      # DataverseAdmin over HTTP
        dataverse.service    # the in-process DataverseService, for direct inspection
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pytest

from sandbox.common.server import ServerThread
from sandbox.dataverse import DataverseService
from sandbox.dataverse.admin import DataverseAdmin
from sandbox.marketo import MarketoService
from sandbox.marketo.admin import MarketoAdmin

ServiceT = TypeVar("ServiceT")
AdminT = TypeVar("AdminT")


@dataclass
class SandboxHandle(Generic[ServiceT, AdminT]):
    url: str
    service: ServiceT
    admin: AdminT


@dataclass
class _Running:
    dataverse: SandboxHandle[DataverseService, DataverseAdmin]
    marketo: SandboxHandle[MarketoService, MarketoAdmin]


@pytest.fixture(scope="session")
def sandbox_servers() -> Iterator[_Running]:
    """Both sandboxes, started once per test session in background threads."""
    dataverse_service = DataverseService()
    marketo_service = MarketoService()
    servers = [
        ServerThread(dataverse_service.app).start(),
        ServerThread(marketo_service.app).start(),
    ]
    dv_url, mk_url = servers[0].url, servers[1].url
    try:
        yield _Running(
            dataverse=SandboxHandle(dv_url, dataverse_service, DataverseAdmin(dv_url)),
            marketo=SandboxHandle(mk_url, marketo_service, MarketoAdmin(mk_url)),
        )
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def dataverse(sandbox_servers: _Running) -> SandboxHandle[DataverseService, DataverseAdmin]:
    """The Entra ID + Dataverse sandbox, empty and with default settings."""
    sandbox_servers.dataverse.service.reset()
    return sandbox_servers.dataverse


@pytest.fixture
def marketo(sandbox_servers: _Running) -> SandboxHandle[MarketoService, MarketoAdmin]:
    """The Marketo sandbox, empty (but for the standard lead fields) and with default settings."""
    sandbox_servers.marketo.service.reset()
    return sandbox_servers.marketo


def any_handle(value: Any) -> SandboxHandle[Any, Any]:
    """Typing helper for tests that take either sandbox."""
    return value
