"""on_contact_removed as a specification: policy × cause × the leads found by contact id."""

import pytest

from contact_sync.removal import Cause, Removal, live_contact_fields, plan_removal, removal_of

CONTACT = "70bf4d48-34cb-ed11-b596-0022481d68cd"
MASTER = "49b0be2e-d01c-ed11-b83e-000d3a572421"
OTHER = "d5026a4d-d01c-ed11-b83e-000d3a572421"
ID_FIELD = "dynamicsContactId"
FLAG = "removedFromCrm"


def lead(lead_id, contact=CONTACT, flagged=None):
    return {"id": lead_id, ID_FIELD: contact, FLAG: flagged, "email": "x@example.com"}


def plan(cause, leads, policy, *, master=None):
    removal = Removal(CONTACT, cause, master)
    return plan_removal(removal, leads, policy=policy, flag_field=FLAG, contact_id_field=ID_FIELD)


REMOVED = [Cause.DELETED, Cause.DEACTIVATED]


# --- ignore: the recipe's behaviour ------------------------------------------------------------


@pytest.mark.parametrize("leads", [[], [lead(7)], [lead(7, flagged=True)]])
@pytest.mark.parametrize(
    ("cause", "code", "reason"),
    [
        (Cause.DELETED, "contact deleted", "contact deleted in Dynamics 365"),
        (
            Cause.DEACTIVATED,
            "contact deactivated",
            "contact inactive in Dynamics 365 (statecode 1)",
        ),
    ],
)
def test_ignore_skips_with_the_cause_and_the_policy_and_writes_nothing(leads, cause, code, reason):
    result = plan(cause, leads, "ignore")

    # skipped, not rejected: the recipe's behaviour must not fail the run
    assert result.action == "skip"
    assert result.outcome == "skipped"
    assert result.code == code
    assert result.reason == f"{reason}; on_contact_removed is ignore: its lead is left as is"
    assert result.flag_writes == result.delete_ids == ()


def test_ignore_names_the_master_of_a_merge_and_still_syncs_it():
    result = plan(Cause.MERGED, [lead(7)], "ignore", master=MASTER)

    assert result.code == "contact merged"
    assert result.reason.startswith(f"contact merged into contact {MASTER}; on_contact_removed")
    assert result.sync_also == MASTER


@pytest.mark.parametrize("leads", [[], [lead(7)]])
def test_ignore_skips_a_filtered_contact_as_filtered(leads):
    result = plan(Cause.FILTERED, leads, "ignore")
    assert (result.action, result.outcome, result.reason) == ("skip", "skipped", "filtered")
    assert result.code == "filtered"


# --- flag -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cause", REMOVED)
def test_flag_writes_the_flag_true_on_the_contacts_lead(cause):
    result = plan(cause, [lead(7, flagged=False)], "flag")

    assert result.action == "flag"
    assert result.outcome == "flagged"
    assert result.flag_writes == ({"id": 7, FLAG: True},)
    assert result.delete_ids == ()


def test_flag_writes_only_the_leads_not_yet_flagged_in_id_order():
    result = plan(Cause.DELETED, [lead(9), lead(3, flagged=True), lead(5, flagged=False)], "flag")
    assert result.flag_writes == ({"id": 5, FLAG: True}, {"id": 9, FLAG: True})


@pytest.mark.parametrize("cause", REMOVED)
def test_flag_with_the_lead_already_flagged_is_unchanged(cause):
    result = plan(cause, [lead(7, flagged=True)], "flag")
    assert result.action == "unchanged"
    assert "already flagged" in result.reason
    assert result.flag_writes == ()


@pytest.mark.parametrize("policy", ["flag", "delete"])
@pytest.mark.parametrize("cause", REMOVED)
def test_no_lead_is_unchanged(policy, cause):
    result = plan(cause, [], policy)
    assert result.action == "unchanged"
    assert "no lead has its contact id" in result.reason


@pytest.mark.parametrize("policy", ["flag", "delete"])
def test_a_lead_of_another_contact_is_never_touched(policy):
    result = plan(Cause.DELETED, [lead(7, contact=OTHER), lead(8, contact=None)], policy)
    assert result.action == "unchanged"


