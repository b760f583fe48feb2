"""The shipped workflows, end to end, in order: what GitHub would run for a team, against the
simulator, a real Prometheus and the GitHub stand-in.

The runner (tests/gitops/actions.py) reads .github/workflows/*.yml and action.yml and runs their
steps as GitHub does; gftune is the test's own (the action's `install` step is provided). So this
test fails when a workflow stops doing what it checks:

1. a pull request that changes one of three pipelines (next to an edit made through the API on
   another one) plans only that pipeline: one PR comment, the job summary, the plan as an artifact;
   a second push updates that comment in place;
2. the merge applies exactly the reviewed plan and reports on the merged pull request;
3. a pull request that adds a pipeline is applied by a `/gftune apply` comment before the merge and
   ends verified (Running, records flowing); its merge then finds nothing left to apply;
4. the nightly drift run sees the API edit, an edit that wiped gftune's tags and an operator's stop,
   each attributed, but not a value inside its tolerance band; it opens the tracking issue;
5. drift with `reconcile` puts git's state back and closes the issue; the next drift exits 0.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.gitops import repo as r
from tests.support.api import edit_by_hand, live, stop_by_hand
from tests.support.github_standin import GitHubStandIn

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

REPO = r.REPOSITORY
WORKFLOWS = r.WORKFLOWS
SCALE = 20
# three of this repository's example pipelines: two read Kafka, one is fed over OTLP
E2E = ("fraud-detection-logins-tested", "join-demo-pipeline", "otlp-traces")


def _ours(standin: GitHubStandIn, number: int) -> list:
    return [c for c in standin.comments_on(REPO, number) if c.user == standin.user]


def test_the_workflows_end_to_end(sim_factory, prometheus_factory, standin, tmp_path):
    sim = sim_factory(r.scenario(E2E), time_scale=SCALE)
    api = sim.api_url
    prometheus = prometheus_factory(sim)
    origin, dev = r.make_origin(tmp_path, r.config(api, prometheus.url, time_scale=SCALE, settle="20s",
                                                   window="60s"), pipelines=E2E)
    r.allow_any_sha(origin)
    standin.register_git_remote(REPO, origin)
    runner = r.actions_runner(standin, origin, tmp_path / "runner",
                              {"GFTUNE_API": api, "GFTUNE_PROMETHEUS": prometheus.url},
                              secrets={**r.SECRETS, "UNRELATED_SECRET": "not-for-gftune-0042"})

    def run(workflow: str, **kwargs):
        jobs = runner.run(WORKFLOWS / workflow, **kwargs)
        return {j.job: j for j in jobs}

    # the install step the test provides is the action's own, from its ref
    action = (r.ROOT / "action.yml").read_text()
    assert 'spec="${GFTUNE_INSTALL:-$GITHUB_ACTION_PATH}"' in action

    # -- 1. a pull request that changes one of three pipelines --------------------------------------
    batch = live(api, "join-demo-pipeline")["sink"]["max_batch_size"]
    edit_by_hand(api, "join-demo-pipeline", {"sink.max_batch_size": batch + 500})  # someone's edit via the API
    main = r.git(dev, "rev-parse", "main")
    r.git(dev, "checkout", "-q", "-b", "bigger-batches")
    r.edit(dev, "fraud-detection-logins-tested", {"sink.max_batch_size": 2000})
    r.commit(dev, "fraud detection: batches of 2,000")
    head, merge = r.open_pull_request(dev, standin, 1, "bigger-batches")
    plan_job = r.run_plan_workflow(runner, 1, "bigger-batches", main, head, merge)["plan"]
    assert plan_job.status == "success", plan_job.log()
    assert plan_job.step("plan what this pull request changed").exit_code == 0
    assert "secrets exported for the pipeline files: CLICKHOUSE_PASSWORD" in plan_job.log()
    [comment] = _ours(standin, 1)
    assert "fraud-detection-logins-tested" in comment.body
    assert "left alone (not changed): 2 (join-demo-pipeline, otlp-traces)" in comment.body
    assert "left alone" in plan_job.summary and "fraud-detection-logins-tested" in plan_job.summary
    [artifact] = [a for a in standin.artifacts.values() if a.run_id == plan_job.run_id]
    planned = json.loads(_member(artifact.data, "plan.json"))
    assert [(p["pipeline_id"], p["action"]) for p in planned["pipelines"]] == [
        ("fraud-detection-logins-tested", "update")]

    r.edit(dev, "fraud-detection-logins-tested", {"sink.max_batch_size": 3000})  # review: make it 3,000
    r.commit(dev, "fraud detection: batches of 3,000")
    head, merge = r.push_pull_request(dev, 1, "bigger-batches")
    standin.update_pull_head(REPO, 1, head)
    jobs = r.run_plan_workflow(runner, 1, "bigger-batches", main, head, merge, action="synchronize")
    assert jobs["plan"].status == "success", jobs["plan"].log()
    [updated] = _ours(standin, 1)
    assert updated.id == comment.id and "Earlier in this pull request (1 superseded report)" in updated.body
    assert "3000" in updated.body.split("Earlier in this pull request")[0].replace(",", "")

    # -- 2. the merge applies the reviewed plan and reports on the merged pull request -------------
    before, after = r.merge_pull_request(dev, "bigger-batches")
    standin.merge(REPO, after, 1)
    jobs = run("apply.yml", event_name="push", event={"ref": "refs/heads/main", "before": before, "after": after},
               sha=after, ref="refs/heads/main")
    assert jobs["comment"].status == "skipped"
    merged = jobs["merged"]
    assert merged.status == "success", merged.log()
    assert "reviewed plan: plan.yml run" in merged.log()
    assert live(api, "fraud-detection-logins-tested")["sink"]["max_batch_size"] == 3000
    assert live(api, "join-demo-pipeline")["sink"]["max_batch_size"] == batch + 500  # not this PR's business
    [report] = _ours(standin, 1)
    assert report.id == comment.id and "gftune apply: 1 verified" in report.body
    assert "Earlier in this pull request (2 superseded reports)" in report.body

    # -- 3. a pull request that adds a pipeline, applied by `/gftune apply` before the merge --------
    main = r.git(dev, "rev-parse", "main")
    r.git(dev, "checkout", "-q", "-b", "traces-eu")
    text = (dev / "pipelines" / "otlp-traces.yaml").read_text().replace("otlp-traces", "otlp-traces-eu")
    text += "  drift:\n    tolerance:\n      sink.max_batch_size: 10%\n"  # its batch size may wander 10%
    (dev / "pipelines" / "otlp-traces-eu.yaml").write_text(text)
    r.commit(dev, "otlp-traces-eu: the EU traces")
    head, merge = r.open_pull_request(dev, standin, 2, "traces-eu")
    jobs = r.run_plan_workflow(runner, 2, "traces-eu", main, head, merge)
    assert jobs["plan"].status == "success", jobs["plan"].log()
    assert "to create" in _ours(standin, 2)[0].body
    comment_event = {"action": "created", "issue": {"number": 2, "pull_request": {"url": "u"}},
                     "comment": {"body": "/gftune apply", "author_association": "MEMBER"}}
    jobs = run("apply.yml", event_name="issue_comment", event=comment_event, sha=main, ref="refs/heads/main")
    assert jobs["merged"].status == "skipped"
    assert jobs["comment"].status == "success", jobs["comment"].log()
    [created] = _ours(standin, 2)
    assert "gftune apply: 1 verified" in created.body and "created: Running, records flowing" in created.body
    assert live(api, "otlp-traces-eu", "/health")["overall_status"] == "Running"
    before, after = r.merge_pull_request(dev, "traces-eu")
    standin.merge(REPO, after, 2)
    jobs = run("apply.yml", event_name="push", event={"ref": "refs/heads/main", "before": before, "after": after},
               sha=after, ref="refs/heads/main")
    assert jobs["merged"].status == "success", jobs["merged"].log()
    assert "nothing left to apply" in _ours(standin, 2)[0].body

    # -- 4. nightly drift ---------------------------------------------------------------------------
    edit_by_hand(api, "fraud-detection-logins-tested", {"sink.max_batch_size": 5000}, metadata=False)  # no tags
    eu_batch = live(api, "otlp-traces-eu")["sink"]["max_batch_size"]
    edit_by_hand(api, "otlp-traces-eu", {"sink.max_batch_size": int(eu_batch * 1.05)})  # inside its band
    stop_by_hand(api, "otlp-traces")  # an operator stops it
    main = r.git(dev, "rev-parse", "main")
    nightly = {"event_name": "schedule", "event": {"schedule": "17 3 * * *"}, "sha": main, "ref": "refs/heads/main"}
    drift = run("drift.yml", **nightly)["drift"]
    assert drift.status == "failure"  # exit 2: drift
    assert drift.step("drift").exit_code == 2, drift.log()
    [issue] = standin.issues_in(REPO)
    assert issue.state == "open" and issue.user == standin.user
    rows = [line for line in issue.body.splitlines() if line.startswith("| `")]

    def row(pid: str, field: str) -> str:
        [found] = [line for line in rows if f"| {pid} |" in line and f"`{field}`" in line]
        return found

    assert "changed outside gftune" in row("fraud-detection-logins-tested", "sink.max_batch_size")
    assert "changed outside gftune" in row("fraud-detection-logins-tested", "metadata.tags")  # wiped with it
    assert "stopped outside gftune" in row("otlp-traces", "status")
    assert "changed outside gftune" in row("join-demo-pipeline", "sink.max_batch_size")
    assert not any("| otlp-traces-eu |" in line for line in rows) and "inside its 10% tolerance" in issue.body
    assert "Drift:" in drift.summary

    # -- 5. reconcile, and the next night is in sync ----------------------------------------------
    dispatch = {"event_name": "workflow_dispatch", "event": {"inputs": {"reconcile": "true"}}, "sha": main,
                "ref": "refs/heads/main", "inputs": {"reconcile": True}}
    reconciled = run("drift.yml", **dispatch)["drift"]
    assert reconciled.status == "success", reconciled.log()
    assert live(api, "otlp-traces", "/health")["overall_status"] == "Running"
    assert live(api, "fraud-detection-logins-tested")["sink"]["max_batch_size"] == 3000
    assert live(api, "join-demo-pipeline")["sink"]["max_batch_size"] == batch
    [issue] = standin.issues_in(REPO)
    assert issue.state == "closed"
    again = run("drift.yml", **nightly)["drift"]
    assert again.status == "success" and again.step("drift").exit_code == 0
    assert len(standin.issues_in(REPO)) == 1

    # nothing secret anywhere GitHub saw
    sent = "\n".join(standin.bodies_sent())
    assert r.PASSWORD not in sent and "not-for-gftune-0042" not in sent
    assert not any(token in sent for token in standin.accounts)  # no job's GITHUB_TOKEN either
    shutil.rmtree(tmp_path / "runner", ignore_errors=True)


def _member(data: bytes, name: str) -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(name)
