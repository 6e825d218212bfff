"""What issue 12 needs from the Dataverse sandbox, over real HTTP: account Update, contact Delete,
deactivation and Merge webhooks, the Merge action, and the contact filters a sync uses."""

from __future__ import annotations

import json

import pytest
import requests

from tests.fixtures import WEBHOOK_FIXTURE
from tests.sandbox.test_webhooks import (
    assert_same_shape,
    attributes,
    create_contact,
    target,
)

REFERENCE_TYPE = "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts"


@pytest.fixture
def api(dataverse):
    return dataverse.admin.api_session(), dataverse.admin.api_url


def parameters(body: dict) -> dict:
    return {p["key"]: p["value"] for p in body["InputParameters"]}


def option(value: int) -> dict:
    return {
        "__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts",
        "Value": value,
    }


def merge(api, master: str, subordinate: str, **extra):
    session, url = api
    body = {
        "Target": {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": master},
        "Subordinate": {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": subordinate},
        "UpdateContent": {"@odata.type": "Microsoft.Dynamics.CRM.contact"},
        "PerformParentingChecks": False,
        **extra,
    }
    return session.post(f"{url}/Merge", json=body)


# --- account Update ------------------------------------------------------------------------------


def test_account_update_fires_only_for_its_filtering_attributes(api, dataverse, receiver):
    session, url = api
    [account_id] = dataverse.admin.seed(accounts=[{"name": "Fourth Coffee"}])["accounts"]
    dataverse.admin.register_webhook(
        receiver.url,
        "WebhookKey",
        "k3y",
        messages=["Update"],
        entity="account",
        filtering_attributes=["name", "telephone1", "revenue"],
    )

    session.patch(f"{url}/accounts({account_id})", json={"accountnumber": "A-1"})
    session.patch(f"{url}/accounts({account_id})", json={"revenue": 1250.5})
    [job] = dataverse.admin.wait_for_deliveries(1)

    [request] = receiver.requests
    body = request.body
    assert_same_shape(body, json.loads(WEBHOOK_FIXTURE.read_text()))
    assert request.headers["x-ms-dynamics-entity-name"] == "account"
    assert (body["MessageName"], body["PrimaryEntityName"]) == ("Update", "account")
    assert body["PrimaryEntityId"] == account_id
    values = attributes(target(body))
    assert values["revenue"] == {
        "__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts",
        "Value": 1250.5,
    }
    assert "accountnumber" not in values
    assert job["primaryentitytype"] == "account"


# --- deactivation ------------------------------------------------------------------------------


def test_deactivating_a_contact_fires_an_update_with_state_and_status(api, dataverse, receiver):
    session, url = api
    contact_id = create_contact(api, lastname="Leaving")
    dataverse.admin.register_webhook(
        receiver.url, "WebhookKey", "k3y", messages=["Update"], filtering_attributes=["statecode"]
    )

    response = session.patch(f"{url}/contacts({contact_id})", json={"statecode": 1})
    dataverse.admin.wait_for_deliveries(1)

    assert response.status_code == 204
    values = attributes(target(receiver.requests[0].body))
    assert values["statecode"] == option(1)
    assert values["statuscode"] == option(2)  # Dataverse's status for Inactive
    row = dataverse.admin.record("contacts", contact_id)
    assert (row["statecode"], row["statuscode"]) == (1, 2)


# --- Delete ------------------------------------------------------------------------------------


def test_delete_sends_an_entity_reference_and_no_image_unless_registered(api, dataverse, receiver):
    session, url = api
    contact_id = create_contact(api, lastname="Gone", emailaddress1="gone@example.com")
    dataverse.admin.register_webhook(receiver.url, "WebhookKey", "k3y", messages=["Delete"])

    assert session.delete(f"{url}/contacts({contact_id})").status_code == 204
    [job] = dataverse.admin.wait_for_deliveries(1)

    [request] = receiver.requests
    body = request.body
    assert request.headers["x-ms-dynamics-request-name"] == "Delete"
    assert body["MessageName"] == "Delete"
    assert (body["PrimaryEntityName"], body["PrimaryEntityId"]) == ("contact", contact_id)
    assert parameters(body) == {
        "Target": {
            "__type": REFERENCE_TYPE,
            "Id": contact_id,
            "KeyAttributes": [],
            "LogicalName": "contact",
            "Name": None,
            "RowVersion": None,
        }
    }
    assert body["PreEntityImages"] == body["PostEntityImages"] == []
    assert (body["Mode"], body["Stage"], body["ParentContext"]["Stage"]) == (1, 40, 30)
    assert b"gone@example.com" not in request.raw
    assert job["statuscode"] == 30
    assert job["messagename"] == "Delete"


def test_delete_with_a_registered_pre_image_carries_the_deleted_columns(api, dataverse, receiver):
    session, url = api
    contact_id = create_contact(api, lastname="Gone", emailaddress1="gone@example.com")
    dataverse.admin.register_webhook(
        receiver.url,
        "WebhookKey",
        "k3y",
        messages=["Delete"],
        pre_image={"alias": "PreImage", "attributes": ["emailaddress1", "statecode"]},
    )

    session.delete(f"{url}/contacts({contact_id})")
    dataverse.admin.wait_for_deliveries(1)

    [image] = receiver.requests[0].body["PreEntityImages"]
    assert image["key"] == "PreImage"
    assert image["value"]["Id"] == contact_id
    assert attributes(image["value"]) == {
        "emailaddress1": "gone@example.com",
        "statecode": option(0),
        "contactid": contact_id,
    }
    [registration] = dataverse.admin.webhooks()
    assert registration["steps"][0]["pre_image"] == {
        "alias": "PreImage",
        "attributes": ["emailaddress1", "statecode"],
    }


def test_an_update_pre_image_shows_the_old_values(api, dataverse, receiver):
    session, url = api
    contact_id = create_contact(api, lastname="Lee", emailaddress1="old@example.com")
    dataverse.admin.register_webhook(
        receiver.url,
        "WebhookKey",
        "k3y",
        messages=["Update"],
        pre_image={"alias": "before", "attributes": ["emailaddress1"]},
    )

    session.patch(f"{url}/contacts({contact_id})", json={"emailaddress1": "new@example.com"})
    dataverse.admin.wait_for_deliveries(1)

    body = receiver.requests[0].body
    [image] = body["PreEntityImages"]
    assert attributes(image["value"])["emailaddress1"] == "old@example.com"
    assert attributes(target(body))["emailaddress1"] == "new@example.com"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"messages": ["Assign"]}, "messages must be among"),
        ({"pre_image": {"attributes": ["lastname"]}}, "pre_image"),
        ({"pre_image": {"alias": "a", "attributes": ["nope"]}}, "unknown filtering attributes"),
    ],
)
def test_bad_registrations_are_refused_naming_the_problem(dataverse, receiver, spec, problem):
    body = {"url": receiver.url, "auth_type": "WebhookKey", "auth_value": "k", **spec}
    response = requests.post(f"{dataverse.url}/_sandbox/webhooks", json=body, timeout=10)
    assert response.status_code == 400
    assert problem in response.json()["error"]


