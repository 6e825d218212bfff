"""Sync Leads, from Adobe's Leads page (Sync Leads, email matching)."""

from __future__ import annotations

import pytest

from tests.sandbox.marketo_rest import MarketoRest, error_code, reasons

LEADS = "/rest/v1/leads.json"


@pytest.fixture
def rest(marketo):
    return MarketoRest(marketo.url)


def test_create_then_update_by_email_with_the_documented_statuses(marketo, rest):
    created = rest.sync([{"email": "a@x.com", "firstName": "A"}])
    [lead_id] = [r["id"] for r in created["result"]]
    updated = rest.sync([{"email": "a@x.com", "lastName": "B"}])

    assert created["result"] == [{"id": lead_id, "status": "created"}]
    assert updated["result"] == [{"id": lead_id, "status": "updated"}]
    lead = marketo.admin.lead(lead_id)
    assert (lead["firstName"], lead["lastName"]) == ("A", "B")
    assert marketo.admin.calls()["by_endpoint"]["POST /rest/v1/leads.json"] == 2


def test_each_action_and_its_reason_in_input_order(marketo, rest):
    marketo.admin.seed_leads([{"email": "taken@x.com"}, {"email": "dup@x.com"}, {}])
    marketo.admin.seed_leads([{"email": "dup@x.com"}])

    create_only = rest.sync(
        [{"email": "new@x.com"}, {"email": "taken@x.com"}, {"firstName": "no key"}],
        action="createOnly",
    )
    update_only = rest.sync(
        [{"email": "ghost@x.com"}, {"email": "taken@x.com"}, {"email": "dup@x.com"}],
        action="updateOnly",
    )
    upsert = rest.sync(
        [{"email": "dup@x.com"}, {"email": "fresh@x.com"}, {"email": "new@x.com", "bogus": 1}]
    )

    assert reasons(create_only) == [None, "1005", "1003"]
    assert create_only["result"][0]["status"] == "created"
    assert reasons(update_only) == ["1004", None, "1007"]
    assert update_only["result"][1]["status"] == "updated"
    assert reasons(upsert) == ["1007", None, "1006"]
    assert upsert["result"][2]["reasons"] == [
        {"code": "1006", "message": "Field 'bogus' not found"}
    ]


def test_create_duplicate_always_inserts(marketo, rest):
    first = rest.sync([{"email": "a@x.com"}], action="createDuplicate")
    second = rest.sync([{"email": "a@x.com"}], action="createDuplicate")

    assert first["result"][0]["status"] == second["result"][0]["status"] == "created"
    assert len(marketo.admin.leads(email="a@x.com")) == 2


def test_id_belongs_only_to_update_only(marketo, rest):
    [lead_id] = marketo.admin.seed_leads([{"email": "a@x.com"}])

    refused = rest.sync([{"id": lead_id, "firstName": "X"}], action="createOnly")
    updated = rest.sync(
        [{"id": lead_id, "firstName": "Y"}, {"id": 424242, "firstName": "Z"}, {"id": "abc"}],
        action="updateOnly",
        lookupField="id",
    )

    assert reasons(refused) == ["1003"]
    assert reasons(updated) == [None, "1004", "1001"]
    assert marketo.admin.lead(lead_id)["firstName"] == "Y"


def test_non_ascii_email_is_invalid_data(rest):
    assert reasons(rest.sync([{"email": "zoë@x.com"}, {"email": "zoe@x.com"}])) == ["1003", None]


def test_email_matching_is_case_insensitive_unless_switched_off(marketo, rest):
    [lead_id] = marketo.admin.seed_leads([{"email": "Ann@X.com"}])

    assert rest.sync([{"email": "ann@x.COM"}])["result"] == [{"id": lead_id, "status": "updated"}]
    assert rest.lookup("email", ["ANN@x.com"])["result"][0]["id"] == lead_id

    marketo.admin.settings(email_case_insensitive=False)
    assert rest.lookup("email", ["ANN@x.com"])["result"] == []
    assert rest.sync([{"email": "ANN@x.com"}])["result"][0]["status"] == "created"


def test_custom_lookup_field(marketo, rest):
    marketo.admin.add_field("dynamicsContactId")
    [lead_id] = marketo.admin.seed_leads([{"email": "old@x.com", "dynamicsContactId": "c-1"}])

    answer = rest.sync(
        [{"dynamicsContactId": "c-1", "email": "new@x.com"}], lookupField="dynamicsContactId"
    )

    assert answer["result"] == [{"id": lead_id, "status": "updated"}]
    assert marketo.admin.lead(lead_id)["email"] == "new@x.com"


def test_updated_at_moves_only_when_a_value_changes(marketo, rest):
    [lead_id] = [r["id"] for r in rest.sync([{"email": "a@x.com", "city": "Oslo"}])["result"]]
    created = marketo.admin.lead(lead_id)

    marketo.admin.advance_clock(60)
    rest.sync([{"email": "a@x.com", "city": "Oslo"}])
    unchanged = marketo.admin.lead(lead_id)
    marketo.admin.advance_clock(60)
    rest.sync([{"email": "a@x.com", "city": "Rome"}])
    changed = marketo.admin.lead(lead_id)

    assert unchanged["updatedAt"] == created["updatedAt"] == created["createdAt"]
    assert changed["updatedAt"] > created["updatedAt"]
    assert changed["createdAt"] == created["createdAt"]


def test_the_write_log_tells_created_changed_and_unchanged_writes_apart(marketo, rest):
    [a] = [r["id"] for r in rest.sync([{"email": "a@x.com", "city": "Oslo"}])["result"]]
    rest.sync([{"email": "a@x.com", "city": "Oslo"}, {"email": "b@x.com"}])
    rest.sync([{"email": "a@x.com", "city": "Rome"}])
    [b] = [lead["id"] for lead in marketo.admin.leads(email="b@x.com")]

    assert marketo.admin.writes() == {
        a: {"created": 1, "unchanged": 1, "changed": 1},
        b: {"created": 1},
    }
    marketo.admin.reset()
    assert marketo.admin.writes() == {}


def test_options_real_clients_send_are_accepted(marketo, rest):
    answer = rest.sync(
        [{"email": "a@x.com"}],
        action="createOrUpdate",
        partitionName="Default",
        asyncProcessing=False,
        **{"asyncProcessing ": False},  # marketorestpython 0.5.25's key, trailing space included
    )
    unknown_partition = rest.sync([{"email": "b@x.com"}], partitionName="Emea")

    assert answer["result"][0]["status"] == "created"
    assert reasons(unknown_partition) == ["1008"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "1003"),
        ({"input": []}, "1003"),
        ({"input": [{"email": f"{i}@x.com"} for i in range(301)]}, "1003"),
        ({"input": [{"email": "a@x.com"}], "action": "upsert"}, "1003"),
        ({"input": [{"email": "a@x.com"}], "lookupField": "firstName"}, "1011"),
    ],
)
def test_refused_sync_calls(rest, body, code):
    assert error_code(rest.call("POST", LEADS, json=body).json()) == code


def test_malformed_bodies(rest):
    not_json = rest.call(
        "POST", LEADS, data=b"{oops", headers={"Content-Type": "application/json"}
    ).json()
    wrong_type = rest.call(
        "POST", LEADS, data=b"<input/>", headers={"Content-Type": "text/xml"}
    ).json()

    assert error_code(not_json) == "609"
    assert error_code(wrong_type) == "612"
