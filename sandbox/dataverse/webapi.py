"""The Dataverse Web API v9.2 over the sandbox's tables: retrieve, query with paging, create,
update/upsert and delete, with Dataverse's headers, annotations and error shapes (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
and the query pages beside it).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from sandbox.dataverse import errors
from sandbox.dataverse.errors import ApiError
from sandbox.dataverse.odata import (
    ODataError,
    parse_filter,
    parse_orderby,
    parse_select,
    sort_records,
)
from sandbox.dataverse.schema import BY_ENTITY_SET, TABLES, Column, Kind, Table
from sandbox.dataverse.settings import DataverseSettings
from sandbox.dataverse.store import BUSINESS_UNIT, SYSTEM_USER, RecordStore, target_key

API_PREFIX = "/api/data/v9.2"
MERGE_PARAMETERS = ("Target", "Subordinate", "UpdateContent", "PerformParentingChecks")
QUERY_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken"}
FORMATTED = "OData.Community.Display.V1.FormattedValue"
NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
TOTAL_COUNT = "Microsoft.Dynamics.CRM.totalrecordcount"
TOTAL_COUNT_EXCEEDED = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"
_KEY = re.compile(r"^(?P<set>[A-Za-z_]\w*)\((?P<key>[^)]*)\)$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_BIND = re.compile(r"(?:^|/)(?P<set>[A-Za-z_]\w*)\((?P<key>[0-9a-fA-F-]{36})\)$")
# what stays literal in a nextLink's query, as Dataverse writes it
_LINK_SAFE = ",()'=$"
_COOKIE = re.compile(r'pagenumber="(?P<page>\d+)" pagingcookie="(?P<cookie>[^"]*)"')


@dataclass(frozen=True)
class Caller:
    user_id: str
    org_url: str


@dataclass
class Write:
    """One create or update as the webhooks need it."""

    message: str  # "Create" | "Update" | "Delete" | "Merge"
    table: Table
    row: dict[str, Any]  # the row after the write (Delete: the row as it was)
    changed: set[str]  # columns whose value changed (Update)
    sent: dict[str, Any]  # columns the caller sent, as stored
    caller: Caller
    # Merge: the request's other input parameters (SubordinateId, UpdateContent, ...)
    parameters: dict[str, Any] = field(default_factory=dict)
    # Update: the row before it (what a pre-image shows)
    before: dict[str, Any] | None = None


class WriteListener(Protocol):
    def __call__(self, write: Write) -> None: ...


@dataclass
class Preferences:
    annotations: list[str] = field(default_factory=list)
    max_page_size: int | None = None
    representation: bool = False
    applied: list[str] = field(default_factory=list)

    def wants(self, annotation: str) -> bool:
        return any(fnmatch.fnmatchcase(annotation, p) for p in self.annotations)


@dataclass(frozen=True)
class Expansion:
    navigation: str
    lookup: Column
    target: Table
    select: list[str] | None


@dataclass(frozen=True)
class Route:
    """A resolved Web API path: ``template`` names it for counters ("contacts(id)")."""

    template: str
    handler: Callable[[Request, Caller], Any]


class WebApi:
    def __init__(
        self,
        store: RecordStore,
        settings: Callable[[], DataverseSettings],
        now: Callable[[], str],
        on_write: WriteListener,
        metadata: Callable[[str, Request], Route | None],
    ) -> None:
        self._store = store
        self._settings = settings
        self._now = now
        self._on_write = on_write
        self._metadata = metadata

    def route(self, method: str, request: Request) -> Route:
        """The handler for ``METHOD /api/data/v9.2/<path>``; raises ApiError for unknown paths."""
        path = request.path_params["path"]
        metadata = self._metadata(path, request)
        if metadata is not None:
            return metadata
        segments = path.split("/")
        head = segments[0]
        match = _KEY.match(head)
        entity_set = match.group("set") if match else head
        if entity_set == "Merge" and not match and len(segments) == 1:
            if method != "POST":
                raise errors.method_not_allowed(method)
            return Route("Merge", lambda r, c: self.merge(r, c))
        table = BY_ENTITY_SET.get(entity_set)
        if table is None:
            raise errors.segment_not_found(entity_set)
        if match:
            if len(segments) > 1:
                raise errors.segment_not_found(segments[1])
            record_id = _record_key(match.group("key"))
            handlers = {
                "GET": lambda r, c: self.retrieve(r, c, table, record_id),
                "PATCH": lambda r, c: self.upsert(r, c, table, record_id),
                "DELETE": lambda r, c: self.delete(c, table, record_id),
            }
            template = f"{table.entity_set}(id)"
        elif segments[1:] == ["$count"]:
            handlers = {"GET": lambda r, c: self.count(table)}
            template = f"{table.entity_set}/$count"
        elif len(segments) > 1:
            raise errors.segment_not_found(segments[1])
        else:
            handlers = {
                "GET": lambda r, c: self.query(r, c, table),
                "POST": lambda r, c: self.create(r, c, table),
            }
            template = table.entity_set
        handler = handlers.get(method)
        if handler is None:
            raise errors.method_not_allowed(method)
        return Route(template, handler)

    # --- reads ----------------------------------------------------------------------------------

    async def retrieve(
        self, request: Request, caller: Caller, table: Table, record_id: str
    ) -> Response:
        options = _query_options(request)
        prefs = _preferences(request, self._settings())
        select = _select(options, table)
        expansions = self._expansions(options, table)
        row = self._store.get(table, record_id)
        if row is None:
            raise errors.record_not_found(table.logical_name, record_id)
        body = {
            "@odata.context": _context(caller, table, select, expansions) + "/$entity",
            **self._shape(table, row, select, expansions, prefs),
        }
        return _json(body, prefs)

    async def query(self, request: Request, caller: Caller, table: Table) -> Response:
        settings = self._settings()
        options = _query_options(request)
        prefs = _preferences(request, settings)
        select = _select(options, table)
        expansions = self._expansions(options, table)
        columns = table.edm_types()
        aliases = {k: v for k, v in request.query_params.items() if k.startswith("@")}
        try:
            predicate = (
                parse_filter(
                    options["$filter"], entity=table.logical_name, columns=columns, aliases=aliases
                )
                if "$filter" in options
                else None
            )
            orderby = (
                parse_orderby(options["$orderby"], entity=table.logical_name, columns=columns)
                if "$orderby" in options
                else []
            )
        except ODataError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc
        top = _non_negative(options, "$top")
        count = _boolean(options, "$count")
        rows = self._store.rows(table)
        matching = [row for row in rows if predicate(row)] if predicate else rows
        # the primary key breaks ties, so (sort key, id) orders rows totally and a page boundary
        # is a position in that order, not an offset: rows inserted meanwhile shift nothing
        order = (
            orderby
            if any(c == table.primary_id for c, _ in orderby)
            else [
                *orderby,
                (table.primary_id, False),
            ]
        )
        remaining = _after_cursor(matching, order, options.get("$skiptoken"))
        if prefs.max_page_size is not None:
            page_size = prefs.max_page_size  # $top is ignored next to odata.maxpagesize
        elif top is not None:
            page_size = min(top, settings.max_page_size)
            remaining = remaining[:page_size]
        else:
            page_size = settings.max_page_size
        page = remaining[:page_size]
        body: dict[str, Any] = {"@odata.context": _context(caller, table, select, expansions)}
        if count:
            body["@odata.count"] = min(len(matching), settings.count_limit)
        if prefs.wants(TOTAL_COUNT):
            body[f"@{TOTAL_COUNT}"] = min(len(matching), settings.count_limit) if count else -1
        if prefs.wants(TOTAL_COUNT_EXCEEDED):
            body[f"@{TOTAL_COUNT_EXCEEDED}"] = count and len(matching) > settings.count_limit
        body["value"] = [self._shape(table, row, select, expansions, prefs) for row in page]
        if len(remaining) > page_size:
            body["@odata.nextLink"] = _next_link(caller, table, request, order, page[-1])
        return _json(body, prefs)

    async def count(self, table: Table) -> Response:
        total = min(len(self._store.rows(table)), self._settings().count_limit)
        return PlainTextResponse(str(total), headers={"OData-Version": "4.0"})

    # --- writes ---------------------------------------------------------------------------------

    async def create(self, request: Request, caller: Caller, table: Table) -> Response:
        values = self.values(table, await _json_body(request))
        return self._insert(request, caller, table, values)

    async def upsert(
        self, request: Request, caller: Caller, table: Table, record_id: str
    ) -> Response:
        values = self.values(table, await _json_body(request))
        existing = self._store.get(table, record_id)
        if_match = request.headers.get("if-match")
        if existing is None:
            if if_match:
                raise errors.record_not_found(table.logical_name, record_id)
            # PATCH of a missing id without If-Match creates it: Dataverse upserts
            return self._insert(request, caller, table, {**values, table.primary_id: record_id})
        if request.headers.get("if-none-match") == "*":
            raise ApiError(
                412, errors.DUPLICATE_RECORD, "A record with matching key values already exists."
            )
        if if_match not in (None, "*") and if_match != _etag(existing):
            raise ApiError(
                412,
                errors.VERSION_MISMATCH,
                "The version of the existing record doesn't match the RowVersion property "
                "provided.",
            )
        row, changed = self._store.update(
            table, record_id, values, user_id=caller.user_id, now=self._now()
        )
        self._on_write(Write("Update", table, row, changed, values, caller, before=existing))
        return self._written(request, caller, table, row, status=200)

    async def delete(self, caller: Caller, table: Table, record_id: str) -> Response:
        row = self._store.get(table, record_id)
        if row is None or not self._store.delete(table, record_id):
            raise errors.record_not_found(table.logical_name, record_id)
        self._on_write(Write("Delete", table, row, set(), {}, caller))
        return Response(status_code=204, headers={"OData-Version": "4.0"})

    async def merge(self, request: Request, caller: Caller) -> Response:
        """The ``Merge`` action (https://learn.microsoft.com/power-apps/developer/data-platform/
        webapi/reference/merge and .../data-platform/webapi/merge-entity-using-web-api, which
        says the subordinate "is deactivated"):
        ``UpdateContent`` is written to the master, the subordinate is deactivated with
        ``merged`` true and ``masterid`` the master, and the rows whose parent was the
        subordinate are re-parented to the master; 204 No Content.

        Webhooks: a ``Merge`` step on the table fires once (Target = the master). The platform's
        own updates (the master with UpdateContent, the subordinate, re-parented children) fire
        Update steps whose filtering attributes they touch; whether Dataverse fires Update on the
        subordinate is not documented, so ``merge_fires_subordinate_update`` decides it.
        """
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise errors.bad_query("The request body must be a JSON object.")
        unknown = sorted(set(body) - set(MERGE_PARAMETERS))
        if unknown:
            raise errors.bad_query(
                f"The parameter '{unknown[0]}' in the request payload is not a valid parameter "
                "for the operation 'Merge'."
            )
        table, master_id = self._merge_entity(body, "Target")
        sub_table, subordinate_id = self._merge_entity(body, "Subordinate")
        if sub_table is not table:
            raise errors.bad_query("The Target and Subordinate of a Merge must be of one table.")
        if master_id == subordinate_id:
            raise errors.bad_query("The Target and the Subordinate of a Merge must differ.")
        for record_id in (master_id, subordinate_id):
            if self._store.get(table, record_id) is None:
                raise errors.record_not_found(table.logical_name, record_id)
        content = body.get("UpdateContent") or {}
        if not isinstance(content, dict):
            raise errors.bad_query("UpdateContent must be an entity object.")
        content = {k: v for k, v in content.items() if k != "@odata.type"}
        values = self.values(table, content)
        checks = body.get("PerformParentingChecks", False)
        if not isinstance(checks, bool):
            raise errors.bad_query("PerformParentingChecks must be a boolean.")
        if checks and "_parentcustomerid_value" in table.columns:
            master = self._store.get(table, master_id) or {}
            subordinate = self._store.get(table, subordinate_id) or {}
            parents = {r.get("_parentcustomerid_value") for r in (master, subordinate)}
            if len(parents) > 1 and None not in parents:
                # The real check refuses records with different parents; the text is NOT FOUND
                raise errors.bad_query(
                    "The records have different parents, and PerformParentingChecks is true."
                )
        now, user = self._now(), caller.user_id
        settings = self._settings()
        if values:
            before = self._store.get(table, master_id)
            row, changed = self._store.update(table, master_id, values, user_id=user, now=now)
            self._on_write(Write("Update", table, row, changed, values, caller, before=before))
        deactivate = {"statecode": 1, "statuscode": 2, "merged": True}
        if "_masterid_value" in table.columns:
            deactivate |= {"_masterid_value": master_id, target_key("_masterid_value"): "contact"}
        before = self._store.get(table, subordinate_id)
        row, changed = self._store.update(table, subordinate_id, deactivate, user_id=user, now=now)
        if settings.merge_fires_subordinate_update:
            update = Write("Update", table, row, changed, deactivate, caller, before=before)
            self._on_write(update)
        self._reparent(caller, table, subordinate_id, master_id)
        master = self._store.get(table, master_id) or {}
        parameters = {
            "SubordinateId": subordinate_id,
            "UpdateContent": values,
            "PerformParentingChecks": checks,
        }
        self._on_write(Write("Merge", table, master, set(), values, caller, parameters))
        return Response(status_code=204, headers={"OData-Version": "4.0"})

    def _merge_entity(self, body: dict[str, Any], name: str) -> tuple[Table, str]:
        entity = body.get(name)
        if not isinstance(entity, dict):
            raise errors.bad_query(f"The parameter '{name}' of the Merge action is required.")
        odata_type = str(entity.get("@odata.type", ""))
        table = TABLES.get(odata_type.removeprefix("Microsoft.Dynamics.CRM."))
        if table is None or table.primary_id not in entity:
            raise errors.bad_query(
                f"The parameter '{name}' must name its table in '@odata.type' (such as "
                "'Microsoft.Dynamics.CRM.contact') and carry its primary key."
            )
        return table, _record_key(str(entity[table.primary_id]))

    def _reparent(self, caller: Caller, parent: Table, old_id: str, new_id: str) -> None:
        """Children of the subordinate (contacts whose company was it) move to the master."""
        for child_table in TABLES.values():
            if "_parentcustomerid_value" not in child_table.columns:
                continue
            for child in self._store.rows(child_table):
                if child.get("_parentcustomerid_value") != old_id:
                    continue
                values = {"_parentcustomerid_value": new_id}
                values[target_key("_parentcustomerid_value")] = parent.logical_name
                row, changed = self._store.update(
                    child_table,
                    child[child_table.primary_id],
                    values,
                    user_id=caller.user_id,
                    now=self._now(),
                )
                update = Write("Update", child_table, row, changed, values, caller, before=child)
                self._on_write(update)

    def _insert(
        self, request: Request, caller: Caller, table: Table, values: dict[str, Any]
    ) -> Response:
        try:
            row = self._store.insert(
                table,
                values,
                user_id=caller.user_id,
                business_unit_id=self._settings().business_unit_id,
                now=self._now(),
            )
        except KeyError as exc:
            raise ApiError(
                412, errors.DUPLICATE_RECORD, "A record with matching key values already exists."
            ) from exc
        self._on_write(Write("Create", table, row, set(table.columns), values, caller))
        return self._written(request, caller, table, row, status=201)

    def _written(
        self, request: Request, caller: Caller, table: Table, row: dict[str, Any], status: int
    ) -> Response:
        """204 + OData-EntityId, or the row itself with ``Prefer: return=representation``."""
        entity_id = f"{caller.org_url}{API_PREFIX}/{table.entity_set}({row[table.primary_id]})"
        prefs = _preferences(request, self._settings())
        headers = {"OData-Version": "4.0", "OData-EntityId": entity_id}
        if not prefs.representation:
            return Response(status_code=204, headers=headers)
        options = _query_options(request)
        select = _select(options, table)
        expansions = self._expansions(options, table)
        body = {
            "@odata.context": _context(caller, table, select, expansions) + "/$entity",
            **self._shape(table, row, select, expansions, prefs),
        }
        return _json(body, prefs, status=status, headers={"OData-EntityId": entity_id})

    def values(self, table: Table, body: Any) -> dict[str, Any]:
        """Validated column values (lookups with their target) from a create/update body."""
        if not isinstance(body, dict):
            raise errors.bad_query("The request body must be a JSON object.")
        navigation = table.navigation_properties()
        values: dict[str, Any] = {}
        for key, value in body.items():
            name, _, annotation = key.partition("@")
            if annotation == "odata.bind":
                if name not in navigation:
                    raise errors.bad_query(
                        f"An undeclared property '{name}' which only has property annotations "
                        "in the payload but no property value was found in the payload. In "
                        "OData, only declared navigation properties and declared named streams "
                        "can be represented as properties without values."
                    )
                lookup, target = navigation[name]
                values[lookup.name] = self._bound_id(target, value)
                values[target_key(lookup.name)] = target if value is not None else None
                continue
            if annotation or not name:
                continue  # instance annotations (@odata.type, ...) carry no data
            column = table.columns.get(name)
            if column is None:
                raise errors.bad_query(
                    f"The property '{name}' does not exist on type "
                    f"'Microsoft.Dynamics.CRM.{table.logical_name}'. Make sure to only use "
                    "property names that are defined by the type or mark the type as open type."
                )
            if column.is_lookup:
                raise errors.bad_query(
                    "CRM do not support direct update of Entity Reference properties, Use "
                    "Navigation properties instead."
                )
            if column.name == table.primary_id:
                values[name] = _record_key(str(value))
            elif column.writable:
                values[name] = _validated(table, column, value)
            # Dataverse ignores values sent for read-only columns (createdon, fullname, ...)
        return values

    def _bound_id(self, target: str, value: Any) -> str | None:
        if value is None:
            return None
        match = _BIND.search(value) if isinstance(value, str) else None
        table = TABLES[target]
        if match is None or match.group("set") != table.entity_set:
            raise errors.bad_query(
                f"The value '{value}' of the @odata.bind annotation is not a URL of a "
                f"{table.logical_name} record, such as '/{table.entity_set}(<guid>)'."
            )
        record_id = match.group("key").lower()
        if self._store.get(table, record_id) is None:
            raise errors.record_not_found(table.logical_name, record_id)
        return record_id

    # --- shaping --------------------------------------------------------------------------------

    def _expansions(self, options: Mapping[str, str], table: Table) -> list[Expansion]:
        text = options.get("$expand")
        if not text:
            return []
        navigation = table.navigation_properties()
        result = []
        for item in _split_top_level(text, ","):
            match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*", item, re.DOTALL)
            name = match.group(1) if match else item.strip()
            if match is None or name not in navigation or navigation[name][1] not in TABLES:
                # only navigations to the tables this sandbox serves can be expanded
                raise errors.bad_query(
                    f"Could not find a property named '{name}' on type "
                    f"'Microsoft.Dynamics.CRM.{table.logical_name}'."
                )
            lookup, target_name = navigation[name]
            target = TABLES[target_name]
            select = None
            for option in _split_top_level(match.group(2) or "", ";"):
                key, _, value = option.partition("=")
                if key.strip() != "$select":
                    raise errors.bad_query(
                        f"The query option '{key.strip()}' inside $expand is not supported by "
                        "this sandbox; only $select is."
                    )
                select = _parse_select(value, target)
            result.append(Expansion(name, lookup, target, select))
        return result

    def _shape(
        self,
        table: Table,
        row: Mapping[str, Any],
        select: list[str] | None,
        expansions: list[Expansion],
        prefs: Preferences,
        *,
        etag: bool = True,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": _etag(row)} if etag else {}
        names = select if select is not None else list(table.columns)
        if table.primary_id not in names:
            names = [*names, table.primary_id]
        for name in names:
            column = table.columns[name]
            value = row.get(name)
            if value is not None:
                self._annotate(out, column, row, prefs)
            out[name] = value
        for expansion in expansions:
            out[expansion.navigation] = self._expanded(row, expansion, prefs)
        return out

    def _expanded(
        self, row: Mapping[str, Any], expansion: Expansion, prefs: Preferences
    ) -> dict[str, Any] | None:
        lookup = expansion.lookup.name
        if row.get(lookup) is None or row.get(target_key(lookup)) != expansion.target.logical_name:
            return None  # no parent, or a parent of the other type (NOT FOUND: assumed null)
        parent = self._store.get(expansion.target, row[lookup])
        if parent is None:
            return None
        return self._shape(expansion.target, parent, expansion.select, [], prefs, etag=False)

    def _annotate(
        self, out: dict[str, Any], column: Column, row: Mapping[str, Any], prefs: Preferences
    ) -> None:
        value = row[column.name]
        if column.is_lookup:
            target = row.get(target_key(column.name))
            annotations = {
                FORMATTED: self._lookup_name(target, value),
                NAVIGATION: column.navigation.get(target or "", column.attribute),
                LOGICAL_NAME: target,
            }
        else:
            formatted = formatted_value(column, value)
            annotations = {FORMATTED: formatted} if formatted is not None else {}
        for annotation, text in annotations.items():
            if prefs.wants(annotation):
                out[f"{column.name}@{annotation}"] = text

    def _lookup_name(self, target: str | None, record_id: str) -> str | None:
        if target == SYSTEM_USER:
            return "Dataverse Sandbox Application User"
        if target == BUSINESS_UNIT:
            return self._settings().organization_name
        table = TABLES.get(target or "")
        row = self._store.get(table, record_id) if table else None
        return row.get(table.primary_name) if table and row else None


def formatted_value(column: Column, value: Any) -> str | None:
    """The ``OData.Community.Display.V1.FormattedValue`` of a value (en-US, UTC)."""
    if value is None:
        return None
    if column.kind in (Kind.PICKLIST, Kind.STATE, Kind.STATUS):
        return column.options.get(value)
    if column.kind is Kind.DATETIME:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{moment.month}/{moment.day}/{moment.year} {moment.strftime('%I:%M %p').lstrip('0')}"
        )
    if column.kind is Kind.MONEY:
        return f"${value:,.2f}"
    if column.kind is Kind.INT:
        return f"{value:,}"
    if column.kind is Kind.BOOL:
        return "Yes" if value else "No"
    return None


def _validated(table: Table, column: Column, value: Any) -> Any:
    if value is None:
        return None
    expected: tuple[type, ...] = {
        Kind.STRING: (str,),
        Kind.INT: (int,),
        Kind.MONEY: (int, float),
        Kind.BOOL: (bool,),
        Kind.PICKLIST: (int,),
        Kind.STATE: (int,),
        Kind.STATUS: (int,),
    }.get(column.kind, (str,))
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        raise errors.bad_query(
            f"Cannot convert the literal '{value}' to the expected type '{column.kind.edm}'."
        )
    if column.max_length is not None and len(value) > column.max_length:
        raise ApiError(
            400,
            errors.LENGTH_EXCEEDED,
            f"A validation error occurred. The length of the '{column.name}' attribute of the "
            f"'{table.logical_name}' entity exceeded the maximum allowed length of "
            f"'{column.max_length}'.",
        )
    if column.options and value not in column.options:
        accepted = ",".join(str(v) for v in column.options)
        raise ApiError(
            400,
            errors.OPTION_OUT_OF_RANGE,
            f"A validation error occurred. The value {value} of '{column.name}' on record of type "
            f"'{table.logical_name}' is outside the valid range. Accepted Values: {accepted}",
        )
    return float(value) if column.kind is Kind.MONEY else value


def _select(options: Mapping[str, str], table: Table) -> list[str] | None:
    return _parse_select(options["$select"], table) if "$select" in options else None


def _parse_select(text: str, table: Table) -> list[str] | None:
    """The selected columns; None (all columns) for an empty ``$select``."""
    try:
        return parse_select(text, entity=table.logical_name, columns=table.edm_types()) or None
    except ODataError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc


def _record_key(text: str) -> str:
    key = text.strip().removeprefix("guid'").removesuffix("'")
    if not _GUID.match(key):
        raise errors.bad_query(f"Unrecognized 'Edm.Guid' literal '{text}' in the key segment.")
    return key.lower()


def _query_options(request: Request) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if not key.startswith("$"):
            continue  # parameter aliases (@p1) and custom parameters
        if key not in QUERY_OPTIONS:
            raise errors.bad_query(f"The query parameter {key} is not supported")
        if key in options:
            raise errors.bad_query(
                f"Query option '{key}' was specified more than once, but it must be specified "
                "at most once."
            )
        options[key] = value
    return options


def _preferences(request: Request, settings: DataverseSettings) -> Preferences:
    prefs = Preferences()
    for item in _split_top_level(",".join(request.headers.getlist("prefer")), ","):
        name, _, value = (part.strip() for part in item.partition("="))
        if name == "odata.include-annotations":
            patterns = value.strip('"')
            prefs.annotations = [p.strip() for p in patterns.split(",") if p.strip()]
            prefs.applied.append(f'odata.include-annotations="{patterns}"')
        elif name == "odata.maxpagesize" and value.isdigit():
            # sizes past the maximum are ignored, as Dataverse does
            if 0 < int(value) <= settings.max_page_size:
                prefs.max_page_size = int(value)
                prefs.applied.append(f"odata.maxpagesize={value}")
        elif name == "return" and value == "representation":
            prefs.representation = True
            prefs.applied.append("return=representation")
    return prefs


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses and double quotes."""
    parts, depth, quoted, current = [], 0, False, []
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _non_negative(options: Mapping[str, str], name: str) -> int | None:
    if name not in options:
        return None
    value = options[name].strip()
    if not value.isdigit():
        raise errors.bad_query(
            f"Invalid value '{value}' for {name} query option found. The {name} query option "
            "requires a non-negative integer value."
        )
    return int(value)


