"""The Dataverse sandbox's OData query options: $filter, $orderby, $select.

The compiler implements what the product and issue 12 query with; the rest of what Dataverse
accepts answers 501 (tested below), so nothing is answered wrongly in silence."""

from __future__ import annotations

import operator
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.dataverse.odata import (
    INVALID_ARGUMENT_CODE,
    NO_SUCH_ATTRIBUTE_CODE,
    NOT_IMPLEMENTED_CODE,
    QUERY_ERROR_CODE,
    ODataError,
    parse_filter,
    parse_orderby,
    parse_select,
    sort_records,
)

ACCOUNT_1 = "78914942-34cb-ed11-b596-0022481d68cd"
ACCOUNT_2 = "0a6c5f1e-0f9f-e711-8122-000d3aa2331c"

# One contact per letter; `fullname` names it in the assertions.
CONTACTS = [
    {
        "fullname": "A",
        "contactid": "6d81597f-0f9f-e711-8122-000d3aa2331c",
        "firstname": "Ann",
        "lastname": "O'Brian",
        "emailaddress1": "ann@example.com",
        "revenue": 100.0,
        "numberofchildren": 2,
        "donotemail": False,
        "modifiedon": "2024-01-01T00:00:00Z",
        "_parentcustomerid_value": ACCOUNT_1,
    },
    {
        "fullname": "B",
        "contactid": "70bf4d48-34cb-ed11-b596-0022481d68cd",
        "firstname": "bob",
        "lastname": "Smith",
        "emailaddress1": None,
        "revenue": 250.5,
        "numberofchildren": 0,
        "donotemail": True,
        "modifiedon": "2024-03-15T12:30:00Z",
        "_parentcustomerid_value": None,
    },
    {
        "fullname": "C",
        "contactid": "49b0be2e-d01c-ed11-b83e-000d3a572421",
        "firstname": None,
        "lastname": "smith  ",
        "emailaddress1": "c@example.org",
        "revenue": None,
        "numberofchildren": None,
        "donotemail": None,
        "modifiedon": "2023-12-31T23:59:59Z",
        "_parentcustomerid_value": ACCOUNT_2,
    },
    {
        "fullname": "D",
        "contactid": "d5026a4d-d01c-ed11-b83e-000d3a572421",
        "firstname": "ANNE",
        "lastname": "Müller",
        "emailaddress1": "anne@example.com",
        "revenue": 0.0,
        "numberofchildren": 5,
        "donotemail": False,
        "modifiedon": "2024-03-15T12:30:01Z",
        "_parentcustomerid_value": ACCOUNT_1,
    },
    {
        "fullname": "E",
        "contactid": "0f2c7d3a-5b6e-4a1f-9c8d-7e6f5a4b3c2d",
        "firstname": "Zoë",
        "lastname": "100% Pure_Test",
        "emailaddress1": "zoe@example.net",
        "revenue": 1_000_000.0,
        "numberofchildren": 1,
        "donotemail": True,
        "modifiedon": None,
        "_parentcustomerid_value": None,
    },
]
COLUMNS = sorted(CONTACTS[0])


def matching(text: str, records=CONTACTS, **options) -> str:
    predicate = parse_filter(text, entity="contact", columns=COLUMNS, **options)
    return "".join(record["fullname"] for record in records if predicate(record))


