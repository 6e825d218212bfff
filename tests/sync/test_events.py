"""Webhook bodies and run confs → events and sync requests (pure, no Airflow, no HTTP)."""

import copy
import json
from datetime import UTC, datetime

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contact_sync.events import (
    RUN_CONF_PARAM_SCHEMAS,
    ContactEvent,
    EventError,
    SyncRequest,
    event_from_webhook,
    parse_dotnet_date,
    parse_run_conf,
)
from tests.fixtures import WEBHOOK_FIXTURE

# Microsoft's sample payload ("Use webhooks",
# https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks).
FIXTURE = WEBHOOK_FIXTURE
CONTACT_ID = "6d81597f-0f9f-e711-8122-000d3aa2331c"
OTHER_ID = "78914942-34cb-ed11-b596-0022481d68cd"
STRIPPED_KEYS = ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages")


@pytest.fixture
def webhook() -> dict:
    return json.loads(FIXTURE.read_text())


def event_conf(**changes) -> dict:
    conf = {
        "message": "Update",
        "entity": "contact",
        "id": CONTACT_ID,
        "operation_id": None,
        "correlation_id": None,
        "occurred_at": None,
    }
    return {**conf, **changes}


# --- parse_dotnet_date ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/Date(1506409448000-0700)/", datetime(2017, 9, 26, 7, 4, 8, tzinfo=UTC)),
        ("/Date(1722582039000+0000)/", datetime(2024, 8, 2, 7, 0, 39, tzinfo=UTC)),
        ("/Date(1721816905786)/", datetime(2024, 7, 24, 10, 28, 25, 786000, tzinfo=UTC)),
        ("\\/Date(1506384247000)\\/", datetime(2017, 9, 26, 0, 4, 7, tzinfo=UTC)),
        ("/Date(-86400000)/", datetime(1969, 12, 31, tzinfo=UTC)),
    ],
)
def test_dotnet_dates_are_epoch_milliseconds_in_utc(raw, expected):
    parsed = parse_dotnet_date(raw)
    assert parsed == expected
    assert parsed.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("raw", ["2017-09-26T06:44:08Z", "/Date()/", "/Date(12a)/", "", 1506409448])
def test_non_dotnet_dates_are_refused(raw):
    with pytest.raises(EventError, match="/Date"):
        parse_dotnet_date(raw)


# --- event_from_webhook -----------------------------------------------------------------------


def test_microsoft_sample_becomes_an_event_of_ids(webhook):
    event = event_from_webhook(webhook)
    assert event == ContactEvent(
        message="Update",
        entity="contact",
        id=CONTACT_ID,
        operation_id="4af10637-4ea2-e711-8122-000d3aa2331c",
        correlation_id="b374239d-4233-41a9-8b17-a86cb4f737b5",
        occurred_at="2017-09-26T07:04:08Z",
    )
    assert "James" not in json.dumps(event.to_conf())


def test_stripped_payload_over_256kb_gives_the_same_event(webhook):
    stripped = {key: value for key, value in webhook.items() if key not in STRIPPED_KEYS}
    assert event_from_webhook(stripped) == event_from_webhook(webhook)


def test_minimal_context_needs_only_message_entity_and_id():
    event = event_from_webhook(
        {"MessageName": "Create", "PrimaryEntityName": "Contact", "PrimaryEntityId": CONTACT_ID}
    )
    assert (event.message, event.entity, event.id) == ("Create", "contact", CONTACT_ID)
    assert event.operation_id is event.correlation_id is event.occurred_at is None


def test_ids_are_lower_cased_and_unbraced(webhook):
    webhook["PrimaryEntityId"] = "{" + CONTACT_ID.upper() + "}"
    webhook["OperationId"] = webhook["OperationId"].upper()
    event = event_from_webhook(webhook)
    assert event.id == CONTACT_ID
    assert event.operation_id == "4af10637-4ea2-e711-8122-000d3aa2331c"


def test_pre_operation_create_takes_the_id_from_output_parameters(webhook):
    webhook["MessageName"] = "Create"
    webhook["PrimaryEntityId"] = "00000000-0000-0000-0000-000000000000"
    webhook["OutputParameters"] = [{"key": "id", "value": OTHER_ID}]
    assert event_from_webhook(webhook).id == OTHER_ID


def test_empty_primary_id_without_another_id_is_refused(webhook):
    stripped = {key: value for key, value in webhook.items() if key not in STRIPPED_KEYS}
    stripped["PrimaryEntityId"] = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(EventError, match="empty GUID"):
        event_from_webhook(stripped)


