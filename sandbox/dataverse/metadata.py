"""The slice of ``EntityDefinitions`` Microsoft's Python SDK reads
(microsoft/PowerPlatform-DataverseClient-Python): entity-set resolution by logical name, and the
Picklist attributes it uses to turn choice labels into values.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from sandbox.dataverse import errors
from sandbox.dataverse.errors import ApiError
from sandbox.dataverse.odata import ODataError, parse_filter, parse_select
from sandbox.dataverse.schema import TABLES, Kind, Table
from sandbox.dataverse.webapi import API_PREFIX, Caller, Route

_DEFINITION = re.compile(
    r"EntityDefinitions\(LogicalName='(?P<name>[^']*)'\)"
    r"(?P<picklists>/Attributes/Microsoft\.Dynamics\.CRM\.PicklistAttributeMetadata)?"
)
ENGLISH = 1033


def metadata_route(path: str, request: Request) -> Route | None:
    """The EntityDefinitions handler for ``path``, or None when the path is not metadata."""
    if path == "EntityDefinitions":
        route = Route("EntityDefinitions", _definitions)
    else:
        match = _DEFINITION.fullmatch(path)
        if match is None:
            return None
        name = match.group("name")
        if match.group("picklists"):
            route = Route(
                "EntityDefinitions(LogicalName=name)/Attributes/"
                "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
                lambda r, c: _picklists(c, _table(name)),
            )
        else:
            route = Route(
                "EntityDefinitions(LogicalName=name)", lambda r, c: _definition(r, c, name)
            )
    if request.method != "GET":
        raise errors.method_not_allowed(request.method)
    return route


def _describe(table: Table) -> dict[str, Any]:
    return {
        "MetadataId": table.metadata_id,
        "LogicalName": table.logical_name,
        "SchemaName": table.schema_name,
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "PrimaryIdAttribute": table.primary_id,
        "PrimaryNameAttribute": table.primary_name,
        "ObjectTypeCode": table.object_type_code,
    }


_PROPERTIES = list(_describe(next(iter(TABLES.values()))))


def _selected(definition: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if select is None:
        return definition
    return {k: definition[k] for k in ["MetadataId", *select] if k in definition}


def _options(request: Request) -> tuple[list[str] | None, Any]:
    params = request.query_params
    try:
        select = (
            parse_select(params["$select"], entity="EntityMetadata", columns=_PROPERTIES)
            if "$select" in params
            else None
        )
        predicate = (
            parse_filter(params["$filter"], entity="EntityMetadata", columns=_PROPERTIES)
            if "$filter" in params
            else None
        )
    except ODataError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc
    return select, predicate


def _context(caller: Caller, select: list[str] | None, suffix: str = "") -> str:
    projection = f"({','.join(select)})" if select else ""
    return f"{caller.org_url}{API_PREFIX}/$metadata#EntityDefinitions{projection}{suffix}"


async def _definitions(request: Request, caller: Caller) -> JSONResponse:
    select, predicate = _options(request)
    rows = [_describe(t) for t in TABLES.values()]
    value = [_selected(row, select) for row in rows if predicate is None or predicate(row)]
    return _json({"@odata.context": _context(caller, select), "value": value})


async def _definition(request: Request, caller: Caller, name: str) -> JSONResponse:
    select, _ = _options(request)
    body = _selected(_describe(_table(name)), select)
    return _json({"@odata.context": _context(caller, select, "/$entity"), **body})


async def _picklists(caller: Caller, table: Table) -> JSONResponse:
    value = [
        {
            "LogicalName": column.name,
            "MetadataId": _metadata_id(table, column.name),
            "OptionSet": {
                "MetadataId": _metadata_id(table, f"{column.name}/options"),
                "Options": [
                    {"Value": number, "Label": _label(text)}
                    for number, text in column.options.items()
                ],
            },
        }
        for column in table.columns.values()
        if column.kind is Kind.PICKLIST
    ]
    context = (
        f"{caller.org_url}{API_PREFIX}/$metadata#EntityDefinitions('{table.metadata_id}')/"
        "Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata(LogicalName,OptionSet(Options))"
    )
    return _json({"@odata.context": context, "value": value})


def _label(text: str) -> dict[str, Any]:
    localized = {"Label": text, "LanguageCode": ENGLISH}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def _table(name: str) -> Table:
    table = TABLES.get(name)
    if table is None:
        raise ApiError(
            404, errors.OBJECT_DOES_NOT_EXIST, f"Could not find entity with name '{name}'."
        )
    return table


def _metadata_id(table: Table, name: str) -> str:
    return str(uuid.uuid5(uuid.UUID(table.metadata_id), name))


def _json(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers={"OData-Version": "4.0"}, media_type=errors.JSON_MEDIA_TYPE)