def filter_error(text: str, **options) -> ODataError:
    with pytest.raises(ODataError) as caught:
        parse_filter(text, entity="contact", columns=COLUMNS, **options)
    return caught.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # strings: case-insensitive, trailing spaces ignored, null never compares
        ("firstname eq 'ann'", "A"),
        ("firstname eq 'ANN'", "A"),
        ("firstname ne 'ann'", "BDE"),
        ("lastname eq 'SMITH'", "BC"),
        ("firstname gt 'anne'", "BE"),
        ("firstname ge 'anne'", "BDE"),
        ("firstname lt 'b'", "AD"),
        ("firstname le 'bob'", "ABD"),
        ("lastname eq 'O''Brian'", "A"),
        ("firstname eq 'ZOE'", "E"),
        ("lastname eq 'müller'", "D"),
        ("'ann' eq firstname", "A"),
        ("'b' gt firstname", "AD"),
        # numbers: ints, decimals, exponents, negatives
        ("revenue gt 100", "BE"),
        ("revenue ge 100", "ABE"),
        ("revenue lt 100.5", "AD"),
        ("revenue le 0", "D"),
        ("revenue eq 250.5", "B"),
        ("revenue ne 0", "ABE"),
        ("revenue ge 1e6", "E"),
        ("revenue gt -1", "ABDE"),
        ("numberofchildren eq 0", "B"),
        ("5 le numberofchildren", "D"),
        # booleans, alone and compared
        ("donotemail eq true", "BE"),
        ("donotemail eq false", "AD"),
        ("donotemail", "BE"),
        ("not donotemail", "AD"),
        ("donotemail ne true", "AD"),
        ("true", "ABCDE"),
        ("false", ""),
        # guids: unquoted, any case
        (f"_parentcustomerid_value eq {ACCOUNT_1}", "AD"),
        (f"_parentcustomerid_value eq {ACCOUNT_1.upper()}", "AD"),
        (f"_parentcustomerid_value ne {ACCOUNT_1}", "C"),
        ("contactid eq 70BF4D48-34CB-ED11-B596-0022481D68CD", "B"),
        # null
        ("emailaddress1 eq null", "B"),
        ("emailaddress1 ne null", "ACDE"),
        ("null eq _parentcustomerid_value", "BE"),
        ("modifiedon eq null", "E"),
    ],
)
def test_comparisons(text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("modifiedon ge 2024-01-01T00:00:00Z", "ABD"),
        ("modifiedon gt 2024-01-01T00:00:00Z", "BD"),
        ("modifiedon lt 2024-01-01T00:00:00Z", "C"),
        # the same instant written with an offset, a fraction, or no zone (read as UTC)
        ("modifiedon ge 2024-01-01T01:00:00+01:00", "ABD"),
        ("modifiedon gt 2023-12-31T19:00:00-05:00", "BD"),
        ("modifiedon gt 2024-03-15T12:30:00.5Z", "D"),
        ("modifiedon ge 2024-03-15T12:30:00.000Z", "BD"),
        ("modifiedon le 2024-03-15T12:30Z", "ABC"),
        ("modifiedon ge 2024-01-01T00:00:00", "ABD"),
        # a date is midnight UTC
        ("modifiedon ge 2024-01-01", "ABD"),
        ("modifiedon lt 2024-01-01", "C"),
        ("modifiedon eq 2024-01-01", "A"),
        ("2024-03-15T12:30:00Z lt modifiedon", "D"),
    ],
)
def test_datetime_comparisons_across_formats(text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # and binds tighter than or
        ("firstname eq 'bob' or revenue gt 100 and donotemail eq false", "B"),
        ("(firstname eq 'bob' or revenue gt 100) and donotemail eq true", "BE"),
        ("revenue gt 100 and donotemail eq true or firstname eq 'ann'", "ABE"),
        ("revenue gt 100 and (donotemail eq true or firstname eq 'ann')", "BE"),
        ("((firstname eq 'ann'))", "A"),
        ("not (firstname eq 'ann' or firstname eq 'bob')", "DE"),
        ("not donotemail eq true", "AD"),  # not binds tighter: (not donotemail) eq true
        ("not not donotemail", "BE"),
        ("not (firstname eq 'ann') eq false", "A"),
        ("(revenue gt 100) ne true", "AD"),
        # SQL null logic: unknown stays unknown under not
        ("not (revenue gt 100)", "AD"),
        ("not (emailaddress1 eq 'ann@example.com')", "CDE"),
        ("revenue gt 100 or revenue le 100", "ABDE"),
        ("revenue gt 100 or donotemail eq false", "ABDE"),
        ("emailaddress1 eq null or emailaddress1 eq 'C@EXAMPLE.ORG'", "BC"),
    ],
)
def test_logic_and_precedence(text, expected):
    assert matching(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Microsoft.Dynamics.CRM.In(PropertyName='firstname',PropertyValues=['ANN','Bob'])", "AB"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=[\"O'Brian\"])", "A"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='numberofchildren',PropertyValues=['0','5'])",
            "BD",
        ),
        ("Microsoft.Dynamics.CRM.In(PropertyName='numberofchildren',PropertyValues=[0, 5])", "BD"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='parentcustomerid',"
            f"PropertyValues=['{ACCOUNT_2.upper()}','{{{ACCOUNT_1}}}'])",
            "ACD",
        ),
        ("Microsoft.Dynamics.CRM.In(PropertyName='donotemail',PropertyValues=['true'])", "BE"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='firstname',PropertyValues=[])", ""),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='firstname',PropertyValues=['ann','bob'])",
            "DE",
        ),
        ("not Microsoft.Dynamics.CRM.In(PropertyName='firstname',PropertyValues=['ann'])", "BDE"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='firstname',PropertyValues=['bob']) "
            "or revenue eq 0",
            "BD",
        ),
    ],
)
def test_dataverse_query_functions(text, expected):
    assert matching(text) == expected


