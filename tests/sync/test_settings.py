"""settings.yaml: the removed-contact policy, the sync filter and the run-failure switch."""

import pytest

from contact_sync.mapping import REMOVAL_POLICIES, MappingError, SyncSettings, load_mappings

FLAG_FIELD = {
    "id": 9002,
    "displayName": "Removed from CRM",
    "dataType": "boolean",
    "rest": {"name": "removedFromCrm", "readOnly": False},
}


def test_shipped_settings_keep_todays_behaviour():
    settings = load_mappings().settings
    assert settings == SyncSettings()
    assert settings.on_contact_removed == "ignore"
    assert settings.removed_flag_field is None
    assert settings.sync_filter is None
    assert settings.fail_run_on_rejection is True


def test_a_missing_settings_file_gives_the_defaults(mapping_dir):
    (mapping_dir.path / "settings.yaml").unlink()
    assert mapping_dir.load().settings == SyncSettings()


@pytest.mark.parametrize("policy", REMOVAL_POLICIES)
def test_each_policy_loads(mapping_dir, policy):
    mapping_dir.settings(on_contact_removed=policy, removed_flag_field="removedFromCrm")
    settings = mapping_dir.load().settings
    assert settings.on_contact_removed == policy
    assert settings.removed_flag_field == "removedFromCrm"


def test_flag_is_checked_against_a_boolean_field_in_describe(mapping_dir, describe):
    mapping_dir.settings(on_contact_removed="flag", removed_flag_field="removedFromCrm")
    assert mapping_dir.load(describe=[*describe, FLAG_FIELD]).settings.removed_flag_field == (
        "removedFromCrm"
    )


def test_a_flag_field_marketo_lacks_is_named(mapping_dir, describe):
    mapping_dir.settings(on_contact_removed="flag", removed_flag_field="removedFromCrm")
    with pytest.raises(MappingError, match=r"removed_flag_field: .*no lead field 'removedFromCrm'"):
        mapping_dir.load(describe=describe)


def test_a_flag_field_that_is_not_boolean_is_named_with_its_type(mapping_dir, describe):
    # "firstName" exists and is writable, but it is a string
    mapping_dir.settings(on_contact_removed="flag", removed_flag_field="firstName")
    with pytest.raises(
        MappingError, match=r"removed_flag_field 'firstName' must be a Boolean.*says string"
    ):
        mapping_dir.load(describe=describe)


def test_a_read_only_boolean_flag_field_is_refused(mapping_dir, describe):
    read_only = {**FLAG_FIELD, "rest": {"name": "removedFromCrm", "readOnly": True}}
    mapping_dir.settings(on_contact_removed="flag", removed_flag_field="removedFromCrm")
    with pytest.raises(MappingError, match=r"removed_flag_field: .*read-only"):
        mapping_dir.load(describe=[*describe, read_only])


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"on_contact_removed": "archive"},
            "on_contact_removed must be one of ignore, flag, delete, not 'archive'",
        ),
        ({"on_contact_removed": None}, "on_contact_removed must be one of"),
        ({"on_contact_removed": "flag"}, "removed_flag_field is required by on_contact_removed"),
        (
            {"on_contact_removed": "delete", "contact_id_field": None},
            "on_contact_removed: delete needs contact_id_field",
        ),
        ({"removed_flag_field": ""}, "removed_flag_field must be a Marketo field name or null"),
        ({"removed_flag_field": 1}, "removed_flag_field must be a Marketo field name or null"),
        ({"removed_flag_field": "email"}, "removed_flag_field must be a field of its own"),
        ({"removed_flag_field": "dynamicsContactId"}, "must be a field of its own"),
        ({"sync_filter": ""}, "sync_filter must be an OData \\$filter expression or null"),
        ({"sync_filter": ["statecode eq 0"]}, "sync_filter must be an OData"),
        ({"sync_filter": "(statecode eq 0"}, "sync_filter has unbalanced"),
        ({"sync_filter": "lastname eq 'O''Neil"}, "sync_filter has unbalanced"),
        ({"sync_filter": "statecode eq 0&$top=1"}, "sync_filter is only the \\$filter"),
        ({"fail_run_on_rejection": "yes"}, "fail_run_on_rejection must be true or false"),
        ({"fail_run_on_rejection": 0}, "fail_run_on_rejection must be true or false"),
    ],
)
def test_bad_settings_are_clear_errors_naming_the_setting(mapping_dir, settings, expected):
    path = mapping_dir.path / "settings.yaml"
    mapping_dir.settings(**settings)
    with pytest.raises(MappingError, match=expected) as caught:
        mapping_dir.load()
    assert str(path) in str(caught.value)


def test_sync_filter_is_kept_as_written_without_its_outer_spaces(mapping_dir):
    mapping_dir.settings(sync_filter="  donotbulkemail ne true and lastname ne 'O''Neil'  ")
    assert mapping_dir.load().settings.sync_filter == (
        "donotbulkemail ne true and lastname ne 'O''Neil'"
    )


def test_fail_run_on_rejection_can_be_turned_off(mapping_dir):
    mapping_dir.settings(fail_run_on_rejection=False)
    assert mapping_dir.load().settings.fail_run_on_rejection is False
