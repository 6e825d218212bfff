"""Create/update/unchanged decisions, write planning, merging Marketo's per-record results."""

import json
import re
from dataclasses import dataclass

import pytest

from contact_sync.decide import (
    Plan,
    decide,
    final_outcomes,
    lead_lookups,
    merge_results,
    plan_writes,
    same_value,
)
from contact_sync.mapping import LOOKUP_TYPE_ANNOTATION, map_contact
from contact_sync.models import (
    MAX_RECORDS_PER_CALL,
    Decision,
    LeadDraft,
    Outcome,
    Rejection,
    WriteRequest,
)
from contact_sync.report import RunReport

ID_A = "70bf4d48-34cb-ed11-b596-0022481d68cd"
ID_B = "49b0be2e-d01c-ed11-b83e-000d3a572421"
ACCOUNT_ID = "78914942-34cb-ed11-b596-0022481d68cd"


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True)
class Result:
    status: str
    lead_id: int | None = None
    reasons: tuple[Reason, ...] = ()


def draft(mappings, contact_id=ID_A, email="pat@example.com", **columns) -> LeadDraft:
    record = {"contactid": contact_id, "emailaddress1": email, "firstname": "Pat", **columns}
    result = map_contact(record, None, mappings)
    assert isinstance(result, LeadDraft)
    return result


def lead_like(the_draft: LeadDraft, lead_id: int, **changes) -> dict:
    """The Marketo lead as find_leads returns it when it equals the draft."""
    return {"id": lead_id, **the_draft.fields, **changes}


def only(plan: Plan) -> Decision:
    assert not plan.rejections
    (decision,) = plan.decisions
    return decision


# --- comparing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "wanted", "current"),
    [
        ("firstName", "Pat", " Pat  "),
        ("firstName", None, ""),
        ("firstName", None, None),
        ("email", "Pat@Example.com", "pat@example.com"),
        ("annualRevenue", 1000, 1000.0),
        ("annualRevenue", 1000, "1000.00"),
        ("numberOfEmployees", 12, 12),
        ("address", "1 Main St\nSuite 2", "1 Main St\r\nSuite 2"),
    ],
)
def test_representation_differences_are_not_changes(field, wanted, current):
    assert same_value(field, wanted, current)


@pytest.mark.parametrize(
    ("field", "wanted", "current"),
    [
        ("firstName", "Pat", "pat"),
        ("firstName", "Pat", None),
        ("firstName", None, "Pat"),
        ("postalCode", "01234", "1234"),
        ("annualRevenue", 1000, 1000.5),
        ("email", "pat@example.com", "pat@example.org"),
    ],
)
def test_real_differences_are_changes(field, wanted, current):
    assert not same_value(field, wanted, current)


# --- lookups -------------------------------------------------------------------------------------


def test_lookups_by_email_and_contact_id_are_distinct(mappings):
    drafts = [
        draft(mappings, ID_A, "pat@example.com"),
        draft(mappings, ID_B, "PAT@example.com"),
    ]
    by_email, by_contact = lead_lookups(drafts, mappings)
    assert (by_email.filter_type, by_email.values) == ("email", ("pat@example.com",))
    assert (by_contact.filter_type, by_contact.values) == ("dynamicsContactId", (ID_A, ID_B))
    assert by_email.fields == mappings.lead_read_fields
    assert lead_lookups([], mappings) == []


def test_lookup_by_contact_id_is_skipped_when_disabled(mapping_dir):
    mapping_dir.settings(contact_id_field=None)
    mappings = mapping_dir.load()
    assert [lookup.filter_type for lookup in lead_lookups([draft(mappings)], mappings)] == ["email"]


# --- decisions -----------------------------------------------------------------------------------


def test_new_contact_is_created_without_null_fields(mappings):
    decision = only(decide([draft(mappings)], [], mappings))
    assert decision.action == "create"
    assert decision.fields == {
        "email": "pat@example.com",
        "firstName": "Pat",
        "dynamicsContactId": ID_A,
    }


