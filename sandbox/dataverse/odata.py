"""OData query options (``$filter``, ``$orderby``, ``$select``) as the Dataverse Web API reads them.

Pure functions over plain-dict records; the HTTP layer URL-decodes the options and calls these.
A filter is parsed once and compiled to closures, so evaluating it costs no parsing per record.

Where the real service is documented we follow it (learn.microsoft.com, "Filter rows using OData",
"Troubleshoot Dataverse Web API client errors", and Microsoft.OData.Core's own message texts):

* property names are case-sensitive; an unknown one fails with "Could not find a property named
  '<name>' on type 'Microsoft.Dynamics.CRM.<entity>'.";
* string comparisons are case- and accent-insensitive (the database collation) and ``contains``,
  ``startswith`` and ``endswith`` become ``LIKE``, so ``%``, ``_`` and ``[...]`` act as wildcards;
* the OData 4.01 ``in`` operator is *not* supported: Dataverse answers "The method or operation
  is not implemented." (AleksandrRogov/DynamicsWebApi#121); ``Microsoft.Dynamics.CRM.In`` is the
  way, and its ``PropertyValues`` array is read as JSON, which is why values holding an apostrophe
  must be double-quoted there;
* syntax errors carry Microsoft.OData.Core's wording and 0-based position, e.g. "There is an
  unterminated literal at position 21 in 'lastname eq 'O'Bryan''." (quoted in "Filter rows").

Null logic is SQL's: a comparison with a null column value is *unknown*, and ``not`` of unknown
stays unknown, so ``ne 'x'`` and ``not contains(...)`` never return rows where the column is null;
only ``eq null`` / ``ne null`` test for null.

Column types: ``columns`` may be a plain collection of names, or a mapping of name to Edm type name
(``"Edm.String"``, ``"Edm.Guid"``, ``"Edm.DateTimeOffset"``, ``"Edm.Int32"``, ``"Edm.Decimal"``,
``"Edm.Boolean"`` ...). Known types let the parser reject mismatched literals up front, as Dataverse
does (e.g. a quoted guid against a lookup). Without a mapping, ``_<lookup>_value`` and the primary
key ``<entity>id`` are known to be guids and every other column is typed by its values at run time.
"""

from __future__ import annotations

import json
import operator
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

Record = Mapping[str, Any]
# Three-valued result of a condition: True, False or None (SQL's "unknown").
_Test = Callable[[Record], bool | None]
_Item = TypeVar("_Item")

# Dataverse reports OData URI parse and bind errors as 0x80060888 (its own example in "Join
# tables": "Expand with $ref is only supported on lookup type navigation property."). The
# troubleshooting page shows "0x0" for an unknown $select property in one capture; we keep one code
# for every query-option error so clients can match on it.
QUERY_ERROR_CODE = "0x80060888"
# A comparison with null other than eq/ne is rejected by the query engine as InvalidArgument.
INVALID_ARGUMENT_CODE = "0x80040203"
# NOT FOUND: the code and status Dataverse sends with "The method or operation is not implemented."
# for the `in` operator. It is a .NET NotImplementedException escaping the query translator, which
# Dataverse reports as an unexpected error (0x80040216) with status 500; change here if observed.
NOT_IMPLEMENTED_CODE = "0x80040216"
NOT_IMPLEMENTED_STATUS = 500

# Setting. Dataverse compares text under its database collation, which for English organisations
# is Latin1_General_CI_AI (case- and accent-insensitive; gustafwesterlund.blogspot.com, 2014: the
# online collation follows the organisation's language and cannot be chosen). False keeps case
# insensitivity only, as for an accent-sensitive collation.
ACCENT_INSENSITIVE = True

_CRM_NAMESPACE = "Microsoft.Dynamics.CRM."
# Microsoft.OData.Core refuses expressions nested deeper than 800 levels with "Recursion depth
# exceeded allowed limit."; Python's stack binds first here, so the sandbox says it sooner.
_MAX_DEPTH = 100


