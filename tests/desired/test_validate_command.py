"""`gftune validate` and `gftune schema` on the shipped example repository and small variations."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from gftune.cli import cli
from gftune.desired import secrets
from gftune.desired.repo import load_repo
from gftune.desired.yamlio import dump_roundtrip, load_roundtrip, load_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_IDS = {"deduplication-demo-pipeline", "join-demo-pipeline", "fraud-detection-logins-tested",
               "ran-5g-telemetry", "otlp-traces"}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A writable copy of the example pipelines."""
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    return tmp_path


def test_examples_are_valid_from_the_repository_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("valid: ")


def test_examples_are_valid_json_report():
    result = invoke("validate", "--repo", str(ROOT), "--format", "json")
    report = json.loads(result.output)
    assert result.exit_code == 0
    assert report["valid"] is True and report["format_version"] == "1"
    assert set(report["pipelines"]) >= EXAMPLE_IDS
    assert report["files"] >= 6  # five pipelines and gftune.yaml


def test_packaged_examples_are_the_repository_examples():
    examples = ROOT / "gftune" / "examples"  # in a checkout: symlinks to the top-level files
    state = load_repo(examples, overrides={"files_allow": [str(ROOT)]})
    assert state.valid, [p.render() for p in state.problems]
    assert set(state.pipelines) >= EXAMPLE_IDS
    assert state.pipelines["join-demo-pipeline"].file == "pipelines/join-demo-pipeline.yaml"
    assert state.config.api_url == "http://127.0.0.1:8081"


def test_examples_hold_only_secret_references_and_survive_a_round_trip():
    for path in sorted((ROOT / "pipelines").glob("*.yaml")):
        doc, _ = load_yaml(path)
        fields = list(secrets.iter_secret_fields(doc["spec"]))
        assert fields, path.name
        assert all(secrets.is_reference(value) for _, value in fields), path.name
        text = path.read_text()
        assert dump_roundtrip(load_roundtrip(text)) == text, f"{path.name} is not in round-trip form"


def test_desired_pipeline_exposes_spec_constraints_and_locations():
    state = load_repo(ROOT)
    pipeline = state.pipelines["deduplication-demo-pipeline"]
    assert pipeline.spec["sink"]["max_batch_size"] == 1000
    assert pipeline.constraints["partitions"] == 6
    assert pipeline.labels == {"team": "growth", "kind": "dedup"}
    line, _ = pipeline.locate(("sink", "max_batch_size"))
    assert "max_batch_size: 1000" in pipeline.path.read_text().splitlines()[line - 1]


def test_a_placeholder_outside_a_secret_field_is_a_warning_only(repo):
    path = repo / "pipelines" / "fraud-detection-logins-tested.yaml"
    path.write_text(path.read_text().replace("${env:KAFKA_USERNAME}", "${KAFKA_USERNAME}"))
    result = invoke("validate", "--repo", str(repo))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "pipelines/fraud-detection-logins-tested.yaml:18:9: spec.sources[0].connection_params.username: warning: "
        "looks like a placeholder but is not a reference (${env:NAME} or ${file:PATH}); it would be sent as written",
        "valid: 5 pipelines, 0 policies (5 files checked), 1 warning",
    ]


def test_every_problem_is_reported_not_just_the_first(repo):
    path = repo / "pipelines" / "deduplication-demo-pipeline.yaml"
    text = path.read_text().replace("max_batch_size: 1000", "max_batch_size: many").replace(
        "column_type: UUID", "column_type: Nullable(UUID)").replace("maxAge: 24h", "max_age: 24h")
    path.write_text(text)
    (repo / "pipelines" / "join-demo-pipeline.yaml").write_text("spec: [\n")
    result = invoke("validate", "--repo", str(repo), "--format", "json")
    problems = json.loads(result.output)["problems"]
    assert result.exit_code == 1
    assert [(p["file"].split("/")[-1], p["json_path"]) for p in problems] == [
        ("deduplication-demo-pipeline.yaml", "spec.sink.max_batch_size"),
        ("deduplication-demo-pipeline.yaml", "spec.sink.mapping[0].column_type"),
        ("deduplication-demo-pipeline.yaml", "spec.sink.mapping[1].column_type"),
        ("deduplication-demo-pipeline.yaml", "spec.resources.nats.stream.max_age"),
        ("join-demo-pipeline.yaml", "$"),
    ]
    lines = [p["line"] for p in problems[:4]]
    assert lines == sorted(lines)


