"""Policy findings in the plan: a proposal not yet in git is listed (exit 2, "adopt with tune"); once
git carries the proposed value, the change carries the proposal's evidence and prediction."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.policy.conftest import PASSWORD_ENV, write_repo
from tests.support.repos import gftune

TIME_SCALE = 300.0  # a wall second is five model minutes
WARM_UP_S = 3.0  # rate windows and `for:` durations filled, as in the policy tests (14 model minutes)
PIPE = "orders-batch-bound"


@pytest.fixture
def batch_bound(sim_factory, tmp_path, monkeypatch):
    sim = sim_factory("sink-batch-bound", time_scale=TIME_SCALE)
    started = time.monotonic()
    repo = write_repo(tmp_path / "repo", sim.api_url)
    for name, value in {"GFTUNE_API": sim.api_url, "GFTUNE_TIME_SCALE": str(TIME_SCALE),
                        "GFTUNE_SCRAPE": sim.metrics_url, PASSWORD_ENV: "sim-password"}.items():
        monkeypatch.setenv(name, value)
    time.sleep(max(0.0, WARM_UP_S - (time.monotonic() - started)))
    return repo


def plan(repo: Path, fmt: str = "json"):
    result = gftune("plan", "--repo", repo, "--format", fmt)
    return result.exit_code, (json.loads(result.stdout) if fmt == "json" else result.stdout)


def test_policy_proposal_not_in_git_then_adopted(batch_bound):
    result = gftune("plan", "--repo", batch_bound, "--format", "json")
    code, doc = result.exit_code, json.loads(result.stdout)
    assert code == 2 and doc["policies_evaluated"] and doc["metrics"]["source"].startswith("direct scrape")
    # The direct scrape waits a metrics window between its scrapes: the wait is announced on stderr
    # even for JSON output (stdout stays pure JSON).
    assert "again in" in result.stderr
    [entry] = doc["pipelines"]
    assert entry["action"] == "noop" and entry["changes"] == []
    [proposal] = entry["proposals"]
    assert proposal["policy"] == "sink-batch-bound"
    [change] = proposal["changes"]
    assert change["path"] == "sink.max_batch_size"
    assert all(e["query"] and e["measured"] is not None for e in proposal["evidence"])
    code, text = plan(batch_bound, "text")
    assert code == 2 and "adopt with `gftune tune --write`" in text
    assert "policies evaluated with metrics from direct scrape" in text
    # The why first, the evidence on demand: a verdict naming the bottleneck, a table of readings
    # against their thresholds; the queries only with --verbose (and always in JSON, above).
    assert "The sink is the bottleneck at" in text and "Cost: 1 restart" in text
    assert "sink_batch_fill" in text and ">= 0.9 for 2m" in text
    assert "query:" not in text
    verbose = gftune("plan", "--repo", batch_bound, "--verbose").stdout
    assert all(f"evidence: {e['signal']} = " in verbose for e in proposal["evidence"])
    assert verbose.count("query: ") >= len(proposal["evidence"])  # each window's own query, one per reading

    file = batch_bound / "pipelines" / f"{PIPE}.yaml"
    pipeline = yaml.safe_load(file.read_text())
    pipeline["spec"]["sink"]["max_batch_size"] = change["new"]
    file.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    code, doc = plan(batch_bound)
    [entry] = doc["pipelines"]
    assert (code, entry["action"], entry["proposals"]) == (2, "update", [])
    [git_change] = entry["changes"]
    assert git_change["path"] == "sink.max_batch_size" and git_change["source"] == "git"
    assert git_change["proposal"]["policy"] == "sink-batch-bound"
    assert git_change["proposal"]["predictions"] and git_change["proposal"]["verify"]["expect"]
    code, text = plan(batch_bound, "text")
    assert "why: policy sink-batch-bound" in text
