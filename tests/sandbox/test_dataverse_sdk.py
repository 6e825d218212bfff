"""Microsoft's own client (PowerPlatform-Dataverse-Client 1.1.0) against the sandbox.

The SDK refuses plain http, so the sandbox's app is served a second time over TLS with a
throwaway self-signed certificate that requests is told to trust.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
import time

import pytest
import requests
import uvicorn
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PowerPlatform.Dataverse.client import DataverseClient

from sandbox import defaults


def self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(sandbox_servers, tmp_path_factory):
    """(https base URL, CA file) of the same DataverseService the ``dataverse`` fixture resets."""
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    config = uvicorn.Config(
        sandbox_servers.dataverse.service.app,
        host="127.0.0.1",
        port=0,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "TLS server died"
        assert time.monotonic() < deadline, "TLS server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"https://127.0.0.1:{port}", str(cert)
    server.should_exit = True
    thread.join(10)


class SandboxCredential:
    """A TokenCredential that asks the sandbox's Entra ID endpoint, as ClientSecretCredential
    would ask the real one."""

    def __init__(self, base_url: str, ca_file: str) -> None:
        self.base_url = base_url
        self.ca_file = ca_file
        self.scopes: list[str] = []

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.scopes.extend(scopes)
        response = requests.post(
            f"{self.base_url}/{defaults.TENANT_ID}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": defaults.DYNAMICS_CLIENT_ID,
                "client_secret": defaults.DYNAMICS_CLIENT_SECRET,
                "scope": scopes[0],
            },
            timeout=5,
            verify=self.ca_file,
        )
        response.raise_for_status()
        body = response.json()
        return AccessToken(body["access_token"], int(time.time()) + body["expires_in"])


@pytest.fixture
def client(dataverse, tls_server, monkeypatch):
    url, ca_file = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    credential = SandboxCredential(url, ca_file)
    with DataverseClient(url, credential) as client:
        yield client
    assert credential.scopes
    assert set(credential.scopes) == {f"{url}/.default"}


def test_sdk_retrieves_a_contact_with_its_account(client, dataverse):
    account = dataverse.admin.seed(accounts=[{"name": "Litware, Inc."}])["accounts"][0]
    contact = dataverse.admin.seed(
        contacts=[
            {"firstname": "Susanna", "lastname": "Stubberod", "_parentcustomerid_value": account}
        ]
    )["contacts"][0]

    record = client.records.retrieve(
        "contact",
        contact,
        select=["firstname", "lastname"],
        expand=["parentcustomerid_account($select=name)"],
    )

    assert record is not None
    assert record["firstname"] == "Susanna"
    assert record["parentcustomerid_account"] == {"name": "Litware, Inc.", "accountid": account}
    assert client.records.retrieve("contact", "00000000-0000-0000-0000-000000000001") is None


def test_sdk_lists_with_a_filter_across_pages(client, dataverse):
    dataverse.admin.seed(
        contacts=[
            {"lastname": f"L{i:02d}", "modifiedon": f"2024-01-{i + 1:02d}T00:00:00Z"}
            for i in range(12)
        ]
    )

    pages = list(
        client.records.list_pages(
            "contact",
            filter="modifiedon ge 2024-01-04T00:00:00Z",
            select=["lastname"],
            orderby=["modifiedon asc"],
            page_size=4,
        )
    )

    assert [len(page) for page in pages] == [4, 4, 1]
    assert [r["lastname"] for page in pages for r in page] == [f"L{i:02d}" for i in range(3, 12)]
    calls = dataverse.admin.calls()["by_endpoint"]
    assert calls["GET /api/data/v9.2/EntityDefinitions"] == 1
    assert calls["GET /api/data/v9.2/contacts"] == 3


def test_sdk_creates_and_updates(client, dataverse):
    contact_id = client.records.create("contact", {"firstname": "Ann", "lastname": "Lee"})
    client.records.update("contact", contact_id, {"jobtitle": "Buyer"})

    row = dataverse.admin.record("contacts", contact_id)
    assert (row["fullname"], row["jobtitle"]) == ("Ann Lee", "Buyer")
    by_endpoint = dataverse.admin.calls()["by_endpoint"]
    picklists = (
        "GET /api/data/v9.2/EntityDefinitions(LogicalName=name)/Attributes/"
        "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
    )
    assert by_endpoint[picklists] == 1
