"""--changed-since: what a branch changed is planned, everything else is left alone and said to be."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gftune.gitrepo import GitError, changed_files
from gftune.plan.changes import ChangedFile, select_changed
from tests.gitops import repo as r
from tests.support.api import edit_by_hand, live, stop_by_hand


def test_selection_from_changed_files():
    pipelines = {"orders": ("pipelines/orders.yaml", {"team": "payments"}),
                 "clicks": ("pipelines/clicks.yaml", {"team": "web"}),
                 "views": ("pipelines/views.yaml", {"team": "web"})}
    files = [ChangedFile("pipelines/orders.yaml", "modified"), ChangedFile("pipelines/gone.yaml", "deleted"),
             ChangedFile("policies/web-batch.yaml", "modified"), ChangedFile("gftune.yaml", "modified")]

    def web(pid, labels):
        return labels.get("team") == "web" and pid != "views"

    selection = select_changed("origin/main", "abc123", files, pipelines, {"policies/web-batch.yaml": [web]})
    assert selection.selected == {"orders": ["pipelines/orders.yaml modified"],
                                  "clicks": ["policy web-batch modified"]}
    assert selection.deleted == ["gone"] and selection.left_alone == ["views"] and selection.settings_changed
    assert selection.ids == ["clicks", "gone", "orders"]
    text = selection.summary()
    assert "left alone (not changed): 1 (views)" in text and "deleted in git: gone" in text
    again = type(selection).from_dict(json.loads(json.dumps(selection.to_dict())))
    assert again == selection
    nothing = select_changed("main", "abc", [ChangedFile("README.md", "modified")], pipelines, {})
    assert nothing.ids == [] and nothing.left_alone == ["clicks", "orders", "views"]


def test_changed_files_since_the_merge_base(tmp_path):
    _, dev = r.make_origin(tmp_path, {"apiVersion": "gftune/v1", "kind": "Config"},
                           policies=("stream-backpressure",))
    r.git(dev, "checkout", "-q", "-b", "feature")
    r.edit(dev, "otlp-traces", {"sink.max_batch_size": 20000})
    (dev / "pipelines" / "join-demo-pipeline.yaml").unlink()
    (dev / "docs.md").write_text("not desired state\n")
    r.commit(dev, "branch work")
    r.git(dev, "checkout", "-q", "main")  # main moves on after the branch left it
    r.edit(dev, "ran-5g-telemetry", {"sink.max_batch_size": 123})
    r.commit(dev, "another change on main")
    r.git(dev, "checkout", "-q", "feature")
    (dev / "policies" / "stream-backpressure.yaml").write_text(
        (dev / "policies" / "stream-backpressure.yaml").read_text() + "\n# unstaged edit\n")
    (dev / "pipelines" / "new-one.yaml").write_text("untracked: yes\n")
    found = changed_files(dev, "main")
    assert found.base == r.git(dev, "merge-base", "main", "feature")
    assert {(f.path, f.status) for f in found.files} == {
        ("pipelines/otlp-traces.yaml", "modified"), ("pipelines/join-demo-pipeline.yaml", "deleted"),
        ("policies/stream-backpressure.yaml", "modified"), ("pipelines/new-one.yaml", "added")}
    deleted = next(f for f in found.files if f.status == "deleted")
    assert "pipeline_id: join-demo-pipeline" in (deleted.old_text or "")
    with pytest.raises(GitError, match="unknown git ref"):
        changed_files(dev, "no-such-branch")


def _gftune(*args, env):
    return subprocess.run([sys.executable, "-m", "gftune", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_plan_changed_since_plans_only_the_branch(sim_factory, tmp_path):
    sim = sim_factory(r.scenario(), time_scale=20)
    _, dev = r.make_origin(tmp_path, r.config(sim.api_url, None))
    env = {**__import__("os").environ, **r.SECRETS}
    assert _gftune("plan", "--repo", str(dev), env=env).returncode == 0  # git = live to begin with
    r.git(dev, "checkout", "-q", "-b", "bigger-batches")
    r.edit(dev, "otlp-traces", {"sink.max_batch_size": 20000})
    (dev / "pipelines" / "join-demo-pipeline.yaml").unlink()
    r.commit(dev, "otlp: bigger batches; retire the join demo")
    # an edit made through the API to another pipeline: not this branch's business
    edit_by_hand(sim.api_url, "ran-5g-telemetry", {"sink.max_batch_size": 777})

    proc = _gftune("plan", "--repo", str(dev), "--changed-since", "main", "--format", "json", env=env)
    assert proc.returncode == 2, proc.stderr
    plan = json.loads(proc.stdout)
    assert [(p["pipeline_id"], p["action"]) for p in plan["pipelines"]] == [("otlp-traces", "update")]
    assert plan["selection"]["left_alone"] == ["ran-5g-telemetry"]
    assert plan["selection"]["deleted"] == ["join-demo-pipeline"]
    assert "gftune.yaml" in plan["sources"] and plan["digest"]["desired"]  # the documents: in the digest
    text = _gftune("plan", "--repo", str(dev), "--changed-since", "main", env=env)
    assert "left alone (not changed): 1 (ran-5g-telemetry)" in text.stdout
    # the whole repository would also undo the API edit (and cannot delete what gftune never created)
    everything = json.loads(_gftune("plan", "--repo", str(dev), "--format", "json", env=env).stdout)
    assert {p["pipeline_id"] for p in everything["pipelines"] if p["action"] == "update"} == {
        "otlp-traces", "ran-5g-telemetry"}
    bad = _gftune("plan", "--repo", str(dev), "--changed-since", "nope", env=env)
    assert bad.returncode == 1 and "unknown git ref 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_drift_and_apply_changed_since_look_only_at_the_branch(sim_factory, tmp_path):
    sim = sim_factory(r.scenario(), time_scale=20)
    _, dev = r.make_origin(tmp_path, r.config(sim.api_url, None, settle="2s", window="4s"))
    env = {**__import__("os").environ, **r.SECRETS}
    r.git(dev, "checkout", "-q", "-b", "batches")
    r.edit(dev, "otlp-traces", {"sink.max_batch_size": 2500})
    r.commit(dev, "otlp-traces: 2,500")
    stop_by_hand(sim.api_url, "join-demo-pipeline")
    proc = _gftune("drift", "--repo", str(dev), "--changed-since", "main", "--format", "json", env=env)
    report = json.loads(proc.stdout)
    assert proc.returncode == 2 and [e["pipeline_id"] for e in report["pipelines"]] == ["otlp-traces"]
    assert report["selection"]["left_alone"] == ["join-demo-pipeline", "ran-5g-telemetry"]
    assert "join-demo-pipeline" in json.loads(_gftune("drift", "--repo", str(dev), "--format", "json",
                                                      env=env).stdout)["pipelines"][0]["pipeline_id"]
    applied = _gftune("apply", "--repo", str(dev), "--auto-approve", "--changed-since", "main", "--format", "json",
                      env=env)
    assert applied.returncode == 0, applied.stderr
    assert [p["pipeline_id"] for p in json.loads(applied.stdout)["pipelines"]] == ["otlp-traces"]
    assert live(sim.api_url, "join-demo-pipeline", "/health")["overall_status"] == "Stopped"  # left alone
    usage = _gftune("apply", "--repo", str(dev), str(tmp_path / "plan.json"), "--changed-since", "main", env=env)
    assert usage.returncode != 0 and "goes with --auto-approve" in usage.stderr and "Traceback" not in usage.stderr