def test_changed_fields_update_the_lead_by_id_with_only_the_changes(mappings):
    the_draft = draft(mappings, jobtitle="CTO")
    lead = lead_like(the_draft, 7, title="CEO", lastName="Old")
    decision = only(decide([the_draft], [lead], mappings))
    assert (decision.action, decision.lead_id) == ("update", 7)
    assert decision.fields == {"id": 7, "lastName": None, "title": "CTO"}
    assert set(decision.changed) == {"lastName", "title"}


def test_nothing_changed_means_no_write(mappings):
    the_draft = draft(mappings, jobtitle="CTO", email="Pat@Example.com")
    lead = lead_like(the_draft, 7, email="pat@example.com", title=" CTO ", lastName="")
    decision = only(decide([the_draft], [lead], mappings))
    assert (decision.action, decision.lead_id, decision.fields) == ("unchanged", 7, {})


def test_company_numbers_compare_by_value(mappings):
    record = {
        "contactid": ID_A,
        "emailaddress1": "pat@example.com",
        "_parentcustomerid_value": ACCOUNT_ID,
        LOOKUP_TYPE_ANNOTATION: "account",
    }
    account = {"accountid": ACCOUNT_ID, "name": "Litware", "revenue": 1000.0}
    the_draft = map_contact(record, account, mappings)
    lead = lead_like(the_draft, 7, annualRevenue=1000.0, numberOfEmployees=None)
    assert only(decide([the_draft], [lead], mappings)).action == "unchanged"


def test_email_change_updates_the_linked_lead_instead_of_creating(mappings):
    the_draft = draft(mappings, email="pat.new@example.com")
    old = lead_like(the_draft, 7, email="pat.old@example.com")
    decision = only(decide([the_draft], [old], mappings))
    assert (decision.action, decision.lead_id) == ("update", 7)
    assert decision.fields == {"id": 7, "email": "pat.new@example.com"}


def test_linked_lead_wins_over_an_unlinked_lead_with_the_same_email(mappings):
    the_draft = draft(mappings)
    unlinked = lead_like(the_draft, 3, dynamicsContactId=None)
    linked = lead_like(the_draft, 9)
    assert only(decide([the_draft], [unlinked, linked], mappings)).lead_id == 9


def test_duplicate_unlinked_leads_resolve_to_the_lowest_id_and_get_linked(mappings):
    the_draft = draft(mappings)
    leads = [lead_like(the_draft, lead_id, dynamicsContactId=None) for lead_id in (12, 5, 8)]
    decision = only(decide([the_draft], leads, mappings))
    assert (decision.action, decision.lead_id) == ("update", 5)
    assert decision.fields == {"id": 5, "dynamicsContactId": ID_A}


def test_unlinked_duplicate_is_preferred_over_one_linked_to_another_contact(mappings):
    the_draft = draft(mappings)
    other = lead_like(the_draft, 2, dynamicsContactId=ID_B)
    unlinked = lead_like(the_draft, 6, dynamicsContactId=None)
    assert only(decide([the_draft], [other, unlinked], mappings)).lead_id == 6


def test_lead_of_another_contact_with_this_email_is_taken_over(mappings):
    the_draft = draft(mappings)
    other = lead_like(the_draft, 2, dynamicsContactId=ID_B)
    decision = only(decide([the_draft], [other], mappings))
    assert decision.fields == {"id": 2, "dynamicsContactId": ID_A}


def test_two_contacts_creating_one_email_in_a_batch_write_it_once(mappings):
    first, second = draft(mappings, ID_A), draft(mappings, ID_B, email="PAT@example.com")
    plan = decide([first, second], [], mappings)
    assert [decision.contact_id for decision in plan.decisions] == [ID_A]
    assert plan.rejections[0].contact_id == ID_B
    assert plan.rejections[0].code == "duplicate email"
    assert ID_A in plan.rejections[0].reason
    assert "@" not in plan.rejections[0].reason


def test_a_linked_lead_is_not_also_taken_by_another_contact_in_the_batch(mappings):
    # B moved to a new email; A now has B's old address. B keeps its lead; A may not take it.
    a, b = draft(mappings, ID_A, email="old@example.com"), draft(mappings, ID_B, "new@example.com")
    b_lead = lead_like(b, 4, email="old@example.com")
    plan = decide([a, b], [b_lead], mappings)
    assert [(d.contact_id, d.action, d.lead_id) for d in plan.decisions] == [(ID_B, "update", 4)]
    assert plan.rejections[0].contact_id == ID_A