def many_contacts(count: int) -> list[dict]:
    return [
        {"fullname": str(n), "contactid": str(uuid.UUID(int=n * 7919 + 1))} for n in range(count)
    ]


def test_one_of_300_ids_as_in_function_and_as_or_chain():
    records = many_contacts(1000)
    wanted = records[::3][:300]
    wanted_ids = {record["contactid"] for record in wanted}
    # clients send the ids in whatever case they hold them
    as_in = "Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[{}])".format(
        ",".join(f'"{record["contactid"].upper()}"' for record in wanted)
    )
    as_or = " or ".join(f"contactid eq {record['contactid'].upper()}" for record in wanted)
    for text in (as_in, as_or):
        predicate = parse_filter(text, entity="contact", columns=["contactid", "fullname"])
        assert {record["contactid"] for record in records if predicate(record)} == wanted_ids
    as_not_in = as_in.replace(".In(", ".NotIn(")
    predicate = parse_filter(as_not_in, entity="contact", columns=["contactid", "fullname"])
    assert sum(1 for record in records if predicate(record)) == len(records) - 300


UNKNOWN = "Could not find a property named '{}' on type 'Microsoft.Dynamics.CRM.contact'."


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("foo eq 1", QUERY_ERROR_CODE, UNKNOWN.format("foo")),
        ("FirstName eq 'ann'", QUERY_ERROR_CODE, UNKNOWN.format("FirstName")),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='foo',PropertyValues=['a'])",
            NO_SUCH_ATTRIBUTE_CODE,
            "'contact' entity doesn't contain attribute with Name = 'foo' and NameMapping = "
            "'Logical'.",
        ),
        # query functions take the logical name, not the Web API's lookup property
        (
            f"Microsoft.Dynamics.CRM.In(PropertyName='_parentcustomerid_value',"
            f"PropertyValues=['{ACCOUNT_1}'])",
            NO_SUCH_ATTRIBUTE_CODE,
            "'contact' entity doesn't contain attribute with Name = '_parentcustomerid_value' and "
            "NameMapping = 'Logical'.",
        ),
        # the exact example Microsoft documents for an unescaped quote
        (
            "lastname eq 'O'Bryan'",
            QUERY_ERROR_CODE,
            "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''.",
        ),
        ("", QUERY_ERROR_CODE, "Expression expected at position 0 in ''."),
        ("firstname eq", QUERY_ERROR_CODE, "Expression expected at position 12 in 'firstname eq'."),
        (
            "(firstname eq 'a'",
            QUERY_ERROR_CODE,
            "')' or operator expected at position 17 in '(firstname eq 'a''.",
        ),
        (
            "((firstname eq 'a') or donotemail",
            QUERY_ERROR_CODE,
            "')' or operator expected at position 33 in '((firstname eq 'a') or donotemail'.",
        ),
        (
            "firstname eq 'a')",
            QUERY_ERROR_CODE,
            "Syntax error at position 16 in 'firstname eq 'a')'.",
        ),
        (
            "firstname EQ 'a'",
            QUERY_ERROR_CODE,
            "Syntax error at position 10 in 'firstname EQ 'a''.",
        ),
        (
            "revenue gt 12abc",
            QUERY_ERROR_CODE,
            "Syntax error at position 13 in 'revenue gt 12abc'.",
        ),
        (
            "firstname eq 'a' ; x",
            QUERY_ERROR_CODE,
            "Syntax error at position 17 in 'firstname eq 'a' ; x'.",
        ),
        # bad literals
        (
            "modifiedon gt 2024-13-01T00:00:00Z",
            QUERY_ERROR_CODE,
            "Unrecognized 'Edm.DateTimeOffset' literal '2024-13-01T00:00:00Z' at '14' in "
            "'modifiedon gt 2024-13-01T00:00:00Z'.",
        ),
        (
            "modifiedon gt 2024-02-30",
            QUERY_ERROR_CODE,
            "Unrecognized 'Edm.Date' literal '2024-02-30' at '14' in 'modifiedon gt 2024-02-30'.",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=['O'Brian'])",
            QUERY_ERROR_CODE,
            "Invalid JSON. A comma character ',' was expected in scope 'Array'. Every two elements "
            "in an array and properties of an object must be separated by commas.",
        ),
        # types Dataverse knows: lookups and the primary key are Edm.Guid
        (
            f"_parentcustomerid_value eq '{ACCOUNT_1}'",
            QUERY_ERROR_CODE,
            "A binary operator with incompatible types was detected. Found operand types "
            "'Edm.Guid' and 'Edm.String' for operator kind 'Equal'.",
        ),
        (
            "contactid gt 5",
            QUERY_ERROR_CODE,
            "A binary operator with incompatible types was detected. Found operand types "
            "'Edm.Guid' and 'Edm.Int32' for operator kind 'GreaterThan'.",
        ),
        (
            "not firstname eq 'ann'",
            QUERY_ERROR_CODE,
            "A binary operator with incompatible types was detected. Found operand types "
            "'Edm.Boolean' and 'Edm.String' for operator kind 'Equal'.",
        ),
        (
            "not 'ann'",
            QUERY_ERROR_CODE,
            "A unary operator with an incompatible type was detected. "
            "Found operand type 'Edm.String' for operator kind 'Not'.",
        ),
        (
            "'ann'",
            QUERY_ERROR_CODE,
            "The $filter expression must evaluate to a single boolean value.",
        ),
        (
            "revenue gt null",
            INVALID_ARGUMENT_CODE,
            "Condition for attribute 'contact.revenue': null is not a valid value for an "
            "attribute. Use 'Null' or 'NotNull' conditions instead.",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='firstname')",
            QUERY_ERROR_CODE,
            "The function 'Microsoft.Dynamics.CRM.In' takes PropertyName='<column>' and "
            "PropertyValues=[<values>].",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='firstname' PropertyValues=['a'])",
            QUERY_ERROR_CODE,
            "')' or ',' expected at position 51 in "
            "'Microsoft.Dynamics.CRM.In(PropertyName='firstname' PropertyValues=['a'])'.",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName=",
            QUERY_ERROR_CODE,
            "Syntax error at position 39 in 'Microsoft.Dynamics.CRM.In(PropertyName='.",
        ),
    ],
)
def test_filter_errors(text, code, message):
    error = filter_error(text)
    assert (error.code, error.message, str(error)) == (code, message, message)
    assert isinstance(error, ValueError)
    assert error.status == 400


