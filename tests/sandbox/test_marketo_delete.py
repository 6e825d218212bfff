"""Delete Leads and Boolean custom fields: what issue 12's removed-contact policies call."""

from __future__ import annotations

import pytest

from tests.sandbox.marketo_rest import MarketoRest, error_code, reasons

DELETE = "/rest/v1/leads/delete.json"


@pytest.fixture
def rest(marketo):
    return MarketoRest(marketo.url)


def test_delete_leads_deletes_known_ids_and_skips_unknown_ones_in_input_order(marketo, rest):
    first, second = marketo.admin.seed_leads([{"email": "a@x.com"}, {"email": "b@x.com"}])

    answer = rest.call("POST", DELETE, json={"input": [{"id": second}, {"id": 999}]}).json()

    assert answer["success"] is True
    assert answer["result"] == [
        {"id": second, "status": "deleted"},
        {
            "id": 999,
            "status": "skipped",
            "reasons": [{"code": "1004", "message": "Lead not found"}],
        },
    ]
    assert [lead["id"] for lead in marketo.admin.leads()] == [first]
    assert rest.lookup("email", ["b@x.com"])["result"] == []


def test_delete_is_counted_like_other_calls_and_the_method_override_form_is_the_same_call(
    marketo, rest
):
    ids = marketo.admin.seed_leads([{"email": "a@x.com"}, {"email": "b@x.com"}])

    rest.call("POST", DELETE, json={"input": [{"id": ids[0]}]})
    answer = rest.call(
        "POST",
        "/rest/v1/leads.json",
        params={"_method": "DELETE"},
        json={"input": [{"id": ids[1]}]},
    ).json()

    assert reasons(answer) == [None]
    assert marketo.admin.leads() == []
    calls = marketo.service.calls.snapshot()["by_endpoint"]
    assert calls["POST /rest/v1/leads/delete.json"] == 1
    assert calls["DELETE /rest/v1/leads.json"] == 1


def test_more_than_300_ids_is_refused_whole(marketo, rest):
    [lead_id] = marketo.admin.seed_leads([{"email": "a@x.com"}])

    answer = rest.call("POST", DELETE, json={"input": [{"id": lead_id}] * 301}).json()

    assert error_code(answer) == "1003"
    assert len(marketo.admin.leads()) == 1


@pytest.mark.parametrize("body", [{}, {"input": []}, {"input": "1"}])
def test_no_input_is_1003(rest, body):
    assert error_code(rest.call("POST", DELETE, json=body).json()) == "1003"


def test_a_record_without_an_integer_id_is_skipped_1003(marketo, rest):
    marketo.admin.seed_leads([{"email": "a@x.com"}])

    answer = rest.call("POST", DELETE, json={"input": [{"email": "a@x.com"}]}).json()

    assert reasons(answer) == ["1003"]
    assert len(marketo.admin.leads()) == 1


def test_a_boolean_custom_field_is_described_as_boolean_and_holds_true_false(marketo, rest):
    marketo.admin.add_field("removedFromCrm", data_type="boolean", display_name="Removed from CRM")

    describe = rest.get("/rest/v1/leads/describe.json")["result"]
    [item] = [f for f in describe if f["rest"]["name"] == "removedFromCrm"]
    assert item["dataType"] == "boolean"
    assert item["displayName"] == "Removed from CRM"
    assert "length" not in item

    synced = rest.sync([{"email": "a@x.com", "removedFromCrm": True}])
    assert reasons(synced) == [None]
    [lead] = rest.lookup("email", ["a@x.com"], fields="removedFromCrm")["result"]
    assert lead["removedFromCrm"] is True
    rest.sync([{"email": "a@x.com", "removedFromCrm": False}])
    [lead] = rest.lookup("email", ["a@x.com"], fields="removedFromCrm")["result"]
    assert lead["removedFromCrm"] is False