# --- Merge -------------------------------------------------------------------------------------


def test_merge_deactivates_the_subordinate_and_writes_the_update_content(api, dataverse):
    master = create_contact(api, lastname="Lee", emailaddress1="ann@example.com")
    subordinate = create_contact(api, lastname="Lee", jobtitle="Buyer")

    response = merge(
        api,
        master,
        subordinate,
        UpdateContent={"@odata.type": "Microsoft.Dynamics.CRM.contact", "jobtitle": "Buyer"},
    )

    assert response.status_code == 204, response.text
    sub = dataverse.admin.record("contacts", subordinate)
    assert (sub["statecode"], sub["statuscode"], sub["merged"]) == (1, 2, True)
    assert sub["_masterid_value"] == master
    kept = dataverse.admin.record("contacts", master)
    assert (kept["statecode"], kept["merged"], kept["jobtitle"]) == (0, False, "Buyer")
    assert (
        dataverse.service.calls.snapshot()["by_endpoint"] == {"POST /api/data/v9.2/Merge/204": 1}
        or dataverse.service.calls.count("POST /api/data/v9.2/Merge") == 1
    )


def test_merge_fires_the_merge_step_and_updates_of_subordinate_and_master(api, dataverse, receiver):
    master = create_contact(api, lastname="Lee")
    subordinate = create_contact(api, lastname="Lee", jobtitle="Buyer")
    dataverse.admin.register_webhook(
        receiver.url, "WebhookKey", "k3y", messages=["Update", "Merge"]
    )

    merge(
        api,
        master,
        subordinate,
        UpdateContent={"@odata.type": "Microsoft.Dynamics.CRM.contact", "jobtitle": "Buyer"},
    )
    dataverse.admin.wait_for_deliveries(3)

    by_message: dict[str, list[dict]] = {}
    for request in receiver.requests:
        by_message.setdefault(request.body["MessageName"], []).append(request.body)
    updates = {body["PrimaryEntityId"]: attributes(target(body)) for body in by_message["Update"]}
    assert set(updates) == {master, subordinate}
    assert updates[master]["jobtitle"] == "Buyer"
    assert updates[subordinate]["merged"] is True
    assert updates[subordinate]["statecode"] == option(1)
    assert updates[subordinate]["masterid"]["Id"] == master
    [merged] = by_message["Merge"]
    inputs = parameters(merged)
    assert merged["PrimaryEntityId"] == master
    assert inputs["Target"]["__type"] == REFERENCE_TYPE
    assert inputs["Target"]["Id"] == master
    assert inputs["SubordinateId"] == subordinate
    assert attributes(inputs["UpdateContent"]) == {"jobtitle": "Buyer"}
    assert inputs["PerformParentingChecks"] is False


