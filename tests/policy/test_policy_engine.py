"""The policy language and its evaluation on recorded signal values (no servers)."""

from __future__ import annotations

import copy
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gftune.cli import cli
from gftune.desired.repo import PolicyFile
from gftune.desired.yamlio import load_yaml_text
from gftune.plan import tags
from gftune.policy.actions import expand_path
from gftune.policy.arbitrate import evaluate_pipeline
from gftune.policy.evaluate import evaluate
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import PolicyError, parse_policy, parse_policy_file
from gftune.policy.testing import TEST_PIPELINE
from gftune.policy.views import FixtureView

ROOT = Path(__file__).resolve().parents[2]


def policy(name: str = "p", *, when=None, then=None, **spec) -> dict:
    body = {"when": when or [{"signal": "sink_input_ratio", "op": "<", "value": 0.9}],
            **({"then": then} if then is not None else {}), **spec}
    if "then" not in body and "escalate" not in body:
        body["then"] = [{"add": "resources.sink.replicas", "value": 1}]
    return {"apiVersion": "gftune/v1", "kind": "TuningPolicy", "metadata": {"name": name}, "spec": body}


def facts(**kw) -> PipelineFacts:
    return PipelineFacts("p1", copy.deepcopy(kw.pop("doc", TEST_PIPELINE)), **kw)


def test_semantic_errors_point_at_the_line():
    text = """apiVersion: gftune/v1
kind: TuningPolicy
metadata: {name: bad}
spec:
  when:
    - signal: sink_rte
      op: "<"
      value: 1
  then:
    - {multiply: sink.max_batch_size, by: 2}
"""
    doc, locations = load_yaml_text(text, display="policies/bad.yaml")
    policy, problems = parse_policy_file(PolicyFile("bad", Path("policies/bad.yaml"), doc, locations, "policies/bad.yaml"))
    assert policy is None
    assert len(problems) == 1
    assert problems[0].render().startswith("policies/bad.yaml:6:")
    assert "unknown signal 'sink_rte'" in problems[0].message and "sink_rate" in problems[0].message


@pytest.mark.parametrize("spec, message", [
    ({"escalate": {"reason": "r", "next_step": "n"}, "then": [{"set": "sink.max_batch_size", "value": 1}]},
     "either escalates"),
    ({"then": [{"multiply": "sink.max_batch_size", "by": 2, "factor": 3}]}, "unknown key(s) factor"),
    ({"then": [{"scale_to_fit": "everything"}]}, "scale_to_fit stages"),
    ({"when": [{"signal": "sink_rate", "op": "<", "value": "field sink.max_batch_size"}]}, "cannot read"),
    ({"when": [{"signal": "sink_rate", "op": "<", "value": 1, "for": "2 minutes"}]}, "invalid duration"),
    ({"when": [{"signal": "sink_rate", "promql": "up", "op": "<", "value": 1}]}, "exactly one of"),
    ({"verify": {"expect": [{"signal": "sink_rate", "op": ">=", "value": "baseline * x"}]}}, "cannot read"),
])
def test_bad_policies_are_refused_with_a_reason(spec, message):
    doc = policy()
    doc["spec"].update(spec)
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_policy(doc)


def test_threshold_references_and_evidence():
    p = parse_policy(policy(when=[{"signal": "sink_batch_p95", "op": ">=", "value": "field:sink.max_batch_size * 0.95"}],
                            then=[{"multiply": "sink.max_batch_size", "by": 4, "max": 3000}]))
    result = evaluate(p, facts(), FixtureView({"sink_batch_p95": 955}))
    assert result.proposal is not None
    assert [(c.path, c.old, c.new) for c in result.proposal.changes] == [("sink.max_batch_size", 1000, 3000)]
    evidence = result.proposal.evidence[0]
    assert evidence.measured == 955 and "sink.max_batch_size (1000) x 0.95 = 950" in evidence.threshold
    assert any("limited to max 3000" in n for n in result.proposal.notes)
    assert evaluate(p, facts(), FixtureView({"sink_batch_p95": 900})).proposal is None


def test_unknown_signals_never_propose_and_are_named():
    p = parse_policy(policy())
    result = evaluate(p, facts(), FixtureView({}))
    assert result.proposal is None and result.incomplete
    assert "sink_input_ratio (unknown: no data in the fixture)" in result.notes[0]


def test_for_needs_the_whole_duration():
    p = parse_policy(policy(when=[{"signal": "ingestor_backpressure", "op": ">=", "value": 1, "for": "2m"}]))
    held = FixtureView({}, {"ingestor_backpressure": [[0, 1], [60, 1], [120, 1]]})
    short = FixtureView({}, {"ingestor_backpressure": [[60, 1], [120, 1]]})
    broken = FixtureView({}, {"ingestor_backpressure": [[0, 1], [60, 0], [120, 1]]})
    assert evaluate(p, facts(), held).proposal is not None
    assert evaluate(p, facts(), short).proposal is None
    assert evaluate(p, facts(), broken).proposal is None