def test_other_entities_and_messages_are_not_filtered_here(webhook):
    webhook.update(MessageName="Delete", PrimaryEntityName="account")
    event = event_from_webhook(webhook)
    assert (event.message, event.entity) == ("Delete", "account")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"PrimaryEntityId": None}, "PrimaryEntityId must be a GUID"),
        ({"PrimaryEntityId": "not-a-guid"}, "PrimaryEntityId is not a GUID"),
        ({"MessageName": ""}, "MessageName must be a non-empty string"),
        ({"PrimaryEntityName": 3}, "PrimaryEntityName must be a non-empty string"),
        ({"OperationId": "x"}, "OperationId is not a GUID"),
        ({"OperationCreatedOn": "yesterday"}, "OperationCreatedOn: not a /Date"),
    ],
)
def test_bad_fields_are_named(webhook, change, expected):
    webhook.update(change)
    with pytest.raises(EventError, match=expected):
        event_from_webhook(webhook)


@pytest.mark.parametrize("body", [[], "text", None, {"Target": {}}, {"MessageName": "Update"}])
def test_non_contexts_are_refused(body):
    with pytest.raises(EventError):
        event_from_webhook(body)


def test_missing_keys_are_listed():
    with pytest.raises(EventError, match="missing PrimaryEntityName, PrimaryEntityId"):
        event_from_webhook({"MessageName": "Update"})


def test_error_messages_do_not_echo_email_addresses(webhook):
    webhook["PrimaryEntityId"] = "jane.doe@example.com"
    with pytest.raises(EventError) as caught:
        event_from_webhook(webhook)
    assert "@" not in str(caught.value)
    assert "string of 20 characters" in str(caught.value)


# --- ContactEvent conf round trip -------------------------------------------------------------

guids = st.uuids().map(str)
events = st.builds(
    ContactEvent,
    message=st.sampled_from(["Create", "Update", "Delete", "Assign"]),
    entity=st.sampled_from(["contact", "account"]),
    id=guids,
    operation_id=st.none() | guids,
    correlation_id=st.none() | guids,
    occurred_at=st.none()
    | st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
)


@given(events)
def test_conf_round_trip_keeps_every_event(event):
    conf = event.to_conf()
    assert set(conf) == {"message", "entity", "id", "operation_id", "correlation_id", "occurred_at"}
    assert ContactEvent.from_conf(json.loads(json.dumps(conf))) == event


def test_occurred_at_is_normalised_to_utc_z():
    event = ContactEvent.from_conf(event_conf(occurred_at="2017-09-26T00:04:08-07:00"))
    assert event.occurred_at == "2017-09-26T07:04:08Z"


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        (event_conf(contactid=CONTACT_ID), "unknown key"),
        ({"message": "Update", "entity": "contact"}, "missing key"),
        (event_conf(id="123"), "id is not a GUID"),
        (event_conf(occurred_at="2017-09-26T07:04:08"), "occurred_at has no UTC offset"),
        (event_conf(occurred_at="tomorrow"), "occurred_at is not an ISO-8601"),
        (event_conf(operation_id=5), "operation_id must be a GUID"),
        ("Update", "must be a JSON object"),
    ],
)
def test_bad_event_confs_are_named(conf, expected):
    with pytest.raises(EventError, match=expected):
        ContactEvent.from_conf(conf)


# --- parse_run_conf ---------------------------------------------------------------------------


def test_events_form_dedupes_ids_in_order_and_refuses_what_it_does_not_sync():
    conf = {
        "events": [
            event_conf(id=OTHER_ID, message="Create"),
            event_conf(message="Assign"),
            event_conf(),
            event_conf(entity="lead", id=CONTACT_ID),
            event_conf(id=OTHER_ID.upper()),
        ]
    }
    request = parse_run_conf(conf)
    assert request.source == "events"
    assert request.contact_ids == (OTHER_ID, CONTACT_ID)
    assert request.account_ids == request.deleted_ids == ()
    assert len(request.events) == 3
    assert [(refusal.item, refusal.id) for refusal in request.refused] == [
        ("events[1]", CONTACT_ID),
        ("events[3]", CONTACT_ID),
    ]
    assert "'Assign' is not synced (only Create, Delete, Update)" in request.refused[0].reason
    assert "entity 'lead' is not synced" in request.refused[1].reason


def test_account_updates_name_accounts_and_an_account_create_is_refused_with_why():
    request = parse_run_conf(
        {
            "events": [
                event_conf(entity="account", message="update", id=OTHER_ID),
                event_conf(entity="account", message="Create", id=CONTACT_ID),
            ]
        }
    )
    assert request.account_ids == (OTHER_ID,)
    assert request.contact_ids == ()
    (refusal,) = request.refused
    assert refusal.item == "events[1]"
    assert "no contact has this account as parent yet" in refusal.reason