def test_a_bug_in_a_check_is_a_located_problem_not_a_traceback(repo, monkeypatch):
    from gftune.glassflow import rules

    def broken(doc):
        raise RuntimeError("boom")

    monkeypatch.setattr(rules, "validate_document", broken)
    result = invoke("validate", "--repo", str(repo))
    assert result.exit_code == 1
    assert "pipelines/join-demo-pipeline.yaml:1:1: $: internal error while checking this file (RuntimeError)" \
        in result.output
    assert "Traceback" not in result.output


def test_a_bug_outside_the_checks_still_exits_1(repo, monkeypatch):
    import gftune.commands.validate as command

    def broken(*args, **kwargs):
        raise KeyError("x")

    monkeypatch.setattr(command, "validate_repo", broken)
    result = invoke("validate", "--repo", str(repo))
    assert result.exit_code == 1
    assert result.output.startswith(f"{repo}:1:1: $: internal error while checking this file (KeyError)")


def test_policy_files_go_through_the_policy_language(repo):
    (repo / "policies").mkdir()
    (repo / "policies" / "grow-batch.yaml").write_text(
        "apiVersion: gftune/v1\nkind: TuningPolicy\nmetadata: {name: grow-batch}\nspec:\n"
        "  when: [{signal: sink_rte, op: '<', value: 10}]\n"
        "  then: [{multiply: sink.max_batch_size, by: 2, max: 20000}]\n")
    result = invoke("validate", "--repo", str(repo))
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert first.startswith("policies/grow-batch.yaml:5:11: spec.when[0].signal: unknown signal 'sink_rte'"), first