class ODataError(ValueError):
    """A query option Dataverse would reject; ``code`` and ``message`` form its error body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------------------------------
# Values: one normal form per kind, shared by filtering and sorting.

_GUID_RE = re.compile(r"\{?([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})\}?")
_DATETIME_TEXT_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?"
)

# Ranks keep values of different kinds apart: they never compare equal, and sorting a column of
# mixed kinds groups them instead of raising TypeError.
_BOOL, _NUMBER, _DATETIME, _GUID, _STRING = range(5)


def _guid_order(guid: str) -> str:
    """Sort key of a canonical guid in SQL Server's ``uniqueidentifier`` order: last group first,
    then the 4th group, then the byte-swapped 3rd, 2nd and 1st groups (the .NET byte layout).
    Ordering by primary key in the real service follows this order, not the textual one."""
    low, mid, high, clock, node = guid[:8], guid[9:13], guid[14:18], guid[19:23], guid[24:]
    stored_little_endian = (
        high[2:] + high[:2] + mid[2:] + mid[:2] + low[6:] + low[4:6] + low[2:4] + low[:2]
    )
    return node + clock + stored_little_endian


def _collate(text: str) -> str:
    """Text as the collation compares it (see ACCENT_INSENSITIVE)."""
    folded = text.casefold()
    if ACCENT_INSENSITIVE and not folded.isascii():
        decomposed = unicodedata.normalize("NFD", folded)
        folded = "".join(char for char in decomposed if not unicodedata.combining(char))
    return folded


def _fold(text: str) -> str:
    # SQL Server also ignores trailing spaces when it compares with = and < (not with LIKE).
    return _collate(text).rstrip(" ")


def _parse_datetime(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and _DATETIME_TEXT_RE.fullmatch(value):
        return _parse_datetime(value)
    return None


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _as_guid(value: Any) -> str | None:
    """Canonical (lower-case, unbraced) text of a guid, which is what equality compares."""
    if isinstance(value, str) and (match := _GUID_RE.fullmatch(value)):
        return match.group(1).lower()
    return None


def _as_ordered_guid(value: Any) -> str | None:
    guid = _as_guid(value)
    return None if guid is None else _guid_order(guid)


def _value_key(value: Any) -> tuple[int, Any] | None:
    """(rank, comparable) for a record value; None for null and for values that do not compare."""
    if isinstance(value, bool):
        return _BOOL, value
    if isinstance(value, int | float):
        return _NUMBER, value
    if isinstance(value, datetime | date):
        return _DATETIME, _as_utc(value)
    if isinstance(value, str):
        if guid := _as_guid(value):
            return _GUID, guid
        if moment := _as_utc(value):
            return _DATETIME, moment
        return _STRING, _fold(value)
    return None


def _coerce_text(raw: Any, rank: int) -> Any:
    """Read a function parameter value (JSON text or number) as a value of the given rank."""
    if rank == _BOOL:
        lowered = str(raw).lower()
        return {"true": True, "1": True, "false": False, "0": False}.get(lowered)
    if rank == _NUMBER:
        if (number := _as_number(raw)) is not None:
            return number
        try:
            return float(raw)
        except (TypeError, ValueError):
            return None
    text = raw if isinstance(raw, str) else json.dumps(raw)
    if rank == _DATETIME:
        return _as_utc(text)
    if rank == _GUID:
        return _as_guid(text)
    return _fold(text)


# --------------------------------------------------------------------------------------------------
# Lexer

_NUMERIC_TYPES = frozenset(
    {
        "Edm.Byte",
        "Edm.SByte",
        "Edm.Int16",
        "Edm.Int32",
        "Edm.Int64",
        "Edm.Decimal",
        "Edm.Double",
        "Edm.Single",
    }
)
_DATE_TYPES = frozenset({"Edm.Date", "Edm.DateTimeOffset"})

_TOKEN_RE = re.compile(
    r"""
    (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<ident>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
    |(?P<alias>@[A-Za-z_]\w*)
    |(?P<punct>[(),=/*])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # guid datetime date number ident alias punct string array end
    text: str
    pos: int
    value: Any = None


_LITERAL_KINDS = frozenset({"string", "number", "guid", "datetime", "date"})
_KEYWORD_LITERALS = frozenset({"true", "false", "null"})


def _is_value(token: _Token) -> bool:
    """A literal, keyword literal or JSON array: what a function parameter or alias may hold."""
    return (
        token.kind in _LITERAL_KINDS
        or token.kind == "array"
        or (token.kind == "ident" and token.text in _KEYWORD_LITERALS)
    )


def _syntax_error(pos: int, text: str) -> ODataError:
    return ODataError(QUERY_ERROR_CODE, f"Syntax error at position {pos} in '{text}'.")


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
        elif char == "'":
            pos = _lex_string(text, pos, tokens)
        elif char == "[":
            pos = _lex_json_array(text, pos, tokens)
        elif match := _TOKEN_RE.match(text, pos):
            kind = match.lastgroup or ""
            end = match.end()
            # "12abc" or "2024-01-01x": a literal must end where a word would.
            if (
                kind in {"guid", "datetime", "date", "number"}
                and end < len(text)
                and (text[end].isalnum() or text[end] in "_.:-")
            ):
                raise _syntax_error(end, text)
            tokens.append(_Token(kind, match.group(), pos))
            pos = end
        else:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"Syntax error: character '{char}' is not valid at position {pos} in '{text}'.",
            )
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _lex_string(text: str, start: int, tokens: list[_Token]) -> int:
    """A single-quoted literal; '' stands for one quote."""
    pos = start + 1
    pieces: list[str] = []
    while True:
        close = text.find("'", pos)
        if close < 0:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"There is an unterminated literal at position {len(text)} in '{text}'.",
            )
        pieces.append(text[pos:close])
        if text.startswith("''", close):
            pieces.append("'")
            pos = close + 2
            continue
        tokens.append(_Token("string", text[start : close + 1], start, "".join(pieces)))
        return close + 1


_JSON_COMMA_EXPECTED = (
    "Invalid JSON. A comma character ',' was expected in scope 'Array'. Every two elements in an "
    "array and properties of an object must be separated by commas."
)
_JSON_BAREWORD_RE = re.compile(r"[^\s,\]]+")


def _lex_json_array(text: str, start: int, tokens: list[_Token]) -> int:
    """A ``[...]`` parameter value. Dataverse reads it as (lenient) JSON: double- or single-quoted
    strings with backslash escapes, numbers, true/false/null. The error text for a missing comma is
    the one "Filter rows" quotes for an apostrophe inside a single-quoted value."""
    pos = start + 1
    values: list[Any] = []

    def skip_space(at: int) -> int:
        while at < len(text) and text[at].isspace():
            at += 1
        return at

    def unexpected_end() -> ODataError:
        return ODataError(QUERY_ERROR_CODE, f"Invalid JSON. Unexpected end of content in '{text}'.")

    pos = skip_space(pos)
    if text.startswith("]", pos):
        tokens.append(_Token("array", text[start : pos + 1], start, values))
        return pos + 1
    while True:
        pos = skip_space(pos)
        if pos >= len(text):
            raise unexpected_end()
        if text[pos] == '"':
            try:
                value, pos = json.decoder.scanstring(text, pos + 1)
            except json.JSONDecodeError as exc:
                raise unexpected_end() from exc
        elif text[pos] == "'":
            value, pos = _scan_single_quoted_json(text, pos)
            if value is None:
                raise unexpected_end()
        else:
            match = _JSON_BAREWORD_RE.match(text, pos)
            word = match.group() if match else ""
            try:
                value = json.loads(word)
            except ValueError as exc:
                raise ODataError(
                    QUERY_ERROR_CODE,
                    f"Invalid JSON. Unexpected character at position {pos} in '{text}'.",
                ) from exc
            pos += len(word)
        values.append(value)
        pos = skip_space(pos)
        if pos >= len(text):
            raise unexpected_end()
        if text[pos] == "]":
            tokens.append(_Token("array", text[start : pos + 1], start, values))
            return pos + 1
        if text[pos] != ",":
            raise ODataError(QUERY_ERROR_CODE, _JSON_COMMA_EXPECTED)
        pos += 1


def _scan_single_quoted_json(text: str, start: int) -> tuple[str | None, int]:
    pieces: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            pieces.append(text[pos + 1])
            pos += 2
        elif char == "'":
            return "".join(pieces), pos + 1
        else:
            pieces.append(char)
            pos += 1
    return None, pos


# --------------------------------------------------------------------------------------------------
# Operands produced by the parser


@dataclass(frozen=True)
class _Column:
    name: str
    edm: str | None  # None: typed by its values at run time


@dataclass(frozen=True)
class _Literal:
    value: Any  # str, int, float, bool, datetime, guid text, or None for null
    edm: str | None  # None for null


@dataclass(frozen=True)
class _Equality:
    """What ``column eq literal`` compares: the record value, normalised, against ``key``."""

    column: str
    normalise: Callable[[Any], Any]
    key: Any


@dataclass(frozen=True)
class _Condition:
    test: _Test
    edm: str = "Edm.Boolean"
    equality: _Equality | None = None


_Operand = _Column | _Literal | _Condition

_COMPARISONS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "eq": ("Equal", operator.eq),
    "ne": ("NotEqual", operator.ne),
    "gt": ("GreaterThan", operator.gt),
    "ge": ("GreaterThanOrEqual", operator.ge),
    "lt": ("LessThan", operator.lt),
    "le": ("LessThanOrEqual", operator.le),
}
# `5 lt revenue` is `revenue gt 5`.
_MIRRORED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def _kind_name(edm: str | None) -> str:
    return edm or "null"


def _compatible(left: str, right: str) -> bool:
    if left == right:
        return True
    if left in _NUMERIC_TYPES and right in _NUMERIC_TYPES:
        return True
    return left in _DATE_TYPES and right in _DATE_TYPES


def _incompatible(left: str | None, right: str | None, kind: str) -> ODataError:
    return ODataError(
        QUERY_ERROR_CODE,
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{_kind_name(left)}' and '{_kind_name(right)}' for operator kind '{kind}'.",
    )


# Normalisers by literal type: they read a record value the way a column of that type holds it.
_NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "Edm.String": lambda v: _fold(v) if isinstance(v, str) else None,
    "Edm.Guid": _as_guid,
    "Edm.DateTimeOffset": _as_utc,
    "Edm.Date": _as_utc,
    "Edm.Boolean": lambda v: v if isinstance(v, bool) else None,
}


def _normaliser(edm: str, *, ordered: bool) -> Callable[[Any], Any]:
    if edm in _NUMERIC_TYPES:
        return _as_number
    return _as_ordered_guid if ordered and edm == "Edm.Guid" else _NORMALISERS[edm]


def _getter(operand: _Column | _Condition) -> Callable[[Record], Any]:
    if isinstance(operand, _Column):
        name = operand.name
        return lambda record: record.get(name)
    return operand.test


def _always(result: bool | None) -> _Test:
    return lambda _record: result


def _all_of(tests: list[_Test]) -> _Test:
    def test(record: Record) -> bool | None:
        unknown = False
        for each in tests:
            result = each(record)
            if result is False:
                return False
            unknown = unknown or result is None
        return None if unknown else True

    return test


def _any_of(tests: list[_Test]) -> _Test:
    def test(record: Record) -> bool | None:
        unknown = False
        for each in tests:
            result = each(record)
            if result is True:
                return True
            unknown = unknown or result is None
        return None if unknown else False

    return test


def _one_of(column: str, normalise: Callable[[Any], Any], keys: frozenset[Any]) -> _Test:
    """``column eq a or column eq b or ...`` as one set lookup: clients send "one of these ids"
    this way with hundreds of terms, which would otherwise cost a comparison per term per record."""

    def test(record: Record) -> bool | None:
        value = record.get(column)
        if value is None:
            return None
        value = normalise(value)
        return None if value is None else value in keys

    return test


def _or_terms(conditions: list[_Condition]) -> list[_Test]:
    """The terms of an or-chain, with the ``eq`` terms on one column merged into one set lookup
    (or is commutative and the terms have no side effects, so their order does not matter)."""
    tests: list[_Test] = []
    groups: dict[tuple[str, Callable[[Any], Any]], set[Any]] = {}
    for condition in conditions:
        if (equality := condition.equality) is None:
            tests.append(condition.test)
        else:
            groups.setdefault((equality.column, equality.normalise), set()).add(equality.key)
    for (column, normalise), keys in groups.items():
        tests.append(_one_of(column, normalise, frozenset(keys)))
    return tests


def _negation(inner: _Test) -> _Test:
    def test(record: Record) -> bool | None:
        result = inner(record)
        return None if result is None else not result

    return test


# --------------------------------------------------------------------------------------------------
# Parser


class _Parser:
    """Recursive descent with Microsoft.OData.Core's precedence: or < and < comparison < not."""

    def __init__(
        self,
        text: str,
        *,
        entity: str,
        columns: Mapping[str, str | None],
        aliases: Mapping[str, str],
    ) -> None:
        self.text = text
        self.entity = entity
        self.columns = columns
        self.aliases = aliases
        self.tokens = _lex(text)
        self.index = 0
        self.depth = 0

    # -- token helpers
    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at_word(self, *words: str) -> bool:
        return self.token.kind == "ident" and self.token.text in words

    def at_punct(self, char: str) -> bool:
        return self.token.kind == "punct" and self.token.text == char

    def expect_end(self) -> None:
        if self.token.kind != "end":
            raise _syntax_error(self.token.pos, self.text)

    def error(self, template: str) -> ODataError:
        return ODataError(QUERY_ERROR_CODE, template.format(pos=self.token.pos, text=self.text))

    def column(self, name: str) -> _Column:
        if name not in self.columns:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"Could not find a property named '{name}' on type "
                f"'{_CRM_NAMESPACE}{self.entity}'.",
            )
        return _Column(name, self.columns[name])

    def parse_list(self, item: Callable[[_Token], _Item]) -> list[_Item]:
        """Comma-separated items up to the end of the text ($select, $orderby)."""
        items: list[_Item] = []
        if self.token.kind == "end":
            return items
        while True:
            items.append(item(self.advance()))
            if self.token.kind == "end":
                return items
            if not self.at_punct(","):
                raise _syntax_error(self.token.pos, self.text)
            self.advance()

    # -- $filter grammar
    def parse_filter(self) -> _Test:
        if self.token.kind == "end":
            raise self.error("Expression expected at position {pos} in '{text}'.")
        operand = self.parse_or()
        self.expect_end()
        if operand.edm not in {None, "Edm.Boolean"}:
            raise ODataError(
                QUERY_ERROR_CODE, "The $filter expression must evaluate to a single boolean value."
            )
        return self.as_condition(operand).test

    def nested(self, parse: Callable[[], _Operand]) -> _Operand:
        """Parse one level deeper (parentheses, not, function arguments), within a limit."""
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                raise ODataError(QUERY_ERROR_CODE, "Recursion depth exceeded allowed limit.")
            return parse()
        finally:
            self.depth -= 1

    # Chains of and/or are flat lists, not nested pairs: long "one of these ids" chains must
    # neither recurse per term nor cost a call per term per record.
    def parse_or(self) -> _Operand:
        operands = [self.parse_and()]
        while self.at_word("or"):
            self.advance()
            operands.append(self.parse_and())
        if len(operands) == 1:
            return operands[0]
        return _Condition(_any_of(_or_terms(self.logical_operands(operands, "Or"))))

    def parse_and(self) -> _Operand:
        operands = [self.parse_comparison()]
        while self.at_word("and"):
            self.advance()
            operands.append(self.parse_comparison())
        if len(operands) == 1:
            return operands[0]
        conditions = self.logical_operands(operands, "And")
        return _Condition(_all_of([condition.test for condition in conditions]))

    def logical_operands(self, operands: list[_Operand], kind: str) -> list[_Condition]:
        # Type-checked as Microsoft.OData.Core binds the chain: ((a or b) or c) ...
        left = operands[0].edm
        for operand in operands[1:]:
            if {left, operand.edm} - {None, "Edm.Boolean"}:
                raise _incompatible(left, operand.edm, kind)
            left = "Edm.Boolean"
        return [self.as_condition(operand) for operand in operands]

    def parse_comparison(self) -> _Operand:
        left = self.parse_unary()
        while self.token.kind == "ident" and (
            self.token.text in _COMPARISONS or self.token.text == "in"
        ):
            if self.token.text == "in":
                raise ODataError(
                    NOT_IMPLEMENTED_CODE,
                    "The method or operation is not implemented.",
                    NOT_IMPLEMENTED_STATUS,
                )
            op = self.advance().text
            right = self.parse_unary()
            left = self.compare(left, op, right)
        return left

    def parse_unary(self) -> _Operand:
        if not self.at_word("not"):
            return self.parse_primary()
        self.advance()
        operand = self.nested(self.parse_unary)
        if operand.edm not in {None, "Edm.Boolean"}:
            raise ODataError(
                QUERY_ERROR_CODE,
                "A unary operator with an incompatible type was detected. "
                f"Found operand type '{operand.edm}' for operator kind 'Not'.",
            )
        return _Condition(_negation(self.as_condition(operand).test))

    def parse_primary(self) -> _Operand:
        token = self.token
        if token.kind == "end":
            raise self.error("Expression expected at position {pos} in '{text}'.")
        if token.kind == "punct" and token.text == "(":
            self.advance()
            inner = self.nested(self.parse_or)
            if not self.at_punct(")"):
                raise self.error("')' or operator expected at position {pos} in '{text}'.")
            self.advance()
            return inner
        if token.kind == "ident":
            self.advance()
            if self.at_punct("("):
                return self.parse_call(token)
            if token.text in _KEYWORD_LITERALS:
                return self.literal(token)
            if self.at_punct("/"):
                raise ODataError(
                    QUERY_ERROR_CODE,
                    "The sandbox does not filter on related tables "
                    f"('{token.text}/...' at position {token.pos} in '{self.text}').",
                )
            return self.column(token.text)
        if token.kind == "alias":
            self.advance()
            return self.alias_literal(token)
        if token.kind in _LITERAL_KINDS:
            self.advance()
            return self.literal(token)
        raise _syntax_error(token.pos, self.text)

    # -- literals
    def literal(self, token: _Token) -> _Literal:
        kind, text = token.kind, token.text
        if kind == "ident":
            return (
                _Literal(None, None) if text == "null" else _Literal(text == "true", "Edm.Boolean")
            )
        if kind == "string":
            return _Literal(token.value, "Edm.String")
        if kind == "guid":
            return _Literal(text.lower(), "Edm.Guid")
        if kind == "number":
            if re.fullmatch(r"-?\d+", text):
                number = int(text)
                return _Literal(number, "Edm.Int32" if -(2**31) <= number < 2**31 else "Edm.Int64")
            return _Literal(float(text), "Edm.Double" if "e" in text.lower() else "Edm.Decimal")
        edm = "Edm.DateTimeOffset" if kind == "datetime" else "Edm.Date"
        moment = _parse_datetime(text)
        if moment is None:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"Unrecognized '{edm}' literal '{text}' at '{token.pos}' in '{self.text}'.",
            )
        return _Literal(moment, edm)

    def alias_value(self, token: _Token) -> _Token:
        """The literal a parameter alias stands for; an alias given no value is null (OData)."""
        raw = self.aliases.get(token.text)
        if raw is None:
            return _Token("ident", "null", token.pos)
        tokens = _lex(raw)
        if not _is_value(tokens[0]):
            raise _syntax_error(tokens[0].pos, raw)
        if tokens[1].kind != "end":
            raise _syntax_error(tokens[1].pos, raw)
        return tokens[0]

    def alias_literal(self, token: _Token) -> _Literal:
        value = self.alias_value(token)
        if value.kind == "array":
            raise _syntax_error(0, self.aliases[token.text])
        return self.literal(value)

    # -- functions
    def parse_call(self, name_token: _Token) -> _Operand:
        name = name_token.text
        self.advance()  # "("
        if name.startswith(_CRM_NAMESPACE):
            return self.dataverse_function(name, self.named_arguments())
        arguments: list[_Operand] = []
        if not self.at_punct(")"):
            arguments.append(self.nested(self.parse_or))
            while self.at_punct(","):
                self.advance()
                arguments.append(self.nested(self.parse_or))
        if not self.at_punct(")"):
            raise self.error("')' or ',' expected at position {pos} in '{text}'.")
        self.advance()
        if name not in _STRING_FUNCTIONS:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"An unknown function with name '{name}' was found. This may also be a function "
                "import or a key lookup on a navigation property, which is not allowed.",
            )
        return self.string_function(name, arguments)

    def string_function(self, name: str, arguments: list[_Operand]) -> _Condition:
        subject = arguments[0] if arguments else None
        pattern = arguments[1] if len(arguments) > 1 else None
        if (
            len(arguments) != 2
            or not isinstance(subject, _Column)
            or subject.edm not in {None, "Edm.String"}
            or not isinstance(pattern, _Literal)
            or pattern.edm != "Edm.String"
        ):
            raise ODataError(
                QUERY_ERROR_CODE,
                f"No function signature for the function with name '{name}' matches the "
                "specified arguments. The function signatures considered are: "
                f"{name}(Edm.String Nullable=true, Edm.String Nullable=true).",
            )
        matches = _like_matcher(name, pattern.value)
        column = subject.name

        def test(record: Record) -> bool | None:
            value = record.get(column)
            return matches(value) if isinstance(value, str) else None

        return _Condition(test)

    def named_arguments(self) -> dict[str, _Token]:
        arguments: dict[str, _Token] = {}
        while not self.at_punct(")"):
            if arguments:
                if not self.at_punct(","):
                    raise self.error("')' or ',' expected at position {pos} in '{text}'.")
                self.advance()
            name = self.token
            if name.kind != "ident":
                raise _syntax_error(name.pos, self.text)
            self.advance()
            if not self.at_punct("="):
                raise _syntax_error(self.token.pos, self.text)
            self.advance()
            value = self.advance()
            if value.kind == "alias":
                value = self.alias_value(value)
            elif not _is_value(value):
                raise _syntax_error(value.pos, self.text)
            arguments[name.text] = value
        self.advance()
        return arguments

    def dataverse_function(self, name: str, arguments: Mapping[str, _Token]) -> _Condition:
        short = name.removeprefix(_CRM_NAMESPACE)
        build = _DATAVERSE_FUNCTIONS.get(short)
        if build is None:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"The sandbox does not implement the query function '{name}'.",
                501,
            )
        property_token = self.required(name, arguments, "PropertyName", "string")
        column = self.column(property_token.value)
        return _Condition(build(self, name, column, arguments))

    def required(
        self, function: str, arguments: Mapping[str, _Token], parameter: str, kind: str
    ) -> _Token:
        token = arguments.get(parameter)
        if token is None or token.kind != kind:
            # Constructed wording: the real text for a missing or mistyped parameter is NOT FOUND.
            expected = "a quoted string" if kind == "string" else "a JSON array"
            raise ODataError(
                QUERY_ERROR_CODE,
                f"The parameter '{parameter}' of function '{function}' must be {expected}.",
            )
        return token

    def null_value(self, attribute: str) -> ODataError:
        """Dataverse's refusal of null as a condition value (only eq/ne null test for null)."""
        return ODataError(
            INVALID_ARGUMENT_CODE,
            f"Condition for attribute '{self.entity}.{attribute}': null is not a valid value "
            "for an attribute. Use 'Null' or 'NotNull' conditions instead.",
        )

    def value_list(
        self, function: str, column: _Column, arguments: Mapping[str, _Token]
    ) -> _ValueSet:
        values = self.required(function, arguments, "PropertyValues", "array").value
        if any(value is None for value in values):
            raise self.null_value(column.name)
        return _ValueSet(values)

    # -- building conditions
    @staticmethod
    def as_condition(operand: _Operand) -> _Condition:
        """A boolean operand (already type-checked) as a condition."""
        if isinstance(operand, _Condition):
            return operand
        if isinstance(operand, _Literal):
            return _Condition(_always(operand.value))
        name = operand.name
        return _Condition(
            lambda record: value if isinstance(value := record.get(name), bool) else None
        )

    def compare(self, left: _Operand, op: str, right: _Operand) -> _Condition:
        kind, function = _COMPARISONS[op]
        if left.edm is not None and right.edm is not None and not _compatible(left.edm, right.edm):
            raise _incompatible(left.edm, right.edm, kind)
        if isinstance(left, _Literal) and isinstance(right, _Literal):
            return _Condition(_always(_compare_values(left.value, right.value, function)))
        if isinstance(left, _Literal):
            left, right, op = right, left, _MIRRORED[op]
            kind, function = _COMPARISONS[op]
        if isinstance(right, _Literal):
            return self.compare_with_literal(left, op, right)
        get_left, get_right = _getter(left), _getter(right)

        def test(record: Record) -> bool | None:
            return _compare_values(get_left(record), get_right(record), function)

        return _Condition(test)

    def compare_with_literal(
        self, subject: _Column | _Condition, op: str, literal: _Literal
    ) -> _Condition:
        get = _getter(subject)
        if literal.edm is None:
            if op not in {"eq", "ne"}:
                attribute = subject.name if isinstance(subject, _Column) else "expression"
                raise self.null_value(attribute)
            if op == "eq":
                return _Condition(lambda record: get(record) is None)
            return _Condition(lambda record: get(record) is not None)
        normalise = _normaliser(literal.edm, ordered=op not in {"eq", "ne"})
        expected = normalise(literal.value)
        function = _COMPARISONS[op][1]

        def test(record: Record) -> bool | None:
            value = get(record)
            if value is None:
                return None
            value = normalise(value)
            return None if value is None else function(value, expected)

        if op == "eq" and isinstance(subject, _Column):
            return _Condition(test, equality=_Equality(subject.name, normalise, expected))
        return _Condition(test)


def _compare_values(left: Any, right: Any, function: Callable[[Any, Any], bool]) -> bool | None:
    left_key, right_key = _value_key(left), _value_key(right)
    if left_key is None or right_key is None or left_key[0] != right_key[0]:
        return None
    if left_key[0] == _GUID and function not in {operator.eq, operator.ne}:
        return function(_guid_order(left_key[1]), _guid_order(right_key[1]))
    return function(left_key[1], right_key[1])


# -- string functions: Dataverse turns them into LIKE, so the argument's wildcards stay live.

_STRING_FUNCTIONS = {"contains", "startswith", "endswith"}


def _like_matcher(function: str, pattern: str) -> Callable[[str], bool]:
    needle = _collate(pattern)
    if not any(char in needle for char in "%_["):
        if function == "contains":
            return lambda value: needle in _collate(value)
        if function == "startswith":
            return lambda value: _collate(value).startswith(needle)
        return lambda value: _collate(value).endswith(needle)
    body = _like_to_regex(needle)
    prefix = "" if function == "startswith" else ".*"
    suffix = "" if function == "endswith" else ".*"
    compiled = re.compile(prefix + body + suffix, re.DOTALL)
    return lambda value: compiled.fullmatch(_collate(value)) is not None


def _like_to_regex(pattern: str) -> str:
    pieces: list[str] = []
    pos = 0
    while pos < len(pattern):
        char = pattern[pos]
        if char == "%":
            pieces.append(".*")
        elif char == "_":
            pieces.append(".")
        elif char == "[" and (close := pattern.find("]", pos + 2)) > 0:
            inner = pattern[pos + 1 : close]
            negate = inner.startswith("^")
            inner = inner[1:] if negate else inner
            pieces.append("[" + ("^" if negate else "") + inner.replace("\\", "\\\\") + "]")
            pos = close
        else:
            pieces.append(re.escape(char))
        pos += 1
    return "".join(pieces)


# -- Dataverse query functions

_FunctionBuilder = Callable[[_Parser, str, _Column, Mapping[str, _Token]], _Test]


class _ValueSet:
    """PropertyValues read per record kind: "5" matches the number 5, a guid matches in any case."""

    def __init__(self, raw_values: list[Any]) -> None:
        self.raw_values = raw_values
        self.by_rank: dict[int, list[Any]] = {}

    def values(self, rank: int) -> list[Any]:
        if rank not in self.by_rank:
            coerced = (_coerce_text(raw, rank) for raw in self.raw_values)
            self.by_rank[rank] = [value for value in coerced if value is not None]
        return self.by_rank[rank]


def _membership(negate: bool) -> _FunctionBuilder:
    def build(
        parser: _Parser, name: str, column: _Column, arguments: Mapping[str, _Token]
    ) -> _Test:
        values = parser.value_list(name, column, arguments)
        sets: dict[int, frozenset[Any]] = {}
        field = column.name

        def test(record: Record) -> bool | None:
            key = _value_key(record.get(field))
            if key is None:
                return None
            rank, value = key
            if rank not in sets:
                sets[rank] = frozenset(values.values(rank))
            return (value in sets[rank]) != negate

        return test

    return build


def _between(negate: bool) -> _FunctionBuilder:
    def build(
        parser: _Parser, name: str, column: _Column, arguments: Mapping[str, _Token]
    ) -> _Test:
        values = parser.value_list(name, column, arguments)
        if len(values.raw_values) != 2:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"The parameter 'PropertyValues' of function '{name}' must hold two values.",
            )
        field = column.name

        def test(record: Record) -> bool | None:
            key = _value_key(record.get(field))
            if key is None:
                return None
            bounds = values.values(key[0])
            if len(bounds) != 2:
                return None
            return (bounds[0] <= key[1] <= bounds[1]) != negate

        return test

    return build


def _on_date(relation: Callable[[date, date], bool]) -> _FunctionBuilder:
    def build(
        parser: _Parser, name: str, column: _Column, arguments: Mapping[str, _Token]
    ) -> _Test:
        token = parser.required(name, arguments, "PropertyValue", "string")
        moment = _as_utc(token.value)
        if moment is None:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"Unrecognized 'Edm.Date' literal '{token.value}' in '{parser.text}'.",
            )
        # Simplification: the day boundary is UTC; Dataverse uses the caller's time zone for
        # user-local columns.
        day = moment.date()
        field = column.name

        def test(record: Record) -> bool | None:
            value = _as_utc(record.get(field))
            return None if value is None else relation(value.date(), day)

        return test

    return build


_DATAVERSE_FUNCTIONS: dict[str, _FunctionBuilder] = {
    "In": _membership(negate=False),
    "NotIn": _membership(negate=True),
    "Between": _between(negate=False),
    "NotBetween": _between(negate=True),
    "On": _on_date(operator.eq),
    "OnOrAfter": _on_date(operator.ge),
    "OnOrBefore": _on_date(operator.le),
}


# --------------------------------------------------------------------------------------------------
# Public API


def _column_types(entity: str, columns: Collection[str]) -> Mapping[str, str | None]:
    if isinstance(columns, Mapping):
        return columns
    primary_key = f"{entity}id"
    return {
        name: "Edm.Guid"
        if name == primary_key or (name.startswith("_") and name.endswith("_value"))
        else None
        for name in columns
    }


def parse_filter(
    text: str,
    *,
    entity: str,
    columns: Collection[str],
    aliases: Mapping[str, str] | None = None,
) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a ``$filter`` value into a predicate over records; raises ODataError on a bad filter.

    ``aliases`` holds the request's parameter aliases by their query name
    (``{"@p1": "'lastname'"}``), as in
    ``Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)``.
    """
    parser = _Parser(
        text, entity=entity, columns=_column_types(entity, columns), aliases=aliases or {}
    )
    test = parser.parse_filter()
    return lambda record: test(record) is True


def parse_orderby(text: str, *, entity: str, columns: Collection[str]) -> list[tuple[str, bool]]:
    """``$orderby`` as (column, descending) pairs; empty text gives no ordering."""
    parser = _Parser(text, entity=entity, columns=_column_types(entity, columns), aliases={})

    def key(token: _Token) -> tuple[str, bool]:
        if token.kind != "ident":
            raise _syntax_error(token.pos, text)
        column = parser.column(token.text)
        descending = parser.at_word("desc")
        if parser.at_word("asc", "desc"):
            parser.advance()
        return column.name, descending

    return parser.parse_list(key)


def _sort_key(field: str) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    def key(record: Mapping[str, Any]) -> tuple[Any, ...]:
        value_key = _value_key(record.get(field))
        if value_key is None:
            return (0,)
        rank, value = value_key
        return (1, rank, _guid_order(value) if rank == _GUID else value)

    return key


def sort_records(
    records: Iterable[Mapping[str, Any]], orderby: list[tuple[str, bool]]
) -> list[Mapping[str, Any]]:
    """Sort like SQL Server: nulls first ascending (last descending), strings case-insensitively,
    guids in ``uniqueidentifier`` order; ties keep their input order."""
    ordered = list(records)
    # Sorting by the last key first, each pass stable, yields the multi-key order.
    for field, descending in reversed(orderby):
        ordered.sort(key=_sort_key(field), reverse=descending)
    return ordered


def parse_select(text: str, *, entity: str, columns: Collection[str]) -> list[str]:
    """``$select`` as column names in request order without repeats; ``*`` selects every column.

    Empty text gives ``[]``: no selection, the caller returns all columns as if ``$select`` were
    absent.
    """
    parser = _Parser(text, entity=entity, columns=_column_types(entity, columns), aliases={})

    def names(token: _Token) -> list[str]:
        if token.kind == "punct" and token.text == "*":
            return list(columns)
        if token.kind != "ident":
            raise _syntax_error(token.pos, text)
        return [parser.column(token.text).name]

    return list(dict.fromkeys(name for item in parser.parse_list(names) for name in item))
