"""Field maps as data: Dynamics 365 contact/account columns → Marketo lead (and company) fields.

The maps live in ``include/mappings/`` (``contact_to_lead.yaml``, ``account_to_company.yaml``),
the user's settings in ``settings.yaml``. :func:`load_mappings` validates them against the
Dataverse columns below and, when given, a Marketo ``leads/describe`` result, so a typo fails at
load time with the file, the entry and the field named, not as a silent null in Marketo.

:func:`map_contact` turns one contact (and its parent account) into a :class:`LeadDraft` or a
:class:`Rejection`; it never puts an email address into a rejection reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from contact_sync.errors import ConfigurationError
from contact_sync.events import normalize_guid
from contact_sync.models import CompanyDraft, LeadDraft, Rejection

__all__ = [
    "ACCOUNT_COLUMNS",
    "COMPANY_MODES",
    "CONTACT_COLUMNS",
    "REMOVAL_POLICIES",
    "FieldMap",
    "MappingError",
    "Mappings",
    "SyncSettings",
    "email_problem",
    "load_mappings",
    "map_contact",
    "map_contacts",
    "parent_account_id",
]

#: Contact columns a map may read (custom ones go in ``extra_columns``): the contact table
#: of the Dataverse Web API reference,
#: https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/contact
CONTACT_COLUMNS = frozenset(
    {
        "emailaddress1", "emailaddress2", "emailaddress3", "firstname", "lastname",
        "telephone1", "telephone2", "fax", "mobilephone",
        "address1_line1", "address1_line2", "address1_line3", "address1_city",
        "address1_stateorprovince", "address1_country", "address1_postalcode",
        "description", "jobtitle", "modifiedon", "createdon", "statecode", "statuscode",
        "donotemail", "donotbulkemail", "merged",
    }
)  # fmt: skip
#: Account columns: the account table,
#: https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/account
ACCOUNT_COLUMNS = frozenset(
    {
        "name", "address1_line1", "address1_line2", "address1_line3", "address1_composite",
        "address1_city", "address1_stateorprovince", "address1_country", "address1_postalcode",
        "telephone1", "telephone2", "sic", "description", "revenue", "revenue_base",
        "numberofemployees", "websiteurl", "statecode",
    }
)  # fmt: skip

COMPANY_MODES = ("lead_fields", "company_record")
#: ``on_contact_removed``: what a deleted, deactivated, merged or filtered-out contact's lead gets.
REMOVAL_POLICIES = ("ignore", "flag", "delete")
_SETTINGS_KEYS = (
    "contact_id_field",
    "company_mode",
    "on_contact_removed",
    "removed_flag_field",
    "sync_filter",
    "fail_run_on_rejection",
)
DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2] / "include" / "mappings"
LOOKUP_TYPE_ANNOTATION = "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"
# Street lines become one multi-line text value, as Marketo (and Salesforce) store streets.
DEFAULT_SEPARATOR = "\n"
EMAIL_FIELD = "email"
EXTERNAL_COMPANY_ID = "externalCompanyId"

# Pragmatic syntax check: one "@", no spaces, a dotted domain of letters/digits/hyphens. RFC 5322
# allows more (quoted local parts), but Marketo and mail tools in practice do not.
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


class MappingError(ConfigurationError, ValueError):
    """A mapping or settings file is wrong; the message names the file, the entry and the field.

    A :class:`~contact_sync.errors.ConfigurationError`: retrying cannot fix it, so the DAGs' retry
    policy fails the task at once."""


class ConversionError(ValueError):
    """A Dataverse value cannot become the Marketo type its map entry asks for."""


# --- conversions ----------------------------------------------------------------------------------


def _to_text(value: Any) -> str | None:
    if value is None:
        return None
    text = (value if isinstance(value, str) else str(value)).strip()
    return text or None


_NUMBER_LIMIT = Decimal(10) ** 19


def _to_number(value: Any) -> int | float | None:
    """Dataverse Money/Decimal as a JSON number; integral values as int so 1000 stays 1000."""
    if isinstance(value, bool):
        raise ConversionError(f"a boolean is not a number: {value!r}")
    if isinstance(value, str):
        value = _to_text(value)
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ConversionError("not a number") from None
    if not number.is_finite():
        raise ConversionError("not a finite number")
    # No Dataverse number column goes past BigInt's 9,223,372,036,854,775,807 (learn.microsoft.com,
    # "Types of columns"); a text like "1e999999999" would otherwise become a billion-digit int.
    if abs(number) >= _NUMBER_LIMIT:
        raise ConversionError("out of range for a Dataverse number")
    return int(number) if number == number.to_integral_value() else float(number)


def _to_integer(value: Any) -> int | None:
    number = _to_number(value)
    if isinstance(number, float):
        raise ConversionError(f"not a whole number: {number!r}")
    return number


CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "string": _to_text,
    "number": _to_number,
    "integer": _to_integer,
}


# --- the model of a map --------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldMap:
    """One Marketo field fed by one Dataverse column, or by several joined (address lines)."""

    marketo: str
    columns: tuple[str, ...]
    convert: str = "string"
    separator: str = DEFAULT_SEPARATOR

    def value(self, record: Mapping[str, Any]) -> Any:
        """The Marketo value for ``record``; ``None`` for empty. Raises :class:`ConversionError`."""
        if len(self.columns) == 1:
            return CONVERSIONS[self.convert](record.get(self.columns[0]))
        parts = (_to_text(record.get(column)) for column in self.columns)
        return _to_text(self.separator.join(part for part in parts if part))


@dataclass(frozen=True)
class SyncSettings:
    """What a user sets in ``settings.yaml``.

    ``contact_id_field``: the Marketo custom field holding the Dynamics contact id (it lets an
    email change update the existing lead); ``None`` disables it: leads are matched by email only.
    ``company_mode``: ``lead_fields`` writes the account's fields on the lead (the recipe's way);
    ``company_record`` syncs a Marketo Company keyed by ``externalCompanyId`` = account id and links
    the lead to it (needed where Sync Leads refuses company fields with 1021).
    ``on_contact_removed``: ``ignore`` (the recipe's way: a removed contact is refused with its
    reason and its lead left alone), ``flag`` (``removed_flag_field`` set true on its lead) or
    ``delete`` (its lead deleted); the lead is found by ``contact_id_field``, never by email.
    ``removed_flag_field``: the Marketo Boolean field ``flag`` sets (and a live contact clears).
    ``sync_filter``: an OData ``$filter`` on contact columns; contacts outside it are not synced
    and count as removed. ``None``: every contact.
    ``fail_run_on_rejection``: whether a run that rejected a contact ends failed (the default,
    so rejections are seen) or succeeds with the rejections in its report.
    """

    contact_id_field: str | None = "dynamicsContactId"
    company_mode: str = "lead_fields"
    on_contact_removed: str = "ignore"
    removed_flag_field: str | None = None
    sync_filter: str | None = None
    fail_run_on_rejection: bool = True


@dataclass(frozen=True)
class Mappings:
    """Both maps and the settings, validated."""

    contact: tuple[FieldMap, ...]
    account: tuple[FieldMap, ...]
    settings: SyncSettings = SyncSettings()

    @property
    def contact_select(self) -> tuple[str, ...]:
        """``$select`` for contacts: the id, the parent lookup and every mapped column."""
        return _unique(("contactid", "_parentcustomerid_value"), _columns(self.contact))

    @property
    def account_select(self) -> tuple[str, ...]:
        """``$select`` for accounts (also fits ``$expand=parentcustomerid_account(...)``)."""
        return _unique(("accountid",), _columns(self.account))

    @property
    def company_fields(self) -> tuple[str, ...]:
        """The Marketo company fields the account map writes."""
        return tuple(entry.marketo for entry in self.account)

    @property
    def lead_read_fields(self) -> tuple[str, ...]:
        """Marketo fields to read when looking leads up: enough to decide create/update/unchanged.

        In ``company_record`` mode the lead shows its company's values too, which tells whether the
        company record needs a write.
        """
        own = [entry.marketo for entry in self.contact]
        link = [self.settings.contact_id_field] if self.settings.contact_id_field else []
        if self.settings.company_mode == "company_record":
            link.append(EXTERNAL_COMPANY_ID)
        return _unique(("id", EMAIL_FIELD), link, own, self.company_fields)


def _columns(entries: Iterable[FieldMap]) -> list[str]:
    return [column for entry in entries for column in entry.columns]


def _unique(*groups: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for group in groups for name in group))


# --- loading and validation ----------------------------------------------------------------------


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise MappingError(f"{path}: not valid YAML ({error})") from None


def _check_keys(where: str, data: Any, allowed: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise MappingError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return data


def _marketo_fields(describe: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    """REST field name → read-only, from a describe result (items without ``rest`` skipped)."""
    fields = {}
    for item in describe:
        rest = item.get("rest") if isinstance(item, Mapping) else None
        if isinstance(rest, Mapping) and isinstance(rest.get("name"), str):
            fields[rest["name"]] = bool(rest.get("readOnly", False))
    return fields


def _check_marketo_field(where: str, name: str, marketo: Mapping[str, bool] | None) -> None:
    if marketo is None:
        return
    if name not in marketo:
        raise MappingError(f"{where}: Marketo has no lead field {name!r} (per describe)")
    if marketo[name]:
        raise MappingError(f"{where}: Marketo field {name!r} is read-only")


def _load_entries(
    path: Path, table: str, known_columns: frozenset[str], marketo: Mapping[str, bool] | None
) -> tuple[FieldMap, ...]:
    document = _check_keys(str(path), _read_yaml(path), ("fields", "extra_columns"))
    extra = document.get("extra_columns") or []
    if not isinstance(extra, list) or not all(isinstance(column, str) for column in extra):
        raise MappingError(f"{path}: extra_columns must be a list of column names")
    columns_allowed = known_columns | set(extra)
    raw_entries = document.get("fields")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise MappingError(f"{path}: 'fields' must be a non-empty list")

    entries: list[FieldMap] = []
    for index, raw in enumerate(raw_entries):
        where = f"{path}: fields[{index}]"
        raw = _check_keys(where, raw, ("marketo", "dataverse", "convert", "separator"))
        name = raw.get("marketo")
        if not isinstance(name, str) or not name:
            raise MappingError(f"{where}: 'marketo' must name a Marketo field")
        where = f"{where} ({name})"
        if any(entry.marketo == name for entry in entries):
            raise MappingError(f"{where}: Marketo field {name!r} is mapped twice")
        columns = raw.get("dataverse")
        columns = (columns,) if isinstance(columns, str) else columns
        if not isinstance(columns, list | tuple) or not columns:
            raise MappingError(f"{where}: 'dataverse' must be a column or a list of columns")
        for column in columns:
            if column not in columns_allowed:
                raise MappingError(
                    f"{where}: unknown Dataverse {table} column {column!r}"
                    " (list custom columns under extra_columns)"
                )
        convert = raw.get("convert", "string")
        if convert not in CONVERSIONS:
            raise MappingError(f"{where}: convert must be one of {', '.join(CONVERSIONS)}")
        if len(columns) > 1 and convert != "string":
            raise MappingError(f"{where}: joined columns can only be converted to string")
        separator = raw.get("separator", DEFAULT_SEPARATOR)
        if not isinstance(separator, str):
            raise MappingError(f"{where}: separator must be a string")
        _check_marketo_field(where, name, marketo)
        entries.append(FieldMap(name, tuple(columns), convert, separator))
    return tuple(entries)


def _load_settings(
    path: Path,
    marketo: Mapping[str, bool] | None,
    describe: Sequence[Mapping[str, Any]] | None = None,
) -> SyncSettings:
    """``settings.yaml``, each bad value a :class:`MappingError` naming its setting.

    ``marketo`` (REST name → read-only) and ``describe`` (the raw describe result, for data
    types) come from Marketo's ``leads/describe``; without them field names are not checked.
    """
    data = _read_yaml(path) if path.exists() else {}
    data = _check_keys(str(path), data or {}, _SETTINGS_KEYS)
    defaults = SyncSettings()
    field_name = data.get("contact_id_field", defaults.contact_id_field)
    if field_name is not None:
        if not isinstance(field_name, str) or not field_name:
            raise MappingError(f"{path}: contact_id_field must be a field name or null")
        _check_marketo_field(f"{path}: contact_id_field", field_name, marketo)
    mode = data.get("company_mode", defaults.company_mode)
    if mode not in COMPANY_MODES:
        raise MappingError(f"{path}: company_mode must be one of {', '.join(COMPANY_MODES)}")
    if mode == "company_record":
        _check_marketo_field(f"{path}: company_mode", EXTERNAL_COMPANY_ID, marketo)
    policy = data.get("on_contact_removed", defaults.on_contact_removed)
    if policy not in REMOVAL_POLICIES:
        raise MappingError(
            f"{path}: on_contact_removed must be one of {', '.join(REMOVAL_POLICIES)}, "
            f"not {policy!r}"
        )
    if policy != "ignore" and field_name is None:
        raise MappingError(
            f"{path}: on_contact_removed: {policy} needs contact_id_field (a removed contact's "
            "lead is found by the contact id, never by email alone)"
        )
    flag = data.get("removed_flag_field", defaults.removed_flag_field)
    if flag is not None and (not isinstance(flag, str) or not flag.strip()):
        raise MappingError(f"{path}: removed_flag_field must be a Marketo field name or null")
    if policy == "flag" and flag is None:
        raise MappingError(
            f"{path}: removed_flag_field is required by on_contact_removed: flag (the REST name "
            "of a Boolean custom lead field)"
        )
    if flag is not None:
        if flag in (field_name, EMAIL_FIELD):
            raise MappingError(f"{path}: removed_flag_field must be a field of its own")
        _check_marketo_field(f"{path}: removed_flag_field", flag, marketo)
        data_type = _marketo_types(describe).get(flag) if describe is not None else "boolean"
        if data_type != "boolean":
            raise MappingError(
                f"{path}: removed_flag_field {flag!r} must be a Boolean field in Marketo "
                f"(describe says {data_type})"
            )
    sync_filter = data.get("sync_filter", defaults.sync_filter)
    if sync_filter is not None:
        _check_sync_filter(path, sync_filter)
        sync_filter = sync_filter.strip()
    fail_run = data.get("fail_run_on_rejection", defaults.fail_run_on_rejection)
    if not isinstance(fail_run, bool):
        raise MappingError(f"{path}: fail_run_on_rejection must be true or false")
    return SyncSettings(
        contact_id_field=field_name,
        company_mode=mode,
        on_contact_removed=policy,
        removed_flag_field=flag,
        sync_filter=sync_filter,
        fail_run_on_rejection=fail_run,
    )


def _marketo_types(describe: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """REST field name → ``dataType`` from a describe result."""
    types = {}
    for item in describe:
        rest = item.get("rest") if isinstance(item, Mapping) else None
        if isinstance(rest, Mapping) and isinstance(rest.get("name"), str):
            types[rest["name"]] = str(item.get("dataType"))
    return types


def _check_sync_filter(path: Path, text: Any) -> None:
    """What can be told without Dataverse: text, balanced quotes and parentheses, no other
    query option smuggled in. Dataverse judges the rest: the hook reports its refusal of the
    filter as a configuration error naming ``sync_filter`` before any write."""
    if not isinstance(text, str) or not text.strip():
        raise MappingError(f"{path}: sync_filter must be an OData $filter expression or null")
    depth, quoted = 0, False
    for char in text:
        if char == "'":
            quoted = not quoted  # '' (an escaped quote) toggles twice
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                break
    if quoted or depth != 0:
        raise MappingError(f"{path}: sync_filter has unbalanced quotes or parentheses")
    if "&" in text or "$" in text:
        raise MappingError(
            f"{path}: sync_filter is only the $filter expression (no '&' or '$' options)"
        )


def load_mappings(
    directory: Path | str | None = None, *, describe: Sequence[Mapping[str, Any]] | None = None
) -> Mappings:
    """Load and validate the maps in ``directory``.

    ``directory`` defaults to ``$CONTACT_SYNC_MAPPINGS_DIR`` or the repository's
    ``include/mappings``. ``describe`` is a Marketo ``leads/describe`` result; without it, Marketo
    field names are not checked (e.g. when parsing a DAG, which must not call Marketo).
    """
    if directory is None:
        directory = os.environ.get("CONTACT_SYNC_MAPPINGS_DIR") or DEFAULT_DIRECTORY
    directory = Path(directory)
    marketo = None if describe is None else _marketo_fields(describe)
    contact_path = directory / "contact_to_lead.yaml"
    contact = _load_entries(contact_path, "contact", CONTACT_COLUMNS, marketo)
    account = _load_entries(
        directory / "account_to_company.yaml", "account", ACCOUNT_COLUMNS, marketo
    )
    email = [entry for entry in contact if entry.marketo == EMAIL_FIELD]
    if not email or len(email[0].columns) != 1:
        raise MappingError(f"{contact_path}: 'email' must be mapped from exactly one column")
    settings = _load_settings(directory / "settings.yaml", marketo, describe)
    clash = {entry.marketo for entry in contact + account} & {
        settings.contact_id_field,
        EXTERNAL_COMPANY_ID if settings.company_mode == "company_record" else None,
    }
    if clash:
        raise MappingError(f"{directory}: {', '.join(sorted(clash))} is set by the sync itself")
    return Mappings(contact=contact, account=account, settings=settings)


# --- mapping records ------------------------------------------------------------------------------


def email_problem(email: str | None) -> tuple[str, str] | None:
    """``(code, reason)`` when ``email`` cannot go to Marketo, else None (never the address)."""
    if email is None:
        return "no email", "no email"
    if not email.isascii():
        return "invalid email", "invalid email: non-ASCII characters (Marketo takes ASCII only)"
    if not _EMAIL_RE.match(email):
        return "invalid email", "invalid email: not a valid address"
    return None


def parent_account_id(contact: Mapping[str, Any]) -> str | None:
    """The parent account's id, or None when the parent is a contact or there is none.

    Without the lookup-type annotation the lookup may still be a contact; the id is returned anyway
    because fetching accounts by it finds nothing in that case (ids are unique across tables).
    """
    expanded = contact.get("parentcustomerid_account")
    if isinstance(expanded, Mapping) and expanded.get("accountid"):
        return normalize_guid(expanded["accountid"], what="parentcustomerid_account.accountid")
    value = contact.get("_parentcustomerid_value")
    if not value or contact.get(LOOKUP_TYPE_ANNOTATION, "account") != "account":
        return None
    return normalize_guid(value, what="_parentcustomerid_value")


def _map_fields(entries: Iterable[FieldMap], record: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for entry in entries:
        try:
            values[entry.marketo] = entry.value(record)
        except ConversionError as error:
            # Names the field, never the value: it could be personal data.
            raise ConversionError(f"{'/'.join(entry.columns)} → {entry.marketo}: {error}") from None
    return values


def map_contact(
    contact: Mapping[str, Any], account: Mapping[str, Any] | None, mappings: Mappings
) -> LeadDraft | Rejection:
    """The lead for ``contact``; company fields only when its parent is an account.

    ``account`` is the parent account record (e.g. from ``get_accounts`` by
    :func:`parent_account_id`); an expanded ``parentcustomerid_account`` serves when it is None.
    A contact without a parent account gets no company fields at all (not nulls): the recipe leaves
    the lead's company alone then, and a Marketo company may be shared with other leads.
    """
    contact_id = normalize_guid(contact.get("contactid"), what="contactid")
    email_entry = next(entry for entry in mappings.contact if entry.marketo == EMAIL_FIELD)
    email = _to_text(contact.get(email_entry.columns[0]))
    problem = email_problem(email)
    if problem is not None:
        return Rejection(contact_id, *problem)

    account_id = parent_account_id(contact)
    if account_id is not None and account is None:
        expanded = contact.get("parentcustomerid_account")
        account = expanded if isinstance(expanded, Mapping) else None
    try:
        fields = _map_fields(mappings.contact, contact)
        company_fields = _map_fields(mappings.account, account) if account is not None else None
    except ConversionError as error:
        return Rejection(contact_id, "invalid value", f"invalid value: {error}")
    fields[EMAIL_FIELD] = email

    settings = mappings.settings
    if settings.contact_id_field:
        fields[settings.contact_id_field] = contact_id
    company = None
    if company_fields is None:
        account_id = None
    elif settings.company_mode == "company_record":
        company = CompanyDraft(external_company_id=account_id, fields=company_fields)
        fields[EXTERNAL_COMPANY_ID] = account_id
    else:
        fields.update(company_fields)
    return LeadDraft(contact_id=contact_id, fields=fields, account_id=account_id, company=company)


def map_contacts(
    contact_ids: Iterable[str],
    contacts: Mapping[str, Mapping[str, Any]],
    accounts: Mapping[str, Mapping[str, Any]],
    mappings: Mappings,
) -> list[LeadDraft | Rejection]:
    """One draft or rejection per id, in order; an id missing from ``contacts`` is not found."""
    results: list[LeadDraft | Rejection] = []
    for contact_id in contact_ids:
        contact = contacts.get(contact_id)
        if contact is None:
            results.append(Rejection(contact_id, "contact not found", "contact not found"))
            continue
        account_id = parent_account_id(contact)
        account = accounts.get(account_id) if account_id else None
        results.append(map_contact(contact, account, mappings))
    return results
