"""Webhooks as Dataverse sends them ("Use WebHooks to create external handlers for server events",
https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks): registrations
(service endpoint + steps), the ``RemoteExecutionContext`` payload in Microsoft's serialization,
and asynchronous delivery with a system-job-like log.

Steps run asynchronously in PostOperation (Mode 1, Stage 40), as in Microsoft's sample. Delivery
runs as a task in the server's own event loop, so the Web API answer never waits for it.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import functools
import html
import json
import re
import ssl
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from sandbox.common.clock import Clock
from sandbox.dataverse.schema import TABLES, Column, Kind, Table
from sandbox.dataverse.settings import DataverseSettings
from sandbox.dataverse.store import target_key
from sandbox.dataverse.webapi import Write

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ENTITY_TYPE = f"Entity:{CONTRACTS}"
AUTH_TYPES = ("WebhookKey", "HttpHeader", "HttpQueryString")
MESSAGES = ("Create", "Update", "Delete", "Merge")
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
DEFAULT_MESSAGES = ("Create", "Update")
# Messages whose Target is an EntityReference (the row is gone, or named only), not an Entity
_REFERENCE_TARGET = ("Delete", "Merge")
# Deliveries in flight at once: the asynchronous service runs system jobs on a bounded pool of
# workers, not one connection per pending job (NOT FOUND: its size). Unbounded, a bulk import's
# backlog opened hundreds of connections at once and the relay's connection limit answered 503
# to some, which lost their events after the one retry.
MAX_CONCURRENT_DELIVERIES = 16
RETRIED_STATUSES = (502, 503, 504)  # "one more attempt only when these error codes are returned"
# Columns Dataverse sets itself on update; they are in the Target however the caller's changes are
_PLATFORM_UPDATE = ("modifiedon", "_modifiedby_value", "versionnumber", "fullname", "yomifullname")
# asyncoperation statecode/statuscode pairs
READY, IN_PROGRESS, SUCCEEDED, FAILED = (0, 0), (2, 20), (3, 30), (3, 31)
_SETTING = re.compile(r'<setting\s+name="(?P<name>[^"]*)"\s+value="(?P<value>[^"]*)"\s*/>')


@dataclass
class Endpoint:
    serviceendpointid: str
    name: str
    url: str
    auth_type: str
    auth_value: Any  # str for WebhookKey, {name: value} for HttpHeader / HttpQueryString


@dataclass
class Step:
    sdkmessageprocessingstepid: str
    serviceendpointid: str
    message: str
    entity: str
    filtering_attributes: list[str] | None
    # A registered pre-image: (alias, attributes or None for all columns). Dataverse sends one
    # only when the step has it (Update and Delete steps; Create has no pre-image).
    pre_image: tuple[str, list[str] | None] | None = None

    def fires_for(self, write: Write) -> bool:
        if write.message != self.message or write.table.logical_name != self.entity:
            return False
        if write.message != "Update" or not self.filtering_attributes:
            return True
        changed = {write.table.columns[c].attribute for c in write.changed}
        return bool(changed & set(self.filtering_attributes))


class Webhooks:
    """Registered endpoints and steps, the deliveries they made, and the delivery itself."""

    def __init__(self, settings: Callable[[], DataverseSettings], clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._steps: list[Step] = []
        self._deliveries: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Per event loop: a server restarted in another loop gets a semaphore of its own.
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    # --- registrations --------------------------------------------------------------------------

    def register(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Register an endpoint and its steps from the admin API's JSON; ValueError if invalid."""
        url, auth_type = spec.get("url"), spec.get("auth_type")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("url must be an absolute http(s) URL")
        if auth_type not in AUTH_TYPES:
            raise ValueError(f"auth_type must be one of {AUTH_TYPES}")
        entity = spec.get("entity", "contact")
        if entity not in TABLES:
            raise ValueError(f"entity must be one of {sorted(TABLES)}")
        messages = list(spec.get("messages") or DEFAULT_MESSAGES)
        if not set(messages) <= set(MESSAGES):
            raise ValueError(f"messages must be among {MESSAGES}")
        pre_image = _pre_image(TABLES[entity], spec.get("pre_image"))
        endpoint = Endpoint(
            serviceendpointid=str(uuid.uuid4()),
            name=str(spec.get("name") or f"sandbox webhook {urlsplit(url).netloc}"),
            url=url,
            auth_type=auth_type,
            auth_value=_auth_value(auth_type, spec.get("auth_value")),
        )
        filtering = _filtering(TABLES[entity], spec.get("filtering_attributes"))
        steps = [
            Step(
                str(uuid.uuid4()),
                endpoint.serviceendpointid,
                message,
                entity,
                filtering,
                pre_image if message in ("Update", "Delete") else None,
            )
            for message in messages
        ]
        with self._lock:
            self._endpoints[endpoint.serviceendpointid] = endpoint
            self._steps.extend(steps)
        return self._describe(endpoint)

    def registrations(self) -> list[dict[str, Any]]:
        """Registrations without their auth values, which Dataverse never gives back."""
        with self._lock:
            return [self._describe(e) for e in self._endpoints.values()]

    def unregister(self, endpoint_id: str | None = None) -> int:
        with self._lock:
            gone = [e for e in self._endpoints if endpoint_id in (None, e)]
            for key in gone:
                del self._endpoints[key]
            self._steps = [s for s in self._steps if s.serviceendpointid in self._endpoints]
            return len(gone)

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(json.dumps(d)) for d in self._deliveries]

    def reset(self) -> None:
        with self._lock:
            self._endpoints.clear()
            self._steps.clear()
            self._deliveries = []  # a new list: deliveries still running finish into the old one

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {
                "endpoints": [asdict(e) for e in self._endpoints.values()],
                "steps": [asdict(s) for s in self._steps],
            }

    def load(self, data: dict[str, Any]) -> None:
        with self._lock:
            for raw in data.get("endpoints", []):
                endpoint = Endpoint(**raw)
                self._endpoints[endpoint.serviceendpointid] = endpoint
            for raw in data.get("steps", []):
                image = raw.get("pre_image")
                step = Step(**{**raw, "pre_image": tuple(image) if image else None})
                self._steps.append(step)

    def _describe(self, endpoint: Endpoint) -> dict[str, Any]:
        return {
            "serviceendpointid": endpoint.serviceendpointid,
            "name": endpoint.name,
            "url": endpoint.url,
            "contract": 8,  # webhook
            "authtype": endpoint.auth_type,
            "steps": [
                {
                    "sdkmessageprocessingstepid": s.sdkmessageprocessingstepid,
                    "message": s.message,
                    "primaryobjecttypecode": s.entity,
                    "filteringattributes": ",".join(s.filtering_attributes or []) or None,
                    "stage": 40,
                    "mode": 1,
                    "pre_image": (
                        {"alias": s.pre_image[0], "attributes": s.pre_image[1]}
                        if s.pre_image
                        else None
                    ),
                }
                for s in self._steps
                if s.serviceendpointid == endpoint.serviceendpointid
            ],
        }

    # --- firing ---------------------------------------------------------------------------------

    def notify(self, write: Write) -> None:
        """Queue a delivery per step the write fires; call from the server's event loop."""
        with self._lock:
            fired = [
                (s, self._endpoints[s.serviceendpointid]) for s in self._steps if s.fires_for(write)
            ]
        if not fired:
            return
        correlation_id = str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        for step, endpoint in fired:
            context = build_context(
                write, step, self._settings(), self._clock.now(), correlation_id
            )
            task = loop.create_task(self._deliver(write, step, endpoint, context))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, write: Write, step: Step, endpoint: Endpoint, context: dict[str, Any]
    ) -> None:
        settings = self._settings()
        body = serialize(context)
        size_exceeded = len(body) > settings.webhook_max_payload_bytes
        if size_exceeded:
            body = serialize(strip_oversize(context))
        headers = {
            "content-type": settings.webhook_content_type,
            "x-ms-dynamics-organization": urlsplit(write.caller.org_url).netloc,
            "x-ms-dynamics-entity-name": write.table.logical_name,
            "x-ms-dynamics-request-name": write.message,
            "x-ms-correlation-request-id": context["CorrelationId"],
        }
        if size_exceeded:
            headers["x-ms-dynamics-msg-size-exceeded"] = settings.webhook_size_exceeded_header_value
        query: dict[str, str] = {}
        if endpoint.auth_type == "WebhookKey":
            query["code"] = endpoint.auth_value
        elif endpoint.auth_type == "HttpQueryString":
            query.update(endpoint.auth_value)
        else:
            headers.update(endpoint.auth_value)
        separator = "&" if "?" in endpoint.url else "?"
        url = f"{endpoint.url}{separator}{urlencode(query)}" if query else endpoint.url
        job = {
            "asyncoperationid": context["OperationId"],
            "name": f"{endpoint.name}: {write.message} of {write.table.logical_name}",
            "operationtype": 1,  # System Event
            "statecode": READY[0],
            "statuscode": READY[1],
            "message": None,
            "messagename": write.message,
            "primaryentitytype": write.table.logical_name,
            "regardingobjectid": context["PrimaryEntityId"],
            "_owningextensionid_value": step.sdkmessageprocessingstepid,
            "serviceendpointid": endpoint.serviceendpointid,
            "correlationid": context["CorrelationId"],
            "createdon": _iso(self._clock.now()),
            "completedon": None,
            "payload_bytes": len(body),
            "size_exceeded": size_exceeded,
            "attempts": [],
        }
        with self._lock:
            self._deliveries.append(job)
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES))
        async with slots:
            await self._send(job, url, body, headers, settings.webhook_timeout_s)

    async def _send(
        self,
        job: dict[str, Any],
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float,
    ) -> None:
        """One delivery's attempts (a second only after 502/503/504), recorded in ``job``."""
        job["statecode"], job["statuscode"] = IN_PROGRESS
        for _ in range(2):
            status, error = await _post(url, body, headers, timeout)
            job["attempts"].append(
                {"status": status, "error": error, "at": _iso(self._clock.now())}
            )
            if status not in RETRIED_STATUSES:
                break
        succeeded = status is not None and 200 <= status < 300
        job["message"] = (
            None if succeeded else (error or f"The webhook endpoint answered {status}.")
        )
        job["completedon"] = _iso(self._clock.now())
        job["statecode"], job["statuscode"] = SUCCEEDED if succeeded else FAILED


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings (verification on, its CA bundle), built once: building them
    costs ~25 ms of CPU (the CA bundle)."""
    return httpx.create_ssl_context()


class _NotHttp(Exception):
    """The endpoint's answer is not an HTTP/1.x response."""


