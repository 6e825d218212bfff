"""The Web API v9.2 over real HTTP, against the documented requests and answers (Microsoft
Learn's Web API pages)."""

from __future__ import annotations

import uuid

import pytest

ANNOTATED = {"Prefer": 'odata.include-annotations="*"'}


@pytest.fixture
def api(dataverse):
    """(session, api_url) with a valid token."""
    return dataverse.admin.api_session(), dataverse.admin.api_url


@pytest.fixture
def litware(dataverse):
    """An account and a contact under it, as in Microsoft's retrieve example."""
    ids = dataverse.admin.seed(
        accounts=[{"name": "Litware, Inc. (sample)", "telephone1": "555-0150"}],
    )
    account_id = ids["accounts"][0]
    contact_id = dataverse.admin.seed(
        contacts=[
            {
                "firstname": "Susanna",
                "lastname": "Stubberod",
                "emailaddress1": "someone@example.com",
                "telephone1": "555-0100",
                "_parentcustomerid_value": account_id,
                "modifiedon": "2023-04-07T21:59:01Z",
            }
        ]
    )["contacts"][0]
    return account_id, contact_id


def test_retrieve_with_expand_and_annotations(api, litware, dataverse):
    session, url = api
    account_id, contact_id = litware

    response = session.get(
        f"{url}/contacts({contact_id})?$select=firstname,lastname,emailaddress1,telephone1,"
        "_parentcustomerid_value,modifiedon&$expand=parentcustomerid_account($select=name,telephone1)",
        headers=ANNOTATED,
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    assert response.headers["OData-Version"] == "4.0"
    assert response.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    body = response.json()
    assert body["@odata.context"] == (
        f"{dataverse.url}/api/data/v9.2/$metadata#contacts(firstname,lastname,emailaddress1,"
        "telephone1,_parentcustomerid_value,modifiedon,parentcustomerid_account(name,telephone1))"
        "/$entity"
    )
    assert body["@odata.etag"].startswith('W/"')
    assert body["contactid"] == contact_id
    assert body["_parentcustomerid_value"] == account_id
    lookup = "_parentcustomerid_value@"
    assert body[lookup + "OData.Community.Display.V1.FormattedValue"] == "Litware, Inc. (sample)"
    assert body[lookup + "Microsoft.Dynamics.CRM.associatednavigationproperty"] == (
        "parentcustomerid_account"
    )
    assert body[lookup + "Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert body["modifiedon"] == "2023-04-07T21:59:01Z"
    assert body["modifiedon@OData.Community.Display.V1.FormattedValue"] == "4/7/2023 9:59 PM"
    assert body["parentcustomerid_account"] == {
        "name": "Litware, Inc. (sample)",
        "telephone1": "555-0150",
        "accountid": account_id,
    }
    assert "fullname" not in body


def test_retrieve_without_annotations_has_no_annotations(api, litware):
    session, url = api

    body = session.get(f"{url}/contacts({litware[1]})?$select=_parentcustomerid_value").json()

    assert [k for k in body if "@" in k and not k.startswith("@odata")] == []
    assert body["_parentcustomerid_value"] == litware[0]


def test_expanding_the_other_parent_type_gives_null(api, dataverse, litware):
    session, url = api
    child = dataverse.admin.seed(
        contacts=[{"lastname": "Child", "_parentcustomerid_value": litware[1]}]
    )["contacts"][0]

    body = session.get(
        f"{url}/contacts({child})?$select=lastname"
        "&$expand=parentcustomerid_account($select=name),parentcustomerid_contact($select=lastname)"
    ).json()

    assert body["parentcustomerid_account"] is None
    assert body["parentcustomerid_contact"] == {"lastname": "Stubberod", "contactid": litware[1]}


def test_missing_record_is_404_with_the_dataverse_error(api):
    session, url = api
    missing = str(uuid.uuid4())

    response = session.get(f"{url}/contacts({missing})")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "0x80040217",
            "message": f"Entity 'contact' With Id = {missing} Does Not Exist",
        }
    }


def test_unknown_entity_set_is_a_missing_segment(api):
    session, url = api

    response = session.get(f"{url}/leads")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Resource not found for the segment 'leads'."


@pytest.mark.parametrize(
    "query",
    ["$select=nosuchcolumn", "$filter=nosuchcolumn eq 1", "$orderby=nosuchcolumn", "$skip=5"],
)
def test_bad_query_options_are_0x80060888(api, query):
    session, url = api

    response = session.get(f"{url}/contacts?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80060888"


def test_filters_for_one_of_these_ids(api, dataverse):
    session, url = api
    ids = dataverse.admin.seed(contacts=[{"lastname": f"C{i}"} for i in range(5)])["contacts"]
    wanted = ids[1:4:2]
    quoted = ",".join(f"'{i}'" for i in wanted)
    in_form = f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[{quoted}])"
    or_form = " or ".join(f"contactid eq {i.upper()}" for i in wanted)

    for expression in (in_form, or_form):
        response = session.get(
            f"{url}/contacts", params={"$filter": expression, "$select": "lastname"}
        )
        assert response.status_code == 200, response.text
        assert sorted(r["contactid"] for r in response.json()["value"]) == sorted(wanted)


