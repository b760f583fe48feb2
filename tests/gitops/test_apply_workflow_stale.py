"""apply.yml when the reviewed plan went stale before the merge: refused, planned again in the pull
request's comment and kept as an artifact; re-running the job applies that new plan. A push that came
from no pull request applies nothing."""

from __future__ import annotations

import json

from tests.gitops import repo as r
from tests.support.api import edit_by_hand, live

REPO = r.REPOSITORY
WORKFLOWS = r.WORKFLOWS


def _reviewed_pull_request(standin, tmp_path, api: str, number: int):
    """A repository of three example pipelines, a pull request ``number`` (branch ``bigger``) that sets
    otlp-traces' batch size to 2,500, and its plan.yml run: (dev clone, runner)."""
    origin, dev = r.make_origin(tmp_path, r.config(api, None, settle="2s", window="4s"))
    r.allow_any_sha(origin)
    runner = r.actions_runner(standin, origin, tmp_path / "runner", {"GFTUNE_API": api})
    main = r.git(dev, "rev-parse", "main")
    r.git(dev, "checkout", "-q", "-b", "bigger")
    r.edit(dev, "otlp-traces", {"sink.max_batch_size": 2500})
    r.commit(dev, "otlp-traces: 2,500")
    head, merge = r.open_pull_request(dev, standin, number, "bigger")
    plan = r.run_plan_workflow(runner, number, "bigger", main, head, merge)["plan"]
    assert plan.status == "success", plan.log()
    return dev, runner


def test_a_stale_reviewed_plan_is_refused_replanned_and_applied_on_rerun(sim_factory, standin, tmp_path):
    sim = sim_factory(r.scenario(), time_scale=20)
    api = sim.api_url
    dev, runner = _reviewed_pull_request(standin, tmp_path, api, 7)

    # after the review, someone changes the same pipeline through the API
    edit_by_hand(api, "otlp-traces", {"sink.max_delay_time": "7s"})

    before, after = r.merge_pull_request(dev, "bigger")
    standin.merge(REPO, after, 7)
    push = {"event_name": "push", "event": {"ref": "refs/heads/main", "before": before, "after": after},
            "sha": after, "ref": "refs/heads/main"}
    jobs = {j.job: j for j in runner.run(WORKFLOWS / "apply.yml", **push)}
    refused = jobs["merged"]
    assert refused.status == "failure"
    assert refused.step("apply the plan reviewed").exit_code == 1
    assert live(api, "otlp-traces")["sink"]["max_batch_size"] == 1000
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
    sink = live(api, "otlp-traces")["sink"]
    assert sink["max_batch_size"] == 2500 and sink["max_delay_time"] != "7s"
    [comment] = [c for c in standin.comments_on(REPO, 7) if c.user == standin.user]
    assert "gftune apply: 1 verified" in comment.body.split("Earlier in this pull request")[0]
    assert json.loads(_first(replan.data))["pipelines"][0]["pipeline_id"] == "otlp-traces"


def test_a_push_from_no_pull_request_applies_nothing(sim_factory, standin, tmp_path):
    sim = sim_factory(r.scenario(), time_scale=20)
    origin, dev = r.make_origin(tmp_path, r.config(sim.api_url, None))
    r.allow_any_sha(origin)
    runner = r.actions_runner(standin, origin, tmp_path / "runner", {"GFTUNE_API": sim.api_url})
    before = r.git(dev, "rev-parse", "HEAD")
    r.edit(dev, "otlp-traces", {"sink.max_batch_size": 2500})
    after = r.commit(dev, "straight to main")
    r.git(dev, "push", "-q", "origin", "main")
    jobs = {j.job: j for j in runner.run(WORKFLOWS / "apply.yml", event_name="push",
                                         event={"ref": "refs/heads/main", "before": before, "after": after},
                                         sha=after, ref="refs/heads/main")}
    step = jobs["merged"].step("apply the plan reviewed")
    assert step.exit_code == 1 and "came from no pull request, so no plan was reviewed" in step.stderr
    assert live(sim.api_url, "otlp-traces")["sink"]["max_batch_size"] == 1000


def _first(data: bytes) -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(archive.namelist()[0])


def test_a_workflow_without_the_permission_it_needs_fails_as_on_github(sim_factory, standin, tmp_path):
    """Each job's GITHUB_TOKEN has exactly the workflow's `permissions:`: without `actions: read` the
    reviewed plan cannot be downloaded, and the job says which token lacks what."""
    sim = sim_factory(r.scenario(), time_scale=20)
    dev, runner = _reviewed_pull_request(standin, tmp_path, sim.api_url, 3)
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
    assert live(sim.api_url, "otlp-traces")["sink"]["max_batch_size"] == 1000