def test_without_contact_id_field_leads_match_by_email_only(mapping_dir):
    mapping_dir.settings(contact_id_field=None)
    mappings = mapping_dir.load()
    the_draft = draft(mappings, email="pat.new@example.com")
    old = {"id": 7, "email": "pat.old@example.com", "firstName": "Pat"}
    assert only(decide([the_draft], [old], mappings)).action == "create"


def test_company_record_mode_syncs_the_company_only_when_leads_show_other_values(mapping_dir):
    mapping_dir.settings(company_mode="company_record")
    mappings = mapping_dir.load()
    record = {
        "contactid": ID_A,
        "emailaddress1": "pat@example.com",
        "_parentcustomerid_value": ACCOUNT_ID,
        LOOKUP_TYPE_ANNOTATION: "account",
    }
    account = {"accountid": ACCOUNT_ID, "name": "Litware", "numberofemployees": 50}
    the_draft = map_contact(record, account, mappings)

    created = decide([the_draft], [], mappings)
    assert only(created).fields["externalCompanyId"] == ACCOUNT_ID
    assert "company" not in only(created).fields
    assert [company.to_marketo() for company in created.companies] == [
        {"externalCompanyId": ACCOUNT_ID, **the_draft.company.fields}
    ]

    current = lead_like(the_draft, 7, **the_draft.company.fields)
    in_sync = decide([the_draft], [current], mappings)
    assert (only(in_sync).action, in_sync.companies) == ("unchanged", ())

    renamed = lead_like(the_draft, 7, **{**the_draft.company.fields, "company": "Old name"})
    stale = decide([the_draft], [renamed], mappings)
    assert only(stale).action == "unchanged"
    assert [company.external_company_id for company in stale.companies] == [ACCOUNT_ID]


# --- write planning ------------------------------------------------------------------------------


def test_writes_are_chunked_at_300_by_action(mappings):
    decisions = [
        Decision(f"c{index}", "create", fields={"email": f"p{index}@example.com"})
        for index in range(MAX_RECORDS_PER_CALL + 1)
    ]
    decisions += [Decision("u1", "update", 5, {"id": 5, "title": "CTO"}, ("title",))]
    decisions += [Decision("n1", "unchanged", 6)]
    requests = plan_writes(decisions)
    assert [(r.action, r.lookup_field, len(r.records)) for r in requests] == [
        ("createOnly", "email", 300),
        ("createOnly", "email", 1),
        ("updateOnly", "id", 1),
    ]
    assert requests[1].contact_ids == ("c300",)
    assert requests[1].records == ({"email": "p300@example.com"},)
    assert requests[2].records == ({"id": 5, "title": "CTO"},)


def test_chunk_size_is_bounded_by_marketos_limit():
    with pytest.raises(ValueError, match="chunk_size"):
        plan_writes([], chunk_size=301)


# --- merging results -----------------------------------------------------------------------------


def request(action="createOnly", count=3) -> WriteRequest:
    return WriteRequest(
        action=action,
        lookup_field="email" if action == "createOnly" else "id",
        records=tuple({"email": f"p{index}@example.com"} for index in range(count)),
        contact_ids=tuple(f"c{index}" for index in range(count)),
    )


def test_created_updated_and_skipped_records_become_outcomes():
    results = [
        Result("created", 50),
        Result("updated", 51),
        Result("skipped", reasons=(Reason("1006", "Field 'faxx' not found"),)),
    ]
    merged = merge_results(request(), results)
    assert merged.follow_ups == ()
    assert merged.outcomes == (
        Outcome("c0", "created", lead_id=50),
        Outcome("c1", "updated", lead_id=51),
        Outcome(
            "c2",
            "rejected",
            reason_code="marketo 1006",
            reason="Marketo skipped it with code 1006: Field 'faxx' not found",
        ),
    )


