"""tune.yml as GitHub would run it: the policies' proposals become one pull request with the
evidence as its body, updated (not duplicated) by the next run; the workflow's own GITHUB_TOKEN is
called out as starting no workflow, a GitHub App token is not."""

from __future__ import annotations

import time

import pytest

from tests.gitops import repo as r
from tests.support.github_standin import jwt_keypair

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

REPO = r.REPOSITORY
PIPE = "deduplication-demo-pipeline"  # its sink is too slow for its topic (scenarios/demo.yaml)
SCALE = 30


def test_tune_workflow_opens_then_updates_one_pull_request(sim_factory, prometheus_factory, standin, tmp_path):
    sim = sim_factory(r.scenario((PIPE,)), time_scale=SCALE)
    prometheus = prometheus_factory(sim)
    origin, dev = r.make_origin(tmp_path, r.config(sim.api_url, prometheus.url, time_scale=SCALE),
                                pipelines=(PIPE,), policies=("stream-backpressure",))
    r.allow_any_sha(origin)
    standin.register_git_remote(REPO, origin)
    private, public = jwt_keypair()
    standin.register_app(4242, public, "gftune-tuner")
    runner = r.actions_runner(standin, origin, tmp_path / "runner",
                              {"GFTUNE_API": sim.api_url, "GFTUNE_PROMETHEUS": prometheus.url})
    workflow = r.WORKFLOWS / "tune.yml"
    prometheus.wait_for_series(f'glassflow_gfm_clickhouse_records_written_total{{pipeline_id="{PIPE}"}}')
    time.sleep(330 / SCALE)  # the policy's 5m rate window and 2m `for:`
    main = r.git(dev, "rev-parse", "main")
    nightly = {"event_name": "schedule", "event": {"schedule": "41 4 * * 1-5"}, "sha": main, "ref": "refs/heads/main"}

    [job] = runner.run(workflow, **nightly)
    assert job.status == "success", job.log()
    step = job.step("proposals as a pull request")
    assert step.exit_code == 0 and "gftune tune --write --branch gftune/tune --open-pr" in step.script
    [pull] = standin.issues_in(REPO, pulls=True)
    assert pull.user == "github-actions[bot]" and pull.pull["head_ref"] == "gftune/tune"
    assert pull.pull["base_ref"] == "main"
    assert "stream-backpressure" in pull.body and "resources.sink.replicas" in pull.body  # the evidence
    assert pull.pull["head_sha"] == r.git(origin, "rev-parse", "refs/heads/gftune/tune")
    # GitHub starts no workflow for a pull request the workflow's own token opened: said, and annotated
    assert "starts no workflow" in step.stderr and "GFTUNE_PR_TOKEN" in step.stderr
    assert "::warning title=gftune tune::" in step.stdout

    # the next run, with a GitHub App: the same pull request, force-pushed and updated, no warning
    runner.vars["GFTUNE_GITHUB_APP_ID"] = "4242"
    runner.secrets["GFTUNE_GITHUB_APP_PRIVATE_KEY"] = private
    [job] = runner.run(workflow, event_name="workflow_dispatch", event={"inputs": {}}, sha=main,
                       ref="refs/heads/main")
    assert job.status == "success", job.log()
    step = job.step("proposals as a pull request")
    assert f"Pull request {REPO}#{pull.number} updated" in step.stderr and "as gftune-tuner[bot]" in step.stderr
    assert "starts no workflow" not in step.stderr
    assert [p.number for p in standin.issues_in(REPO, pulls=True)] == [pull.number]
    assert private.splitlines()[1] not in "\n".join(standin.bodies_sent()) + job.log()
