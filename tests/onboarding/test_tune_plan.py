"""One proposal from review to merge (issue 14): `tune --plan plan.json` writes the proposals a person
reviewed, not new ones; `--reevaluate` says in the PR body which values differ from the review, and why."""

from __future__ import annotations

import json

import git
import pytest
import yaml

from gftune.plan.evidence import Evidence, FieldChange, Proposal
from gftune.policy import review
from tests.support.repos import DEMO_SECRETS, gftune

SICK = "deduplication-demo-pipeline"


@pytest.fixture
def reviewed(demo_repository, tmp_path):
    """The first-hour repository, committed; a saved plan with the stream-backpressure proposal."""
    repo = demo_repository
    repository = git.Repo(repo)
    with repository.config_writer() as cfg:
        cfg.set_value("user", "name", "t").set_value("user", "email", "t@example.invalid")
    repository.git.add(A=True)
    repository.index.commit("import")
    env = {**DEMO_SECRETS, "GFTUNE_TIME_SCALE": "100"}
    saved = tmp_path / "plan.json"
    result = gftune("plan", "--repo", repo, "--out", saved, env=env)
    assert result.exit_code == 2, result.output
    plan = json.loads(saved.read_text())
    proposals = [p for entry in plan["pipelines"] for p in entry["proposals"]]
    assert [p["pipeline_id"] for p in proposals] == [SICK]
    return repo, saved, plan, env


def spec_value(repo, path_keys):
    node = yaml.safe_load((repo / "pipelines" / f"{SICK}.yaml").read_text())["spec"]
    for key in path_keys:
        node = node[key]
    return node


def test_tune_writes_the_reviewed_proposals_as_reviewed(reviewed):
    repo, saved, plan, env = reviewed
    proposal = next(p for entry in plan["pipelines"] for p in entry["proposals"])
    body = repo.parent / "body.md"
    result = gftune("tune", "--repo", repo, "--write", "--plan", saved, "--pr-body", body, env=env)
    assert result.exit_code == 2, result.output
    assert f"Metrics: the reviewed plan {plan['id']}" in result.output  # nothing measured again
    written = {c["path"]: c["new"] for c in proposal["changes"]}
    assert spec_value(repo, ["resources", "sink", "replicas"]) == written["resources.sink.replicas"]
    text = body.read_text()
    assert f"These are the proposals of the reviewed plan `{plan['id']}`, written as reviewed" in text
    assert git.Repo(repo).active_branch.name.startswith("gftune/tune-")


def test_tune_refuses_a_plan_made_from_other_files(reviewed):
    repo, saved, _, env = reviewed
    file = repo / "pipelines" / f"{SICK}.yaml"
    file.write_text(file.read_text().replace("max_batch_size: 1000", "max_batch_size: 1500"))
    result = gftune("tune", "--repo", repo, "--write", "--plan", saved, env=env)
    assert result.exit_code == 1
    assert f"{SICK}: its pipeline file changed since the plan was made" in result.output
    assert "make a new plan" in result.output
    assert git.Repo(repo).active_branch.name == "main"


def test_tune_refuses_a_plan_whose_proposal_was_edited_after_review(reviewed):
    # the artifact travels between jobs: a proposal changed on the way must not be written as "reviewed"
    repo, saved, plan, env = reviewed
    proposal = next(p for entry in plan["pipelines"] for p in entry["proposals"])
    replicas = next(c for c in proposal["changes"] if c["path"] == "resources.sink.replicas")
    replicas["new"] = 9
    saved.write_text(json.dumps(plan))
    file = repo / "pipelines" / f"{SICK}.yaml"
    before = file.read_text()
    result = gftune("tune", "--repo", repo, "--write", "--plan", saved, env=env)
    assert result.exit_code == 1
    assert "payloads or proposals do not match its digest" in result.output
    assert file.read_text() == before
    assert git.Repo(repo).active_branch.name == "main"


def test_reevaluating_says_what_changed_since_the_review_and_why(reviewed, tmp_path):
    repo, _, plan, env = reviewed
    # The review saw a smaller backlog and another proposal than the policy makes now.
    entry = next(e for e in plan["pipelines"] if e["proposals"])
    proposal = entry["proposals"][0]
    replicas = next(c for c in proposal["changes"] if c["path"] == "resources.sink.replicas")
    replicas["new"] += 3  # well away from what the policy proposes now
    reviewed_replicas = replicas["new"]
    moved = next(e for e in proposal["evidence"] if e["signal"] == "sink_rate")
    moved["measured"] = moved["measured"] / 4
    older = tmp_path / "older-plan.json"
    older.write_text(json.dumps(plan))
    body = tmp_path / "body.md"
    result = gftune("tune", "--repo", repo, "--plan", older, "--reevaluate", "--pr-body", body, "--write",
                    "--no-commit", env=env)
    assert result.exit_code == 2, result.output
    text = body.read_text()
    assert f"### Since the reviewed plan `{plan['id']}`" in text
    line = next(x for x in text.splitlines()
                if f"resources.sink.replicas: {reviewed_replicas} in the reviewed plan ->" in x)
    assert "now (stream-backpressure)" in line
    assert "sink_rate grew from" in line  # the reviewed plan's sink_rate was a quarter of today's
    assert f"Since the reviewed plan {plan['id']}:" in result.output


# --- the comparison itself (pure) ----------------------------------------------------------------------------

def evidence(signal, value, unit=""):
    return Evidence("stream-backpressure", signal, "q", "5m", value, "> 0", unit)


def proposal(replicas, lag, sink_rate):
    return Proposal(SICK, "stream-backpressure", (FieldChange("resources.sink.replicas", 1, replicas),),
                    (evidence("consumer_lag", lag), evidence("sink_rate", sink_rate, "records/s"),
                     evidence("ingestor_backpressure", 1.0, "0/1")))


def test_a_revision_names_the_values_and_the_signals_that_moved():
    [revision] = review.revisions([proposal(3, 1_200_000, 4930)], [proposal(4, 3_100_000, 4925)])
    assert revision.describe() == ("resources.sink.replicas: 3 in the reviewed plan -> 4 now (stream-backpressure): "
                                   "consumer_lag grew from 1,200,000 to 3,100,000 (+158%)")


def test_no_revision_when_the_values_agree_and_both_ways_when_a_proposal_comes_or_goes():
    assert review.revisions([proposal(3, 1, 1)], [proposal(3, 2, 2)]) == []
    gone = review.revisions([proposal(3, 1, 1)], [])
    assert gone[0].describe().startswith("resources.sink.replicas: 3 in the reviewed plan -> not proposed now")
    new = review.revisions([], [proposal(3, 1, 1)])
    assert new[0].describe().startswith("resources.sink.replicas: not proposed in the reviewed plan -> 3 now")
