"""The recipe's field maps (as ``include/mappings/`` ships them), row by row, and the
validation of the map files."""

import pytest

from contact_sync.mapping import (
    LOOKUP_TYPE_ANNOTATION,
    MappingError,
    map_contact,
    map_contacts,
    parent_account_id,
)
from contact_sync.models import LeadDraft, Rejection

CONTACT_ID = "70bf4d48-34cb-ed11-b596-0022481d68cd"
ACCOUNT_ID = "78914942-34cb-ed11-b596-0022481d68cd"
PARENT_CONTACT_ID = "49b0be2e-d01c-ed11-b83e-000d3a572421"

# The recipe's "contact → lead" map (Dataverse column → Marketo REST field), address handled apart.
CONTACT_TABLE = {
    "firstname": "firstName",
    "lastname": "lastName",
    "telephone1": "phone",
    "fax": "fax",
    "mobilephone": "mobilePhone",
    "address1_city": "city",
    "address1_stateorprovince": "state",
    "address1_country": "country",
    "address1_postalcode": "postalCode",
    "description": "mktoPersonNotes",
    "jobtitle": "title",
}
# The recipe's "parent account → company fields" map; revenue/employees converted, address apart.
ACCOUNT_TABLE = {
    "name": "company",
    "address1_city": "billingCity",
    "address1_stateorprovince": "billingState",
    "address1_country": "billingCountry",
    "address1_postalcode": "billingPostalCode",
    "telephone1": "mainPhone",
    "sic": "sicCode",
    "description": "mktoCompanyNotes",
    "websiteurl": "website",
}
ADDRESS_LINES = ["address1_line1", "address1_line2", "address1_line3"]


def contact(**columns) -> dict:
    record = {"contactid": CONTACT_ID, "emailaddress1": "pat@example.com"}
    return {**record, **columns}


def with_account_parent(**columns) -> dict:
    return contact(
        _parentcustomerid_value=ACCOUNT_ID, **{LOOKUP_TYPE_ANNOTATION: "account"}, **columns
    )


def account(**columns) -> dict:
    return {"accountid": ACCOUNT_ID, "name": "Litware", **columns}


def draft_of(result) -> LeadDraft:
    assert isinstance(result, LeadDraft), result
    return result


# --- contact → lead ------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "field"), CONTACT_TABLE.items())
def test_each_contact_column_lands_in_its_lead_field_trimmed(mappings, column, field):
    draft = draft_of(map_contact(contact(**{column: f"  value of {column} "}), None, mappings))
    assert draft.fields[field] == f"value of {column}"
    others = set(CONTACT_TABLE.values()) - {field}
    assert all(draft.fields[other] is None for other in others)


def test_email_is_trimmed_and_keeps_its_case(mappings):
    draft = draft_of(map_contact(contact(emailaddress1=" Pat.Lee@Example.com "), None, mappings))
    assert draft.fields["email"] == "Pat.Lee@Example.com"


def test_lead_carries_the_contact_id_in_the_configured_field(mappings):
    draft = draft_of(map_contact(contact(contactid=CONTACT_ID.upper()), None, mappings))
    assert draft.contact_id == CONTACT_ID
    assert draft.fields["dynamicsContactId"] == CONTACT_ID


def test_contact_id_field_can_be_disabled(mapping_dir):
    mapping_dir.settings(contact_id_field=None)
    draft = draft_of(map_contact(contact(), None, mapping_dir.load()))
    assert "dynamicsContactId" not in draft.fields
    assert None not in draft.fields


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["1 Main St", "Suite 2", "Floor 3"], "1 Main St\nSuite 2\nFloor 3"),
        (["1 Main St", None, " Floor 3 "], "1 Main St\nFloor 3"),
        (["", "  ", None], None),
        ([None, "PO Box 7", None], "PO Box 7"),
    ],
)
def test_address_lines_are_joined(mappings, lines, expected):
    draft = draft_of(
        map_contact(contact(**dict(zip(ADDRESS_LINES, lines, strict=True))), None, mappings)
    )
    assert draft.fields["address"] == expected


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_empty_values_become_null(mappings, empty):
    draft = draft_of(map_contact(contact(firstname=empty, jobtitle=empty), None, mappings))
    assert draft.fields["firstName"] is None
    assert draft.fields["title"] is None