@pytest.mark.parametrize("kind", ["pipeline", "policy", "config"])
def test_schema_command_prints_a_self_contained_draft_2020_12_schema(kind, tmp_path):
    result = invoke("schema", kind)
    assert result.exit_code == 0
    schema = json.loads(result.output)
    Draft202012Validator.check_schema(schema)
    refs = []

    def collect(node):
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    assert all(ref.startswith("#/") for ref in refs)
    out = tmp_path / "s" / f"{kind}.json"
    assert invoke("schema", kind, "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text()) == schema


def test_printed_pipeline_schema_accepts_the_examples_and_join_resources():
    validator = Draft202012Validator(json.loads(invoke("schema", "pipeline").output))
    for path in sorted((ROOT / "pipelines").glob("*.yaml")):
        doc, _ = load_yaml(path)
        assert list(validator.iter_errors(doc)) == [], path.name
    join, _ = load_yaml(ROOT / "pipelines" / "join-demo-pipeline.yaml")
    assert "join" in join["spec"]["resources"]
    join["spec"]["resources"]["join"]["storage_typo"] = 1
    assert [e.validator for e in validator.iter_errors(join)] == ["additionalProperties"]


def test_printed_config_schema_accepts_the_example_config():
    validator = Draft202012Validator(json.loads(invoke("schema", "config").output))
    doc, _ = load_yaml(ROOT / "gftune.yaml")
    assert list(validator.iter_errors(doc)) == []


def test_unknown_schema_kind_is_a_usage_error():
    result = CliRunner().invoke(cli, ["schema", "pipelines"])
    assert result.exit_code != 0
    assert "pipeline" in result.output


DEMOS = ROOT / "tests" / "fixtures" / "glassflow-demos"
CONVERTED = {"deduplication_pipeline.json": "deduplication-demo-pipeline", "join_pipeline.json": "join-demo-pipeline",
             "fraud_detection_pipeline.json": "fraud-detection-logins-tested",
             "5g-metrics-pipeline.json": "ran-5g-telemetry", "traces-pipeline.json": "otlp-traces"}


@pytest.mark.parametrize("demo", sorted(CONVERTED))
def test_examples_are_the_glassflow_demos_with_references_names_and_resources(demo):
    original = json.loads((DEMOS / demo).read_text())
    spec, _ = load_yaml(ROOT / "pipelines" / f"{CONVERTED[demo]}.yaml")
    spec = spec["spec"]
    assert spec["name"]  # the API requires it; two demos lack it
    if "name" not in original:
        spec.pop("name")
    if "resources" not in original:
        spec.pop("resources", None)  # added so that there is something to tune
    for (path, before), (same_path, after) in zip(secrets.iter_secret_fields(original),
                                                  secrets.iter_secret_fields(spec), strict=True):
        assert path == same_path and secrets.is_reference(after)
        assert before != after
    for side in (original, spec):
        side["sink"]["connection_params"].pop("password")
        for source in side["sources"]:
            source.get("connection_params", {}).pop("password", None)
    text = json.dumps(spec, sort_keys=True).replace("${env:", "${")
    assert json.loads(text) == original


def test_policy_schema_accepts_the_policy_language():
    from gftune.desired.schemas import schema_problems
    from gftune.desired.yamlio import load_yaml_text

    doc, where = load_yaml_text("""
apiVersion: gftune/v1
kind: TuningPolicy
metadata: {name: sink-batch-bound, description: grow the sink batch when the sink lags}
spec:
  selector: {matchLabels: {team: payments}, pipelines: [orders]}
  when:
    - {signal: sink_source_ratio, op: "<", value: 0.9, for: 2m}
    - any: [{signal: sink_batch_fill, op: ">=", value: 0.9}, {promql: "sum(rate(x[1m]))", op: ">", value: 1}]
  then:
    - {multiply: sink.max_batch_size, by: 4, max: 100000, max_step: 4}
    - {set: sink.max_delay_time, value: 2s}
    - {scale_to_fit: all, target_utilization: 0.7, band: [0.5, 0.8], catch_up: 10m}
  verify: {expect: [{signal: sink_rate, op: ">=", value: "baseline*1.5"}], settle: 1m, window: 5m, tolerance: 0.1}
  cooldown: 30m
tests: [{name: grows, metrics: {}}]
""", display="p.yaml")
    assert schema_problems("policy", doc, where, "p.yaml") == []
    doc["spec"]["then"][0]["set"] = "sink.max_batch_size"
    assert [p.render() for p in schema_problems("policy", doc, where, "p.yaml")] == [
        "p.yaml:11:7: spec.then[0]: use only one of: set, multiply"]


def test_repo_that_is_a_file_is_an_error(tmp_path):
    target = tmp_path / "gftune.yaml"
    target.write_text("kind: Config\n")
    result = invoke("validate", "--repo", str(target))
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"{target}: $: not a directory: --repo needs the repository's top directory"


def test_pre_commit_hook_runs_validate_on_gftune_files_only():
    import re

    import yaml

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "gftune-validate" and hook["entry"] == "gftune validate"
    assert hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    assert all(files.search(p) for p in ("pipelines/orders.yaml", "pipelines/team/a.yml", "policies/x.yaml",
                                         "gftune.yaml"))
    assert not any(files.search(p) for p in ("README.md", "pipelines/notes.md", "src/gftune.yaml.bak"))


def test_locate_field_follows_source_id_selectors():
    pipeline = load_repo(ROOT).pipelines["join-demo-pipeline"]
    lines = pipeline.path.read_text().splitlines()

    def line_of(field):
        return lines[pipeline.locate_field(field)[0] - 1].strip()

    assert line_of("resources.sources[user_events].replicas") == "replicas: 1"
    assert pipeline.locate_field("resources.sources[user_events]") != pipeline.locate_field("resources.sources[orders]")
    assert line_of("resources.join.limits.memory").startswith("limits:")  # flow mapping: the key's line
    assert line_of("sink.max_batch_size") == "max_batch_size: 1000"
    assert line_of("resources.sources[nope].replicas") == "sources:"  # nearest existing parent
