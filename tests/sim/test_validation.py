"""huma-style request validation: jsonschema decides, the walk words the first error like huma."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gftune.sim import validation
from tests.sim.helpers import dedup_doc


@pytest.mark.parametrize(("number", "go"), [
    (0, "0"), (1, "1"), (1000, "1000"), (100000, "100000"), (1e6, "1e+06"), (123456789, "1.23456789e+08"),
    (0.5, "0.5"), (1.5, "1.5"), (0.0001, "0.0001"), (0.00001, "1e-05"), (-2.25, "-2.25"), (1e21, "1e+21"),
])
def test_numbers_print_like_go(number, go):
    assert validation.go_float(number) == go


def test_values_print_like_go_percent_v():
    assert validation.go_repr({"b": [1, "x"], "a": None, "c": True}) == "map[a:<nil> b:[1 x] c:true]"


def _schema_validator():
    schema = validation.schema_for("pipeline")
    return jsonschema.validators.validator_for(schema)(schema)


_paths = st.lists(st.sampled_from(["sources", 0, "connection_params", "sink", "mapping", 1, "config",
                                   "transforms", "metadata", "resources", "nats", "stream"]), max_size=4)
_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3),
                    st.lists(st.integers(0, 2), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(0, 2),
                                                                           max_size=2))


def _mutate(doc, path, action, value):
    node = doc
    for step in path:
        in_dict = isinstance(node, dict) and isinstance(step, str) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and step < len(node)
        if not (in_dict or in_list):
            break
        node = node[step]
    if isinstance(node, dict) and node:
        key = sorted(node)[len(node) // 2]
        if action == "delete":
            del node[key]
        elif action == "replace":
            node[key] = value
        else:
            node["unexpected_" + str(len(node))] = value
    elif isinstance(node, list) and node:
        node[0] = value


@settings(max_examples=300, deadline=None)
@given(path=_paths, action=st.sampled_from(["delete", "replace", "add"]), value=_values)
def test_every_invalid_body_gets_a_huma_worded_first_error(path, action, value):
    doc = dedup_doc()
    doc["resources"] = {"nats": {"stream": {"maxAge": "24h"}}, "sink": {"replicas": 2}}
    doc["metadata"] = {"tags": ["a"]}
    body = copy.deepcopy(doc)
    _mutate(body, path, action, value)
    valid = _schema_validator().is_valid(body)
    message = validation.first_error("pipeline", body)
    assert (message is None) == valid
    if message is not None:
        # the walk agreed with jsonschema: no fall-back wording
        assert message.startswith(("expected ", "unexpected property (body", "expected required property"))
        assert " (body" in message