def test_max_step_and_percentages():
    p = parse_policy(policy(then=[{"multiply": "resources.sink.replicas", "by": 10, "max_step": 2},
                                  {"multiply": "resources.sink.limits.memory", "by": 4, "max_step": "50%"}]))
    result = evaluate(p, facts(), FixtureView({"sink_input_ratio": 0.5}))
    changes = {c.path: c.new for c in result.proposal.changes}
    assert changes == {"resources.sink.replicas": 3, "resources.sink.limits.memory": "2304Mi"}


def test_higher_priority_claims_a_field_and_escalations_withhold_proposals():
    high = parse_policy(policy("high", priority=10, then=[{"set": "resources.sink.replicas", "value": 4}]))
    low = parse_policy(policy("low", then=[{"set": "resources.sink.replicas", "value": 2},
                                          {"set": "sink.max_delay_time", "value": "2s"}]))
    view = FixtureView({"sink_input_ratio": 0.5})
    outcome = evaluate_pipeline([low, high], facts(), view)
    assert [(p.policy, [c.path for c in p.changes]) for p in outcome.proposals] == [
        ("high", ["resources.sink.replicas"]), ("low", ["sink.max_delay_time"])]
    stop = parse_policy(policy("stop", escalate={"reason": "data loss", "next_step": "debug it"}))
    outcome = evaluate_pipeline([low, high, stop], facts(), view)
    assert outcome.proposals == [] and [e.policy for e in outcome.escalations] == ["stop"]
    assert any("withheld while stop escalates" in n for n in outcome.notes)


def test_cooldown_after_a_change_but_not_after_creation():
    p = parse_policy(policy(cooldown="30m"))
    view = FixtureView({"sink_input_ratio": 0.5})
    recent = facts(last_change=view.at - timedelta(minutes=5))
    result = evaluate(p, recent, view)
    assert result.proposal is None and "cooldown 30m active until" in result.notes[0]
    assert evaluate(p, facts(last_change=view.at - timedelta(hours=1)), view).proposal is not None
    assert evaluate(p, facts(last_change=None), view).proposal is not None
    ahead = evaluate(p, facts(last_change=view.at + timedelta(hours=2)), view)
    assert ahead.proposal is not None and "ahead of this machine's clock" in ahead.notes[0]


def test_a_reverted_policy_backs_off_for_four_cooldowns_scaled_by_time_scale():
    from gftune.desired.config import Config

    p = parse_policy(policy("sink-batch", cooldown="15m"))
    view = FixtureView({"sink_input_ratio": 0.5})
    written = tags.with_reverted(["gftune:managed", tags.reverted_tag("other", view.at)], ["sink-batch"],
                                 view.at - timedelta(minutes=20))
    reverted = tags.reverted_policies(written)
    assert set(reverted) == {"other", "sink-batch"}
    result = evaluate(p, facts(reverted=reverted), view)  # 20 min ago: past the cooldown, within 4 x 15m
    assert result.proposal is None
    assert result.notes == [f"sink-batch: its change was reverted at {(view.at - timedelta(minutes=20)).isoformat()} "
                            f"(regressed); backing off until {(view.at + timedelta(minutes=40)).isoformat()}: "
                            "cooldown 4 x 15m active after a revert; no change proposed"]
    assert evaluate(p, facts(reverted={"sink-batch": view.at - timedelta(minutes=61)}), view).proposal is not None
    assert evaluate(p, facts(reverted={"other": view.at}), view).proposal is not None  # another policy's revert
    # a time-scaled simulator: 4 x 15m of model time is 3 min of wall time at time_scale 20
    fast = Config(time_scale=20)
    assert evaluate(p, facts(reverted={"sink-batch": view.at - timedelta(minutes=2)}), view, fast).proposal is None
    assert evaluate(p, facts(reverted={"sink-batch": view.at - timedelta(minutes=4)}), view, fast).proposal


def test_revert_tags_stay_one_per_policy_and_ignore_the_unreadable():

    early, late = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    written = tags.with_reverted(["user", tags.reverted_tag("a", early), "gftune:reverted=b@not-a-time"],
                                 ["a"], late)
    assert written == ["user", "gftune:reverted=b@not-a-time", "gftune:reverted=a@2025-01-02T03:04:05Z"]
    assert tags.reverted_policies(written) == {"a": late}
    assert tags.reverted_policies([tags.reverted_tag("a", late), tags.reverted_tag("a", early)]) == {
        "a": late}


def test_no_match_says_so_and_names_a_visible_symptom():
    p = parse_policy(policy())
    calm = evaluate_pipeline([p], facts(), FixtureView({"sink_input_ratio": 1.0}))
    assert calm.notes[-1] == "no policy matched"
    symptom = evaluate_pipeline([p], facts(), FixtureView({"sink_input_ratio": 1.0, "ingestor_backpressure": 1}))
    assert "not guessing" in symptom.notes[-1] and "ingestor backpressure active" in symptom.notes[-1]


