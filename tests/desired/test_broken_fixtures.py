"""`gftune validate` on tiny broken repositories: exit 1 and the exact located message(s)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gftune.cli import cli

BROKEN = Path(__file__).resolve().parents[1] / "fixtures" / "broken"
SECRET_MARKER = "S3CRET"  # every literal secret in the fixtures contains it

EXPECTED = {
    "bad-yaml-syntax": [
        "pipelines/orders.yaml:15:17: $: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 14)"],
    "tab-indentation": [
        "pipelines/orders.yaml:35:1: $: invalid YAML: tab character where YAML expects spaces "
        "(indent with spaces, not tabs)"],
    "duplicate-yaml-key": [
        'pipelines/orders.yaml:27:5: spec.sink.table: duplicate key "table" (first defined at line 26)'],
    "empty-document": [
        "pipelines/orders.yaml:1:1: $: file is empty: expected a Pipeline document "
        "(apiVersion: gftune/v1, kind: Pipeline)"],
    "wrong-kind": ['pipelines/orders.yaml:2:1: kind: must be "Pipeline"'],
    "unknown-key-max-age": [
        'pipelines/orders.yaml:43:9: spec.resources.nats.stream.max_age: unknown key "max_age"; did you mean maxAge?'],
    "wrong-type-batch-size": [
        "pipelines/orders.yaml:27:5: spec.sink.max_batch_size: expected integer, got string "
        "(a quoted number: remove the quotes)"],
    "missing-http-port": [
        'pipelines/orders.yaml:29:5: spec.sink.connection_params: missing required key "http_port"'],
    "literal-clickhouse-password": [
        "pipelines/orders.yaml:35:7: spec.sink.connection_params.password: literal secret: use a reference "
        "such as ${env:NAME} or ${file:PATH} (the value is not shown)"],
    "literal-kafka-password": [
        "pipelines/orders.yaml:18:9: spec.sources[0].connection_params.password: literal secret: use a reference "
        "such as ${env:NAME} or ${file:PATH} (the value is not shown)"],
    "placeholder-password": [
        "pipelines/orders.yaml:35:7: spec.sink.connection_params.password: not a valid secret reference: "
        "write ${env:NAME} or ${file:PATH}"],
    "bad-quantity": [
        'pipelines/orders.yaml:43:27: spec.resources.sink.limits.memory: invalid memory quantity "1GB": '
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'; "
        'did you mean "1Gi"?'],
    "bad-max-age": [
        'pipelines/orders.yaml:42:16: spec.resources.nats.stream.maxAge: invalid maxAge "1d": '
        'time: unknown unit "d" in duration "1d"; maxAge does not accept days: use "24h"'],
    "mapping-missing-field": [
        'pipelines/orders.yaml:39:10: spec.sink.mapping[1].name: mapping field "amount_usd" does not exist '
        "in the sink's upstream schema"],
    "unsupported-column-type": [
        'pipelines/orders.yaml:39:45: spec.sink.mapping[1].column_type: unsupported ClickHouse column type: '
        '"Nullable(Float64)"'],
    "dedup-key-not-in-schema": [
        'pipelines/orders.yaml:23:16: spec.transforms[0].config.key: dedup key "id" is not a field of source "orders"'],
    "join-replicas-2": [
        "pipelines/orders-users.yaml:53:7: spec.resources.join.replicas: only 1 join replica is supported"],
    "otlp-source-with-topic": [
        "pipelines/traces.yaml:12:7: spec.sources[0].topic: topic is not allowed for OTLP source traces"],
    "replicas-exceed-partitions": [
        "pipelines/orders.yaml:42:29: spec.resources.sources[0].replicas: 6 ingestor replicas exceed "
        "tuning.constraints.partitions (4); replicas beyond the partition count sit idle"],
    "file-name-mismatch": [
        'pipelines/orders-v2.yaml:7:3: spec.pipeline_id: pipeline_id "orders" does not match the file name: '
        "rename the file to orders.yaml"],
    "metadata-name-mismatch": [
        'pipelines/orders.yaml:4:3: metadata.name: metadata.name "order" must equal spec.pipeline_id "orders"'],
    "duplicate-pipeline-ids": [
        'pipelines/orders.yml:7:3: spec.pipeline_id: duplicate pipeline_id "orders": '
        "already defined in pipelines/orders.yaml"],
    "policy-unknown-action": [
        "policies/sink-batch.yaml:13:7: spec.then[0]: needs one of: set, multiply, add, scale_to_fit",
        'policies/sink-batch.yaml:13:7: spec.then[0].double: unknown key "double"'],
    "bad-config": [
        'gftune.yaml:5:3: api.timout: unknown key "timout"; did you mean timeout?',
        "gftune.yaml:6:1: time_scale: must be > 0"],
    "empty-repo": [
        "pipelines/: $: no pipeline files found: expected pipelines/<pipeline_id>.yaml "
        "(use --allow-empty if that is intended)"],
}


def run(*args: str):
    return CliRunner().invoke(cli, ["validate", *args], catch_exceptions=False)


def test_every_fixture_has_an_expectation():
    assert sorted(p.name for p in BROKEN.iterdir() if p.is_dir()) == sorted(EXPECTED)
    assert len(EXPECTED) >= 15


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_broken_fixture_text(case):
    result = run("--repo", str(BROKEN / case))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[:-1] == EXPECTED[case]
    assert lines[-1].startswith("invalid: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_broken_fixture_json(case):
    result = run("--repo", str(BROKEN / case), "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["format_version"] == "1"
    assert report["valid"] is False
    rendered = []
    for p in report["problems"]:
        location = f"{p['file']}:{p['line']}:{p['col']}" if p["line"] is not None else p["file"]
        rendered.append(f"{location}: {p['json_path']}: {p['message']}")
        assert p["severity"] == "error"
    assert rendered == EXPECTED[case]


def test_no_literal_secret_from_any_fixture_reaches_the_output():
    cases = [p for p in BROKEN.iterdir() if p.is_dir()]
    planted = [p for p in cases if any(SECRET_MARKER in f.read_text() for f in p.rglob("*.y*ml"))]
    assert {p.name for p in planted} >= {"literal-clickhouse-password", "literal-kafka-password", "tab-indentation"}
    for case in cases:
        for fmt in ("text", "json"):
            result = run("--repo", str(case), "--format", fmt)
            assert SECRET_MARKER not in result.output, (case.name, fmt)


def test_allow_empty_accepts_a_repository_without_pipelines():
    result = run("--repo", str(BROKEN / "empty-repo"), "--allow-empty")
    assert result.exit_code == 0
    assert result.output == "valid: 0 pipelines, 0 policies (1 file checked)\n"


def test_missing_repository_is_an_error_not_a_traceback(tmp_path):
    result = run("--repo", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"{tmp_path / 'nope'}: $: repository directory does not exist"