def test_a_deleted_contact_is_deleted_even_when_the_batch_also_updated_it():
    request = parse_run_conf(
        {
            "events": [
                event_conf(message="Update"),
                event_conf(id=OTHER_ID, message="Update"),
                event_conf(message="Delete"),
            ]
        }
    )
    assert request.contact_ids == (OTHER_ID,)
    assert request.deleted_ids == (CONTACT_ID,)
    assert request.refused == ()


def test_account_ids_form_is_validated_and_named():
    request = parse_run_conf({"account_ids": [OTHER_ID.upper(), OTHER_ID]})
    assert request.source == "account_ids"
    assert request.account_ids == (OTHER_ID,)
    assert request.contact_ids == ()
    with pytest.raises(EventError, match=r"account_ids\[1\] is not a GUID"):
        parse_run_conf({"account_ids": [OTHER_ID, "not-a-guid"]})
    with pytest.raises(EventError, match="exactly one of"):
        parse_run_conf({"account_ids": [OTHER_ID], "contact_ids": [CONTACT_ID]})


def test_a_request_survives_xcom_with_its_account_and_deleted_ids():
    request = parse_run_conf(
        {"events": [event_conf(entity="account", id=OTHER_ID), event_conf(message="Delete")]}
    )
    assert SyncRequest.from_dict(request.to_dict()) == request


def test_webhook_request_form_accepts_the_microsoft_sample(webhook):
    request = parse_run_conf({"webhookRequest": webhook})
    assert request.source == "webhookRequest"
    assert request.contact_ids == (CONTACT_ID,)
    assert request.refused == ()


def test_a_pasted_account_update_names_the_account(webhook):
    webhook["PrimaryEntityName"] = "account"
    request = parse_run_conf({"webhookRequest": webhook})
    assert request.contact_ids == ()
    assert request.account_ids == (CONTACT_ID,)


def test_webhook_request_of_another_entity_is_refused_not_raised(webhook):
    webhook["PrimaryEntityName"] = "opportunity"
    request = parse_run_conf({"webhookRequest": webhook})
    assert request.contact_ids == request.account_ids == ()
    assert request.refused[0].item == "webhookRequest"


def test_contact_ids_form_normalises_and_dedupes():
    braced = "{" + CONTACT_ID + "}"
    request = parse_run_conf({"contact_ids": [CONTACT_ID.upper(), OTHER_ID, braced]})
    assert request == SyncRequest(source="contact_ids", contact_ids=(CONTACT_ID, OTHER_ID))


def test_null_keys_count_as_absent():
    request = parse_run_conf({"events": None, "webhookRequest": None, "contact_ids": [CONTACT_ID]})
    assert request.contact_ids == (CONTACT_ID,)


def test_request_survives_xcom_as_a_dict():
    request = parse_run_conf({"events": [event_conf(), event_conf(entity="account")]})
    assert SyncRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


BAD_CONFS = [
    (None, "must be a JSON object"),
    ({}, "exactly one of events, webhookRequest, contact_ids, account_ids; got none"),
    ({"events": [event_conf()], "contact_ids": [CONTACT_ID]}, "got events, contact_ids"),
    ({"contacts": [CONTACT_ID]}, "unknown conf key"),
    ({"events": []}, "events is empty"),
    ({"events": event_conf()}, "events must be a list"),
    ({"events": [event_conf(), event_conf(id="nope")]}, r"events\[1\]: id is not a GUID"),
    ({"contact_ids": [CONTACT_ID, 7]}, r"contact_ids\[1\] must be a GUID"),
    ({"webhookRequest": {"MessageName": "Update"}}, "webhookRequest: not a RemoteExecutionContext"),
]


@pytest.mark.parametrize(("conf", "expected"), BAD_CONFS)
def test_bad_confs_are_refused_with_the_problem_named(conf, expected):
    with pytest.raises(EventError, match=expected):
        parse_run_conf(conf)


def test_the_dag_params_accept_each_good_form(webhook):
    """Airflow validates each conf key against its Param's schema before the run exists."""
    for conf in (
        {"events": [event_conf(operation_id=OTHER_ID, occurred_at="2017-09-26T07:04:08Z")]},
        {"webhookRequest": copy.deepcopy(webhook)},
        {"contact_ids": [CONTACT_ID]},
        {"events": None, "webhookRequest": None, "contact_ids": [CONTACT_ID]},
    ):
        for key, value in conf.items():
            jsonschema.validate(value, RUN_CONF_PARAM_SCHEMAS[key])
        parse_run_conf(conf)
