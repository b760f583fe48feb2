"""Property-based: whatever is in a pipeline file, `gftune validate` never raises and never
succeeds silently on garbage: it exits 1 with located problems (or 0 if the input is valid)."""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gftune.cli import cli
from gftune.desired.yamlio import YamlError, load_yaml_text
from tests.support.fuzzing import json_values, replaced, value_paths

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "pipelines").glob("*.yaml"))
# GFTUNE_FUZZ_EXAMPLES=2000 for a longer local run; CI keeps the suite fast.
FUZZ_EXAMPLES = int(os.environ.get("GFTUNE_FUZZ_EXAMPLES", "120"))
SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

yamlish_text = st.text(alphabet=" \t\n:-[]{}#&*!|>'\"%@`,?~<abcxyz019.\\", max_size=80)


def validate_file(text: str) -> tuple[int, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as repo:
        (Path(repo) / "pipelines").mkdir()
        (Path(repo) / "pipelines" / "fuzzed.yaml").write_text(text, encoding="utf-8")
        result = CliRunner().invoke(cli, ["validate", "--repo", repo, "--format", "json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.output)


def assert_located_failure_or_valid(code: int, report: dict[str, Any]) -> None:
    if code == 0:
        assert report["valid"] is True
        return
    assert code == 1
    assert report["valid"] is False
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert errors
    for problem in errors:
        assert problem["file"] == "pipelines/fuzzed.yaml"
        assert problem["line"] >= 1 and problem["col"] >= 1
        assert problem["message"]
        assert "internal error" not in problem["message"]  # a check that raised: a bug


@SETTINGS
@given(st.text(max_size=200) | yamlish_text)
def test_arbitrary_text(text):
    code, report = validate_file(text)
    assert_located_failure_or_valid(code, report)


@SETTINGS
@given(json_values)
def test_arbitrary_json_like_documents(value):
    code, report = validate_file(yaml.safe_dump(value, allow_unicode=True))
    assert_located_failure_or_valid(code, report)


def _base(path: Path) -> dict[str, Any]:
    doc, _ = load_yaml_text(path.read_text())
    doc["metadata"]["name"] = doc["spec"]["pipeline_id"] = "fuzzed"
    return doc


BASES = [_base(path) for path in EXAMPLES]


@SETTINGS
@given(st.data())
def test_a_valid_pipeline_with_one_value_replaced(data):
    base = data.draw(st.sampled_from(BASES))
    doc = replaced(base, data.draw(st.sampled_from(value_paths(base)[1:])), data.draw(json_values))
    code, report = validate_file(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    assert_located_failure_or_valid(code, report)


@pytest.mark.parametrize("index", range(len(BASES)))
def test_the_unmodified_bases_are_valid(index):
    code, report = validate_file(yaml.safe_dump(BASES[index], sort_keys=False))
    assert (code, report["problems"]) == (0, [])


@SETTINGS
@given(st.text(max_size=300))
def test_loader_raises_only_yaml_errors_with_a_line(text):
    try:
        load_yaml_text(text, display="x.yaml")
    except YamlError as exc:
        assert all(p.line is not None and p.line >= 1 for p in exc.problems)