def test_merge_without_the_subordinate_update_when_the_setting_says_so(api, dataverse, receiver):
    dataverse.admin.settings(merge_fires_subordinate_update=False)
    master = create_contact(api, lastname="Lee")
    subordinate = create_contact(api, lastname="Lee")
    dataverse.admin.register_webhook(
        receiver.url, "WebhookKey", "k3y", messages=["Update", "Merge"]
    )

    merge(api, master, subordinate)
    dataverse.admin.wait_for_deliveries(1)

    assert [r.body["MessageName"] for r in receiver.requests] == ["Merge"]
    assert dataverse.admin.record("contacts", subordinate)["merged"] is True


def test_merging_accounts_moves_their_contacts_to_the_master(api, dataverse):
    session, url = api
    keep, drop = dataverse.admin.seed(accounts=[{"name": "Keep"}, {"name": "Drop"}])["accounts"]
    [child] = dataverse.admin.seed(contacts=[{"lastname": "C", "_parentcustomerid_value": drop}])[
        "contacts"
    ]

    response = session.post(
        f"{url}/Merge",
        json={
            "Target": {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": keep},
            "Subordinate": {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": drop},
            "UpdateContent": {"@odata.type": "Microsoft.Dynamics.CRM.account"},
            "PerformParentingChecks": False,
        },
    )

    assert response.status_code == 204, response.text
    assert dataverse.admin.record("contacts", child)["_parentcustomerid_value"] == keep
    assert dataverse.admin.record("accounts", drop)["statecode"] == 1


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"Subordinate": None}, 400, "0x80060888"),
        ({"Subordinate": {"@odata.type": "Microsoft.Dynamics.CRM.contact"}}, 400, "0x80060888"),
        ({"PerformParentingChecks": "no"}, 400, "0x80060888"),
        ({"Extra": 1}, 400, "0x80060888"),
        (
            {
                "Subordinate": {
                    "@odata.type": "Microsoft.Dynamics.CRM.contact",
                    "contactid": "6d81597f-0f9f-e711-8122-000d3aa2331c",
                }
            },
            404,
            "0x80040217",
        ),
    ],
)
def test_a_bad_merge_request_is_refused_and_changes_nothing(api, dataverse, change, status, code):
    master = create_contact(api, lastname="Lee")
    subordinate = create_contact(api, lastname="Lee")

    response = merge(api, master, subordinate, **change)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert dataverse.admin.record("contacts", subordinate)["statecode"] == 0