def test_separator_is_configurable(mapping_dir):
    contact_map = mapping_dir.read("contact_to_lead.yaml")
    entry = next(item for item in contact_map["fields"] if item["marketo"] == "address")
    entry["separator"] = ", "
    mapping_dir.write("contact_to_lead.yaml", contact_map)
    lines = dict(zip(ADDRESS_LINES, ["1 Main St", "Suite 2", None], strict=True))
    draft = draft_of(map_contact(contact(**lines), None, mapping_dir.load()))
    assert draft.fields["address"] == "1 Main St, Suite 2"


# --- email rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "code"),
    [
        (None, "no email"),
        ("", "no email"),
        ("   ", "no email"),
        ("jöe@example.com", "invalid email"),
        ("joe@exämple.com", "invalid email"),
        ("joe.example.com", "invalid email"),
        ("joe@example", "invalid email"),
        ("joe smith@example.com", "invalid email"),
        ("joe@@example.com", "invalid email"),
    ],
)
def test_contacts_without_a_usable_email_are_rejected(mappings, email, code):
    result = map_contact(contact(emailaddress1=email), None, mappings)
    assert isinstance(result, Rejection)
    assert (result.contact_id, result.code) == (CONTACT_ID, code)
    assert "@" not in result.reason


def test_non_ascii_rejection_says_why(mappings):
    result = map_contact(contact(emailaddress1="zoë@example.com"), None, mappings)
    assert "ASCII" in result.reason


def test_missing_contacts_are_rejected_as_not_found(mappings):
    results = map_contacts([CONTACT_ID, ACCOUNT_ID], {CONTACT_ID: contact()}, {}, mappings)
    assert isinstance(results[0], LeadDraft)
    assert results[1] == Rejection(ACCOUNT_ID, "contact not found", "contact not found")


# --- parent account → company fields ------------------------------------------------------------


@pytest.mark.parametrize(("column", "field"), ACCOUNT_TABLE.items())
def test_each_account_column_lands_in_its_company_field(mappings, column, field):
    parent = account(**{column: f" value of {column} "})
    draft = draft_of(map_contact(with_account_parent(), parent, mappings))
    assert draft.fields[field] == f"value of {column}"
    assert draft.account_id == ACCOUNT_ID


def test_account_address_lines_join_into_billing_street(mappings):
    parent = account(**dict(zip(ADDRESS_LINES, ["1 Main St", None, "Building C"], strict=True)))
    draft = draft_of(map_contact(with_account_parent(), parent, mappings))
    assert draft.fields["billingStreet"] == "1 Main St\nBuilding C"


@pytest.mark.parametrize(
    ("revenue", "expected"),
    [(1000000.0, 1000000), (2154.32, 2154.32), ("1500.50", 1500.5), (0, 0), (None, None)],
)
def test_annual_revenue_is_a_number(mappings, revenue, expected):
    draft = draft_of(map_contact(with_account_parent(), account(revenue=revenue), mappings))
    assert draft.fields["annualRevenue"] == expected
    assert type(draft.fields["annualRevenue"]) is type(expected)


@pytest.mark.parametrize(
    ("employees", "expected"), [(250, 250), (12.0, 12), ("40", 40), (None, None)]
)
def test_employees_is_an_integer(mappings, employees, expected):
    parent = account(numberofemployees=employees)
    draft = draft_of(map_contact(with_account_parent(), parent, mappings))
    assert draft.fields["numberOfEmployees"] == expected
    assert type(draft.fields["numberOfEmployees"]) is type(expected)


@pytest.mark.parametrize(
    ("column", "value"),
    [("numberofemployees", 12.5), ("numberofemployees", True), ("revenue", "lots")],
)
def test_unconvertible_values_reject_the_contact_naming_the_field(mappings, column, value):
    result = map_contact(with_account_parent(), account(**{column: value}), mappings)
    assert isinstance(result, Rejection)
    assert result.code == "invalid value"
    assert column in result.reason


def test_expanded_parent_account_is_used_when_no_account_is_passed(mappings):
    record = with_account_parent(parentcustomerid_account=account(sic="7372"))
    draft = draft_of(map_contact(record, None, mappings))
    assert (draft.fields["company"], draft.fields["sicCode"]) == ("Litware", "7372")