def test_the_contact_id_on_the_lead_matches_in_any_case_and_with_braces():
    result = plan(Cause.DELETED, [lead(7, contact="{" + CONTACT.upper() + "}")], "delete")
    assert result.delete_ids == (7,)


# --- delete -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cause", REMOVED)
def test_delete_lists_every_lead_of_the_contact(cause):
    result = plan(cause, [lead(9), lead(4, flagged=True), lead(5, contact=OTHER)], "delete")
    assert (result.action, result.outcome) == ("delete", "deleted")
    assert result.delete_ids == (4, 9)
    assert result.flag_writes == ()


# --- merged and filtered ----------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "action"), [("flag", "flag"), ("delete", "delete")])
def test_a_merged_subordinates_lead_gets_the_policy_and_the_master_is_synced(policy, action):
    result = plan(Cause.MERGED, [lead(7)], policy, master=MASTER)
    assert result.action == action
    assert result.sync_also == MASTER
    assert MASTER in result.reason


@pytest.mark.parametrize(("policy", "action"), [("flag", "flag"), ("delete", "delete")])
def test_leaving_the_filter_with_a_lead_is_like_leaving_the_crm(policy, action):
    assert plan(Cause.FILTERED, [lead(7)], policy).action == action


@pytest.mark.parametrize("policy", ["flag", "delete"])
def test_leaving_the_filter_without_a_lead_is_skipped_filtered(policy):
    result = plan(Cause.FILTERED, [], policy)
    assert (result.action, result.reason) == ("skip", "filtered")


def test_filtered_with_the_lead_already_flagged_is_unchanged():
    assert plan(Cause.FILTERED, [lead(7, flagged=True)], "flag").action == "unchanged"


# --- bad input --------------------------------------------------------------------------------


def test_an_unknown_policy_or_a_flag_policy_without_field_is_refused():
    removal = Removal(CONTACT, Cause.DELETED)
    with pytest.raises(ValueError, match="on_contact_removed must be ignore, flag or delete"):
        plan_removal(removal, [], policy="archive", flag_field=FLAG, contact_id_field=ID_FIELD)
    with pytest.raises(ValueError, match="needs removed_flag_field"):
        plan_removal(removal, [], policy="flag", flag_field=None, contact_id_field=ID_FIELD)


def test_removals_check_their_ids():
    with pytest.raises(ValueError, match="contact id is not a GUID"):
        Removal("nope", Cause.DELETED)
    with pytest.raises(ValueError, match="needs the master"):
        Removal(CONTACT, Cause.MERGED)
    with pytest.raises(ValueError, match="only a merged contact has a master"):
        Removal(CONTACT, Cause.DELETED, MASTER)
    assert Removal(CONTACT.upper(), Cause.MERGED, "{" + MASTER + "}").master_id == MASTER


# --- reading a contact row ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"statecode": 0}, None),
        ({}, None),
        ({"statecode": 1, "merged": False}, Removal(CONTACT, Cause.DEACTIVATED)),
        (
            {"statecode": 1, "merged": True, "_masterid_value": MASTER},
            Removal(CONTACT, Cause.MERGED, MASTER),
        ),
        (
            {"statecode": 1, "merged": True, "_masterid_value": None},
            Removal(CONTACT, Cause.DEACTIVATED),
        ),
    ],
)
def test_removal_of_a_contact_row(row, expected):
    assert removal_of({"contactid": CONTACT, **row}) == expected


def test_an_unknown_statecode_is_an_error():
    with pytest.raises(ValueError, match="unknown statecode 2"):
        removal_of({"contactid": CONTACT, "statecode": 2})


# --- a live contact clears the flag ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "flag_field", "fields"),
    [
        (lead(7, flagged=True), FLAG, {FLAG: False}),  # reactivated: cleared on its next sync
        (lead(7, flagged=False), FLAG, {}),
        (lead(7, flagged=None), FLAG, {}),  # never flagged: no write when the policy is turned on
        (None, FLAG, {}),  # a new lead
        (lead(7, flagged=True), None, {}),  # no flag field configured
    ],
)
def test_live_contact_fields(found, flag_field, fields):
    assert live_contact_fields(found, flag_field) == fields