def test_parenting_checks_refuse_contacts_of_different_accounts(api, dataverse):
    one, two = dataverse.admin.seed(accounts=[{"name": "One"}, {"name": "Two"}])["accounts"]
    master, subordinate = dataverse.admin.seed(
        contacts=[
            {"lastname": "A", "_parentcustomerid_value": one},
            {"lastname": "B", "_parentcustomerid_value": two},
        ]
    )["contacts"]

    refused = merge(api, master, subordinate, PerformParentingChecks=True)
    allowed = merge(api, master, subordinate, PerformParentingChecks=False)

    assert refused.status_code == 400
    assert allowed.status_code == 204


def test_merge_answers_only_post(api):
    session, url = api
    response = session.get(f"{url}/Merge")
    assert response.status_code == 405


# --- the contact filters a sync uses ------------------------------------------------------------


@pytest.fixture
def people(dataverse):
    one, two = dataverse.admin.seed(accounts=[{"name": "One"}, {"name": "Two"}])["accounts"]
    ids = dataverse.admin.seed(
        contacts=[
            {"lastname": "A", "_parentcustomerid_value": one, "createdon": "2024-01-01T00:00:00Z"},
            {"lastname": "B", "_parentcustomerid_value": two, "donotbulkemail": True},
            {"lastname": "C", "_parentcustomerid_value": one, "statecode": 1},
            {"lastname": "D", "createdon": "2025-06-01T00:00:00Z"},
        ]
    )["contacts"]
    return one, two, dict(zip("ABCD", ids, strict=True))


def names(api, query: str) -> list[str]:
    session, url = api
    response = session.get(f"{url}/contacts?$select=lastname&$orderby=lastname&$filter={query}")
    assert response.status_code == 200, response.text
    return [row["lastname"] for row in response.json()["value"]]


def test_contact_rows_have_the_columns_a_removal_sync_reads(api, people):
    session, url = api
    _, _, ids = people
    row = session.get(
        f"{url}/contacts({ids['B']})?$select=createdon,merged,_masterid_value,donotbulkemail,statecode"
    ).json()
    assert row["merged"] is False
    assert row["_masterid_value"] is None
    assert row["donotbulkemail"] is True
    assert row["createdon"].endswith("Z")


def test_filter_by_parent_account_eq_and_in(api, people):
    one, two, _ = people
    assert names(api, f"_parentcustomerid_value eq {one}") == ["A", "C"]
    assert names(
        api,
        "Microsoft.Dynamics.CRM.In(PropertyName='parentcustomerid',"
        f"PropertyValues=['{one}','{two}'])",
    ) == ["A", "B", "C"]


def test_in_refuses_the_lookup_property_name_as_dataverse_does(api, people):
    session, url = api
    one, _, _ = people
    response = session.get(
        f"{url}/contacts?$filter=Microsoft.Dynamics.CRM.In(PropertyName='_parentcustomerid_value',"
        f"PropertyValues=['{one}'])"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80041103"
    assert "_parentcustomerid_value" in response.json()["error"]["message"]


def test_filter_by_state_bulk_email_and_created_on(api, people):
    assert names(api, "statecode eq 0") == ["A", "B", "D"]
    assert names(api, "donotbulkemail ne true and statecode eq 0") == ["A", "D"]
    assert names(api, "createdon lt 2025-01-01T00:00:00Z") == ["A"]
    assert names(api, "merged eq false and _parentcustomerid_value eq null") == ["D"]


def test_what_the_sandbox_does_not_implement_is_a_501_in_dataverses_envelope(api, people):
    session, url = api
    response = session.get(f"{url}/contacts?$filter=contains(lastname,'a')")
    assert response.status_code == 501
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    error = response.json()["error"]
    assert error["code"] == "0x80040216"
    assert error["message"] == "The Dataverse sandbox does not implement the function 'contains'."