def _boolean(options: Mapping[str, str], name: str) -> bool:
    value = options.get(name, "false").strip().lower()
    if value not in ("true", "false"):
        raise errors.bad_query(f"'{options[name]}' is not a valid count option.")
    return value == "true"


def _after_cursor(
    rows: list[dict[str, Any]], order: list[tuple[str, bool]], skiptoken: str | None
) -> list[Mapping[str, Any]]:
    """The rows, in ``order``, that come after the position a ``$skiptoken`` names."""
    if not skiptoken:
        return sort_records(rows, order)
    match = _COOKIE.search(skiptoken)
    try:
        values = json.loads(base64.urlsafe_b64decode(match.group("cookie"))) if match else None
    except (ValueError, binascii.Error):
        values = None
    if not isinstance(values, list) or len(values) != len(order):
        raise errors.bad_query("The $skiptoken is not valid for this query.")
    # The cursor row sorts after its twin (the row it was taken from, if still there): sorting
    # is stable and the cursor goes last; everything behind the cursor is the next page.
    cursor = {column: value for (column, _), value in zip(order, values, strict=True)}
    ordered = sort_records([*rows, cursor], order)
    position = next(i for i, row in enumerate(ordered) if row is cursor)
    return ordered[position + 1 :]


def _next_link(
    caller: Caller,
    table: Table,
    request: Request,
    order: list[tuple[str, bool]],
    last: Mapping[str, Any],
) -> str:
    page = 2
    current = _COOKIE.search(request.query_params.get("$skiptoken", ""))
    if current:
        page = int(current.group("page")) + 1
    position = base64.urlsafe_b64encode(
        json.dumps([last.get(column) for column, _ in order]).encode()
    ).decode()
    cookie = f'<cookie pagenumber="{page}" pagingcookie="{position}" istracking="False" />'
    params = [
        f"{key}={quote(value, safe=_LINK_SAFE)}"
        for key, value in request.query_params.multi_items()
        if key != "$skiptoken"
    ]
    params.append(f"$skiptoken={quote(cookie, safe='')}")
    return f"{caller.org_url}{API_PREFIX}/{table.entity_set}?{'&'.join(params)}"


def _context(
    caller: Caller, table: Table, select: list[str] | None, expansions: list[Expansion]
) -> str:
    parts = list(select or [])
    for expansion in expansions:
        parts.append(f"{expansion.navigation}({','.join(expansion.select or [])})")
    projection = f"({','.join(parts)})" if parts else ""
    return f"{caller.org_url}{API_PREFIX}/$metadata#{table.entity_set}{projection}"


def _etag(row: Mapping[str, Any]) -> str:
    return f'W/"{row["versionnumber"]}"'


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else {}
    except ValueError as exc:
        raise errors.bad_query(f"The request body is not valid JSON: {exc}") from exc


def _json(
    body: dict[str, Any],
    prefs: Preferences,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    out = {"OData-Version": "4.0", **(headers or {})}
    if prefs.applied:
        out["Preference-Applied"] = ",".join(prefs.applied)
    return JSONResponse(body, status_code=status, headers=out, media_type=errors.JSON_MEDIA_TYPE)
