"""Two contacts, one email (issue 12 item 4) as a specification."""

import itertools

import pytest

from contact_sync.models import Rejection
from contact_sync.ownership import Claimant, duplicate_email_rejections, email_owners

ID_FIELD = "dynamicsContactId"
OLD = "49b0be2e-d01c-ed11-b83e-000d3a572421"
NEW = "70bf4d48-34cb-ed11-b596-0022481d68cd"
NEWER = "d5026a4d-d01c-ed11-b83e-000d3a572421"
OUTSIDE = "6d81597f-0f9f-e711-8122-000d3aa2331c"


def claimant(contact_id, created_on, email="ann@example.com"):
    return Claimant(contact_id, email, created_on)


def rejections(claimants, leads=()):
    return duplicate_email_rejections(claimants, leads, contact_id_field=ID_FIELD)


def duplicate(contact_id, owner):
    return Rejection(contact_id, "duplicate email", f"duplicate email: contact {owner} owns it")


def test_without_a_linked_lead_the_oldest_contact_owns_the_email():
    batch = [claimant(NEW, "2024-05-01T00:00:00Z"), claimant(OLD, "2023-01-01T00:00:00Z")]
    assert rejections(batch) == [duplicate(NEW, OLD)]


def test_the_contact_linked_to_the_lead_keeps_it_even_if_younger():
    batch = [claimant(NEW, "2024-05-01T00:00:00Z"), claimant(OLD, "2023-01-01T00:00:00Z")]
    lead = {"id": 7, "email": "ann@example.com", ID_FIELD: NEW}
    assert rejections(batch, [lead]) == [duplicate(OLD, NEW)]


def test_a_contact_outside_the_batch_linked_to_the_lead_keeps_it():
    lead = {"id": 7, "email": "ANN@example.com", ID_FIELD: OUTSIDE.upper()}
    assert rejections([claimant(NEW, "2024-05-01T00:00:00Z")], [lead]) == [duplicate(NEW, OUTSIDE)]


def test_a_linked_contact_moving_to_another_email_gives_the_old_one_up():
    # OLD's lead still has ann@ but OLD now syncs bob@: NEW (alone on ann@) is not rejected
    batch = [
        claimant(OLD, "2023-01-01T00:00:00Z", email="bob@example.com"),
        claimant(NEW, "2024-05-01T00:00:00Z"),
    ]
    lead = {"id": 7, "email": "ann@example.com", ID_FIELD: OLD}
    assert rejections(batch, [lead]) == []


def test_ties_on_createdon_go_to_the_lower_contact_id_and_undated_contacts_come_last():
    same = "2024-01-01T00:00:00Z"
    assert rejections([claimant(NEWER, same), claimant(NEW, same)]) == [duplicate(NEWER, NEW)]
    assert rejections([claimant(OLD, None), claimant(NEWER, same)]) == [duplicate(OLD, NEWER)]


def test_emails_match_case_insensitively_and_other_emails_are_untouched():
    batch = [
        claimant(NEW, "2024-05-01T00:00:00Z", email=" Ann@Example.com"),
        claimant(OLD, "2023-01-01T00:00:00Z"),
        claimant(NEWER, "2022-01-01T00:00:00Z", email="solo@example.com"),
    ]
    assert rejections(batch) == [duplicate(NEW, OLD)]


def test_three_claimants_two_rejections_sorted_by_contact_id():
    batch = [
        claimant(NEWER, "2025-01-01T00:00:00Z"),
        claimant(OLD, "2023-01-01T00:00:00Z"),
        claimant(NEW, "2024-01-01T00:00:00Z"),
    ]
    assert rejections(batch) == [duplicate(NEW, OLD), duplicate(NEWER, OLD)]


def test_the_owner_is_the_same_in_any_order_and_on_every_rerun():
    batch = [
        claimant(NEWER, "2025-01-01T00:00:00Z"),
        claimant(OLD, "2023-01-01T00:00:00Z"),
        claimant(NEW, "2024-01-01T00:00:00Z"),
    ]
    leads = [{"id": 7, "email": "ann@example.com", ID_FIELD: NEW}, {"id": 8, "email": "x@y.z"}]
    answers = {
        tuple(rejections(list(order), list(lead_order)))
        for order in itertools.permutations(batch)
        for lead_order in itertools.permutations(leads)
    }
    assert answers == {(duplicate(OLD, NEW), duplicate(NEWER, NEW))}


def test_without_a_contact_id_field_only_age_decides():
    batch = [claimant(NEW, "2024-05-01T00:00:00Z"), claimant(OLD, "2023-01-01T00:00:00Z")]
    lead = {"id": 7, "email": "ann@example.com", ID_FIELD: NEW}
    owners = email_owners(batch, [lead], contact_id_field=None)
    assert owners == {"ann@example.com": OLD}


def test_a_lead_whose_contact_id_field_is_not_a_guid_links_nobody():
    batch = [claimant(NEW, "2024-05-01T00:00:00Z"), claimant(OLD, "2023-01-01T00:00:00Z")]
    lead = {"id": 7, "email": "ann@example.com", ID_FIELD: "n/a"}
    assert rejections(batch, [lead]) == [duplicate(NEW, OLD)]


def test_reasons_never_carry_the_email():
    batch = [claimant(NEW, "2024-05-01T00:00:00Z"), claimant(OLD, "2023-01-01T00:00:00Z")]
    [rejection] = rejections(batch)
    assert "ann@" not in rejection.reason


def test_bad_ids_and_dates_are_named():
    with pytest.raises(ValueError, match="contact id is not a GUID"):
        Claimant("nope", "a@b.c", None)
    with pytest.raises(ValueError, match=f"contact {NEW}: createdon is not a date"):
        rejections([claimant(NEW, "yesterday"), claimant(OLD, None)])
