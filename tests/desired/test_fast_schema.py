"""The compiled schema check (fastjsonschema, draft-07) is only a fast path: whenever it says
"valid", jsonschema's draft 2020-12 validation must agree, or errors would go unreported."""

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gftune.desired import schemas
from tests.support.fuzzing import json_values, replaced, value_paths

ROOT = Path(__file__).resolve().parents[2]
BASES = {
    "pipeline": [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "pipelines").glob("*.yaml"))],
    "policy": [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "policies").glob("*.yaml"))],
    "config": [yaml.safe_load((ROOT / "gftune.yaml").read_text())],
}


def _agree(kind, doc):
    fast = schemas.is_schema_valid(kind, doc)
    full = not list(schemas.validator(kind).iter_errors(doc))
    # Fast "valid" must be right; a fast "invalid" only costs the slow path, but should match too.
    assert fast == full, (kind, doc)


@pytest.mark.parametrize("kind", sorted(BASES))
def test_every_kind_uses_the_compiled_check(kind):
    assert schemas.fast_check(kind) is not None


@pytest.mark.parametrize(("kind", "index"), [(k, i) for k, docs in BASES.items() for i in range(len(docs))])
def test_shipped_files_agree(kind, index):
    _agree(kind, BASES[kind][index])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_one_value_replaced_agrees(data):
    kind = data.draw(st.sampled_from(sorted(BASES)))
    base = data.draw(st.sampled_from(BASES[kind]))
    path = data.draw(st.sampled_from(value_paths(base)[1:]))
    value = data.draw(json_values | st.sampled_from([True, False, 1, 1.5, "", "x", None, [], {}]))
    _agree(kind, replaced(base, path, value))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(BASES)), json_values)
def test_arbitrary_documents_agree(kind, value):
    _agree(kind, value)


def test_a_ref_with_constraints_beside_it_disables_the_fast_path():
    assert schemas.ref_with_siblings({"properties": {"a": {"$ref": "#/$defs/x", "required": ["b"]}}})
    assert not schemas.ref_with_siblings({"properties": {"a": {"$ref": "#/$defs/x", "description": "d"}}})