def pages(session, first_url, headers):
    responses, next_url = [], first_url
    while next_url:
        response = session.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        responses.append(response)
        next_url = response.json().get("@odata.nextLink")
    return responses


def test_paging_follows_next_links(api, dataverse):
    session, url = api
    ids = dataverse.admin.seed(contacts=[{"lastname": f"Page{i:02d}"} for i in range(12)])[
        "contacts"
    ]

    responses = pages(
        session,
        f"{url}/contacts?$select=lastname&$orderby=lastname desc",
        {"Prefer": "odata.maxpagesize=5"},
    )

    assert [len(r.json()["value"]) for r in responses] == [5, 5, 2]
    assert all(r.headers["Preference-Applied"] == "odata.maxpagesize=5" for r in responses)
    next_link = responses[0].json()["@odata.nextLink"]
    assert next_link.startswith(f"{dataverse.url}/api/data/v9.2/contacts?")
    assert "$skiptoken=" in next_link
    names = [row["lastname"] for r in responses for row in r.json()["value"]]
    assert names == [f"Page{i:02d}" for i in reversed(range(12))]
    assert sorted(row["contactid"] for r in responses for row in r.json()["value"]) == sorted(ids)


def test_paging_is_stable_under_concurrent_inserts(api, dataverse):
    session, url = api
    dataverse.admin.seed(contacts=[{"lastname": f"Row{i:02d}"} for i in range(10)])
    prefer = {"Prefer": "odata.maxpagesize=4"}

    first = session.get(f"{url}/contacts?$select=lastname&$orderby=lastname", headers=prefer).json()
    # one row lands before the page boundary, one after: an offset would repeat or skip a row
    dataverse.admin.seed(contacts=[{"lastname": "Row00a"}, {"lastname": "Row05a"}])
    rest = pages(session, first["@odata.nextLink"], prefer)

    names = [row["lastname"] for row in first["value"]] + [
        row["lastname"] for r in rest for row in r.json()["value"]
    ]
    assert names == ["Row00", "Row01", "Row02", "Row03", "Row04", "Row05", "Row05a"] + [
        f"Row{i:02d}" for i in range(6, 10)
    ]


def test_larger_page_sizes_are_ignored_and_top_limits(api, dataverse):
    session, url = api
    dataverse.admin.seed(contacts=[{"lastname": f"T{i}"} for i in range(7)])

    too_big = session.get(f"{url}/contacts", headers={"Prefer": "odata.maxpagesize=6000"})
    top = session.get(f"{url}/contacts?$top=3")

    assert "Preference-Applied" not in too_big.headers
    assert len(too_big.json()["value"]) == 7
    assert len(top.json()["value"]) == 3
    assert "@odata.nextLink" not in top.json()


