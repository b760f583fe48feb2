"""Values the GlassFlow API, Kubernetes or PostgreSQL would refuse later (or accept and break on) are
`validate` errors at the line of the value (issue 15). Each case changes one value of an example file."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gftune.cli import cli

ROOT = Path(__file__).resolve().parents[2]
PID = "deduplication-demo-pipeline"
POLICY = "sink-batch-bound"


def run_validate(repo: Path) -> tuple[int, list[dict[str, Any]]]:
    result = CliRunner().invoke(cli, ["validate", "--repo", str(repo), "--format", "json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.output)["problems"]


def pipeline_repo(tmp_path: Path, change) -> Path:
    repo = tmp_path / "repo"
    (repo / "pipelines").mkdir(parents=True)
    doc = yaml.safe_load((ROOT / "pipelines" / f"{PID}.yaml").read_text())
    change(doc["spec"])
    (repo / "pipelines" / f"{PID}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return repo


def setter(path: str, value: Any):
    def change(spec: dict[str, Any]) -> None:
        node: Any = spec
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


CASES = {
    "negative cpu limit": ("resources.sink.limits.cpu", "-1", "spec.resources.sink.limits.cpu",
                           'cpu "-1" must be greater than 0'),
    "zero memory request": ("resources.sink.requests.memory", "0", "spec.resources.sink.requests.memory",
                            'memory "0" must be greater than 0'),
    "cpu beyond any node": ("resources.sources.0.limits.cpu", "200000", "spec.resources.sources[0].limits.cpu",
                            'cpu "200000" is more than any node offers (at most 1024 cores); a missing unit suffix?'),
    "request above limit": ("resources.sink.requests.memory", "2Gi", "spec.resources.sink.requests.memory",
                            "memory request 2Gi is more than the limit 1.5Gi"),
    "negative batch": ("sink.max_batch_size", -1, "spec.sink.max_batch_size",
                       "max_batch_size must be between 1 and 1152921504606846975 (the API multiplies it by 8 into an "
                       "int64 for the stream's default maxMsgs)"),
    "batch 2^70": ("sink.max_batch_size", 2**70, "spec.sink.max_batch_size",
                   "max_batch_size must be between 1 and 1152921504606846975"),
    "maxMsgs 2^80": ("resources.nats.stream.maxMsgs", 2**80, "spec.resources.nats.stream.maxMsgs",
                     "maxMsgs must be between -1 (unlimited) and 9223372036854775807 (an int64 in the API)"),
    "zero replicas": ("resources.sink.replicas", 0, "spec.resources.sink.replicas",
                      "replicas must be at least 1 (0 replicas stop the component: nothing would move)"),
    "replicas beyond int32": ("resources.transform.0.replicas", 2**31, "spec.resources.transform[0].replicas",
                              "replicas must be at most 2147483647"),
    "NUL in table": ("sink.table", "users\x00; DROP TABLE x", "spec.sink.table",
                     "contains a NUL character (U+0000), which the API cannot store"),
    "control character in name": ("name", "dedup\x1b[2Jdemo", "spec.name",
                                  "contains the control character U+001B: names, ids, topics and tables are single "
                                  "lines of printable text"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_rule(tmp_path, case):
    path, value, json_path, message = CASES[case]
    code, problems = run_validate(pipeline_repo(tmp_path, setter(path, value)))
    assert code == 1, problems
    found = [p for p in problems if p["json_path"] == json_path]
    assert found and message in found[0]["message"], problems
    assert found[0]["line"] >= 1 and found[0]["file"] == f"pipelines/{PID}.yaml"


def test_the_examples_pass_every_value_rule(tmp_path):
    code, problems = run_validate(pipeline_repo(tmp_path, lambda spec: None))
    assert (code, problems) == (0, [])


def test_certificates_may_span_lines(tmp_path):
    def change(spec):
        spec["sources"][0]["connection_params"]["root_ca"] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    assert run_validate(pipeline_repo(tmp_path, change))[0] == 0


# --- policies -------------------------------------------------------------------------------------------

def policy_repo(tmp_path: Path, change) -> Path:
    repo = pipeline_repo(tmp_path, lambda spec: None)
    (repo / "policies").mkdir()
    doc = yaml.safe_load((ROOT / "policies" / f"{POLICY}.yaml").read_text())
    change(doc)
    (repo / "policies" / f"{POLICY}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return repo


def policy_problems(tmp_path: Path, change) -> list[str]:
    code, problems = run_validate(policy_repo(tmp_path, change))
    assert code == 1, problems
    return [f"{p['json_path']}: {p['message']}" for p in problems if p["file"] == f"policies/{POLICY}.yaml"]


def test_policy_set_on_a_field_that_does_not_exist(tmp_path):
    def change(doc):
        doc["spec"]["then"][0] = {"set": "sink.max_batch_sise", "value": 5000}
    assert policy_problems(tmp_path, change) == [
        'spec.then[0].set: set: "sink.max_batch_sise" is not a field of a GlassFlow pipeline document '
        "(see `gftune schema pipeline`)"]


def test_policy_min_above_max(tmp_path):
    def change(doc):
        doc["spec"]["then"][0].update(min=200000, max=100000)
    assert policy_problems(tmp_path, change) == ["spec.then[0].min: min 200000 is greater than max 100000"]


def test_policy_duration_bounds_compare_as_durations(tmp_path):
    def change(doc):
        doc["spec"]["then"][1].update(min="2m", max="90s")
    assert policy_problems(tmp_path, change) == ["spec.then[1].min: min 2m is greater than max 90s"]


@pytest.mark.parametrize(("query", "message"), [
    ("rate(foo[5m]", "invalid PromQL: unclosed left parenthesis"),
    ('"a string"', "the query returns a string; a condition needs an instant vector or a scalar (one number)"),
    ("{prefix}sink_records_total[{window}]", "the query returns a matrix"),
    ("rate({prefix}sink_records_total)", "invalid PromQL: expected type matrix in call to function 'rate', got vector"),
])
def test_policy_promql_is_parsed_and_typed(tmp_path, query, message):
    def change(doc):
        doc["spec"]["when"][0] = {"promql": query, "op": ">", "value": 1}
    [problem] = policy_problems(tmp_path, change)
    assert problem.startswith("spec.when[0].promql: ") and message in problem


def test_a_valid_promql_condition_with_placeholders_passes(tmp_path):
    def change(doc):
        doc["spec"]["when"][0] = {"promql": 'sum(rate({prefix}clickhouse_records_written_total'
                                            '{pipeline_id="{pipeline_id}"}[{window}]))', "op": ">", "value": 1}
    assert run_validate(policy_repo(tmp_path, change))[0] == 0


# --- gftune.yaml ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["apply: {lock_ttl: 0s}", "api: {timeout: 0}", "verify: {window: 0s}",
                                     "apply: {stop_timeout: '0'}"])
def test_zero_durations_are_refused(tmp_path, setting):
    repo = pipeline_repo(tmp_path, lambda spec: None)
    (repo / "gftune.yaml").write_text(f"apiVersion: gftune/v1\nkind: Config\n{setting}\n")
    code, problems = run_validate(repo)
    assert code == 1
    assert [p["message"] for p in problems] == ["must be greater than 0"]
    assert problems[0]["file"] == "gftune.yaml" and problems[0]["line"] == 3
