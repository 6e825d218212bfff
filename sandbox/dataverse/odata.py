"""OData query options (``$filter``, ``$orderby``, ``$select``) as the Dataverse Web API reads
them: the part the product, the third-party client checks and the sync's filters use.

Pure functions over plain-dict records; the HTTP layer URL-decodes the options and calls these.
A filter is parsed once into closures, so evaluating it costs no parsing per record.

Implemented as Dataverse documents it ("Filter rows using OData",
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/filter-rows):

* ``eq ne gt ge lt le`` between a column and a literal, ``and``, ``or``, ``not``, parentheses,
  a Boolean column alone (``donotbulkemail``);
* literals: ``null``, ``true``/``false``, ``'text'`` (``''`` is one quote), numbers, GUIDs,
  unquoted ISO-8601 date-times (``modifiedon ge 2024-01-01T00:00:00Z``) and dates (midnight UTC);
* ``Microsoft.Dynamics.CRM.In`` and ``NotIn``, whose ``PropertyName`` is the column's *logical*
  name (``'parentcustomerid'``, not the Web API's ``_parentcustomerid_value``: third parties report
  a 400 with 0x80041103 for the latter) and whose ``PropertyValues`` is read as JSON (so a value
  holding an apostrophe is double-quoted there);
* property names are case-sensitive; text compares case- and accent-insensitively and ignores
  trailing spaces, as the database collation does;
* null logic is SQL's: a comparison with a null column is *unknown*, ``not`` of unknown stays
  unknown, so only ``eq null`` / ``ne null`` find nulls;
* the OData 4.01 ``in`` operator is refused as Dataverse refuses it ("The method or operation is
  not implemented.", AleksandrRogov/DynamicsWebApi#121).

Everything else Dataverse accepts (string functions such as ``contains``, the other
``Microsoft.Dynamics.CRM.*`` functions, parameter aliases, navigation paths and lambda operators,
column-to-column comparisons) answers 501 Not Implemented in Dataverse's error envelope, naming
what the sandbox does not implement, instead of a silent wrong answer.

Column types: ``columns`` is a collection of names, or a mapping of name to Edm type name
(``"Edm.String"``, ``"Edm.Guid"``, ``"Edm.DateTimeOffset"``, ``"Edm.Int32"`` ...). Known types
reject mismatched literals up front, as Dataverse does (a quoted GUID against a lookup); unknown
ones are typed by their values at run time.
"""

from __future__ import annotations

import itertools
import json
import operator
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

Record = Mapping[str, Any]
# Three-valued result of a condition: True, False or None (SQL's "unknown").
_Test = Callable[[Record], bool | None]
_Item = TypeVar("_Item")

# Dataverse reports OData parse and bind errors as 0x80060888 (its own example in "Join tables",
# https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/join-tables).
QUERY_ERROR_CODE = "0x80060888"
# A comparison with null other than eq/ne is rejected by the query engine as InvalidArgument.
INVALID_ARGUMENT_CODE = "0x80040203"
# "'<entity>' entity doesn't contain attribute with Name = '<name>'": a query function naming a
# column by anything but its logical name (reported by third parties; not on Microsoft's pages).
NO_SUCH_ATTRIBUTE_CODE = "0x80041103"
# The `in` operator: a .NET NotImplementedException escaping the query translator, reported as an
# unexpected error (0x80040216). NOT FOUND: its status; 500 is the guess, change if observed.
NOT_IMPLEMENTED_CODE = "0x80040216"
NOT_IMPLEMENTED_STATUS = 500
# What the sandbox leaves out: 501 Not Implemented, the status the Web API's error page lists
# for "not implemented" (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/
# compose-http-requests-handle-errors); the code is the unexpected-error one, as above.
SANDBOX_UNSUPPORTED_STATUS = 501

_CRM = "Microsoft.Dynamics.CRM."
# Microsoft.OData.Core refuses nesting past 800 levels ("Recursion depth exceeded allowed
# limit."); Python's stack binds first, so the sandbox says it sooner.
_MAX_DEPTH = 100
# OData's canonical functions: Dataverse supports several, the sandbox none of them.
_ODATA_FUNCTIONS = frozenset(
    {"contains", "startswith", "endswith", "length", "indexof", "substring", "tolower", "toupper",
     "trim", "concat", "year", "month", "day", "hour", "minute", "second", "date", "time", "now",
     "round", "floor", "ceiling", "cast", "isof"}
)  # fmt: skip


