"""Hypothesis helpers shared by the fuzz tests: JSON-like values and "replace one value" mutations."""

import copy
from typing import Any

from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def value_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """The path of every value in a document, the root (``()``) first."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += value_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += value_paths(value, (*prefix, i))
    return found


def replaced(doc: Any, path: tuple, value: Any) -> Any:
    """A deep copy of ``doc`` with the value at ``path`` (not the root) replaced."""
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc
