"""The shared building blocks: problems, YAML locations, secrets, configuration precedence."""

from pathlib import Path

import pytest

from gftune.desired import secrets
from gftune.desired.config import Config, load_config
from gftune.desired.problems import Problem, sorted_problems
from gftune.desired.yamlio import YamlError, dump_roundtrip, load_roundtrip, load_yaml_text


def test_problem_renders_path_line_col_json_path_message():
    problem = Problem("pipelines/a.yaml", 3, 5, "spec.sink", "bad")
    assert problem.render() == "pipelines/a.yaml:3:5: spec.sink: bad"
    assert Problem("x", None, None, "$", "m").render() == "x: $: m"
    assert Problem("x", 1, 1, "$", "m", severity="warning").render() == "x:1:1: $: warning: m"
    assert Problem.from_dict(problem.to_dict()) == problem


def test_problems_sort_by_file_then_line_and_drop_exact_duplicates():
    a, b, c = Problem("b", 1, 1, "$", "x"), Problem("a", 9, 1, "$", "y"), Problem("a", 2, 1, "$", "z")
    assert sorted_problems([a, b, c, a]) == [c, b, a]


def test_locations_point_at_keys_and_fall_back_to_the_parent():
    data, where = load_yaml_text("a:\n  b:\n    - x\n    - {c: 1}\n")
    assert data == {"a": {"b": ["x", {"c": 1}]}}
    assert where.locate(("a", "b")) == (2, 3)
    assert where.locate(("a", "b", 1, "c")) == (4, 8)
    assert where.locate(("a", "b", 1, "missing")) == (4, 7)
    assert where.locate(("nope",)) == (1, 1)


def test_yaml_1_2_scalars_and_merge_keys():
    data, _ = load_yaml_text("base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\nflags: [yes, off, 2024-01-01, 0x10, ~]\n")
    assert data["m"] == {"x": 1, "y": 3}
    assert data["flags"] == ["yes", "off", "2024-01-01", 16, None]


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("a: 1\na: 2\n", '<string>:2:1: a: duplicate key "a" (first defined at line 1)'),
        ("a:\n\tb: 1\n", "<string>:2:1: $: invalid YAML: tab character where YAML expects spaces "
                         "(indent with spaces, not tabs)"),
        ("a: b: c\n", "<string>:1:5: $: invalid YAML: mapping values are not allowed here"),
        ("a: &x [*x]\n", "<string>:1:4: a[0]: recursive alias: a value cannot contain itself"),
        ("a: !secret x\n", "<string>:1:4: a: unsupported YAML tag !secret"),
        ("---\na: 1\n---\nb: 2\n", "<string>:3:1: $: invalid YAML: expected a single document in the stream, "
                                   "but found another document"),
    ],
)
def test_broken_yaml_is_a_located_error(text, rendered):
    with pytest.raises(YamlError) as info:
        load_yaml_text(text)
    assert info.value.problem.render() == rendered


def test_roundtrip_keeps_comments():
    text = "a: 1  # keep me\nb:\n  - x\n"
    data = load_roundtrip(text)
    data["a"] = 2
    assert dump_roundtrip(data) == "a: 2  # keep me\nb:\n  - x\n"


def test_secret_fields_references_and_fingerprints(tmp_path):
    doc = {"sources": [{"source_id": "orders", "connection_params": {"password": "${env:KAFKA_PW}"},
                        "schema_registry": {"api_secret": "lit"}}],
           "sink": {"connection_params": {"password": "${file:ch.txt}"}}}
    assert dict(secrets.iter_secret_fields(doc)) == {
        "sources[orders].connection_params.password": "${env:KAFKA_PW}",
        "sources[orders].schema_registry.api_secret": "lit",
        "sink.connection_params.password": "${file:ch.txt}",
    }
    assert secrets.is_reference("${env:A_1}") and secrets.is_reference("${file:/run/x}")
    assert not secrets.is_reference("${KAFKA_PASSWORD}") and not secrets.is_reference("${env:1A}")
    (tmp_path / "ch.txt").write_text("s3cret-ch\n")
    resolved = secrets.resolve_document(doc, secrets.Resolver({"KAFKA_PW": "s3cret-kafka"}, base_dir=tmp_path))
    assert resolved["sink"]["connection_params"]["password"] == "s3cret-ch"
    assert doc["sink"]["connection_params"]["password"] == "${file:ch.txt}"  # a copy
    assert secrets.masker.mask("pw=s3cret-kafka, ch=s3cret-ch") == "pw=***, ch=***"
    assert secrets.fingerprint("a") == secrets.fingerprint("a") != secrets.fingerprint("b")
    assert secrets.fingerprint("a").startswith("sha256:")


def test_unresolvable_reference_names_the_reference_not_a_value(tmp_path):
    with pytest.raises(secrets.SecretError, match=r"KAFKA_PW is not set \(referenced as \$\{env:KAFKA_PW\}\)"):
        secrets.Resolver({}, base_dir=tmp_path)("${env:KAFKA_PW}")
    with pytest.raises(secrets.SecretError, match=r"missing refused .*: cannot read: no such file"):
        secrets.Resolver({}, base_dir=tmp_path)("${file:missing}")


def test_masker_masks_secrets_only_as_whole_values():
    masker = secrets.Masker()
    masker.add("abc")
    masker.add("longsecret")
    masker.add("default")
    assert masker.mask("abc abcdef xlongsecretx longsecret") == "*** abcdef xlongsecretx ***"
    assert masker.mask("resets to the server defaults; user=default") == "resets to the server defaults; user=***"


def test_masker_never_takes_a_reference_for_a_secret():
    masker = secrets.Masker()
    masker.add("${env:CLICKHOUSE_PASSWORD}")  # a live pipeline created from a file as is
    assert masker.mask('"password": "${env:CLICKHOUSE_PASSWORD}"') == '"password": "${env:CLICKHOUSE_PASSWORD}"'


def test_config_precedence_flags_env_file_defaults(tmp_path: Path):
    (tmp_path / "gftune.yaml").write_text(
        "apiVersion: gftune/v1\nkind: Config\napi: {url: http://file:1, timeout: 30s}\n"
        "metrics: {namespace: fromfile, window: 2m}\ntime_scale: 10\n")
    config, problems = load_config(tmp_path, env={"GFTUNE_API": "http://env:2", "GFTUNE_METRIC_NAMESPACE": "fromenv",
                                                   "GITHUB_REPOSITORY": "o/r"},
                                   overrides={"metric_namespace": "fromflag", "prometheus_url": None})
    assert problems == []
    assert config.api_url == "http://env:2"
    assert config.metric_namespace == "fromflag"
    assert config.api_timeout == 30.0 and config.metrics_window == 120.0
    assert config.github_repository == "o/r"
    assert config.scaled(60) == 6.0
    assert config.stop_timeout == Config().stop_timeout


def test_config_problems_are_located(tmp_path: Path):
    (tmp_path / "gftune.yaml").write_text("api:\n  url: localhost\n  timeot: 5s\nmetrics: {window: 5 minutes}\n")
    _, problems = load_config(tmp_path, env={"GFTUNE_TIME_SCALE": "fast"})
    assert [p.render() for p in problems] == [
        "gftune.yaml:2:3: api.url: must be an http:// or https:// URL",
        'gftune.yaml:3:3: api.timeot: unknown key "timeot"; did you mean timeout?',
        'gftune.yaml:4:11: metrics.window: invalid duration "5 minutes": use a Go duration such as 30s, 5m or 1h30m',
        "environment: GFTUNE_TIME_SCALE: expected a number",
    ]
