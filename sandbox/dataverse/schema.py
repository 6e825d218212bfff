"""The two tables the sandbox serves (contact, account): the columns of Microsoft's table
references (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact
and .../entities/account) that the product reads, plus the system columns every table has.

A column is named as the Web API names it (lookups as ``_<attribute>_value``); ``attribute`` is the
logical attribute name the SDK and webhooks use (``parentcustomerid``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Kind(Enum):
    """Attribute types, valued by the Edm type the Web API gives them."""

    GUID = "Edm.Guid"
    STRING = "Edm.String"
    INT = "Edm.Int32"
    BIGINT = "Edm.Int64"
    MONEY = "Edm.Decimal"
    BOOL = "Edm.Boolean"
    DATETIME = "Edm.DateTimeOffset"
    # choices are Int32 on the wire, lookups Guid; the tuple keeps the members distinct
    PICKLIST = ("Edm.Int32", "Picklist")
    STATE = ("Edm.Int32", "State")
    STATUS = ("Edm.Int32", "Status")
    LOOKUP = ("Edm.Guid", "Lookup")

    @property
    def edm(self) -> str:
        return self.value if isinstance(self.value, str) else self.value[0]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    max_length: int | None = None
    writable: bool = True
    options: dict[int, str] = field(default_factory=dict)
    # lookups: target table -> single-valued navigation property
    navigation: dict[str, str] = field(default_factory=dict)
    # the value Dataverse gives a new row when the caller sends none
    default: Any = None

    @property
    def attribute(self) -> str:
        """The logical attribute name (``_parentcustomerid_value`` -> ``parentcustomerid``)."""
        if self.kind is Kind.LOOKUP:
            return self.name[1 : -len("_value")]
        return self.name

    @property
    def is_lookup(self) -> bool:
        return self.kind is Kind.LOOKUP


@dataclass(frozen=True)
class Table:
    logical_name: str
    schema_name: str
    entity_set: str
    primary_id: str
    primary_name: str
    object_type_code: int
    columns: dict[str, Column]

    @property
    def metadata_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse-sandbox/{self.logical_name}"))

    def edm_types(self) -> dict[str, str]:
        """Column -> Edm type, which lets the query parser reject mismatched literals."""
        return {name: column.kind.edm for name, column in self.columns.items()}

    def navigation_properties(self) -> dict[str, tuple[Column, str]]:
        """Single-valued navigation property -> (its lookup column, its target table)."""
        return {
            nav: (column, target)
            for column in self.columns.values()
            for target, nav in column.navigation.items()
        }


STATE_OPTIONS = {0: "Active", 1: "Inactive"}
STATUS_OPTIONS = {1: "Active", 2: "Inactive"}
# statuscode Dataverse sets when only statecode is given
DEFAULT_STATUS_FOR_STATE = {0: 1, 1: 2}

ADDRESS = {
    "address1_line1": 250,
    "address1_line2": 250,
    "address1_line3": 250,
    "address1_city": 80,
    "address1_stateorprovince": 50,
    "address1_country": 80,
    "address1_postalcode": 20,
}


def _strings(lengths: dict[str, int]) -> list[Column]:
    return [Column(name, Kind.STRING, max_length=length) for name, length in lengths.items()]


def _system_columns() -> list[Column]:
    systemuser = {"systemuser": "owninguser"}
    return [
        Column("statecode", Kind.STATE, options=STATE_OPTIONS),
        Column("statuscode", Kind.STATUS, options=STATUS_OPTIONS),
        Column("createdon", Kind.DATETIME, writable=False),
        Column("modifiedon", Kind.DATETIME, writable=False),
        Column("_ownerid_value", Kind.LOOKUP, writable=False, navigation={"systemuser": "ownerid"}),
        Column("_owninguser_value", Kind.LOOKUP, writable=False, navigation=systemuser),
        Column(
            "_owningbusinessunit_value",
            Kind.LOOKUP,
            writable=False,
            navigation={"businessunit": "owningbusinessunit"},
        ),
        Column(
            "_createdby_value", Kind.LOOKUP, writable=False, navigation={"systemuser": "createdby"}
        ),
        Column(
            "_modifiedby_value",
            Kind.LOOKUP,
            writable=False,
            navigation={"systemuser": "modifiedby"},
        ),
        Column("versionnumber", Kind.BIGINT, writable=False),
    ]


def _table(logical: str, schema: str, primary_name: str, otc: int, cols: list[Column]) -> Table:
    primary_id = f"{logical}id"
    columns = [Column(primary_id, Kind.GUID), *cols, *_system_columns()]
    return Table(
        logical_name=logical,
        schema_name=schema,
        entity_set=f"{logical}s",
        primary_id=primary_id,
        primary_name=primary_name,
        object_type_code=otc,
        columns={c.name: c for c in columns},
    )


CONTACT = _table(
    "contact",
    "Contact",
    "fullname",
    2,
    [
        *_strings({"firstname": 50, "middlename": 50, "lastname": 50}),
        Column("fullname", Kind.STRING, max_length=160, writable=False),
        Column("yomifullname", Kind.STRING, max_length=450, writable=False),
        *_strings(
            {
                "emailaddress1": 100,
                "emailaddress2": 100,
                "emailaddress3": 100,
                "telephone1": 50,
                "telephone2": 50,
                "mobilephone": 50,
                "fax": 50,
                "jobtitle": 100,
                **ADDRESS,
            }
        ),
        Column("description", Kind.STRING, max_length=2000),
        Column("donotemail", Kind.BOOL),
        # "Bulk Email": Allow (false) unless set; the Marketo recipes' usual sync filter reads it
        Column("donotbulkemail", Kind.BOOL, default=False),
        # set only by the Merge action (read-only in the contact table reference)
        Column("merged", Kind.BOOL, writable=False, default=False),
        Column("_masterid_value", Kind.LOOKUP, writable=False, navigation={"contact": "masterid"}),
        Column(
            "preferredcontactmethodcode",
            Kind.PICKLIST,
            options={1: "Any", 2: "Email", 3: "Phone", 4: "Fax", 5: "Mail"},
        ),
        Column("gendercode", Kind.PICKLIST, options={1: "Male", 2: "Female"}),
        Column(
            "_parentcustomerid_value",
            Kind.LOOKUP,
            navigation={
                "account": "parentcustomerid_account",
                "contact": "parentcustomerid_contact",
            },
        ),
    ],
)

ACCOUNT = _table(
    "account",
    "Account",
    "name",
    1,
    [
        *_strings({"name": 160, "accountnumber": 20, **ADDRESS}),
        *_strings({"telephone1": 50, "telephone2": 50, "sic": 20, "websiteurl": 200}),
        Column("description", Kind.STRING, max_length=2000),
        Column("revenue", Kind.MONEY),
        Column("revenue_base", Kind.MONEY, writable=False),
        Column("numberofemployees", Kind.INT),
        Column(
            "accountcategorycode", Kind.PICKLIST, options={1: "Preferred Customer", 2: "Standard"}
        ),
    ],
)

TABLES: dict[str, Table] = {t.logical_name: t for t in (CONTACT, ACCOUNT)}
BY_ENTITY_SET: dict[str, Table] = {t.entity_set: t for t in TABLES.values()}
