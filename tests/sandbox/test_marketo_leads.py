"""Get Leads, Get Lead by Id and Describe, from Adobe's Leads page."""

from __future__ import annotations

import re

import pytest

from tests.sandbox.marketo_rest import MarketoRest, error_code

LEADS = "/rest/v1/leads.json"


@pytest.fixture
def rest(marketo):
    return MarketoRest(marketo.url)


def _pages(rest, **params):
    """Follow ``nextPageToken`` like a client; every answer in order."""
    answers = [rest.get(LEADS, **params)]
    while answers[-1].get("moreResult"):
        answers.append(rest.get(LEADS, **params, nextPageToken=answers[-1]["nextPageToken"]))
    return answers


def test_lookup_by_email_returns_default_fields_in_the_envelope(marketo, rest):
    [lead_id] = marketo.admin.seed_leads([{"email": "ann@x.com", "firstName": "Ann"}])

    response = rest.call("GET", LEADS, params={"filterType": "email", "filterValues": "ann@x.com"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]+#[0-9a-f]+", body["requestId"])
    assert body["success"] is True
    assert "moreResult" not in body
    [lead] = body["result"]
    assert set(lead) == {"id", "email", "updatedAt", "createdAt", "firstName", "lastName"}
    assert lead["id"] == lead_id
    assert lead["lastName"] is None  # requested (by default) but empty: explicit null
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lead["createdAt"])


def test_no_match_is_success_with_empty_result(rest):
    assert rest.lookup("email", ["nobody@x.com"]) | {"requestId": ""} == {
        "requestId": "",
        "result": [],
        "success": True,
    }


def test_700_matches_come_in_three_pages_of_at_most_300(marketo, rest):
    marketo.admin.add_field("segment")
    ids = marketo.admin.seed_leads([{"segment": "big", "email": f"p{i}@x.com"} for i in range(700)])

    answers = _pages(rest, filterType="segment", filterValues="big", batchSize=300)

    assert [len(a["result"]) for a in answers] == [300, 300, 100]
    assert [lead["id"] for a in answers for lead in a["result"]] == ids
    assert "nextPageToken" not in answers[-1]


def test_paging_token_is_bound_to_its_query(marketo, rest):
    marketo.admin.seed_leads([{"email": "a@x.com"}, {"email": "b@x.com"}])
    first = rest.lookup("email", ["a@x.com", "b@x.com"], batchSize=1)

    foreign = rest.lookup("email", ["a@x.com"], nextPageToken=first["nextPageToken"])

    assert first["moreResult"] is True
    assert error_code(foreign) == "1003"


def test_filter_values_comma_separated_or_repeated_and_fields_too(marketo, rest):
    marketo.admin.seed_leads(
        [{"email": "a@x.com", "city": "Oslo"}, {"email": "b@x.com", "city": "Rome"}]
    )

    answer = rest.call(
        "GET",
        LEADS,
        params=[
            ("filterType", "email"),
            ("filterValues", "a@x.com"),
            ("filterValues", "b@x.com"),
            ("fields", "email,city"),
            ("fields", "title"),
        ],
    ).json()

    assert [lead["city"] for lead in answer["result"]] == ["Oslo", "Rome"]
    assert all(set(lead) == {"id", "email", "city", "title"} for lead in answer["result"])