def test_parent_contact_gives_no_company_fields(mappings):
    record = contact(
        _parentcustomerid_value=PARENT_CONTACT_ID, **{LOOKUP_TYPE_ANNOTATION: "contact"}
    )
    assert parent_account_id(record) is None
    draft = draft_of(map_contact(record, None, mappings))
    assert draft.account_id is None
    assert not set(draft.fields) & set(ACCOUNT_TABLE.values())


def test_no_parent_gives_no_company_fields(mappings):
    draft = draft_of(map_contact(contact(), None, mappings))
    assert "company" not in draft.fields
    assert draft.account_id is None
    assert draft.company is None


def test_unannotated_lookup_counts_as_account_only_when_the_account_exists(mappings):
    record = contact(_parentcustomerid_value=ACCOUNT_ID.upper())
    assert parent_account_id(record) == ACCOUNT_ID
    found = map_contacts([CONTACT_ID], {CONTACT_ID: record}, {ACCOUNT_ID: account()}, mappings)
    assert draft_of(found[0]).fields["company"] == "Litware"
    not_found = map_contacts([CONTACT_ID], {CONTACT_ID: record}, {}, mappings)
    assert "company" not in draft_of(not_found[0]).fields


def test_company_record_mode_links_the_lead_instead_of_copying_fields(mapping_dir):
    mapping_dir.settings(company_mode="company_record")
    parent = account(revenue=5000.0, numberofemployees=10)
    draft = draft_of(map_contact(with_account_parent(), parent, mapping_dir.load()))
    assert draft.fields["externalCompanyId"] == ACCOUNT_ID
    assert not set(draft.fields) & set(ACCOUNT_TABLE.values())
    assert draft.company.to_marketo()["externalCompanyId"] == ACCOUNT_ID
    assert draft.company.fields["company"] == "Litware"
    assert draft.company.fields["annualRevenue"] == 5000


def test_drafts_survive_xcom_as_dicts(mapping_dir):
    mapping_dir.settings(company_mode="company_record")
    draft = draft_of(map_contact(with_account_parent(), account(), mapping_dir.load()))
    assert LeadDraft.from_dict(draft.to_dict()) == draft


# --- select lists --------------------------------------------------------------------------------


def test_select_lists_cover_every_mapped_column(mappings):
    assert set(mappings.contact_select) == {
        "contactid",
        "_parentcustomerid_value",
        "emailaddress1",
        *CONTACT_TABLE,
        *ADDRESS_LINES,
    }
    assert set(mappings.account_select) == {
        "accountid",
        "revenue",
        "numberofemployees",
        *ACCOUNT_TABLE,
        *ADDRESS_LINES,
    }
    assert len(mappings.account_select) == len(set(mappings.account_select))


def test_lead_read_fields_include_identity_and_every_mapped_field(mappings):
    fields = mappings.lead_read_fields
    assert fields[:3] == ("id", "email", "dynamicsContactId")
    assert {"address", "billingStreet", "annualRevenue", *CONTACT_TABLE.values()} <= set(fields)


# --- validation ----------------------------------------------------------------------------------


def test_shipped_maps_are_valid_against_marketos_describe(mapping_dir, describe):
    mappings = mapping_dir.load(describe=describe)
    assert len(mappings.contact) == 13
    assert len(mappings.account) == 12


def test_describe_without_the_custom_field_names_the_setting(mapping_dir, describe):
    without = [item for item in describe if item.get("rest", {}).get("name") != "dynamicsContactId"]
    with pytest.raises(
        MappingError, match=r"settings.yaml: contact_id_field: .*'dynamicsContactId'"
    ):
        mapping_dir.load(describe=without)


def test_describe_items_without_rest_are_tolerated(mapping_dir, describe):
    mapping_dir.load(describe=[*describe, {"id": 1, "displayName": "SOAP only"}])


def edit_entry(mapping_dir, name, index, **changes):
    data = mapping_dir.read(name)
    data["fields"][index] = {**data["fields"][index], **changes}
    mapping_dir.write(name, data)


