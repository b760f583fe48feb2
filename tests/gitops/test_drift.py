"""gftune drift: status drift, ignore rules and tolerance bands, attribution without tags, --reconcile,
and the tracking issue (against the simulator and the GitHub stand-in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

from gftune.desired.drift_rules import DriftRules, Tolerance, pattern_regex, rule_problems
from tests.gitops import repo as r
from tests.support.api import edit_by_hand, live, stop_by_hand

REPO = r.REPOSITORY


def test_patterns_cover_what_is_below_them():
    assert pattern_regex("resources.sink").match("resources.sink.replicas")
    assert not pattern_regex("resources.sink").match("resources.sinkhole")
    assert pattern_regex("resources.sources[*].replicas").match("resources.sources[orders].replicas")
    assert not pattern_regex("resources.sources[*].replicas").match("resources.sources[orders].memory_limit")
    assert pattern_regex("transforms[*].config.*").match("transforms[dedup:users].config.time_window")


def test_tolerance_bands():
    assert Tolerance.parse("a", "10%").within(1000, 1100) and not Tolerance.parse("a", "10%").within(1000, 1101)
    assert Tolerance.parse("a", 1).within(2, 3) and not Tolerance.parse("a", 1).within(2, 4)
    assert Tolerance.parse("a", "256Mi").within("1Gi", "1280Mi") and not Tolerance.parse("a", "256Mi").within("1Gi",
                                                                                                              "2Gi")
    assert not Tolerance.parse("a", "10%").within("fast", "slow")
    assert Tolerance.parse("a", "12.5%").amount == Fraction(1, 8)
    rules = DriftRules.from_doc({"ignore": ["status", "resources.sink.replicas"], "tolerance": {"sink.*": "5%"}})
    assert rules.ignores_status and rules.ignored("resources.sink.replicas") == "resources.sink.replicas"
    assert rules.band("sink.max_batch_size").describe() == "5%"


def test_bad_rules_are_problems_with_a_location(tmp_path):
    assert [m for _, m in rule_problems({"tolerance": {"sink.max_batch_size": "lots", "status": 1}})] == [
        "'lots' is not a number, a percentage (10%) or a quantity (256Mi)", "status has no tolerance (ignore it instead)"]
    repo = tmp_path / "repo"
    (repo / "pipelines").mkdir(parents=True)
    text = (r.ROOT / "pipelines" / "otlp-traces.yaml").read_text()
    text += "  drift:\n    ignore: [resources.sink.replicas]\n    tolerance:\n      sink.max_batch_size: -3\n"
    (repo / "pipelines" / "otlp-traces.yaml").write_text(text)
    proc = subprocess.run([sys.executable, "-m", "gftune", "validate", "--repo", str(repo)], capture_output=True,
                          text=True)
    line = len(text.splitlines())
    assert proc.returncode == 1
    assert f"pipelines/otlp-traces.yaml:{line}:" in proc.stdout + proc.stderr
    assert "tolerance cannot be negative" in proc.stdout + proc.stderr


def _gftune(*args, env):
    return subprocess.run([sys.executable, "-m", "gftune", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_drift_status_tolerance_attribution_reconcile_and_the_issue(sim_factory, standin, tmp_path):
    sim = sim_factory(r.scenario(), time_scale=20)
    api = sim.api_url
    _, dev = r.make_origin(tmp_path, r.config(api, None, settle="2s", window="4s"))
    traces = dev / "pipelines" / "otlp-traces.yaml"
    traces.write_text(traces.read_text() + "  drift:\n    tolerance:\n      sink.max_batch_size: 10%\n")
    r.commit(dev, "otlp-traces: batch size may wander 10%")
    env = {**os.environ, **r.SECRETS, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": standin.url,
           "GH_TOKEN": standin.token}
    base = r.git(dev, "rev-list", "--max-parents=0", "HEAD")  # the last commit that touched ran-5g's file

    def drift(*extra):
        proc = _gftune("drift", "--repo", str(dev), "--format", "json", *extra, env=env)
        assert proc.stdout.strip().startswith("{"), proc.stderr
        return proc.returncode, json.loads(proc.stdout), proc.stderr

    code, report, _ = drift("--github-issue")
    assert code == 0 and report["in_sync"] and standin.issues_in(REPO) == []

    batch = live(api, "otlp-traces")["sink"]["max_batch_size"]
    edit_by_hand(api, "otlp-traces", {"sink.max_batch_size": int(batch * 1.05)})  # inside its 10% band
    stop_by_hand(api, "join-demo-pipeline")  # an operator stops a pipeline
    r.edit(dev, "ran-5g-telemetry", {"sink.max_batch_size": 4321})  # git ahead of live, never applied
    r.commit(dev, "5g: bigger batches (not applied yet)")

    code, report, err = drift("--github-issue")
    entries = {e["pipeline_id"]: e for e in report["pipelines"]}
    assert code == 2, err
    assert set(entries) == {"join-demo-pipeline", "ran-5g-telemetry"}
    [stopped] = entries["join-demo-pipeline"]["fields"]
    assert (stopped["path"], stopped["git"], stopped["live"]) == ("status", "Running", "Stopped")
    assert stopped["attribution"].startswith("stopped outside gftune")
    [ahead] = entries["ran-5g-telemetry"]["fields"]
    assert ahead["attribution"] == f"git ahead, not applied since {base[:12]}" and ahead["commit"] == base
    assert any("inside its 10% tolerance" in n for n in report["notes"]["otlp-traces"])
    [issue] = standin.issues_in(REPO)
    assert issue.state == "open" and issue.user == "github-actions[bot]" and "gftune-drift" in issue.labels
    assert "join-demo-pipeline" in issue.body and "stopped outside gftune" in issue.body
    assert "issue: opened" in err

    # the API edit now leaves the band: drift, attributed though the edit wiped every gftune tag
    edit_by_hand(api, "otlp-traces", {"sink.max_batch_size": batch * 3}, metadata=False)
    code, report, err = drift("--github-issue")
    entries = {e["pipeline_id"]: e for e in report["pipelines"]}
    fields = {f["path"]: f for f in entries["otlp-traces"]["fields"]}
    assert set(fields) == {"sink.max_batch_size", "metadata.tags"}
    assert fields["sink.max_batch_size"]["attribution"] == "changed outside gftune"
    assert fields["sink.max_batch_size"]["live"] == batch * 3 and fields["metadata.tags"]["live"] == []
    assert any("no gftune tags" in n for n in entries["otlp-traces"]["notes"])
    assert "issue: updated" in err and len(standin.issues_in(REPO)) == 1
    assert "The drift changed" in standin.comments_on(REPO, issue.number)[-1].body

    code, report, err = drift("--reconcile", "--github-issue")
    assert code == 0, err
    assert report["in_sync"] and report["reconciled"]["pipelines"] == [
        "join-demo-pipeline", "otlp-traces", "ran-5g-telemetry"]
    assert live(api, "join-demo-pipeline", "/health")["overall_status"] == "Running"
    assert live(api, "ran-5g-telemetry")["sink"]["max_batch_size"] == 4321
    [issue] = standin.issues_in(REPO)
    assert issue.state == "closed" and issue.state_reason == "completed"
    assert "Back in sync" in standin.comments_on(REPO, issue.number)[-1].body
    code, report, _ = drift()
    assert code == 0
    tags = live(api, "otlp-traces")["metadata"]["tags"]
    assert "gftune:managed" in tags and f"gftune:commit={r.git(dev, 'rev-parse', 'HEAD')}" in tags
    assert all(r.PASSWORD not in b and standin.token not in b for b in standin.bodies_sent())