def test_post_with_method_get_in_the_form_body_counts_as_the_lookup(marketo, rest):
    marketo.admin.seed_leads([{"email": "a@x.com", "firstName": "A"}])

    answer = rest.call(
        "POST",
        LEADS,
        data={"_method": "GET", "filterType": "email", "filterValues": "a@x.com"},
    ).json()
    in_url = rest.call(
        "POST",
        LEADS,
        params={"_method": "GET"},
        data={"filterType": "email", "filterValues": "a@x.com", "fields": "firstName"},
    ).json()

    assert [lead["firstName"] for lead in answer["result"] + in_url["result"]] == ["A", "A"]
    by_endpoint = marketo.admin.calls()["by_endpoint"]
    assert by_endpoint["GET /rest/v1/leads.json"] == 2
    assert "POST /rest/v1/leads.json" not in by_endpoint


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"filterType": "firstName", "filterValues": "Ann"}, "1011"),
        ({"filterType": "noSuchField", "filterValues": "x"}, "1006"),
        ({"filterType": "email", "filterValues": "a@x.com", "fields": "email,bogus"}, "1006"),
        ({"filterType": "email"}, "1002"),
        ({"filterType": "id", "filterValues": "abc"}, "1001"),
        ({"filterType": "email", "filterValues": "a@x.com", "batchSize": "301"}, "1003"),
        ({"filterType": "email", "filterValues": ",".join(f"{i}@x" for i in range(301))}, "1003"),
    ],
)
def test_refused_lookups(rest, params, code):
    assert error_code(rest.get(LEADS, **params)) == code


def test_more_than_1000_matches_is_1003(marketo, rest):
    marketo.admin.add_field("segment")
    marketo.admin.seed_leads([{"segment": "huge"}] * 1001)

    answer = rest.lookup("segment", ["huge"])

    assert answer["errors"] == [{"code": "1003", "message": "Too many results match the filter"}]


def test_lookup_by_id_and_by_integer_custom_field(marketo, rest):
    marketo.admin.add_field("erpNumber", data_type="integer")
    ids = marketo.admin.seed_leads([{"erpNumber": 7}, {"erpNumber": 8}, {"erpNumber": 9}])

    by_id = rest.lookup("id", [str(ids[0]), str(ids[2])])
    by_number = rest.lookup("erpNumber", ["8"], fields="erpNumber")

    assert [lead["id"] for lead in by_id["result"]] == [ids[0], ids[2]]
    assert by_number["result"] == [{"id": ids[1], "erpNumber": 8}]


def test_get_lead_by_id(marketo, rest):
    [lead_id] = marketo.admin.seed_leads([{"email": "a@x.com", "title": "CTO"}])

    found = rest.get(f"/rest/v1/lead/{lead_id}.json", fields="email,title")
    missing = rest.get("/rest/v1/lead/999999.json")

    assert found["result"] == [{"id": lead_id, "email": "a@x.com", "title": "CTO"}]
    assert missing["success"] is True
    assert missing["result"] == []


def test_describe_is_the_real_fixture_plus_custom_fields(marketo, rest):
    before = rest.get("/rest/v1/leads/describe.json")["result"]
    added = marketo.admin.add_field("dynamicsContactId", display_name="Dynamics Contact Id")
    after = rest.get("/rest/v1/leads/describe.json")["result"]

    assert len(before) == 90
    assert {"email", "externalCompanyId", "mktoPersonNotes"} <= {f["rest"]["name"] for f in before}
    assert after == [*before, added]
    assert added["rest"] == {"name": "dynamicsContactId", "readOnly": False}
    assert added["dataType"] == "string"


def test_custom_string_field_is_searchable_and_listed_in_describe2(marketo, rest):
    marketo.admin.add_field("dynamicsContactId")
    [lead_id] = marketo.admin.seed_leads([{"email": "a@x.com", "dynamicsContactId": "c-1"}])

    found = rest.lookup("dynamicsContactId", ["c-1"], fields="dynamicsContactId")
    [describe2] = rest.get("/rest/v1/leads/describe2.json")["result"]

    assert found["result"] == [{"id": lead_id, "dynamicsContactId": "c-1"}]
    assert ["dynamicsContactId"] in describe2["searchableFields"]
    assert ["firstName"] not in describe2["searchableFields"]
    names = {f["name"]: f for f in describe2["fields"]}
    assert names["dynamicsContactId"]["updateable"] is True
    assert names["createdAt"]["updateable"] is False
