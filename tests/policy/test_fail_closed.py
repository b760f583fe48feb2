"""Policies fail closed (issue 15): a policy whose PromQL fails at plan time is an error in the plan, shown
in every format, exit 3 (1 with --strict), and the other policies are still evaluated; never "No changes",
exit 0. Against the simulator and a real Prometheus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gftune.cli import cli
from gftune.metrics.sources import PrometheusSource, QueryError
from tests.policy.conftest import PASSWORD_ENV, write_repo
from tests.support.prometheus import prometheus_binary

# Parses and type-checks (an instant vector), but Prometheus refuses it when it runs: "(" is no regex.
FAILING = 'label_replace(vector(1), "x", "$1", "y", "(")'


def policy(name: str, promql: str, priority: int) -> dict:
    return {"apiVersion": "gftune/v1", "kind": "TuningPolicy", "metadata": {"name": name},
            "spec": {"priority": priority, "when": [{"promql": promql, "op": ">", "value": 0}],
                     "then": [{"set": "sink.max_batch_size", "value": 4000}], "cooldown": "15m"}}


@pytest.fixture
def servers(sim_factory, prometheus_factory, tmp_path, monkeypatch):
    if prometheus_binary() is None:
        pytest.skip("the prometheus binary is not installed")
    sim = sim_factory("healthy", time_scale=60)
    prometheus = prometheus_factory([sim])
    repo = write_repo(tmp_path / "repo", sim.api_url, policies=False)
    (repo / "policies").mkdir()
    for name, doc in {"broken-query": policy("broken-query", FAILING, 50),
                      "always": policy("always", "vector(1)", 10)}.items():
        (repo / "policies" / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for name, value in {"GFTUNE_API": sim.api_url, "GFTUNE_PROMETHEUS": prometheus.url,
                        "GFTUNE_TIME_SCALE": "60", PASSWORD_ENV: "sim-password"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GFTUNE_SCRAPE", raising=False)
    return sim, prometheus, repo


def plan(repo: Path, *args: str):
    return CliRunner().invoke(cli, ["plan", "--repo", str(repo), "--no-github", *args], catch_exceptions=False)


def test_a_failing_query_is_a_policy_error_and_the_others_still_run(servers):
    _, _, repo = servers
    assert CliRunner().invoke(cli, ["validate", "--repo", str(repo)]).exit_code == 0  # valid PromQL
    result = plan(repo, "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 3, result.stdout
    [entry] = doc["pipelines"]
    [error] = entry["policy_errors"]
    assert error.startswith("broken-query: its promql condition failed: Prometheus execution: invalid regular expression") and FAILING in error
    assert doc["summary"]["policy_errors"] == 1
    assert [p["policy"] for p in entry["proposals"]] == ["always"]  # the other policy was not silenced
    text = plan(repo)
    assert text.exit_code == 3 and "x policy error: broken-query: its promql condition failed" in text.stdout
    assert "1 policy could not be evaluated" in text.stdout and "No changes" not in text.stdout
    markdown = plan(repo, "--format", "markdown")
    assert "**policy error:** broken-query" in markdown.stdout
    assert plan(repo, "--strict").exit_code == 1


def test_a_string_or_range_answer_is_a_query_error_not_a_crash(servers):
    _, prometheus, _ = servers
    source = PrometheusSource(prometheus.url)
    try:
        for query, kind in (('"a string"', "string"), ("vector(1)[1m:10s]", "range vector")):
            with pytest.raises(QueryError, match=f"the query returns a {kind}, not a number"):
                source.query(query, __import__("datetime").datetime.now(__import__("datetime").UTC))
    finally:
        source.close()


def test_tune_reports_the_policy_error_and_fails(servers):
    _, _, repo = servers
    result = CliRunner().invoke(cli, ["tune", "--repo", str(repo)], catch_exceptions=False)
    assert result.exit_code == 1
    assert "policy error: broken-query: its promql condition failed" in result.stdout
