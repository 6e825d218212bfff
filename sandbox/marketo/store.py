"""The lead database: leads, companies, and the rules of Get Leads, Sync Leads and Sync Companies.

Plain Python with one lock; the HTTP layer parses parameters and renders what comes back.
Response-level failures raise ``ApiError``; record-level ones become ``skipped`` results.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.common.clock import Clock
from sandbox.marketo.schema import (
    COMPANY_FIELDS,
    DEFAULT_COMPANY_FIELDS,
    DEFAULT_LEAD_FIELDS,
    SEARCHABLE_COMPANY_FIELDS,
    FieldCatalogue,
)
from sandbox.marketo.settings import MarketoSettings
from sandbox.marketo.wire import ApiError, PagingTokens, iso, reason

LEAD_ACTIONS = ("createOrUpdate", "createOnly", "updateOnly", "createDuplicate")
COMPANY_ACTIONS = ("createOrUpdate", "createOnly", "updateOnly")
_COMPANY_RECORD_FIELDS = frozenset({"id", "externalCompanyId", *COMPANY_FIELDS})


@dataclass(frozen=True)
class Query:
    """A parsed Get Leads / Get Companies request."""

    filter_type: str | None
    filter_values: list[str]
    fields: list[str]  # empty: the object's default fields
    batch_size: str | None
    next_page_token: str | None


@dataclass(frozen=True)
class Page:
    result: list[dict[str, Any]]
    next_page_token: str | None


class LeadDatabase:
    def __init__(self, catalogue: FieldCatalogue, clock: Clock) -> None:
        self.catalogue = catalogue
        self._clock = clock
        self._lock = threading.RLock()
        self._leads: dict[int, dict[str, Any]] = {}
        self._companies: dict[int, dict[str, Any]] = {}
        # The same company dicts by their dedupe key, which never changes once created.
        self._companies_by_external_id: dict[Any, dict[str, Any]] = {}
        self._next_lead_id = 1
        self._next_company_id = 1
        # Every Sync Leads write per lead id: created, changed (a value differed) or unchanged
        # (the same values again). A sandbox-only instrument, so tests can prove that a retry or
        # a replay never wrote a contact twice with the same values.
        self._writes: dict[int, Counter[str]] = {}

    # ----- state -----

    def reset(self) -> None:
        with self._lock:
            self._writes.clear()
            self._leads.clear()
            self._companies.clear()
            self._companies_by_external_id.clear()
            self._next_lead_id = 1
            self._next_company_id = 1

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {
                "leads": [dict(lead) for lead in self._leads.values()],
                "companies": [dict(company) for company in self._companies.values()],
                "next_lead_id": self._next_lead_id,
                "next_company_id": self._next_company_id,
            }

    def load(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._leads = {lead["id"]: dict(lead) for lead in state.get("leads", [])}
            self._companies = {c["id"]: dict(c) for c in state.get("companies", [])}
            self._companies_by_external_id = {
                c["externalCompanyId"]: c for c in self._companies.values()
            }
            self._next_lead_id = state.get("next_lead_id", max(self._leads, default=0) + 1)
            self._next_company_id = state.get(
                "next_company_id", max(self._companies, default=0) + 1
            )

    # ----- reading -----

    def _company_by_external_id(self, external_id: Any) -> dict[str, Any] | None:
        if isinstance(external_id, dict | list):
            return None  # not a valid key; such input is stored as given and never links
        return self._companies_by_external_id.get(external_id)

    def _view(self, lead: dict[str, Any]) -> dict[str, Any]:
        """A lead as the API shows it: a linked company's fields read as the lead's own
        (Adobe's Companies page)."""
        view = dict(lead)
        company = self._company_by_external_id(lead.get("externalCompanyId"))
        if company is not None:
            view.update({name: company.get(name) for name in COMPANY_FIELDS})
        return view

    def lead(self, lead_id: int) -> dict[str, Any] | None:
        with self._lock:
            lead = self._leads.get(lead_id)
            return self._view(lead) if lead is not None else None

    def lead_by_id(self, lead_id: int, fields: list[str]) -> list[dict[str, Any]]:
        """Get Lead by Id: the lead in the first position of the result, or an empty result.

        The answer for a missing id is not documented; an empty ``result`` with
        ``success:true`` is a guess (Adobe's Leads page is silent).
        """
        fields = fields or list(DEFAULT_LEAD_FIELDS)
        self._check_fields(fields, lambda name: self.catalogue.get(name) is not None)
        view = self.lead(lead_id)
        return [] if view is None else [_project_lead(view, fields)]

    def leads(self, settings: MarketoSettings, **filters: str) -> list[dict[str, Any]]:
        """Every lead (as the API shows it) whose fields equal ``filters`` (admin view)."""
        with self._lock:
            views = [self._view(lead) for lead in self._leads.values()]
        return [
            view
            for view in views
            if all(
                self._key(settings, name, view.get(name)) == self._key(settings, name, value)
                for name, value in filters.items()
            )
        ]

    def writes(self) -> dict[int, dict[str, int]]:
        """Lead id → how often Sync Leads created it, changed it, or wrote it unchanged."""
        with self._lock:
            return {lead_id: dict(counts) for lead_id, counts in self._writes.items()}

    def companies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(company) for company in self._companies.values()]

    def _key(self, settings: MarketoSettings, field: str, value: Any, strict: bool = True) -> Any:
        """A value as lookups compare it: ints as ints, email per the case setting.

        A value that cannot be an integer is ``ApiError`` 1001 when ``strict`` (it came in a
        request), else None (a stored value, which then matches nothing).
        """
        if value is None:
            return None
        definition = self.catalogue.get(field)
        data_type = definition.data_type if definition else "string"
        if data_type == "integer":
            try:
                return int(value)
            except (TypeError, ValueError):
                if not strict:
                    return None
                raise ApiError(
                    "1001", f"Invalid value '{value}'. Required of type 'integer'"
                ) from None
        text = str(value)
        if data_type == "email" and settings.email_case_insensitive:
            return text.lower()
        return text

    def _check_fields(self, names: Iterable[str], known: Callable[[str], bool]) -> None:
        for name in names:
            if not known(name):
                # What a real instance answers for an unknown ``fields`` entry is not in the
                # docs; 1006 "Field '%s' not found" is the table's code for an invalid field.
                raise ApiError("1006", f"Field '{name}' not found")

    def query_leads(self, settings: MarketoSettings, query: Query) -> Page:
        filter_type = self._require_filter(query)
        self._check_lookup_field(filter_type)
        fields = query.fields or list(DEFAULT_LEAD_FIELDS)
        self._check_fields(fields, lambda name: self.catalogue.get(name) is not None)
        batch_size = self._batch_size(settings, query.batch_size)
        if len(query.filter_values) > settings.max_filter_values:
            # The code for too many filter values is not documented: 1003 "invalid data".
            raise ApiError("1003", f"Too many filter values, max {settings.max_filter_values}")
        wanted = {self._key(settings, filter_type, v) for v in query.filter_values}
        with self._lock:
            matches = [
                self._view(lead)
                for lead_id, lead in sorted(self._leads.items())
                if self._key(settings, filter_type, lead.get(filter_type), strict=False) in wanted
            ]
        if len(matches) > settings.max_filter_matches:
            raise ApiError("1003", "Too many results match the filter")
        return self._page(
            matches,
            query,
            batch_size,
            query_key=f"leads|{filter_type}|{sorted(map(str, wanted))}",
            project=lambda view, _: _project_lead(view, fields),
        )

    def query_companies(self, settings: MarketoSettings, query: Query) -> Page:
        filter_type = self._require_filter(query)
        if filter_type not in SEARCHABLE_COMPANY_FIELDS:
            raise ApiError("1035", f"Unsupported filter type '{filter_type}'")
        fields = query.fields or list(DEFAULT_COMPANY_FIELDS)
        company_fields = _COMPANY_RECORD_FIELDS | {"createdAt", "updatedAt"}
        self._check_fields(fields, company_fields.__contains__)
        batch_size = self._batch_size(settings, query.batch_size)
        wanted = {str(v) for v in query.filter_values}
        with self._lock:
            matches = [
                dict(company)
                for _, company in sorted(self._companies.items())
                if str(company.get(filter_type)) in wanted
            ]
        return self._page(
            matches,
            query,
            batch_size,
            query_key=f"companies|{filter_type}|{sorted(wanted)}",
            project=lambda company, seq: {
                "seq": seq,
                "id": company["id"],
                **{name: company.get(name) for name in fields if name != "id"},
            },
        )

    @staticmethod
    def _require_filter(query: Query) -> str:
        for name, value in (
            ("filterType", query.filter_type),
            ("filterValues", query.filter_values),
        ):
            if not value:
                raise ApiError("1002", f"Missing value for the required parameter '{name}'")
        assert query.filter_type is not None  # checked above; narrows the type
        return query.filter_type

    def _check_lookup_field(self, name: str) -> None:
        if self.catalogue.is_searchable(name):
            return
        if self.catalogue.get(name) is None:
            raise ApiError("1006", f"Field '{name}' not found")
        raise ApiError("1011", f"Field '{name}' not supported")

    @staticmethod
    def _batch_size(settings: MarketoSettings, raw: str | None) -> int:
        if raw is None:
            return settings.max_batch_size
        try:
            size = int(raw)
        except ValueError:
            raise ApiError("1001", f"Invalid value '{raw}'. Required of type 'integer'") from None
        if not 1 <= size <= settings.max_batch_size:
            # Whether the real service caps or refuses a batchSize over 300 is not documented;
            # refusing shows a client's mistake instead of hiding it.
            raise ApiError("1003", f"batchSize must be between 1 and {settings.max_batch_size}")
        return size

    @staticmethod
    def _page(
        matches: Sequence[dict[str, Any]],
        query: Query,
        batch_size: int,
        query_key: str,
        project: Callable[[dict[str, Any], int], dict[str, Any]],
    ) -> Page:
        start = (
            PagingTokens.offset(query.next_page_token, query_key) if query.next_page_token else 0
        )
        chunk = matches[start : start + batch_size]
        end = start + len(chunk)
        token = PagingTokens.issue(query_key, end) if end < len(matches) else None
        return Page([project(record, seq) for seq, record in enumerate(chunk)], token)

    # ----- Sync Leads -----

    def sync_leads(self, settings: MarketoSettings, body: dict[str, Any]) -> list[dict[str, Any]]:
        records = _input_records(body, settings.max_sync_records, "Leads not specified")
        action = body.get("action", "createOrUpdate")
        if action not in LEAD_ACTIONS:
            raise ApiError("1003", f"Invalid action '{action}'")
        lookup_field = body.get("lookupField") or "email"
        self._check_lookup_field(lookup_field)
        partition = body.get("partitionName")
        # ``asyncProcessing`` (and marketorestpython's "asyncProcessing " typo) is accepted and
        # ignored: the async answer's shape is not documented, and sync answers stay truthful.
        with self._lock:
            index: dict[Any, list[dict[str, Any]]] = {}
            for lead in self._leads.values():
                key = self._key(settings, lookup_field, lead.get(lookup_field), strict=False)
                index.setdefault(key, []).append(lead)
            return [
                self._sync_lead(settings, record, action, lookup_field, partition, index)
                for record in records
            ]

    def _sync_lead(
        self,
        settings: MarketoSettings,
        record: Any,
        action: str,
        lookup_field: str,
        partition: str | None,
        index: dict[Any, list[dict[str, Any]]],
    ) -> dict[str, Any]:
        """One input record; ``index`` maps lookup keys to leads and learns the leads created."""
        problem = self._lead_record_problem(settings, record, action, lookup_field, partition)
        if problem:
            return _skipped(problem)
        if action == "createDuplicate":
            return self._create_lead(settings, record, partition)
        try:
            key = self._key(settings, lookup_field, record[lookup_field])
        except ApiError as error:
            return _skipped(reason(error.code, error.message))
        matches = index.get(key, [])
        if len(matches) > 1:
            return _skipped(reason("1007", "Multiple lead match lookup criteria"))
        if action == "createOnly" and matches:
            return _skipped(reason("1005", "Lead already exists"))
        if action == "updateOnly" and not matches:
            return _skipped(reason("1004", "Lead not found"))
        if not matches:
            result = self._create_lead(settings, record, partition)
            if "id" in result:
                index[key] = [self._leads[result["id"]]]
            return result
        return self._update_lead(settings, matches[0], record)

    def _lead_record_problem(
        self,
        settings: MarketoSettings,
        record: Any,
        action: str,
        lookup_field: str,
        partition: str | None,
    ) -> dict[str, str] | None:
        """The reason a record is skipped before any lookup, or None."""
        if not isinstance(record, dict):
            return reason("1003", "Invalid data")
        unknown = next((name for name in record if self.catalogue.get(name) is None), None)
        if unknown is not None:
            return reason("1006", f"Field '{unknown}' not found")
        if "id" in record and action != "updateOnly":
            # "include it only with updateOnly" (Leads page); id with createOnly is 1003.
            return reason("1003", "Invalid data")
        email = record.get("email")
        if isinstance(email, str) and not email.isascii():
            return reason("1003", "Invalid data: email address must be ASCII")
        if action != "createDuplicate" and record.get(lookup_field) in (None, ""):
            return reason("1003", f"Value for lookup field '{lookup_field}' not found")
        if (
            partition is not None
            and action != "updateOnly"
            and partition not in settings.partitions
        ):
            return reason("1008", f"Access denied to partition '{partition}'")
        return None

    def _writable(self, record: dict[str, Any]) -> dict[str, Any]:
        # Read-only fields (createdAt, mktoName, ...) in the input are dropped: what the real
        # service does with them is not documented, and failing the record would be a guess too.
        writable = {}
        for name, value in record.items():
            definition = self.catalogue.get(name)
            if name != "id" and definition is not None and not definition.read_only:
                writable[name] = value
        return writable

    def _company_write_refused(
        self, settings: MarketoSettings, lead: dict[str, Any], values: dict[str, Any]
    ) -> dict[str, str] | None:
        """Route company fields of a linked lead per ``linked_company_write`` (Adobe's
        Companies page).

        Returns the 1021 reason when refused; otherwise moves the values onto the company
        record (``write_through``) and out of ``values``.
        """
        company = self._company_by_external_id(
            values.get("externalCompanyId", lead.get("externalCompanyId"))
        )
        company_values = {n: v for n, v in values.items() if n in COMPANY_FIELDS}
        if company is None or not company_values:
            return None
        if settings.linked_company_write == "reject":
            return reason("1021", "Company update not allowed")
        for name in company_values:
            del values[name]
        self._apply(company, company_values)
        return None

    def _create_lead(
        self, settings: MarketoSettings, record: dict[str, Any], partition: str | None
    ) -> dict[str, Any]:
        values = self._writable(record)
        refused = self._company_write_refused(settings, {}, values)
        if refused:
            return _skipped(refused)
        now = iso(self._clock.now())
        lead_id = self._next_lead_id
        self._next_lead_id += 1
        partition_index = settings.partitions.index(partition) if partition else 0
        self._leads[lead_id] = {
            "id": lead_id,
            "createdAt": now,
            "updatedAt": now,
            "leadPartitionId": partition_index + 1,
            **{name: value for name, value in values.items() if value is not None},
        }
        self._writes.setdefault(lead_id, Counter())["created"] += 1
        return {"id": lead_id, "status": "created"}

    def _update_lead(
        self, settings: MarketoSettings, lead: dict[str, Any], record: dict[str, Any]
    ) -> dict[str, Any]:
        values = self._writable(record)
        refused = self._company_write_refused(settings, lead, values)
        if refused:
            return _skipped(refused)
        changed = self._apply(lead, values)
        self._writes.setdefault(lead["id"], Counter())["changed" if changed else "unchanged"] += 1
        return {"id": lead["id"], "status": "updated"}

    def _apply(self, record: dict[str, Any], values: dict[str, Any]) -> bool:
        """Write ``values``; ``updatedAt`` moves only when a value really changed (then True)."""
        changed = {n: v for n, v in values.items() if record.get(n) != v}
        if not changed:
            return False
        for name, value in changed.items():
            if value is None:
                record.pop(name, None)
            else:
                record[name] = value
        record["updatedAt"] = iso(self._clock.now())
        return True

    # ----- Delete Leads -----

    def delete_leads(self, settings: MarketoSettings, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Delete Leads (the "Delete" section of Adobe's Leads page,
        https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/leads):
        ``{"input": [{"id": n}, ...]}``, at most 300; per record
        ``deleted``, or ``skipped`` with 1004 "Lead not found" for an id no lead has (the same
        reason Sync Leads gives; the Delete page lists no other), in input order."""
        records = _input_records(body, settings.max_sync_records, "Leads not specified")
        results: list[dict[str, Any]] = []
        with self._lock:
            for record in records:
                lead_id = record.get("id") if isinstance(record, dict) else None
                if not isinstance(lead_id, int) or isinstance(lead_id, bool):
                    results.append(_skipped(reason("1003", "Invalid data")))
                elif self._leads.pop(lead_id, None) is None:
                    results.append({"id": lead_id, **_skipped(reason("1004", "Lead not found"))})
                else:
                    results.append({"id": lead_id, "status": "deleted"})
        return results

    # ----- Sync Companies -----

    def sync_companies(
        self, settings: MarketoSettings, body: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if settings.crm_sync_enabled:
            raise ApiError("1018")
        records = _input_records(body, settings.max_sync_records, "Companies not specified")
        action = body.get("action", "createOrUpdate")
        if action not in COMPANY_ACTIONS:
            raise ApiError("1003", f"Invalid action '{action}'")
        dedupe_by = body.get("dedupeBy", "dedupeFields")
        if dedupe_by not in ("dedupeFields", "idField"):
            raise ApiError("1003", f"Invalid dedupeBy '{dedupe_by}'")
        key_field = "externalCompanyId" if dedupe_by == "dedupeFields" else "id"
        seen: set[Any] = set()
        results = []
        with self._lock:
            for seq, record in enumerate(records):
                outcome = self._sync_company(record, action, key_field, seen)
                results.append({"seq": seq, **outcome})
        return results

    def _sync_company(
        self, record: Any, action: str, key_field: str, seen: set[Any]
    ) -> dict[str, Any]:
        if not isinstance(record, dict):
            return _skipped(reason("1003", "Invalid data"))
        unknown = next((name for name in record if name not in _COMPANY_RECORD_FIELDS), None)
        if unknown is not None:
            return _skipped(reason("1006", f"Field '{unknown}' not found"))
        key = record.get(key_field)
        if key in (None, ""):
            return _skipped(reason("1003", f"Value for required field '{key_field}' not found"))
        if key in seen:
            return _skipped(reason("1036", "Duplicate object found in input"))
        seen.add(key)
        if key_field == "id":
            existing = self._companies.get(key) if isinstance(key, int) else None
        else:
            existing = self._company_by_external_id(key)
        if action == "createOnly" and existing is not None:
            # The company-specific text is not documented; leads use 1005 for the same case.
            return _skipped(reason("1005", "Company already exists"))
        if existing is None and (action == "updateOnly" or key_field == "id"):
            return _skipped(reason("1013", "Record not found"))
        # The dedupe key is not updateable (Describe Companies), so it is never rewritten.
        values = {n: v for n, v in record.items() if n in COMPANY_FIELDS}
        if existing is not None:
            self._apply(existing, values)
            return {"status": "updated", "id": existing["id"]}
        now = iso(self._clock.now())
        company_id = self._next_company_id
        self._next_company_id += 1
        company = {
            "id": company_id,
            "externalCompanyId": key,
            "createdAt": now,
            "updatedAt": now,
            **{n: v for n, v in values.items() if v is not None},
        }
        self._companies[company_id] = company
        self._companies_by_external_id[key] = company
        return {"status": "created", "id": company_id}

    # ----- seeding (admin API) -----

    def seed_leads(self, records: list[dict[str, Any]]) -> list[int]:
        """Insert leads as given (no dedupe, no limits); ``createdAt``/``updatedAt`` may be set."""
        for record in records:
            unknown = [name for name in record if self.catalogue.get(name) is None or name == "id"]
            if unknown:
                raise ValueError(f"unknown or system fields in a seeded lead: {unknown}")
        now = iso(self._clock.now())
        ids = []
        with self._lock:
            for record in records:
                lead_id = self._next_lead_id
                self._next_lead_id += 1
                self._leads[lead_id] = {
                    "id": lead_id,
                    "createdAt": now,
                    "updatedAt": now,
                    "leadPartitionId": 1,
                    **{n: v for n, v in record.items() if v is not None},
                }
                ids.append(lead_id)
        return ids

    def seed_companies(self, records: list[dict[str, Any]]) -> list[int]:
        allowed = _COMPANY_RECORD_FIELDS - {"id"}
        for record in records:
            unknown = set(record) - allowed
            if unknown or not record.get("externalCompanyId"):
                raise ValueError(
                    f"a seeded company needs externalCompanyId and takes {sorted(allowed)}"
                )
        with self._lock:
            keys = [record["externalCompanyId"] for record in records]
            if len(set(keys)) != len(keys) or self._companies_by_external_id.keys() & set(keys):
                raise ValueError("externalCompanyId must be unique")
            results = [
                self._sync_company(r, "createOnly", "externalCompanyId", set()) for r in records
            ]
        return [result["id"] for result in results]


def _input_records(body: dict[str, Any], limit: int, missing_message: str) -> list[Any]:
    records = body.get("input")
    if not isinstance(records, list) or not records:
        raise ApiError("1003", missing_message)
    if len(records) > limit:
        # Over 300 records: the real code is not documented (a body over 1 MB is HTTP 413);
        # 1003 "invalid data" for the whole call, as for other malformed input.
        raise ApiError("1003", f"Too many records in input, max {limit}")
    return records


def _project_lead(view: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """``id`` always, then each requested field, as explicit ``null`` when empty (Leads page)."""
    return {"id": view["id"], **{name: view.get(name) for name in fields if name != "id"}}


def _skipped(why: dict[str, str]) -> dict[str, Any]:
    return {"status": "skipped", "reasons": [why]}
