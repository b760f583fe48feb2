"""apply.yml when the reviewed plan went stale before the merge: refused, planned again in the pull
request's comment and kept as an artifact; re-running the job applies that new plan. A push that came
from no pull request applies nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.gitops import repo as r
from tests.gitops.actions import ActionsRunner
from tests.support.api import wait_status
from tests.support.github_standin import GitHubStandIn

REPO = "acme/pipelines"
WORKFLOWS = r.ROOT / ".github" / "workflows"


@pytest.fixture
def standin():
    server = GitHubStandIn().start()
    yield server
    server.stop()


def test_a_stale_reviewed_plan_is_refused_replanned_and_applied_on_rerun(sim_factory, standin, tmp_path):
    sim = sim_factory(r.scenario(), time_scale=20)
    api = sim.api_url
    origin, dev = r.make_origin(tmp_path, r.config(api, None, settle="2s", window="4s"))
    r.allow_any_sha(origin)
    runner = ActionsRunner(standin=standin, repository=REPO, origin=origin, action_dir=r.ROOT,
                           tools=Path(sys.executable).parent, scratch=tmp_path / "runner",
                           vars={"GFTUNE_API": api}, secrets=dict(r.SECRETS))
    main = r.git(dev, "rev-parse", "main")
    r.git(dev, "checkout", "-q", "-b", "bigger")
    r.edit(dev, "otlp-traces", {"sink.max_batch_size": 2500})
    r.commit(dev, "otlp-traces: 2,500")
    head, merge = r.push_pull_request(dev, 7, "bigger")
    standin.open_pull(REPO, 7, head_sha=head, head_ref="bigger")
    [plan] = runner.run(WORKFLOWS / "plan.yml", event_name="pull_request",
                        event=r.pull_request_event(7, head, "bigger", main, "opened"), sha=merge, ref="refs/pull/7/merge")
    assert plan.status == "success", plan.log()

    # after the review, someone changes the same pipeline through the API
    doc = httpx.get(f"{api}/api/v1/pipeline/otlp-traces", timeout=10).json()
    doc["sink"]["max_delay_time"] = "7s"
    httpx.post(f"{api}/api/v1/pipeline/otlp-traces/stop", timeout=10).raise_for_status()
    wait_status(api, "otlp-traces", "Stopped")
    httpx.post(f"{api}/api/v1/pipeline/otlp-traces/edit", json=doc, timeout=10).raise_for_status()
    wait_status(api, "otlp-traces", "Running")

    before, after = r.merge_pull_request(dev, "bigger")
    standin.merge(REPO, after, 7)
    push = {"event_name": "push", "event": {"ref": "refs/heads/main", "before": before, "after": after},
            "sha": after, "ref": "refs/heads/main"}
    jobs = {j.job: j for j in runner.run(WORKFLOWS / "apply.yml", **push)}
    refused = jobs["merged"]
    assert refused.status == "failure"
    assert refused.step("apply the plan reviewed").exit_code == 1
    assert httpx.get(f"{api}/api/v1/pipeline/otlp-traces", timeout=10).json()["sink"]["max_batch_size"] == 1000
    [comment] = [c for c in standin.comments_on(REPO, 7) if c.user == standin.user]
    report = comment.body.split("Earlier in this pull request")[0]
    assert "the reviewed plan is stale, nothing was applied" in report
    assert "live configuration changed since the plan was made" in report
    assert "sink.max_delay_time" in report  # the new plan puts git's value back, and says so
    [replan] = [a for a in standin.artifacts.values() if a.run_id == refused.run_id and a.name == "gftune-replan"]

    # re-running the job applies the plan that is now in the comment
    rerun = {j.job: j for j in runner.run(WORKFLOWS / "apply.yml", **push)}["merged"]
    assert rerun.status == "success", rerun.log()
    assert f"run {refused.run_id} (artifact gftune-replan)" in rerun.log()
    live = httpx.get(f"{api}/api/v1/pipeline/otlp-traces", timeout=10).json()
    assert live["sink"]["max_batch_size"] == 2500 and live["sink"]["max_delay_time"] != "7s"
    [comment] = [c for c in standin.comments_on(REPO, 7) if c.user == standin.user]
    assert "gftune apply: 1 verified" in comment.body.split("Earlier in this pull request")[0]
    assert json.loads(_first(replan.data))["pipelines"][0]["pipeline_id"] == "otlp-traces"


def test_a_push_from_no_pull_request_applies_nothing(sim_factory, standin, tmp_path):
    sim = sim_factory(r.scenario(), time_scale=20)
    origin, dev = r.make_origin(tmp_path, r.config(sim.api_url, None))
    r.allow_any_sha(origin)
    runner = ActionsRunner(standin=standin, repository=REPO, origin=origin, action_dir=r.ROOT,
                           tools=Path(sys.executable).parent, scratch=tmp_path / "runner",
                           vars={"GFTUNE_API": sim.api_url}, secrets=dict(r.SECRETS))
    before = r.git(dev, "rev-parse", "HEAD")
    r.edit(dev, "otlp-traces", {"sink.max_batch_size": 2500})
    after = r.commit(dev, "straight to main")
    r.git(dev, "push", "-q", "origin", "main")
    jobs = {j.job: j for j in runner.run(WORKFLOWS / "apply.yml", event_name="push",
                                         event={"ref": "refs/heads/main", "before": before, "after": after},
                                         sha=after, ref="refs/heads/main")}
    step = jobs["merged"].step("apply the plan reviewed")
    assert step.exit_code == 1 and "came from no pull request, so no plan was reviewed" in step.stderr
    assert httpx.get(f"{sim.api_url}/api/v1/pipeline/otlp-traces", timeout=10).json()["sink"]["max_batch_size"] == 1000


def _first(data: bytes) -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(archive.namelist()[0])


def test_a_workflow_without_the_permission_it_needs_fails_as_on_github(sim_factory, standin, tmp_path):
    """Each job's GITHUB_TOKEN has exactly the workflow's `permissions:`: without `actions: read` the
    reviewed plan cannot be downloaded, and the job says which token lacks what."""
    sim = sim_factory(r.scenario(), time_scale=20)
    origin, dev = r.make_origin(tmp_path, r.config(sim.api_url, None, settle="2s", window="4s"))
    r.allow_any_sha(origin)
    runner = ActionsRunner(standin=standin, repository=REPO, origin=origin, action_dir=r.ROOT,
                           tools=Path(sys.executable).parent, scratch=tmp_path / "runner",
                           vars={"GFTUNE_API": sim.api_url}, secrets=dict(r.SECRETS))
    main = r.git(dev, "rev-parse", "main")
    r.git(dev, "checkout", "-q", "-b", "bigger")
    r.edit(dev, "otlp-traces", {"sink.max_batch_size": 2500})
    r.commit(dev, "otlp-traces: 2,500")
    head, merge = r.push_pull_request(dev, 3, "bigger")
    standin.open_pull(REPO, 3, head_sha=head, head_ref="bigger")
    [plan] = runner.run(WORKFLOWS / "plan.yml", event_name="pull_request",
                        event=r.pull_request_event(3, head, "bigger", main, "opened"), sha=merge, ref="refs/pull/3/merge")
    assert plan.status == "success", plan.log()
    crippled = tmp_path / "apply.yml"
    text = (WORKFLOWS / "apply.yml").read_text()
    assert "  actions: read" in text
    crippled.write_text("\n".join(line for line in text.splitlines() if not line.startswith("  actions: read")))
    before, after = r.merge_pull_request(dev, "bigger")
    standin.merge(REPO, after, 3)
    jobs = {j.job: j for j in runner.run(crippled, event_name="push", sha=after, ref="refs/heads/main",
                                         event={"ref": "refs/heads/main", "before": before, "after": after})}
    step = jobs["merged"].step("apply the plan reviewed")
    assert step.exit_code == 1
    assert "Resource not accessible by integration" in step.stderr and "GH_TOKEN lacks a permission" in step.stderr
    assert httpx.get(f"{sim.api_url}/api/v1/pipeline/otlp-traces", timeout=10).json()["sink"]["max_batch_size"] == 1000
