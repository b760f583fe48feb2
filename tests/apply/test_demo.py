"""`gftune demo`, the README's main command: the example repository, plan -> tune -> apply, improved.

The slow test runs the command as the quick start does and reads what it printed and left behind:
five pipelines planned (four unchanged, no drift on GlassFlow's own files), the stream-backpressure
proposal on the deduplication demo, a tune commit that changes only the proposed values of that one
file, an improved verdict, and no secret value anywhere in the output.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from gftune.commands import demo
from gftune.desired import paths, secrets
from gftune.sim import scenarios
from tests.support import apply as h

EXAMPLES = demo.examples_dir() / "pipelines"
SICK = "deduplication-demo-pipeline"


def test_adopted_spec_turns_secrets_into_references():
    live = {"pipeline_id": "p1", "metadata": {"tags": ["team:a", "gftune:commit=abc"]},
            "sources": [{"source_id": "orders", "connection_params": {"password": "kafka-pw"}}],
            "sink": {"connection_params": {"password": "ch-pw", "username": "u"}}}
    spec, env = demo.adopted_spec(live)
    assert env == {"GFTUNE_DEMO_SOURCES_ORDERS_PASSWORD": "kafka-pw", "GFTUNE_DEMO_SINK_PASSWORD": "ch-pw"}
    assert spec["sink"]["connection_params"] == {"password": "${env:GFTUNE_DEMO_SINK_PASSWORD}", "username": "u"}
    assert spec["sources"][0]["connection_params"]["password"] == "${env:GFTUNE_DEMO_SOURCES_ORDERS_PASSWORD}"
    assert spec["metadata"] == {"tags": ["team:a"]}
    assert live["sink"]["connection_params"]["password"] == "ch-pw"  # the live document is left alone


def test_demo_config_points_the_example_at_the_simulator(tmp_path):
    example = tmp_path / "gftune.yaml"
    example.write_text("# keep me\napiVersion: gftune/v1\nkind: Config\napi:\n  url: http://x:1\n"
                       "metrics:\n  prometheus: http://p:9\n  window: 5m\ntime_scale: 1\n")
    text = demo.demo_config_text(example, api_url="http://127.0.0.1:5", scrape_url="http://127.0.0.1:6/metrics",
                                 time_scale=30)
    assert text.startswith("# keep me")
    assert yaml.safe_load(text) == {"apiVersion": "gftune/v1", "kind": "Config", "api": {"url": "http://127.0.0.1:5"},
                                    "metrics": {"window": "5m", "scrape": "http://127.0.0.1:6/metrics"},
                                    "time_scale": 30}


def test_reference_values_reads_what_stands_behind_each_reference():
    spec = {"sources": [{"source_id": "a", "connection_params": {"username": "${env:KU}", "password": "${env:KP}"}}],
            "sink": {"connection_params": {"password": "${env:CP}", "host": "ch"}}}
    filled = {"sources": [{"source_id": "a", "connection_params": {"username": "u", "password": "kp"}}],
              "sink": {"connection_params": {"password": "cp", "host": "ch"}}}
    assert demo.reference_values(spec, filled) == {
        "KU": ("u", "spec.sources[0].connection_params.username"),
        "KP": ("kp", "spec.sources[0].connection_params.password"),
        "CP": ("cp", "spec.sink.connection_params.password")}
    unfilled = copy.deepcopy(filled)
    unfilled["sink"]["connection_params"]["password"] = "${env:CP}"
    with pytest.raises(Exception, match=r"no value for \$\{env:CP\} at spec.sink.connection_params.password"):
        demo.reference_values(spec, unfilled)


def _example_spec(pipeline_id: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{pipeline_id}.yaml").read_text())["spec"]


def test_the_demo_scenario_runs_the_example_files_as_they_are():
    """Only the ${env:...} references are filled in: anything else would be drift in the demo's plan."""
    scenario = scenarios.load(demo.DEFAULT_SCENARIO)
    assert sorted(p.pipeline_id for p in scenario.pipelines) == sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    env: dict[str, str] = {}
    for pipeline in scenario.pipelines:
        spec = _example_spec(pipeline.pipeline_id)
        for name, (value, _) in demo.reference_values(spec, pipeline.doc).items():
            assert env.setdefault(name, value) == value, name
        resolved = secrets.resolve_document(spec, secrets.Resolver(env, base_dir=EXAMPLES))
        join = (resolved.get("resources") or {}).pop("join", None)
        assert resolved == pipeline.doc, pipeline.pipeline_id
        assert join == pipeline.join_resources
    assert sorted(env) == ["CLICKHOUSE_PASSWORD", "CLICKHOUSE_USER", "KAFKA_PASSWORD", "KAFKA_USERNAME"]
    assert len({p.pipeline_id for p in scenario.pipelines if p.truth.get("backpressure") == 1}) == 1


