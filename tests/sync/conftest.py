"""Shared helpers of the pure sync tests: the shipped maps, a writable copy, the describe."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from contact_sync.mapping import DEFAULT_DIRECTORY, load_mappings
from tests.fixtures import DESCRIBE_FIXTURE

CONTACT_FIELD = {
    "id": 9001,
    "displayName": "Dynamics Contact Id",
    "dataType": "string",
    "rest": {"name": "dynamicsContactId", "readOnly": False},
}


@pytest.fixture
def describe() -> list[dict]:
    """Marketo's real describe (90 fields) plus the custom field our settings name."""
    return [*json.loads(DESCRIBE_FIXTURE.read_text())["result"], CONTACT_FIELD]


class MappingDir:
    """A writable copy of include/mappings for tests that edit one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, name: str) -> dict:
        return yaml.safe_load((self.path / name).read_text())

    def write(self, name: str, data: object) -> Path:
        target = self.path / name
        target.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return target

    def settings(self, **changes) -> None:
        self.write("settings.yaml", {**self.read("settings.yaml"), **changes})

    def load(self, **kwargs):
        return load_mappings(self.path, **kwargs)


@pytest.fixture
def mapping_dir(tmp_path) -> MappingDir:
    shutil.copytree(DEFAULT_DIRECTORY, tmp_path / "mappings")
    return MappingDir(tmp_path / "mappings")


@pytest.fixture
def mappings():
    return load_mappings()