async def _post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int | None, str | None]:
    """One POST on a connection of its own (``Connection: close``), as Dataverse's asynchronous
    service sends each delivery; the answer's status, or None and why not.

    HTTP/1.1 written by hand on asyncio streams: all a delivery needs is the request out and the
    status back, and an httpx client per delivery (its pool, transport and request machinery)
    made the webhooks ~45% of the sandbox's CPU in a bulk import, the import's bottleneck.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fields = {
        "Host": parts.netloc,
        "Content-Length": str(len(body)),
        "Connection": "close",
        **headers,
        "x-request-id": str(uuid.uuid4()),
    }
    if any(c in f"{k}{v}" for k, v in fields.items() for c in "\r\n"):
        return None, "The webhook call failed: a header holds a line break."
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    request = f"POST {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname,
                parts.port or (443 if secure else 80),
                ssl=_tls_context() if secure else None,
            )
            try:
                writer.write(request)
                return await _read_status(reader), None
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        return None, "The webhook call timed out."
    except (OSError, ValueError, _NotHttp, asyncio.IncompleteReadError) as exc:
        return None, f"The webhook call failed: {type(exc).__name__}."


async def _read_status(reader: asyncio.StreamReader) -> int:
    """The status of an HTTP/1.x response, read to its end (its ``Content-Length``, else until
    the endpoint closes)."""
    version, _, rest = (await reader.readline()).decode("latin-1").partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise _NotHttp(version[:20])
    length = None
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length is None:
        await reader.read()
    else:
        await reader.readexactly(length)
    return int(rest[:3])


# --- the RemoteExecutionContext -----------------------------------------------------------------


def build_context(
    write: Write,
    step: Step,
    settings: DataverseSettings,
    now: float,
    correlation_id: str,
) -> dict[str, Any]:
    """The context of ``step`` firing for ``write``, as Python values (see ``serialize``)."""
    table, row = write.table, write.row
    record_id = row[table.primary_id]
    if write.message in _REFERENCE_TARGET:
        return _reference_context(write, step, settings, now, correlation_id)
    if write.message == "Create":
        target_columns = [
            c for c in table.columns if row.get(c) is not None and c != "versionnumber"
        ]
    else:
        changed = [c for c in table.columns if c in write.changed and c not in _PLATFORM_UPDATE]
        names = ["fullname", "yomifullname"] if "fullname" in write.changed else []
        target_columns = [*changed, table.primary_id, *names, "modifiedon", "_modifiedby_value"]
    target = _entity(table, row, dict.fromkeys(target_columns), formatted=write.message == "Create")
    if write.message == "Update":
        target["Attributes"].append({"key": "modifiedonbehalfby", "value": None})
    sent = dict.fromkeys([c for c in write.sent if c in table.columns and c != table.primary_id])
    parent_target = _entity(table, row, {**sent, table.primary_id: None})
    shared = _shared(write, step, settings, now, correlation_id)
    parent = _ordered(
        {
            **shared,
            "InputParameters": [
                {"key": "Target", "value": parent_target},
                {"key": "SuppressDuplicateDetection", "value": False},
            ],
            "OutputParameters": [],
            "ParentContext": None,
            "PostEntityImages": [],
            "PreEntityImages": [],
            "SharedVariables": [
                {
                    "key": "ChangedEntityTypes",
                    "value": [
                        {
                            "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
                            "key": table.logical_name,
                            "value": write.message,
                        }
                    ],
                }
            ],
            "Stage": 30,
        }
    )
    primary_name = _entity(table, row, {table.primary_name: None, table.primary_id: None})
    del primary_name["__type"]  # image entities carry no __type in Microsoft's sample
    return _ordered(
        {
            **shared,
            "InputParameters": [{"key": "Target", "value": target}],
            "OutputParameters": [{"key": "id", "value": record_id}]
            if write.message == "Create"
            else [],
            "ParentContext": parent,
            "PostEntityImages": [{"key": "AsynchronousStepPrimaryName", "value": primary_name}],
            "PreEntityImages": _pre_images(step, write),
            "SharedVariables": (
                [{"key": "DefaultsAddedFlag", "value": True}] if write.message == "Create" else []
            ),
            "Stage": 40,
        }
    )


def _reference_context(
    write: Write,
    step: Step,
    settings: DataverseSettings,
    now: float,
    correlation_id: str,
) -> dict[str, Any]:
    """Delete and Merge: the Target is an EntityReference (``Microsoft.Xrm.Sdk`` DeleteRequest and
    MergeRequest, https://learn.microsoft.com/dotnet/api/microsoft.crm.sdk.messages.mergerequest),
    so the columns are only in a registered pre-image. Merge adds SubordinateId, UpdateContent
    and PerformParentingChecks. Microsoft publishes no sample of either payload: the envelope
    is the Update sample's, with no AsynchronousStepPrimaryName post-image after a Delete (there
    is no row left to read) and none after a Merge either (a guess)."""
    table, row = write.table, write.row
    record_id = row[table.primary_id]
    reference = {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": table.logical_name,
        "Name": None,
        "RowVersion": None,
    }
    inputs: list[dict[str, Any]] = [{"key": "Target", "value": reference}]
    if write.message == "Merge":
        content = write.parameters.get("UpdateContent") or {}
        update_content = _entity(table, {**row, **content}, dict.fromkeys(content))
        update_content["Id"] = EMPTY_GUID  # an Entity built by the caller, not a stored row
        inputs += [
            {"key": "SubordinateId", "value": write.parameters["SubordinateId"]},
            {"key": "UpdateContent", "value": update_content},
            {"key": "PerformParentingChecks", "value": write.parameters["PerformParentingChecks"]},
        ]
    shared = {
        **_shared(write, step, settings, now, correlation_id),
        "InputParameters": inputs,
        "OutputParameters": [],
        "PostEntityImages": [],
        "SharedVariables": [],
    }
    parent = {**shared, "ParentContext": None, "PreEntityImages": [], "Stage": 30}
    return _ordered(
        {
            **shared,
            "ParentContext": _ordered(parent),
            "PreEntityImages": _pre_images(step, write),
            "Stage": 40,
        }
    )


def _shared(
    write: Write, step: Step, settings: DataverseSettings, now: float, correlation_id: str
) -> dict[str, Any]:
    """What a context and its ParentContext share: one operation of one user on one record."""
    return {
        "BusinessUnitId": settings.business_unit_id,
        "CorrelationId": correlation_id,
        "Depth": 1,
        "InitiatingUserId": write.caller.user_id,
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": write.message,
        "Mode": 1,
        "OperationCreatedOn": f"/Date({int(now * 1000)}+0000)/",
        "OperationId": str(uuid.uuid4()),
        "OrganizationId": settings.organization_id,
        "OrganizationName": settings.organization_name,
        "OwningExtension": {
            "Id": step.sdkmessageprocessingstepid,
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": None,
            "RowVersion": None,
        },
        "PrimaryEntityId": write.row[write.table.primary_id],
        "PrimaryEntityName": write.table.logical_name,
        "RequestId": None,
        "SecondaryEntityName": "none",
        "UserId": write.caller.user_id,
    }


def _ordered(context: dict[str, Any]) -> dict[str, Any]:
    """Keys in alphabetical order, as Dataverse serializes a RemoteExecutionContext."""
    return dict(sorted(context.items()))


def _pre_images(step: Step, write: Write) -> list[dict[str, Any]]:
    """The step's registered pre-image: the row before the operation (for an Update, the row
    with the changed columns' old values; the store keeps no history, so the sandbox rebuilds
    keeps the row before in ``write.before``)."""
    if step.pre_image is None or write.message not in ("Update", "Delete"):
        return []
    alias, attributes = step.pre_image
    table = write.table
    before = write.before if write.before is not None else write.row
    columns = [
        c
        for c in table.columns
        if before.get(c) is not None
        and c != "versionnumber"
        and (attributes is None or table.columns[c].attribute in attributes)
    ]
    if table.primary_id not in columns:
        columns.append(table.primary_id)
    image = _entity(table, before, dict.fromkeys(columns))
    del image["__type"]
    return [{"key": alias, "value": image}]


def strip_oversize(context: dict[str, Any]) -> dict[str, Any]:
    """What is left of a context past 256 KB. The docs say these properties are "removed"; the
    serializer writes every member, so they are emptied (NOT FOUND: verbatim oversize payload)."""
    return {
        **context,
        "ParentContext": None,
        "InputParameters": [],
        "PreEntityImages": [],
        "PostEntityImages": [],
    }


def serialize(context: dict[str, Any]) -> bytes:
    """JSON as DataContractJsonSerializer writes it: compact, UTF-8, every ``/`` escaped."""
    text = json.dumps(context, ensure_ascii=False, separators=(",", ":"))
    # "/" occurs only inside JSON strings, so escaping every one is exact
    return text.replace("/", "\\/").encode()


def _entity(
    table: Table, row: dict[str, Any], columns: dict[str, None], *, formatted: bool = False
) -> dict[str, Any]:
    attributes = [
        {"key": table.columns[c].attribute, "value": _value(table.columns[c], row, c)}
        for c in columns
    ]
    formatted_values = []
    if formatted:
        for name in columns:
            text = _formatted(table.columns[name], row.get(name))
            if text is not None:
                formatted_values.append({"key": table.columns[name].attribute, "value": text})
    return {
        "__type": ENTITY_TYPE,
        "Attributes": attributes,
        "EntityState": None,
        "FormattedValues": formatted_values,
        "Id": row[table.primary_id],
        "KeyAttributes": [],
        "LogicalName": table.logical_name,
        "RelatedEntities": [],
        "RowVersion": None,
    }


def _value(column: Column, row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None:
        return None
    if column.kind is Kind.LOOKUP:
        return {
            "__type": f"EntityReference:{CONTRACTS}",
            "Id": value,
            "KeyAttributes": [],
            "LogicalName": row.get(target_key(name)),
            "Name": None,
            "RowVersion": None,
        }
    if column.kind in (Kind.PICKLIST, Kind.STATE, Kind.STATUS):
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}
    if column.kind is Kind.MONEY:
        return {"__type": f"Money:{CONTRACTS}", "Value": value}
    if column.kind is Kind.DATETIME:
        return f"/Date({_epoch_ms(value)})/"
    return value


def _formatted(column: Column, value: Any) -> str | None:
    if value is None:
        return None
    if column.options:
        return column.options.get(value)
    if column.kind is Kind.DATETIME:
        return value.removesuffix("Z") + "-00:00"
    return None


def _epoch_ms(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")) * 1000


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _auth_value(auth_type: str, value: Any) -> Any:
    if auth_type == "WebhookKey":
        if not isinstance(value, str) or not value:
            raise ValueError("a WebhookKey auth_value is the key itself (a non-empty string)")
        return value
    if isinstance(value, str):
        # the Plug-in Registration Tool stores pairs as <settings><setting name= value= />...
        value = {
            html.unescape(m["name"]): html.unescape(m["value"]) for m in _SETTING.finditer(value)
        }
    if not isinstance(value, dict) or not value:
        raise ValueError(f"a {auth_type} auth_value is a non-empty object of name: value pairs")
    return {str(k): str(v) for k, v in value.items()}


def _pre_image(table: Table, value: Any) -> tuple[str, list[str] | None] | None:
    """``{"alias": "PreImage", "attributes": [...]}`` (no attributes: every column)."""
    if not value:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("alias"), str):
        raise ValueError('pre_image is {"alias": <name>, "attributes": [<column>, ...] or null}')
    attributes = _filtering(table, value.get("attributes"))
    return value["alias"], attributes


def _filtering(table: Table, value: Any) -> list[str] | None:
    if not value:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip().lower() for n in names if n.strip()]
    known = {c.attribute for c in table.columns.values()}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown filtering attributes for {table.logical_name}: {unknown}")
    return names
