"""The sandbox's rows: plain dicts holding every column of their table, thread-safe.

Rows are replaced, never mutated, on update (copy-on-write), so a query iterating a snapshot
from ``rows`` sees each row either before or after a concurrent write.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from sandbox.dataverse.schema import CONTACT, DEFAULT_STATUS_FOR_STATE, TABLES, Table

# A lookup's target table is kept next to its value under its Web API annotation name.
LOOKUP_TARGET = "@Microsoft.Dynamics.CRM.lookuplogicalname"
SYSTEM_USER = "systemuser"
BUSINESS_UNIT = "businessunit"


def target_key(column: str) -> str:
    return column + LOOKUP_TARGET


class RecordStore:
    def __init__(self) -> None:
        self._rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in TABLES}
        # versionnumber is a rowversion: one counter for the whole organization
        self._version = 1_000_000
        self._lock = threading.RLock()

    def clear(self) -> None:
        with self._lock:
            for rows in self._rows.values():
                rows.clear()

    def get(self, table: Table, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._rows[table.logical_name].get(record_id.lower())

    def rows(self, table: Table) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows[table.logical_name].values())

    def insert(
        self,
        table: Table,
        values: dict[str, Any],
        *,
        user_id: str,
        business_unit_id: str,
        now: str,
    ) -> dict[str, Any]:
        """Create a row from validated ``values`` plus the defaults Dataverse adds."""
        record: dict[str, Any] = {name: column.default for name, column in table.columns.items()}
        record_id = str(values.get(table.primary_id) or uuid.uuid4()).lower()
        system = {
            table.primary_id: record_id,
            "statecode": 0,
            "statuscode": 1,
            "createdon": now,
            "modifiedon": now,
        }
        record.update(system)
        for column, target, value in (
            ("_ownerid_value", SYSTEM_USER, user_id),
            ("_owninguser_value", SYSTEM_USER, user_id),
            ("_createdby_value", SYSTEM_USER, user_id),
            ("_modifiedby_value", SYSTEM_USER, user_id),
            ("_owningbusinessunit_value", BUSINESS_UNIT, business_unit_id),
        ):
            record[column] = value
            record[target_key(column)] = target
        record.update({k: v for k, v in values.items() if k != table.primary_id})
        _apply_state_default(record, values)
        _compute(table, record)
        with self._lock:
            if record_id in self._rows[table.logical_name]:
                raise KeyError(record_id)
            record["versionnumber"] = self._next_version()
            self._rows[table.logical_name][record_id] = record
        return record

    def update(
        self, table: Table, record_id: str, values: dict[str, Any], *, user_id: str, now: str
    ) -> tuple[dict[str, Any], set[str]]:
        """Apply ``values``; return the new row and the columns whose value changed."""
        with self._lock:
            old = self._rows[table.logical_name].get(record_id)
            if old is None:
                raise KeyError(record_id)
            new = {**old, **values, "modifiedon": now, "_modifiedby_value": user_id}
            _apply_state_default(new, values)
            _compute(table, new)
            new["versionnumber"] = self._next_version()
            self._rows[table.logical_name][record_id] = new
        changed = {k for k in table.columns if new.get(k) != old.get(k)}
        return new, changed

    def delete(self, table: Table, record_id: str) -> bool:
        with self._lock:
            return self._rows[table.logical_name].pop(record_id, None) is not None

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": self._version,
                "rows": {name: list(rows.values()) for name, rows in self._rows.items()},
            }

    def load(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._version = max(self._version, int(data.get("version", 0)))
            for name, rows in data.get("rows", {}).items():
                table = TABLES[name]
                self._rows[name] = {row[table.primary_id]: row for row in rows}

    def _next_version(self) -> int:
        self._version += 1
        return self._version


def _apply_state_default(record: dict[str, Any], values: dict[str, Any]) -> None:
    if "statecode" in values and "statuscode" not in values:
        record["statuscode"] = DEFAULT_STATUS_FOR_STATE.get(record["statecode"], 1)


def _compute(table: Table, record: dict[str, Any]) -> None:
    """Columns Dataverse derives from others on every write."""
    if table is CONTACT:
        # the default full-name format of a new organization is "First Last" (no middle name)
        parts = (record.get("firstname"), record.get("lastname"))
        fullname = " ".join(p for p in parts if p) or None
        record["fullname"] = record["yomifullname"] = fullname
    elif "revenue" in table.columns:
        # one currency, exchange rate 1: the base amount equals the amount
        record["revenue_base"] = record.get("revenue")