@pytest.mark.parametrize(
    "text", ["firstname in ('ann','bob')", f"contactid in ({ACCOUNT_1})", "not (revenue in (1,2))"]
)
def test_the_odata_401_in_operator_is_refused_as_dataverse_does(text):
    error = filter_error(text)
    assert error.code == NOT_IMPLEMENTED_CODE
    assert error.message == "The method or operation is not implemented."
    assert error.status == 500


@pytest.mark.parametrize("function", ["In", "NotIn"])
def test_null_in_a_value_list_is_refused_like_a_null_comparison(function):
    error = filter_error(
        f"Microsoft.Dynamics.CRM.{function}(PropertyName='firstname',PropertyValues=['a',null])"
    )
    assert error.code == INVALID_ARGUMENT_CODE
    assert error.message.startswith("Condition for attribute 'contact.firstname': null is not")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("contains(lastname,'smith')", "the function 'contains'"),
        ("startswith(firstname,'an')", "the function 'startswith'"),
        ("tolower(firstname) eq 'ann'", "the function 'tolower'"),
        (
            "Microsoft.Dynamics.CRM.Between(PropertyName='revenue',PropertyValues=['0','1'])",
            "the query function 'Microsoft.Dynamics.CRM.Between'",
        ),
        (
            "Microsoft.Dynamics.CRM.LastXDays(PropertyName='modifiedon',PropertyValue=7)",
            "the query function 'Microsoft.Dynamics.CRM.LastXDays'",
        ),
        ("firstname eq @p1", "parameter aliases ('@p1')"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)",
            "parameter aliases ('@p1')",
        ),
        ("parentcustomerid_account/name eq 'x'", "paths into related tables"),
        ("firstname eq lastname", "comparisons other than between a column and a literal"),
        ("(firstname eq 'ann') gt false", "comparisons other than between"),
        ("revenue gt 1 eq true", "chained comparisons"),
    ],
)
def test_what_the_sandbox_leaves_out_answers_501_naming_it(text, what):
    error = filter_error(text, aliases={"@p1": "'lastname'"})
    assert error.status == 501
    assert error.code == NOT_IMPLEMENTED_CODE
    assert error.message.startswith(f"The Dataverse sandbox does not implement {what}")


