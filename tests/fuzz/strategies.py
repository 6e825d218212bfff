"""Hypothesis strategies shared by the fuzz properties: JSON-ish values and webhook bodies."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.relay.conftest import webhook_body

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.uuids().map(str)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=20,
)
_context_keys = (
    "MessageName",
    "PrimaryEntityName",
    "PrimaryEntityId",
    "OperationId",
    "OperationCreatedOn",
    "CorrelationId",
    "InputParameters",
    "OutputParameters",
    "ParentContext",
)
_messages = st.sampled_from(["Create", "Update", "update", "CREATE", "Delete", "Assign", ""])
_entities = st.sampled_from(["contact", "Contact", "CONTACT", "account", "lead", ""])


@st.composite
def contexts(draw: st.DrawFn) -> Any:
    """The Microsoft sample, its key fields replaced, dropped or re-cased, other keys added."""
    body: dict[str, Any] = webhook_body(message=draw(_messages), entity=draw(_entities))
    for key in draw(st.lists(st.sampled_from(_context_keys), unique=True, max_size=4)):
        action = draw(st.sampled_from(["drop", "replace", "date"]))
        if action == "drop":
            body.pop(key, None)
        elif action == "replace":
            body[key] = draw(json_values)
        else:
            ms = draw(st.integers(min_value=-(10**20), max_value=10**20))
            body[key] = draw(st.sampled_from([f"/Date({ms})/", f"\\/Date({ms}+0100)\\/", str(ms)]))
    body.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)))
    return body