def _section(out: str, start: str, end: str) -> str:
    return out[out.index(start):out.index(end)]


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(node, list):
        out = {}
        for index, value in enumerate(node):
            out.update(_leaves(value, f"{prefix}[{index}]"))
        return out
    return {prefix: node}


@pytest.mark.slow
def test_demo_ends_with_an_improved_verdict_on_the_example_repository(tmp_path):
    repo = tmp_path / "demo"
    proc = h.gftune("demo", "--time-scale", "40", "--repo", str(repo), timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for command in ("$ gftune plan", "$ gftune tune --write", "$ gftune apply --auto-approve"):
        assert command in out

    plan = _section(out, "$ gftune plan", "$ gftune tune --write")
    assert "Plan: 0 to create, 0 to update, 0 to delete, 0 blocked, 5 unchanged" in plan
    assert "1 policy proposal not in git" in plan
    healthy = sorted(p.stem for p in EXAMPLES.glob("*.yaml") if p.stem != SICK)
    assert f"= 4 unchanged: {', '.join(healthy)}" in plan
    assert re.search(rf"^= {SICK} +pipelines/{SICK}\.yaml +\[Running\] +no changes$", plan, flags=re.M), plan
    assert plan.count("? stream-backpressure proposes") == 1
    # A reviewer's ten seconds (issue 16): the proposal in at most 12 lines, its verdict paragraph naming
    # the bottleneck, the predicted effect and the cost, the readings against their thresholds, no query.
    proposal = plan[plan.index(f"= {SICK}"):plan.index("= 4 unchanged")].strip("\n")
    assert len(proposal.splitlines()) <= 12, proposal
    assert re.search(r"The sink is the bottleneck at 1\d\d% of capacity: [\d,]+/s for [\d,]+/s arriving",
                     " ".join(proposal.split())), proposal
    flat = " ".join(proposal.split())  # the paragraph wraps at the terminal's width
    assert re.search(r"Predicted: [\d,]+/s", flat) and "Cost: 1 restart" in flat and "sink pod" in flat
    assert re.search(r"^ +ingestor_backpressure +1 +>= 1 for 2m$", proposal, flags=re.M), proposal
    # the sink is saturated: full flushes (the dedup pod's output, the sink's input, is not sampled)
    assert re.search(r"^ +sink_batch_fill +[01](\.\d+)? +>= 0\.9 for 2m$", proposal, flags=re.M), proposal
    assert "query:" not in plan

    tune = _section(out, "$ gftune tune --write", "$ gftune apply --auto-approve")
    proposed = dict(re.findall(r"^    ((?:sink|resources)\.[\w.\[\]]+): (\S+) -> \S+$", tune, flags=re.M))
    assert "resources.sink.replicas" in proposed, tune
    branch = next(b.strip(" *") for b in h.git(repo, "branch", "--list").splitlines() if "gftune/tune-" in b)
    assert h.git(repo, "diff", "--name-only", "main", branch).split() == [f"pipelines/{SICK}.yaml"]
    before = yaml.safe_load(h.git(repo, "show", f"main:pipelines/{SICK}.yaml"))
    after = yaml.safe_load(h.git(repo, "show", f"{branch}:pipelines/{SICK}.yaml"))
    old, new = _leaves(before), _leaves(after)
    changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    assert changed == {f"spec.{path}" for path in proposed}, (changed, proposed)
    for path, value in proposed.items():
        assert str(paths.get(before["spec"], path)) == value
    diff = h.git(repo, "diff", "-U0", "main", branch)
    edited = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert 0 < len(edited) <= 2 * len(proposed), diff  # one line per value: comments and layout untouched

    report = out[out.index("$ gftune apply --auto-approve"):]
    assert f"{SICK}: VERIFIED" in report
    assert "Symptom metric: ingestor backpressure" in report
    assert "Verdict: improved" in report and "Next move: accept" in report
    assert "gftune apply exited 0 (applied and verified)" in out
    assert list((repo / ".gftune" / "runs").glob("*.json"))

    scenario = scenarios.load(demo.DEFAULT_SCENARIO)
    shown = {value for p in scenario.pipelines for _, value in secrets.iter_secret_fields(p.doc)}
    assert len(shown) == 2  # the ClickHouse and the Kafka password
    assert not [value for value in shown if value in out]


@pytest.mark.slow
def test_another_scenario_is_adopted_into_the_repository(tmp_path):
    repo = tmp_path / "demo"
    proc = h.gftune("demo", "--scenario", "backpressure-sink-bound", "--time-scale", "40", "--repo", str(repo),
                    timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "adopted the live pipeline(s) into pipelines/orders-backpressure.yaml" in out
    assert sorted(p.name for p in (repo / "pipelines").glob("*.yaml")) == ["orders-backpressure.yaml"]
    assert "Verdict: improved" in out
    assert h.SIM_PASSWORD not in out