def test_an_unknown_function_is_a_400_as_in_microsoft_odata_core():
    error = filter_error("frobnicate(firstname) eq 'ann'")
    assert (error.status, error.code) == (400, QUERY_ERROR_CODE)
    assert error.message.startswith("An unknown function with name 'frobnicate' was found.")


def test_the_filters_issue_12_names():
    assert matching("donotemail ne true and revenue ge 0") == "AD"
    assert matching(f"_parentcustomerid_value eq {ACCOUNT_1} and modifiedon ge 2024-03-01") == "D"
    assert (
        matching("modifiedon ge 2024-01-01T00:00:00Z and modifiedon lt 2024-03-15T12:30:01Z")
        == "AB"
    )


def test_explicit_column_types_catch_mismatches_at_parse_time():
    types = {
        "firstname": "Edm.String",
        "revenue": "Edm.Decimal",
        "modifiedon": "Edm.DateTimeOffset",
    }
    with pytest.raises(ODataError, match=r"'Edm\.DateTimeOffset' and 'Edm\.String'"):
        parse_filter("modifiedon ge '2024-01-01'", entity="contact", columns=types)
    with pytest.raises(ODataError, match=r"'Edm\.String' and 'Edm\.Int32'"):
        parse_filter("firstname eq 1", entity="contact", columns=types)
    predicate = parse_filter(
        "revenue ge 100 and modifiedon ge 2024-01-01", entity="contact", columns=types
    )
    assert [record["fullname"] for record in CONTACTS if predicate(record)] == ["A", "B"]


def test_nesting_is_limited_like_microsoft_odata_core():
    assert matching("(" * 100 + "firstname eq 'ann'" + ")" * 100) == "A"
    assert matching("not " * 100 + "donotemail") == "BE"
    for text in ("(" * 101 + "true" + ")" * 101, "not " * 5000 + "true"):
        error = filter_error(text)
        assert (error.code, error.message) == (
            QUERY_ERROR_CODE,
            "Recursion depth exceeded allowed limit.",
        )