def test_create_skipped_because_the_lead_appeared_is_retried_as_update_by_email():
    results = [
        Result("created", 50),
        Result("skipped", reasons=(Reason("1005", "Lead already exists"),)),
    ]
    merged = merge_results(request(count=2), results)
    assert merged.outcomes == (Outcome("c0", "created", lead_id=50),)
    (follow_up,) = merged.follow_ups
    assert (follow_up.action, follow_up.lookup_field) == ("updateOnly", "email")
    assert follow_up.records == ({"email": "p1@example.com"},)
    assert follow_up.contact_ids == ("c1",)

    again = merge_results(
        follow_up,
        [Result("skipped", reasons=(Reason("1007", "Multiple lead match lookup criteria"),))],
    )
    assert again.follow_ups == ()
    assert again.outcomes[0].reason_code == "marketo 1007"
    assert again.outcomes[0].status == "rejected"


def test_skip_messages_are_redacted_of_emails():
    results = [Result("skipped", reasons=(Reason("1003", "Invalid data for pat@example.com"),))]
    (outcome,) = merge_results(request(count=1), results).outcomes
    assert "@" not in outcome.reason
    assert outcome.reason == "Marketo skipped it with code 1003: Invalid data for <email>"


def test_unknown_status_is_a_rejection_not_a_success():
    (outcome,) = merge_results(request(count=1), [Result("deleted", 9)]).outcomes
    assert outcome.status == "rejected"
    assert "deleted" in outcome.reason


def test_misaligned_results_are_refused():
    with pytest.raises(ValueError, match="2 results for 3 records"):
        merge_results(request(), [Result("created", 1), Result("created", 2)])


# --- final outcomes and the report -------------------------------------------------------------


def test_every_contact_ends_in_exactly_one_outcome_in_request_order(mappings):
    plan = Plan(
        decisions=(
            Decision(ID_A, "unchanged", 7),
            Decision("c-new", "create", fields={"email": "new@example.com"}),
        ),
        rejections=(Rejection("c-dup", "duplicate email", "duplicate email: ..."),),
    )
    mapping_rejections = [Rejection("c-none", "no email", "no email")]
    written = [Outcome("c-new", "created", lead_id=99)]
    order = ["c-none", "c-new", ID_A, "c-dup"]
    outcomes = final_outcomes(order, mapping_rejections, plan, written)
    assert [(o.contact_id, o.status) for o in outcomes] == [
        ("c-none", "rejected"),
        ("c-new", "created"),
        (ID_A, "unchanged"),
        ("c-dup", "rejected"),
    ]
    with pytest.raises(ValueError, match="1 contact"):
        final_outcomes([*order, "c-lost"], mapping_rejections, plan, written)


def test_report_counts_outcomes_and_reasons_without_emails():
    outcomes = [
        Outcome("c1", "created", 1),
        Outcome("c2", "unchanged", 2),
        Outcome("c3", "rejected", reason_code="no email", reason="no email"),
        Outcome("c4", "rejected", reason_code="no email", reason="no email"),
        Outcome(
            "c5",
            "rejected",
            reason_code="marketo 1006",
            reason="Marketo skipped it with code 1006: x",
        ),
    ]
    report = RunReport.build(outcomes)
    summary = report.to_dict()
    assert summary["counts"] == {
        "created": 1,
        "updated": 0,
        "unchanged": 1,
        "flagged": 0,
        "deleted": 0,
        "skipped": 0,
        "rejected": 3,
    }
    assert summary["reasons"] == {"no email": 2, "marketo 1006": 1}
    assert [item["contact_id"] for item in summary["rejected"]] == ["c3", "c4", "c5"]
    assert report.failed
    text = report.as_text()
    assert re.search(r"^rejected +3$", text, re.MULTILINE)
    assert "c5  " in text
    assert "1006" in text
    assert not RunReport.build(outcomes[:2]).failed


@pytest.mark.parametrize(
    "value",
    [
        Decision(ID_A, "update", 5, {"id": 5, "title": "CTO"}, ("title",)),
        Outcome(ID_A, "rejected", reason_code="no email", reason="no email"),
        Rejection(ID_A, "no email", "no email"),
        request(count=2),
    ],
)
def test_pipeline_values_survive_xcom_as_json(value):
    assert type(value).from_dict(json.loads(json.dumps(value.to_dict()))) == value