def test_raw_promql_and_field_conditions():
    p = parse_policy(policy(when=[{"promql": "rate({prefix}x[{window}])", "op": ">", "value": 2},
                                  {"field": "resources.sources[*].limits.cpu", "op": ">=", "value": 1}]))
    assert evaluate(p, facts(), FixtureView({}, promql={"rate({prefix}x[{window}])": 3})).proposal is not None
    starved = copy.deepcopy(TEST_PIPELINE)
    starved["resources"]["sources"][0]["limits"]["cpu"] = "250m"
    assert evaluate(p, facts(doc=starved), FixtureView({}, promql={"rate({prefix}x[{window}])": 3})).proposal is None


def test_wildcards_expand_over_the_pipeline():
    doc = {"sources": [{"type": "kafka", "source_id": "a"}, {"type": "kafka", "source_id": "b"}],
           "transforms": [{"type": "dedup", "source_id": "a", "config": {}}, {"type": "filter", "source_id": "a"}]}
    assert expand_path("resources.sources[*].replicas", doc) == ["resources.sources[a].replicas",
                                                                 "resources.sources[b].replicas"]
    assert expand_path("transforms[dedup:*].config.time_window", doc) == ["transforms[dedup:a].config.time_window"]
    assert expand_path("resources.transform[*].replicas", doc) == ["resources.transform[a].replicas"]


def _repo(tmp_path: Path, policies: dict[str, dict]) -> Path:
    (tmp_path / "policies").mkdir(parents=True)
    for name, doc in policies.items():
        (tmp_path / "policies" / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp_path


def test_policy_test_command(tmp_path: Path):
    passing = policy("ok")
    passing["tests"] = [{"name": "proposes", "signals": {"sink_input_ratio": 0.5},
                         "expect": {"values": {"resources.sink.replicas": 2}}}]
    failing = copy.deepcopy(passing)
    failing["metadata"]["name"] = "wrong"
    failing["tests"][0]["expect"] = {"values": {"resources.sink.replicas": 5}}
    runner = CliRunner()
    repo = _repo(tmp_path / "a", {"ok": passing})
    assert runner.invoke(cli, ["policy", "test", "--repo", str(repo), "--require-tests"]).exit_code == 0
    repo = _repo(tmp_path / "b", {"ok": passing, "wrong": failing})
    result = runner.invoke(cli, ["policy", "test", "--repo", str(repo)])
    assert result.exit_code == 1 and "FAIL wrong: proposes" in result.output
    assert "resources.sink.replicas: expected 5, proposed 2" in result.output
    untested = policy("untested")
    repo = _repo(tmp_path / "c", {"ok": passing, "untested": untested})
    assert runner.invoke(cli, ["policy", "test", "--repo", str(repo)]).exit_code == 0
    result = runner.invoke(cli, ["policy", "test", "--repo", str(repo), "--require-tests"])
    assert result.exit_code == 1 and "untested: (no tests)" in result.output
    empty = _repo(tmp_path / "d", {"untested": untested})
    result = runner.invoke(cli, ["policy", "test", "--repo", str(empty), "--require-tests"])
    assert result.exit_code == 1 and "no policy tests were executed" in result.output


def test_built_in_policies_pass_their_tests(tmp_path: Path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "policies", repo / "policies")
    result = CliRunner().invoke(cli, ["policy", "test", "--repo", str(repo), "--require-tests", "--format", "json"])
    assert result.exit_code == 0, result.output
    import json
    report = json.loads(result.stdout)
    assert {r["policy"] for r in report["results"]} == {p.stem for p in (ROOT / "policies").glob("*.yaml")}
    assert all(r["passed"] for r in report["results"]) and len(report["results"]) >= 16


def test_validate_reports_policy_problems_with_locations(tmp_path: Path):
    bad = policy("bad", when=[{"signal": "sink_rate", "op": "<", "value": "signal:nope * 2"}])
    repo = _repo(tmp_path, {"bad": bad})
    (repo / "pipelines").mkdir()
    result = CliRunner().invoke(cli, ["validate", "--repo", str(repo), "--allow-empty"])
    assert result.exit_code == 1
    assert "policies/bad.yaml:" in result.output and "unknown signal 'nope'" in result.output


def test_datetimes_are_aware():
    assert FixtureView({}).at.tzinfo is UTC and datetime.now(UTC) > FixtureView({}).at


def test_set_and_add_keep_the_fields_kind():
    p = parse_policy(policy(then=[{"add": "resources.sink.limits.memory", "value": "512Mi"},
                                  {"add": "sink.max_delay_time", "value": "30s"},
                                  {"set": "resources.sink.limits.cpu", "value": "2500m"},
                                  {"set": "resources.sources[*].replicas", "value": "constraint:partitions"}]))
    result = evaluate(p, facts(constraints={"partitions": 4}), FixtureView({"sink_input_ratio": 0.5}))
    assert {c.path: c.new for c in result.proposal.changes} == {
        "resources.sink.limits.memory": "2Gi", "sink.max_delay_time": "31s", "resources.sink.limits.cpu": "2500m",
        "resources.sources[orders].replicas": 4}
    with pytest.raises(PolicyError, match="cannot add 'lots'"):
        parse_policy(policy(then=[{"add": "resources.sink.limits.memory", "value": "lots"}]))