def test_count_is_capped(api, dataverse):
    session, url = api
    dataverse.admin.seed(contacts=[{"lastname": f"N{i}"} for i in range(6)])
    dataverse.admin.settings(count_limit=5)

    capped = session.get(
        f"{url}/contacts?$count=true&$top=1",
        headers={"Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.*"'},
    ).json()
    dataverse.admin.settings(count_limit=5000)
    exact = session.get(f"{url}/contacts?$count=true&$filter=lastname ne 'N0'").json()

    assert capped["@odata.count"] == 5
    assert capped["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is True
    assert exact["@odata.count"] == 5
    assert session.get(f"{url}/contacts/$count").text == "6"


def test_create_update_delete(api, dataverse):
    session, url = api
    account = dataverse.admin.seed(accounts=[{"name": "Contoso"}])["accounts"][0]

    created = session.post(
        f"{url}/contacts",
        json={
            "firstname": "Jim",
            "lastname": "Glynn",
            "parentcustomerid_account@odata.bind": f"/accounts({account})",
        },
    )
    assert created.status_code == 204
    entity_id = created.headers["OData-EntityId"]
    assert entity_id.startswith(f"{dataverse.url}/api/data/v9.2/contacts(")
    contact_id = entity_id.rsplit("(", 1)[1].rstrip(")")
    row = dataverse.admin.record("contacts", contact_id)
    assert row["fullname"] == "Jim Glynn"
    assert row["_parentcustomerid_value"] == account
    assert row["statecode"] == 0

    updated = session.patch(f"{url}/contacts({contact_id})", json={"firstname": "James"})
    assert updated.status_code == 204
    after = dataverse.admin.record("contacts", contact_id)
    assert after["fullname"] == "James Glynn"
    assert after["versionnumber"] > row["versionnumber"]

    assert session.delete(f"{url}/contacts({contact_id})").status_code == 204
    assert session.delete(f"{url}/contacts({contact_id})").status_code == 404
    assert dataverse.admin.record("contacts", contact_id) is None


def test_return_representation(api):
    session, url = api

    created = session.post(
        f"{url}/contacts?$select=fullname",
        json={"firstname": "Ann", "lastname": "Lee"},
        headers={"Prefer": "return=representation"},
    )

    assert created.status_code == 201
    assert created.headers["Preference-Applied"] == "return=representation"
    body = created.json()
    assert body["fullname"] == "Ann Lee"
    assert body["@odata.context"].endswith("$metadata#contacts(fullname)/$entity")
    assert created.headers["OData-EntityId"].endswith(f"contacts({body['contactid']})")


def test_patch_upserts_unless_if_match(api, dataverse):
    session, url = api
    new_id = str(uuid.uuid4())

    guarded = session.patch(
        f"{url}/contacts({new_id})", json={"lastname": "X"}, headers={"If-Match": "*"}
    )
    upserted = session.patch(f"{url}/contacts({new_id})", json={"lastname": "X"})

    assert guarded.status_code == 404
    assert guarded.json()["error"]["code"] == "0x80040217"
    assert upserted.status_code == 204
    assert dataverse.admin.record("contacts", new_id)["lastname"] == "X"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"nosuch": 1}, "0x80060888"),
        ({"_parentcustomerid_value": str(uuid.uuid4())}, "0x80060888"),
        ({"firstname": "x" * 51}, "0x80044331"),
        ({"preferredcontactmethodcode": 42}, "0x8004431a"),
    ],
    ids=["unknown-column", "raw-lookup", "too-long", "bad-choice"],
)
def test_invalid_writes_are_refused(api, dataverse, body, code):
    session, url = api

    response = session.post(f"{url}/contacts", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert dataverse.admin.records("contacts") == []


def test_binding_a_missing_parent_is_404(api):
    session, url = api
    missing = str(uuid.uuid4())

    response = session.post(
        f"{url}/contacts", json={"parentcustomerid_account@odata.bind": f"/accounts({missing})"}
    )

    assert response.status_code == 404
    assert missing in response.json()["error"]["message"]


def test_patch_on_a_collection_is_405(api):
    session, url = api

    assert session.patch(f"{url}/contacts", json={}).status_code == 405


def test_too_long_url(api, dataverse):
    session, url = api
    dataverse.admin.settings(max_url_length=200)

    response = session.get(f"{url}/contacts?$filter=" + "lastname eq 'x' or " * 20 + "true")

    assert response.status_code == 414


def test_request_limit_gives_429_until_the_window_moves(api, dataverse):
    session, url = api
    dataverse.admin.settings(requests_per_window=3, window_s=300)

    answers = [session.get(f"{url}/contacts") for _ in range(4)]
    dataverse.admin.advance_clock(301)
    later = session.get(f"{url}/contacts")

    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[3].json()["error"] == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 3 over time window of 300 seconds.",
    }
    assert 0 < int(answers[3].headers["Retry-After"]) <= 300
    assert later.status_code == 200


def test_injected_faults_are_answered_and_counted(api, dataverse, litware):
    session, url = api
    dataverse.admin.set_faults(
        {"rules": [{"answer": "503", "path": "/api/data/v9.2/contacts", "limit": 1}]}
    )

    first = session.get(f"{url}/contacts({litware[1]})")
    second = session.get(f"{url}/contacts({litware[1]})")

    assert (first.status_code, second.status_code) == (503, 200)
    calls = dataverse.admin.calls()
    assert calls["by_endpoint"]["GET /api/data/v9.2/contacts(id)"] == 2
    assert calls["answers"]["503"] == 1
    assert calls["answers"]["200"] >= 1


def test_injected_429_carries_retry_after(api, dataverse):
    session, url = api
    dataverse.admin.set_faults({"rules": [{"answer": "429", "limit": 1}]})

    response = session.get(f"{url}/contacts")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "0x80072322"


def test_entity_definitions_resolve_entity_sets(api):
    session, url = api

    response = session.get(
        f"{url}/EntityDefinitions",
        params={
            "$select": "LogicalName,EntitySetName,PrimaryIdAttribute",
            "$filter": "LogicalName eq 'contact'",
        },
    )

    assert response.status_code == 200
    [definition] = response.json()["value"]
    assert definition["EntitySetName"] == "contacts"
    assert definition["PrimaryIdAttribute"] == "contactid"
