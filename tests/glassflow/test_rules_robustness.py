"""The model rules run on documents that failed the JSON Schema too (`gftune validate` reports both),
so no wrong type anywhere may make them raise."""

import copy
import os
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gftune.glassflow import resources as res
from gftune.glassflow import rules

DEMOS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "glassflow-demos").glob("*.json"))
DOCS = [json.loads(p.read_text()) for p in DEMOS]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


def _replace(doc: dict, path: tuple, value: Any) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("key", "value"),
    [("resources", 5), ("resources", {"sources": [1, "x", None]}), ("resources", {"transform": [1]}),
     ("resources", {"sink": 1}), ("resources", {"nats": 1}), ("resources", {"nats": {"stream": 1}}),
     ("resources", {"sink": {"requests": 1, "storage": "x"}}), ("transforms", [1, None]), ("sink", 3),
     ("join", {"enabled": True, "left_source": 1, "right_source": None})],
)
def test_wrong_types_in_the_join_demo_do_not_raise(key, value):
    doc = json.loads((DEMOS[0].parent / "join_pipeline.json").read_text())
    doc[key] = value
    assert isinstance(rules.validate_document(doc), list)


@settings(max_examples=int(os.environ.get("GFTUNE_FUZZ_EXAMPLES", "150")), deadline=None)
@given(st.data())
def test_any_value_anywhere_in_a_demo_document(data):
    doc = data.draw(st.sampled_from(DOCS))
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    mutated = _replace(doc, path, data.draw(json_values))
    violations = rules.validate_document(mutated)
    assert all(isinstance(v, rules.Violation) for v in violations)
    res.validate_internal(res.v3_to_internal(mutated))
