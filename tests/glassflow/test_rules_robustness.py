"""The model rules run on documents that failed the JSON Schema too (`gftune validate` reports both),
so no wrong type anywhere may make them raise."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gftune.glassflow import resources as res
from gftune.glassflow import rules
from tests.support.fuzzing import json_values, replaced, value_paths

DEMOS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "glassflow-demos").glob("*.json"))
DOCS = [json.loads(p.read_text()) for p in DEMOS]


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
    path = data.draw(st.sampled_from(value_paths(doc)[1:]))
    mutated = replaced(doc, path, data.draw(json_values))
    violations = rules.validate_document(mutated)
    assert all(isinstance(v, rules.Violation) for v in violations)
    res.validate_internal(res.v3_to_internal(mutated))