def test_a_long_flat_or_chain_is_not_nesting():
    text = " or ".join(["emailaddress1 eq 'nobody@example.com'"] * 2000 + ["firstname eq 'bob'"])
    assert matching(text) == "B"


def test_guid_ordering_comparisons_follow_sql_server():
    low, high = "ff000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
    records = [{"fullname": "low", "contactid": low}, {"fullname": "high", "contactid": high}]
    # textually "ff..." is the larger; in uniqueidentifier order the last group decides
    assert matching(f"contactid gt {low}", records) == "high"
    assert matching(f"contactid lt {high}", records) == "low"
    assert matching(f"contactid le {high.upper()}", records) == "lowhigh"


# --------------------------------------------------------------------------------------------------
# $orderby and sorting


def test_parse_orderby():
    assert parse_orderby("modifiedon", entity="contact", columns=COLUMNS) == [("modifiedon", False)]
    assert parse_orderby(
        " lastname desc , firstname asc,revenue ", entity="contact", columns=COLUMNS
    ) == [
        ("lastname", True),
        ("firstname", False),
        ("revenue", False),
    ]
    assert parse_orderby("", entity="contact", columns=COLUMNS) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo desc", UNKNOWN.format("foo")),
        ("lastname down", "Syntax error at position 9 in 'lastname down'."),
        ("lastname,", "Syntax error at position 9 in 'lastname,'."),
        ("lastname desc firstname", "Syntax error at position 14 in 'lastname desc firstname'."),
    ],
)
def test_orderby_errors(text, message):
    with pytest.raises(ODataError) as caught:
        parse_orderby(text, entity="contact", columns=COLUMNS)
    assert (caught.value.code, caught.value.message) == (QUERY_ERROR_CODE, message)


def order(text: str, records=CONTACTS) -> str:
    keys = parse_orderby(text, entity="contact", columns=COLUMNS)
    return "".join(record["fullname"] for record in sort_records(records, keys))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("revenue", "CDABE"),  # null first ascending
        ("revenue desc", "EBADC"),  # and last descending
        ("firstname", "CADBE"),  # case-insensitive
        ("modifiedon desc", "DBACE"),
        ("donotemail, revenue desc", "CADEB"),
        ("lastname, fullname desc", "EDACB"),  # "Smith" and "smith  " tie; second key decides
        ("_parentcustomerid_value", "BECAD"),  # SQL Server guid order: ...331c < ...68cd,
    ],
)
def test_sort_records(text, expected):
    assert order(text) == expected


def test_sort_is_stable_and_does_not_touch_its_input():
    records = [
        {"fullname": name, "statecode": state}
        for name, state in zip("ABCDEF", [1, 0, 1, 0, 1, 0], strict=True)
    ]
    before = list(records)
    assert order_by_state(records, descending=False) == "BDFACE"
    assert order_by_state(records, descending=True) == "ACEBDF"
    assert records == before


def order_by_state(records, *, descending):
    return "".join(
        record["fullname"] for record in sort_records(records, [("statecode", descending)])
    )


def test_guids_sort_in_sql_server_uniqueidentifier_order():
    # SQL Server compares the last group first, so this order is not the textual one.
    ids = [
        "00000000-0000-0000-0000-000000000002",
        "ff000000-0000-0000-0000-000000000001",
        "00000000-0000-0000-0100-000000000001",
        "00000000-0000-0001-0000-000000000001",
    ]
    records = [{"contactid": value} for value in ids]
    ordered = [record["contactid"] for record in sort_records(records, [("contactid", False)])]
    assert ordered == [ids[1], ids[3], ids[2], ids[0]]


# --------------------------------------------------------------------------------------------------
# $select


