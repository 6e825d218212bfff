"""The parsers facing outside data, fed anything: each returns its result or raises only its
documented error type.

* ``contact_sync.events.parse_run_conf``: a run conf (from Airflow's REST API or the UI) →
  ``SyncRequest`` or ``EventError``;
* ``contact_sync.mapping.map_contact``: any Dataverse record shape → ``LeadDraft`` or
  ``Rejection`` (``EventError`` only for an id that is not a GUID), never the email in a reason;
* ``sandbox.dataverse.odata.parse_filter``: any ``$filter`` text → a predicate or ``ODataError``,
  and the predicate answers for every record without raising (the Web API evaluates it per row).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contact_sync.events import (
    ACTED_ON,
    EventError,
    SyncRequest,
    normalize_guid,
    parse_run_conf,
)
from contact_sync.mapping import (
    ACCOUNT_COLUMNS,
    CONTACT_COLUMNS,
    LOOKUP_TYPE_ANNOTATION,
    Mappings,
    load_mappings,
    map_contact,
)
from contact_sync.models import LeadDraft, Rejection
from sandbox.dataverse.odata import ODataError, parse_filter
from tests.fuzz.conftest import FUZZ, TRIED
from tests.fuzz.strategies import contexts, json_values, scalars
from tests.sandbox.test_odata import COLUMNS, CONTACTS

_guids = st.uuids().map(str) | st.uuids().map(lambda u: "{" + str(u).upper() + "}")
_id_like = _guids | json_values

# --- run conf ----

_conf_event = st.fixed_dictionaries(
    {},
    optional={
        "message": st.sampled_from(["Create", "Update", "update", "Delete", "Assign", ""])
        | json_values,
        "entity": st.sampled_from(["contact", "Contact", "account"]) | json_values,
        "id": _id_like,
        "operation_id": _id_like,
        "correlation_id": _id_like,
        "occurred_at": st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00", "x"])
        | st.datetimes().map(str)
        | json_values,
        "extra": json_values,
    },
)
_confs = (
    st.fixed_dictionaries(
        {},
        optional={
            "events": st.lists(_conf_event, max_size=4) | json_values,
            "webhookRequest": contexts() | json_values,
            "contact_ids": st.lists(_id_like, max_size=4) | json_values,
            "account_ids": st.lists(_id_like, max_size=4) | json_values,
            "other": json_values,
        },
    )
    | json_values
)


@FUZZ
@given(conf=_confs)
def test_run_conf_parses_or_raises_event_error(conf: Any) -> None:
    TRIED["run conf"] += 1
    try:
        request = parse_run_conf(conf)
    except EventError:
        return
    assert isinstance(request, SyncRequest)
    named = (*request.contact_ids, *request.account_ids, *request.deleted_ids)
    # Nothing to do only when every event was refused (and says why).
    assert named or request.refused
    for ids in (request.contact_ids, request.account_ids, request.deleted_ids):
        assert len(set(ids)) == len(ids)
    assert not set(request.contact_ids) & set(request.deleted_ids)
    for record_id in named:
        assert normalize_guid(record_id, what="id") == record_id
    for event in request.events:
        assert (event.entity, event.message.casefold()) in ACTED_ON
    # What goes to XCom is JSON and comes back the same.
    assert SyncRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


# --- mapping ----

_numbers_as_text = st.sampled_from(["1e999999999", "-1e999999999", "1e-999999999", "NaN", "1_000"])
_values = scalars | _numbers_as_text | st.emails() | st.lists(scalars, max_size=3)


def _record(columns: frozenset[str], id_column: str) -> st.SearchStrategy[dict[str, Any]]:
    """A record with a valid id (mostly) and any of the columns, of any JSON type."""
    return st.tuples(
        st.fixed_dictionaries({id_column: _guids}) | st.fixed_dictionaries({id_column: _id_like}),
        st.dictionaries(
            st.sampled_from(sorted(columns)) | st.text(max_size=10), _values, max_size=10
        ),
    ).map(lambda parts: {**parts[1], **parts[0]})


_accounts = _record(ACCOUNT_COLUMNS, "accountid")
_contacts = st.tuples(
    _record(CONTACT_COLUMNS, "contactid"),
    st.fixed_dictionaries(
        {},
        optional={
            "_parentcustomerid_value": _id_like,
            LOOKUP_TYPE_ANNOTATION: st.sampled_from(["account", "contact"]) | json_values,
            "parentcustomerid_account": _accounts | json_values,
        },
    ),
).map(lambda parts: {**parts[0], **parts[1]})


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings()


@FUZZ
@given(contact=_contacts, account=st.none() | _accounts)
def test_any_record_maps_to_a_lead_or_a_rejection_without_its_email(
    mappings: Mappings, contact: dict[str, Any], account: dict[str, Any] | None
) -> None:
    TRIED["mapping"] += 1
    try:
        result = map_contact(contact, account, mappings)
    except EventError:
        # Only an id that is not a GUID: the contact's own or its parent account's.
        return
    assert result.contact_id == normalize_guid(contact["contactid"], what="contactid")
    email = contact.get("emailaddress1")
    if isinstance(result, Rejection):
        if isinstance(email, str) and len(email.strip()) > 3:
            assert email.strip() not in f"{result.code} {result.reason}"
        return
    assert isinstance(result, LeadDraft)
    assert result.fields["email"] == email.strip()
    json.dumps(result.fields)  # what goes to Marketo is JSON


def test_a_number_beyond_dataverse_range_is_rejected_not_expanded(mappings: Mappings) -> None:
    # Found by the property above: "1e999999999" became a billion-digit int (minutes of CPU).
    contact = {
        "contactid": str(uuid.uuid4()),
        "emailaddress1": "a@example.com",
        "parentcustomerid_account": {
            "accountid": str(uuid.uuid4()),
            "numberofemployees": "1e99999",
        },
        "_parentcustomerid_value": str(uuid.uuid4()),
    }
    result = map_contact(contact, None, mappings)
    assert isinstance(result, Rejection)
    assert "numberofemployees" in result.reason
    assert "out of range" in result.reason


# --- OData $filter ----

_filter_words = st.sampled_from(
    [
        *COLUMNS,
        "unknowncolumn",
        *("eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not", "in", "has"),
        *("(", ")", ",", "'", "''", "/", "$", "@p1", "[", "]", '"'),
        *("'Ann'", "'O''Brian'", "'%'", "'_x'", "1", "-2.5", "1e308", "99999999999999999999"),
        *("null", "true", "false", "2024-01-01", "2024-01-01T00:00:00Z", "2024-13-45"),
        *(str(uuid.UUID(int=7)), "{" + str(uuid.UUID(int=8)) + "}"),
        *("contains(", "startswith(", "endswith(", "tolower(", "Microsoft.Dynamics.CRM.In("),
        *("Microsoft.Dynamics.CRM.Between(", "Microsoft.Dynamics.CRM.OnOrAfter("),
        *("PropertyName=", "PropertyValues=", "Property=", "Value="),
    ]
)
_filters = (
    st.lists(_filter_words, max_size=14).flatmap(
        lambda words: st.sampled_from([" ", ""]).map(lambda sep: sep.join(words))
    )
    | st.text(max_size=60)
    | st.integers(1, 5000).map(lambda n: "(" * n + "firstname eq 'Ann'" + ")" * n)
    | st.integers(1, 3000).map(lambda n: " and ".join(["firstname eq 'Ann'"] * n))
)
_aliases = st.dictionaries(
    st.sampled_from(["@p1", "@p2"]),
    st.sampled_from(["'lastname'", '["Smith","bob"]', "[", "'", "1"]) | st.text(max_size=12),
    max_size=2,
)


@FUZZ
@given(text=_filters, aliases=_aliases)
def test_any_filter_compiles_or_raises_odata_error_and_evaluates_without_raising(
    text: str, aliases: dict[str, str]
) -> None:
    TRIED["odata $filter"] += 1
    try:
        predicate = parse_filter(text, entity="contact", columns=COLUMNS, aliases=aliases)
    except ODataError as exc:
        error: ODataError | None = exc
    else:
        error = None
    if error is not None:
        # What the Web API turns into Dataverse's error body.
        assert error.code
        assert error.message
        assert 400 <= error.status < 600
        return
    for record in CONTACTS:
        assert predicate(record) in (True, False)