@pytest.mark.parametrize(
    ("name", "index", "changes", "expected"),
    [
        (
            "contact_to_lead.yaml",
            3,
            {"dataverse": "telephone9"},
            r"contact_to_lead.yaml: fields\[3\] \(phone\): unknown Dataverse contact column "
            r"'telephone9'",
        ),
        (
            "account_to_company.yaml",
            0,
            {"dataverse": "accountname"},
            r"account_to_company.yaml: fields\[0\] \(company\): unknown Dataverse account column",
        ),
        (
            "contact_to_lead.yaml",
            1,
            {"marketo": "firstname"},
            r"fields\[1\] \(firstname\): Marketo has no lead field 'firstname'",
        ),
        (
            "contact_to_lead.yaml",
            1,
            {"marketo": "mktoName"},
            r"fields\[1\] \(mktoName\): Marketo field 'mktoName' is read-only",
        ),
        ("contact_to_lead.yaml", 2, {"marketo": "firstName"}, "'firstName' is mapped twice"),
        ("contact_to_lead.yaml", 1, {"convert": "date"}, "convert must be one of"),
        ("contact_to_lead.yaml", 6, {"convert": "number"}, "joined columns can only be"),
        ("contact_to_lead.yaml", 1, {"dataverse": []}, "'dataverse' must be a column"),
        ("contact_to_lead.yaml", 1, {"colour": "red"}, r"fields\[1\]: unknown key\(s\) colour"),
        ("contact_to_lead.yaml", 0, {"dataverse": ["emailaddress1", "emailaddress2"]}, "'email'"),
    ],
)
def test_bad_entries_name_file_entry_and_field(
    mapping_dir, describe, name, index, changes, expected
):
    edit_entry(mapping_dir, name, index, **changes)
    with pytest.raises(MappingError, match=expected):
        mapping_dir.load(describe=describe)


def test_custom_columns_are_allowed_once_declared(mapping_dir, describe):
    data = mapping_dir.read("contact_to_lead.yaml")
    data["fields"].append({"marketo": "department", "dataverse": "new_department"})
    mapping_dir.write("contact_to_lead.yaml", data)
    with pytest.raises(MappingError, match="'new_department'"):
        mapping_dir.load(describe=describe)
    data["extra_columns"] = ["new_department"]
    mapping_dir.write("contact_to_lead.yaml", data)
    mappings = mapping_dir.load(describe=describe)
    assert "new_department" in mappings.contact_select
    draft = draft_of(map_contact(contact(new_department=" R&D "), None, mappings))
    assert draft.fields["department"] == "R&D"


def test_marketo_names_are_not_checked_without_describe(mapping_dir):
    edit_entry(mapping_dir, "contact_to_lead.yaml", 1, marketo="customFirst")
    assert mapping_dir.load().contact[1].marketo == "customFirst"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"company_mode": "both"}, "company_mode must be one of lead_fields, company_record"),
        ({"contact_id_field": ""}, "contact_id_field must be a field name or null"),
        ({"contact_id_field": "firstName"}, "firstName is set by the sync itself"),
        ({"partition": "Default"}, r"unknown key\(s\) partition"),
    ],
)
def test_bad_settings_are_named(mapping_dir, settings, expected):
    mapping_dir.settings(**settings)
    with pytest.raises(MappingError, match=expected):
        mapping_dir.load()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("fields: [", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("fields: []", "non-empty"),
    ],
)
def test_broken_files_are_named(mapping_dir, content, expected):
    path = mapping_dir.write("account_to_company.yaml", content)
    with pytest.raises(MappingError, match=expected) as caught:
        mapping_dir.load()
    assert str(path) in str(caught.value)


def test_missing_map_file_is_named(mapping_dir):
    (mapping_dir.path / "contact_to_lead.yaml").unlink()
    with pytest.raises(MappingError, match=r"contact_to_lead\.yaml: file not found"):
        mapping_dir.load()


def test_directory_comes_from_the_environment(mapping_dir, monkeypatch):
    from contact_sync.mapping import load_mappings

    mapping_dir.settings(company_mode="company_record")
    monkeypatch.setenv("CONTACT_SYNC_MAPPINGS_DIR", str(mapping_dir.path))
    assert load_mappings().settings.company_mode == "company_record"
