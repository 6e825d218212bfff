"""The lead and company field catalogue: the real describe fixture plus custom fields.

``describe-leads.json`` is a decoded recording of a real instance's ``describe.json``
(a real instance's describe.json recorded in grouparoo/grouparoo's Marketo plugin tests);
it is copied here so the sandbox never reads ``shared/`` at run
time.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

# Standard fields Get Leads by Filter Type accepts (Adobe's Swagger and Leads page); any other
# standard field answers 1011. Custom fields are searchable when of these types:
SEARCHABLE_STANDARD_FIELDS = frozenset(
    {
        "cookies",
        "email",
        "facebookId",
        "id",
        "leadPartitionId",
        "linkedInId",
        "sfdcAccountId",
        "sfdcContactId",
        "sfdcLeadId",
        "sfdcLeadOwnerId",
        "sfdcOpptyId",
        "twitterId",
    }
)
SEARCHABLE_CUSTOM_TYPES = frozenset({"string", "email", "integer"})

# Fields of the company object that leads show as their own (describe ids 4-20).
# ``externalCompanyId`` (id 41) is the link itself and stays on the lead.
COMPANY_FIELDS = (
    "company",
    "site",
    "billingStreet",
    "billingCity",
    "billingState",
    "billingCountry",
    "billingPostalCode",
    "website",
    "mainPhone",
    "annualRevenue",
    "numberOfEmployees",
    "industry",
    "sicCode",
    "mktoCompanyNotes",
)

DEFAULT_LEAD_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")
DEFAULT_COMPANY_FIELDS = ("id", "externalCompanyId", "updatedAt", "createdAt")
SEARCHABLE_COMPANY_FIELDS = ("externalCompanyId", "id", "company")

CUSTOM_FIELD_TYPES = frozenset(
    {
        "string",
        "text",
        "integer",
        "float",
        "currency",
        "boolean",
        "email",
        "phone",
        "url",
        "date",
        "datetime",
    }
)
_LENGTHED_TYPES = frozenset({"string", "email", "phone", "url"})
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_FIRST_CUSTOM_FIELD_ID = 10_000


@dataclass(frozen=True)
class FieldDef:
    name: str
    data_type: str
    read_only: bool


def _load_fixture() -> list[dict[str, Any]]:
    text = resources.files(__package__).joinpath("describe-leads.json").read_text("utf-8")
    return json.loads(text)["result"]


class FieldCatalogue:
    """Lead fields as ``describe.json`` lists them, plus fields added through the admin API."""

    _standard: list[dict[str, Any]] = _load_fixture()

    def __init__(self) -> None:
        self._custom: list[dict[str, Any]] = []
        self._by_name: dict[str, FieldDef] = {}
        self._rebuild()

    def _rebuild(self) -> None:
        self._by_name = {
            item["rest"]["name"]: FieldDef(
                item["rest"]["name"], item["dataType"], item["rest"]["readOnly"]
            )
            for item in [*self._standard, *self._custom]
            if "rest" in item  # items without ``rest`` exist in real describes
        }

    def get(self, name: str) -> FieldDef | None:
        return self._by_name.get(name)

    def is_custom(self, name: str) -> bool:
        return any(item["rest"]["name"] == name for item in self._custom)

    def is_searchable(self, name: str) -> bool:
        definition = self._by_name.get(name)
        if name in SEARCHABLE_STANDARD_FIELDS:
            return True
        return (
            definition is not None
            and self.is_custom(name)
            and definition.data_type in SEARCHABLE_CUSTOM_TYPES
        )

    def add_custom(
        self, name: str, data_type: str = "string", display_name: str | None = None
    ) -> dict[str, Any]:
        """Add a custom lead field (what an admin does in Field Management); its describe item."""
        if not _FIELD_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid REST field name")
        if name in self._by_name:
            raise ValueError(f"field {name!r} already exists")
        if data_type not in CUSTOM_FIELD_TYPES:
            raise ValueError(f"data_type must be one of {sorted(CUSTOM_FIELD_TYPES)}")
        item: dict[str, Any] = {
            "id": _FIRST_CUSTOM_FIELD_ID + len(self._custom),
            "displayName": display_name or name,
            "dataType": data_type,
        }
        if data_type in _LENGTHED_TYPES:
            item["length"] = 255
        item["rest"] = {"name": name, "readOnly": False}
        item["soap"] = {"name": name[:1].upper() + name[1:], "readOnly": False}
        self._custom.append(item)
        self._rebuild()
        return copy.deepcopy(item)

    def reset(self) -> None:
        self._custom = []
        self._rebuild()

    def custom_fields(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._custom)

    def load_custom_fields(self, items: list[dict[str, Any]]) -> None:
        self._custom = copy.deepcopy(items)
        self._rebuild()

    def describe(self) -> list[dict[str, Any]]:
        return copy.deepcopy([*self._standard, *self._custom])

    def describe2(self) -> list[dict[str, Any]]:
        """Swagger ``LeadAttribute2`` (no real sample was found)."""
        items = [*self._standard, *self._custom]
        fields = [
            {
                "name": item["rest"]["name"],
                "displayName": item["displayName"],
                "dataType": item["dataType"],
                **({"length": item["length"]} if "length" in item else {}),
                "updateable": not item["rest"]["readOnly"],
                "crmManaged": False,
            }
            for item in items
            if "rest" in item
        ]
        searchable = [[f["name"]] for f in fields if self.is_searchable(f["name"])]
        return [{"name": "API Lead", "searchableFields": searchable, "fields": fields}]

    def describe_companies(self) -> list[dict[str, Any]]:
        """The Company object as Describe Companies shows it (sample on https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/companies)."""
        fixed = [
            {"name": "createdAt", "displayName": "Created At", "dataType": "datetime"},
            {
                "name": "externalCompanyId",
                "displayName": "External Company Id",
                "dataType": "string",
                "length": 100,
            },
            {"name": "id", "displayName": "Id", "dataType": "integer"},
            {"name": "updatedAt", "displayName": "Updated At", "dataType": "datetime"},
        ]
        by_name = {item["rest"]["name"]: item for item in self._standard if "rest" in item}
        company_fields = [
            {
                "name": name,
                "displayName": by_name[name]["displayName"],
                "dataType": by_name[name]["dataType"],
                **({"length": by_name[name]["length"]} if "length" in by_name[name] else {}),
                "updateable": True,
            }
            for name in COMPANY_FIELDS
        ]
        return [
            {
                "name": "Company",
                "description": "Company object",
                "idField": "id",
                "dedupeFields": ["externalCompanyId"],
                "searchableFields": [[name] for name in SEARCHABLE_COMPANY_FIELDS],
                "fields": [{**f, "updateable": False} for f in fixed] + company_fields,
            }
        ]