def test_parse_select():
    assert parse_select("firstname,lastname", entity="contact", columns=COLUMNS) == [
        "firstname",
        "lastname",
    ]
    assert parse_select(" lastname , firstname,lastname", entity="contact", columns=COLUMNS) == [
        "lastname",
        "firstname",
    ]
    assert parse_select("*", entity="contact", columns=["a", "b"]) == ["a", "b"]
    assert parse_select("", entity="contact", columns=COLUMNS) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Name", UNKNOWN.format("Name")),
        ("firstname,foo", UNKNOWN.format("foo")),
        ("firstname,,lastname", "Syntax error at position 10 in 'firstname,,lastname'."),
        ("firstname lastname", "Syntax error at position 10 in 'firstname lastname'."),
    ],
)
def test_select_errors(text, message):
    with pytest.raises(ODataError) as caught:
        parse_select(text, entity="contact", columns=COLUMNS)
    assert (caught.value.code, caught.value.message) == (QUERY_ERROR_CODE, message)


# --------------------------------------------------------------------------------------------------
# Properties of the logic, over generated records and predicates

NAMES = st.sampled_from(["ann", "Ann", "bob", "BOB", "zoë", "", None])
NUMBERS = st.one_of(st.none(), st.integers(-3, 3))
RECORDS = st.lists(
    st.fixed_dictionaries({"firstname": NAMES, "numberofchildren": NUMBERS}), max_size=12
)
OPERATORS = ["eq", "ne", "gt", "ge", "lt", "le"]
PYTHON_OPERATORS = dict(
    zip(
        OPERATORS,
        [operator.eq, operator.ne, operator.gt, operator.ge, operator.lt, operator.le],
        strict=True,
    )
)


@st.composite
def atoms(draw):
    """(filter text, column, oracle) for one comparison of a column with a literal."""
    op = draw(st.sampled_from(OPERATORS))
    if draw(st.booleans()):
        number = draw(st.integers(-3, 3))
        return (
            f"numberofchildren {op} {number}",
            "numberofchildren",
            lambda v: PYTHON_OPERATORS[op](v, number),
        )
    name = draw(st.sampled_from(["ann", "BOB", "zoë", "b"]))
    return (
        f"firstname {op} '{name}'",
        "firstname",
        lambda v: PYTHON_OPERATORS[op](v.casefold(), name.casefold()),
    )


def selected(text, records):
    predicate = parse_filter(text, entity="contact", columns=["firstname", "numberofchildren"])
    return {index for index, record in enumerate(records) if predicate(record)}


@settings(max_examples=150, deadline=None)
@given(records=RECORDS, atom=atoms())
def test_an_atom_matches_its_oracle_and_not_is_its_complement_among_non_nulls(records, atom):
    text, column, oracle = atom
    known = {index for index, record in enumerate(records) if record[column] is not None}
    expected = {index for index in known if oracle(records[index][column])}
    assert selected(text, records) == expected
    assert selected(f"not ({text})", records) == known - expected


@settings(max_examples=150, deadline=None)
@given(records=RECORDS, left=atoms(), right=atoms())
def test_and_is_intersection_or_is_union_and_de_morgan_holds(records, left, right):
    p, q = left[0], right[0]
    assert selected(f"{p} and {q}", records) == selected(p, records) & selected(q, records)
    assert selected(f"{p} or {q}", records) == selected(p, records) | selected(q, records)
    assert selected(f"not ({p} or {q})", records) == selected(f"not ({p}) and not ({q})", records)
    assert selected(f"not (not ({p}))", records) == selected(p, records)


def test_an_or_chain_of_equalities_mixed_with_other_terms_keeps_its_meaning():
    text = (
        "firstname eq 'ann' or revenue eq 250.5 or firstname eq 'ANNE' or donotemail eq true"
        " or modifiedon eq 2023-12-31T23:59:59Z"
    )
    assert matching(text) == "ABCDE"
    assert matching("firstname eq 'ann' or firstname eq 'zoe'") == "AE"
    assert matching("not (firstname eq 'ann' or firstname eq 'bob')") == "DE"