class ODataError(ValueError):
    """A query option Dataverse would reject; ``code`` and ``message`` form its error body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


def _unsupported(what: str) -> ODataError:
    return ODataError(
        NOT_IMPLEMENTED_CODE,
        f"The Dataverse sandbox does not implement {what}.",
        SANDBOX_UNSUPPORTED_STATUS,
    )


# --------------------------------------------------------------------------------------------------
# Values: one normal form per kind, shared by filtering and sorting.

_GUID_RE = re.compile(r"\{?([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})\}?")
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?"
)
# Kinds, ranked so values of different kinds never compare equal and sort apart.
_BOOL, _NUMBER, _DATETIME, _GUID, _STRING = range(5)
_KIND_OF_EDM = {
    "Edm.Boolean": _BOOL,
    "Edm.Date": _DATETIME,
    "Edm.DateTimeOffset": _DATETIME,
    "Edm.Guid": _GUID,
    "Edm.String": _STRING,
}
_NUMERIC_EDM = frozenset({"Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"})


def _edm_kind(edm: str | None) -> int | None:
    return _NUMBER if edm in _NUMERIC_EDM else _KIND_OF_EDM.get(edm or "")


def _guid_order(guid: str) -> str:
    """Sort key of a canonical GUID in SQL Server's ``uniqueidentifier`` order: last group first,
    then the 4th, then the byte-swapped 3rd, 2nd and 1st (the .NET byte layout). Ordering by
    primary key in the real service follows this order, not the textual one."""
    low, mid, high, clock, node = guid[:8], guid[9:13], guid[14:18], guid[19:23], guid[24:]
    swapped = high[2:] + high[:2] + mid[2:] + mid[:2] + low[6:] + low[4:6] + low[2:4] + low[:2]
    return node + clock + swapped


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and _DATETIME_RE.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:  # 2024-13-01T00:00:00Z
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _normal(kind: int, value: Any) -> Any:
    """``value`` in the normal form of ``kind``, or None when it is not a value of that kind."""
    if kind == _BOOL:
        return value if isinstance(value, bool) else None
    if kind == _NUMBER:
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == _DATETIME:
        return _as_datetime(value)
    if not isinstance(value, str):
        return None
    if kind == _GUID:
        match = _GUID_RE.fullmatch(value)
        return match.group(1).lower() if match else None
    return _collate(value).rstrip(" ")  # SQL Server ignores trailing spaces in = and <


def _collate(text: str) -> str:
    """Text as the database collation compares it: Latin1_General_CI_AI for English
    organizations, case- and accent-insensitive."""
    folded = text.casefold()
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFD", folded)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _value_key(value: Any) -> tuple[int, Any] | None:
    """(kind, normal form) of a record value; None for null and values no query can compare."""
    if isinstance(value, bool):
        return _BOOL, value
    if isinstance(value, int | float):
        return _NUMBER, value
    if isinstance(value, datetime):
        return _DATETIME, _as_datetime(value)
    if isinstance(value, str):
        for kind in (_GUID, _DATETIME):
            if (normal := _normal(kind, value)) is not None:
                return kind, normal
        return _STRING, _normal(_STRING, value)
    return None


# --------------------------------------------------------------------------------------------------
# Lexer

_TOKEN_RE = re.compile(
    r"""
    (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<ident>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
    |(?P<alias>@[A-Za-z_]\w*)
    |(?P<punct>[(),=/*])
    |(?P<string>'(?:[^']|'')*')
    |(?P<array>\[(?:[^\]"']|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*\])
    """,
    re.VERBOSE,
)
_JSON_COMMA_EXPECTED = (
    "Invalid JSON. A comma character ',' was expected in scope 'Array'. Every two elements in an "
    "array and properties of an object must be separated by commas."
)
_ARRAY_ITEM = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^,\s\]]+)\s*(,|$)""")


@dataclass(frozen=True)
class _Token:
    kind: str  # guid datetime date number ident alias punct string array end
    text: str
    pos: int


def _syntax_error(pos: int, text: str) -> ODataError:
    return ODataError(QUERY_ERROR_CODE, f"Syntax error at position {pos} in '{text}'.")


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            if text[pos] == "'":
                raise ODataError(
                    QUERY_ERROR_CODE,
                    f"There is an unterminated literal at position {len(text)} in '{text}'.",
                )
            if text[pos] == "[":
                # the text "Filter rows" quotes for an apostrophe inside a single-quoted value
                raise ODataError(QUERY_ERROR_CODE, _JSON_COMMA_EXPECTED)
            raise _syntax_error(pos, text)
        kind, end = match.lastgroup or "", match.end()
        # "12abc" or "2024-01-01T00:00Zx": a literal ends where a word would
        literal = kind in {"guid", "datetime", "date", "number"}
        if literal and end < len(text) and (text[end].isalnum() or text[end] in "_.:-"):
            raise _syntax_error(end, text)
        tokens.append(_Token(kind, match.group(), pos))
        pos = end
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _array_values(token: _Token, text: str) -> list[Any]:
    """A ``[...]`` PropertyValues list as (lenient) JSON: double- or single-quoted strings,
    numbers, true/false/null."""
    inner = token.text[1:-1].strip()
    values: list[Any] = []
    pos = 0
    while inner and pos < len(inner):
        match = _ARRAY_ITEM.match(inner, pos)
        if match is None:
            raise ODataError(QUERY_ERROR_CODE, f"Invalid JSON in '{token.text}' in '{text}'.")
        item = match.group(1)
        if item.startswith("'"):
            item = json.dumps(re.sub(r"\\(.)", r"\1", item[1:-1]))
        try:
            values.append(json.loads(item))
        except ValueError:
            raise ODataError(
                QUERY_ERROR_CODE, f"Invalid JSON. Unexpected value {item} in '{text}'."
            ) from None
        pos = match.end()
    return values


# --------------------------------------------------------------------------------------------------
# Operands


@dataclass(frozen=True)
class _Column:
    name: str
    edm: str | None  # None: typed by its values at run time


@dataclass(frozen=True)
class _Literal:
    value: Any  # normal form (see _normal); None for null
    kind: int | None  # None for null
    edm: str | None


@dataclass(frozen=True)
class _Condition:
    test: _Test
    # for ``column eq literal``: (column, kind, normal value), so an or-chain of them on one
    # column becomes one set lookup
    equality: tuple[str, int, Any] | None = None


_Operand = _Column | _Literal | _Condition

_COMPARISONS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "eq": ("Equal", operator.eq),
    "ne": ("NotEqual", operator.ne),
    "gt": ("GreaterThan", operator.gt),
    "ge": ("GreaterThanOrEqual", operator.ge),
    "lt": ("LessThan", operator.lt),
    "le": ("LessThanOrEqual", operator.le),
}
_MIRRORED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def _is_boolean(operand: _Operand) -> bool:
    if isinstance(operand, _Condition):
        return True
    return operand.edm in (None, "Edm.Boolean") and not (
        isinstance(operand, _Literal) and operand.kind not in (None, _BOOL)
    )


def _condition(operand: _Operand) -> _Test:
    if isinstance(operand, _Condition):
        return operand.test
    if isinstance(operand, _Literal):
        return lambda _record, value=operand.value: value
    name = operand.name
    return lambda record: value if isinstance(value := record.get(name), bool) else None


def _chain(tests: list[_Test], decisive: bool) -> _Test:
    """``and`` (decisive False) or ``or`` (decisive True) in three-valued logic."""

    def test(record: Record) -> bool | None:
        unknown = False
        for each in tests:
            result = each(record)
            if result is decisive:
                return decisive
            unknown = unknown or result is None
        return None if unknown else not decisive

    return test


def _merge_equalities(operands: list[_Operand], tests: list[_Test]) -> list[_Test]:
    """``c eq a or c eq b or ...`` as one set lookup per column: clients send "one of these ids"
    this way with hundreds of terms, which would otherwise cost a comparison per term per record
    (``or`` is commutative and the terms have no side effects, so order does not matter)."""
    groups: dict[tuple[str, int], set[Any]] = {}
    rest: list[_Test] = []
    for operand, test in zip(operands, tests, strict=True):
        equality = operand.equality if isinstance(operand, _Condition) else None
        if equality is None:
            rest.append(test)
        else:
            groups.setdefault(equality[:2], set()).add(equality[2])
    for (column, kind), values in groups.items():
        rest.append(_one_of(column, kind, frozenset(values)))
    return rest


def _one_of(column: str, kind: int, values: frozenset[Any]) -> _Test:
    def test(record: Record) -> bool | None:
        value = _normal(kind, record.get(column))
        return None if value is None else value in values

    return test


def _negation(inner: _Test) -> _Test:
    def test(record: Record) -> bool | None:
        result = inner(record)
        return None if result is None else not result

    return test


# --------------------------------------------------------------------------------------------------
# Parser


class _Parser:
    """Recursive descent with Microsoft.OData.Core's precedence: or < and < comparison < not."""

    def __init__(self, text: str, *, entity: str, columns: Mapping[str, str | None]) -> None:
        self.text = text
        self.entity = entity
        self.columns = columns
        self.tokens = _lex(text)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, kind: str, *texts: str) -> bool:
        return self.token.kind == kind and (not texts or self.token.text in texts)

    def expect(self, char: str, message: str) -> None:
        if not self.at("punct", char):
            raise ODataError(
                QUERY_ERROR_CODE, f"{message} at position {self.token.pos} in '{self.text}'."
            )
        self.advance()

    def column(self, name: str) -> _Column:
        if name not in self.columns:
            raise ODataError(
                QUERY_ERROR_CODE,
                f"Could not find a property named '{name}' on type '{_CRM}{self.entity}'.",
            )
        return _Column(name, self.columns[name])

    def parse_list(self, item: Callable[[_Token], _Item]) -> list[_Item]:
        """Comma-separated items up to the end of the text ($select, $orderby)."""
        items: list[_Item] = []
        while self.token.kind != "end":
            if items:
                if not self.at("punct", ","):
                    raise _syntax_error(self.token.pos, self.text)
                self.advance()
            items.append(item(self.advance()))
        return items

    # -- $filter grammar
    def parse_filter(self) -> _Test:
        operand = self.parse_or()
        if self.token.kind != "end":
            raise _syntax_error(self.token.pos, self.text)
        if not _is_boolean(operand):
            raise ODataError(
                QUERY_ERROR_CODE, "The $filter expression must evaluate to a single boolean value."
            )
        return _condition(operand)

    def nested(self, parse: Callable[[], _Operand]) -> _Operand:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ODataError(QUERY_ERROR_CODE, "Recursion depth exceeded allowed limit.")
        try:
            return parse()
        finally:
            self.depth -= 1

    # and/or chains are flat lists, so a long "one of these ids" chain neither recurses per term
    # nor costs a call per term per record
    def parse_or(self) -> _Operand:
        return self.chain("or", "Or", self.parse_and, decisive=True)

    def parse_and(self) -> _Operand:
        return self.chain("and", "And", self.parse_comparison, decisive=False)

    def chain(
        self,
        word: str,
        kind: str,
        parse: Callable[[], _Operand],
        *,
        decisive: bool,
    ) -> _Operand:
        operands = [parse()]
        while self.at("ident", word):
            self.advance()
            operands.append(parse())
        if len(operands) == 1:
            return operands[0]
        for left, right in itertools.pairwise(operands):
            if not (_is_boolean(left) and _is_boolean(right)):
                edms = [o.edm if not isinstance(o, _Condition) else None for o in (left, right)]
                raise _incompatible(edms[0] or "Edm.Boolean", edms[1] or "Edm.Boolean", kind)
        conditions = [_condition(operand) for operand in operands]
        if decisive:
            conditions = _merge_equalities(operands, conditions)
        return _Condition(_chain(conditions, decisive))

    def parse_comparison(self) -> _Operand:
        left = self.parse_unary()
        if self.at("ident", "in"):
            raise ODataError(
                NOT_IMPLEMENTED_CODE,
                "The method or operation is not implemented.",
                NOT_IMPLEMENTED_STATUS,
            )
        if not self.at("ident", *_COMPARISONS):
            return left
        op = self.advance().text
        right = self.parse_unary()
        if self.at("ident", *_COMPARISONS):
            raise _unsupported("chained comparisons such as 'a eq b eq c'")
        return self.compare(left, op, right)

    def parse_unary(self) -> _Operand:
        if not self.at("ident", "not"):
            return self.parse_primary()
        self.advance()
        operand = self.nested(self.parse_unary)
        if not _is_boolean(operand):
            edm = operand.edm if not isinstance(operand, _Condition) else None
            raise ODataError(
                QUERY_ERROR_CODE,
                "A unary operator with an incompatible type was detected. "
                f"Found operand type '{edm}' for operator kind 'Not'.",
            )
        return _Condition(_negation(_condition(operand)))

    def parse_primary(self) -> _Operand:
        token = self.advance()
        if token.kind == "end":
            raise ODataError(
                QUERY_ERROR_CODE, f"Expression expected at position {token.pos} in '{self.text}'."
            )
        if token.kind == "punct" and token.text == "(":
            inner = self.nested(self.parse_or)
            self.expect(")", "')' or operator expected")
            return inner
        if token.kind == "alias":
            raise _unsupported(f"parameter aliases ('{token.text}')")
        if token.kind == "ident":
            if self.at("punct", "("):
                return self.call(token)
            if self.at("punct", "/"):
                raise _unsupported(f"paths into related tables ('{token.text}/...')")
            if token.text in ("true", "false"):
                return _Literal(token.text == "true", _BOOL, "Edm.Boolean")
            if token.text == "null":
                return _Literal(None, None, None)
            return self.column(token.text)
        return self.literal(token)

    def literal(self, token: _Token) -> _Literal:
        if token.kind == "string":
            text = token.text[1:-1].replace("''", "'")
            return _Literal(_normal(_STRING, text), _STRING, "Edm.String")
        if token.kind == "guid":
            return _Literal(token.text.lower(), _GUID, "Edm.Guid")
        if token.kind in ("datetime", "date"):
            # a date is midnight UTC of that day
            edm = "Edm.DateTimeOffset" if token.kind == "datetime" else "Edm.Date"
            moment = _as_datetime(
                token.text if token.kind == "datetime" else token.text + "T00:00Z"
            )
            if moment is None:
                raise ODataError(
                    QUERY_ERROR_CODE,
                    f"Unrecognized '{edm}' literal '{token.text}' at '{token.pos}' in "
                    f"'{self.text}'.",
                )
            return _Literal(moment, _DATETIME, edm)
        if token.kind == "number":
            if re.fullmatch(r"-?\d+", token.text):
                number = int(token.text)
                edm = "Edm.Int32" if -(2**31) <= number < 2**31 else "Edm.Int64"
                return _Literal(number, _NUMBER, edm)
            edm = "Edm.Double" if "e" in token.text.lower() else "Edm.Decimal"
            return _Literal(float(token.text), _NUMBER, edm)
        raise _syntax_error(token.pos, self.text)

    # -- comparisons
    def compare(self, left: _Operand, op: str, right: _Operand) -> _Condition:
        left_edm = "Edm.Boolean" if isinstance(left, _Condition) else left.edm
        right_edm = "Edm.Boolean" if isinstance(right, _Condition) else right.edm
        if left_edm and right_edm and _edm_kind(left_edm) != _edm_kind(right_edm):
            raise _incompatible(left_edm, right_edm, _COMPARISONS[op][0])
        if isinstance(left, _Literal) and not isinstance(right, _Literal):
            left, right, op = right, left, _MIRRORED[op]
        if isinstance(left, _Condition) and isinstance(right, _Literal) and op in ("eq", "ne"):
            # (not donotemail) eq true: a condition against a Boolean, in three-valued logic
            inner, wanted = left.test, right.value if op == "eq" else not right.value
            return _Condition(lambda r: None if (v := inner(r)) is None else v is wanted)
        if not (isinstance(left, _Column) and isinstance(right, _Literal)):
            raise _unsupported("comparisons other than between a column and a literal")
        name = left.name
        if right.kind is None:
            if op not in ("eq", "ne"):
                raise ODataError(
                    INVALID_ARGUMENT_CODE,
                    f"Condition for attribute '{self.entity}.{name}': null is not a valid value "
                    "for an attribute. Use 'Null' or 'NotNull' conditions instead.",
                )
            wanted = op == "eq"
            return _Condition(lambda record: (record.get(name) is None) == wanted)
        kind, expected, function = right.kind, right.value, _COMPARISONS[op][1]
        if kind == _GUID and op not in ("eq", "ne"):
            expected = _guid_order(expected)

        def test(record: Record) -> bool | None:
            value = _normal(kind, record.get(name))
            if value is None:
                return None
            if kind == _GUID and op not in ("eq", "ne"):
                value = _guid_order(value)
            return function(value, expected)

        return _Condition(test, (name, kind, expected) if op == "eq" else None)

    # -- functions
    def call(self, name_token: _Token) -> _Condition:
        name = name_token.text
        if not name.startswith(_CRM):
            if name in _ODATA_FUNCTIONS:
                raise _unsupported(f"the function '{name}'")
            raise ODataError(
                QUERY_ERROR_CODE,
                f"An unknown function with name '{name}' was found. This may also be a function "
                "import or a key lookup on a navigation property, which is not allowed.",
            )
        if name.removeprefix(_CRM) not in ("In", "NotIn"):
            raise _unsupported(f"the query function '{name}'")
        self.advance()  # "("
        arguments: dict[str, _Token] = {}
        while not self.at("punct", ")"):
            if arguments:
                self.expect(",", "')' or ',' expected")
            key = self.advance()
            if key.kind != "ident":
                raise _syntax_error(key.pos, self.text)
            self.expect("=", "'=' expected")
            value = self.advance()
            if value.kind == "alias":
                raise _unsupported(f"parameter aliases ('{value.text}')")
            if value.kind in ("end", "punct"):
                raise _syntax_error(value.pos, self.text)
            arguments[key.text] = value
        self.advance()
        return self.membership(name, arguments, negate=name.endswith("NotIn"))

    def membership(self, name: str, arguments: Mapping[str, _Token], *, negate: bool) -> _Condition:
        prop, values = arguments.get("PropertyName"), arguments.get("PropertyValues")
        if prop is None or prop.kind != "string" or values is None or values.kind != "array":
            # constructed wording: the real text for a missing or mistyped parameter is NOT FOUND
            raise ODataError(
                QUERY_ERROR_CODE,
                f"The function '{name}' takes PropertyName='<column>' and "
                "PropertyValues=[<values>].",
            )
        column = self.attribute(prop.text[1:-1].replace("''", "'"))
        raw = _array_values(values, self.text)
        if any(value is None for value in raw):
            raise ODataError(
                INVALID_ARGUMENT_CODE,
                f"Condition for attribute '{self.entity}.{column.name}': null is not a valid "
                "value for an attribute. Use 'Null' or 'NotNull' conditions instead.",
            )
        # the values are read as the record's kind: "5" matches 5, a GUID matches in any case
        by_kind: dict[int, frozenset[Any]] = {}

        def values_of(kind: int) -> frozenset[Any]:
            if kind not in by_kind:
                normal = (_normal(kind, _as_kind_text(kind, value)) for value in raw)
                by_kind[kind] = frozenset(value for value in normal if value is not None)
            return by_kind[kind]

        field = column.name

        def test(record: Record) -> bool | None:
            key = _value_key(record.get(field))
            if key is None:
                return None
            return (key[1] in values_of(key[0])) != negate

        return _Condition(test)

    def attribute(self, logical_name: str) -> _Column:
        """A column by its logical name, as query functions name them."""
        lookup = f"_{logical_name}_value"
        if logical_name in self.columns and not re.fullmatch(r"_\w+_value", logical_name):
            return _Column(logical_name, self.columns[logical_name])
        if lookup in self.columns:
            return _Column(lookup, self.columns[lookup])
        raise ODataError(
            NO_SUCH_ATTRIBUTE_CODE,
            f"'{self.entity}' entity doesn't contain attribute with Name = '{logical_name}' and "
            "NameMapping = 'Logical'.",
        )


def _as_kind_text(kind: int, value: Any) -> Any:
    """A PropertyValues entry as a value of ``kind`` (they arrive as JSON strings mostly)."""
    if kind == _BOOL and isinstance(value, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(value.lower())
    if kind == _NUMBER and isinstance(value, str):
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            return None
    if kind in (_STRING, _GUID, _DATETIME) and not isinstance(value, str):
        return json.dumps(value)
    return value


def _incompatible(left: str, right: str, kind: str) -> ODataError:
    return ODataError(
        QUERY_ERROR_CODE,
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{left}' and '{right}' for operator kind '{kind}'.",
    )


# --------------------------------------------------------------------------------------------------
# Public API


def _column_types(entity: str, columns: Collection[str]) -> Mapping[str, str | None]:
    if isinstance(columns, Mapping):
        return columns
    primary_key = f"{entity}id"
    lookups = re.compile(r"_\w+_value")
    return {
        name: "Edm.Guid" if name == primary_key or lookups.fullmatch(name) else None
        for name in columns
    }


def parse_filter(
    text: str,
    *,
    entity: str,
    columns: Collection[str],
    aliases: Mapping[str, str] | None = None,
) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a ``$filter`` value into a predicate over records; raises ODataError on a filter
    Dataverse refuses (400) or one the sandbox does not implement (501).

    ``aliases`` (the request's ``@p1=...`` parameters) are accepted for the caller's sake; a
    filter that uses one is not implemented (501).
    """
    del aliases  # a filter naming one fails in the parser
    parser = _Parser(text, entity=entity, columns=_column_types(entity, columns))
    test = parser.parse_filter()
    return lambda record: test(record) is True


def parse_orderby(text: str, *, entity: str, columns: Collection[str]) -> list[tuple[str, bool]]:
    """``$orderby`` as (column, descending) pairs; empty text gives no ordering."""
    parser = _Parser(text, entity=entity, columns=_column_types(entity, columns))

    def key(token: _Token) -> tuple[str, bool]:
        if token.kind != "ident":
            raise _syntax_error(token.pos, text)
        column = parser.column(token.text)
        descending = parser.at("ident", "desc")
        if parser.at("ident", "asc", "desc"):
            parser.advance()
        return column.name, descending

    return parser.parse_list(key)


def parse_select(text: str, *, entity: str, columns: Collection[str]) -> list[str]:
    """``$select`` as column names in request order without repeats; ``*`` selects every column.
    Empty text gives ``[]`` (no selection: the caller returns every column)."""
    parser = _Parser(text, entity=entity, columns=_column_types(entity, columns))

    def names(token: _Token) -> list[str]:
        if token.kind == "punct" and token.text == "*":
            return list(columns)
        if token.kind != "ident":
            raise _syntax_error(token.pos, text)
        return [parser.column(token.text).name]

    return list(dict.fromkeys(name for item in parser.parse_list(names) for name in item))


def _sort_key(field: str) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    def key(record: Mapping[str, Any]) -> tuple[Any, ...]:
        value_key = _value_key(record.get(field))
        if value_key is None:
            return (0,)
        kind, value = value_key
        return (1, kind, _guid_order(value) if kind == _GUID else value)

    return key


def sort_records(
    records: Iterable[Mapping[str, Any]], orderby: list[tuple[str, bool]]
) -> list[Mapping[str, Any]]:
    """Sort like SQL Server: nulls first ascending (last descending), text case-insensitively,
    GUIDs in ``uniqueidentifier`` order; ties keep their input order."""
    ordered = list(records)
    # sorting by the last key first, each pass stable, gives the multi-key order
    for field, descending in reversed(orderby):
        ordered.sort(key=_sort_key(field), reverse=descending)
    return ordered
