"""Masking replaces secret values only, as whole values (issue 14): with CLICKHOUSE_USER=default (a
username, not a secret) no output of plan, apply, drift or tune masks an ordinary word ("the server
***s"), and the ClickHouse password still never appears. In process, so the global masker is the one
the commands fed. Against the simulator."""

from __future__ import annotations

import json
import re

import pytest

from gftune.desired import secrets
from tests.support.repos import SECRETS, deploy_examples, gftune

JOIN = "join-demo-pipeline"
MANGLED = re.compile(r"\w\*\*\*|\*\*\*\w")  # a mask glued to a word: part of a word was masked


@pytest.fixture
def deployed(sim_factory, repo, monkeypatch):
    monkeypatch.setitem(SECRETS, "CLICKHOUSE_USER", "default")  # what the pipelines are created with
    monkeypatch.setenv("CLICKHOUSE_USER", "default")
    sim = sim_factory(time_scale=200)
    deploy_examples(repo, sim.api_url)
    repo.edit(JOIN, lambda spec: spec["sink"].update(max_batch_size=2000), commit=True)
    return sim


def check(text: str) -> None:
    assert SECRETS["CLICKHOUSE_PASSWORD"] not in text
    assert not MANGLED.search(text), MANGLED.search(text)
    assert "default" not in secrets.masker


def test_a_username_is_not_masked_anywhere(deployed, repo, monkeypatch):
    api = deployed.api_url
    outputs = {}
    for fmt in ("text", "json", "markdown"):
        result = gftune("plan", "--repo", repo.path, "--api", api, "--format", fmt, "--no-github")
        assert result.exit_code == 2, result.output
        outputs[f"plan {fmt}"] = result.output
    assert "resets join resources to the server defaults" in outputs["plan text"]
    drift = gftune("drift", "--repo", repo.path, "--api", api)
    assert drift.exit_code == 2 and "sink.max_batch_size: git 2000, live 1000" in drift.output, drift.output
    outputs["drift"] = drift.output
    monkeypatch.setenv("GFTUNE_SCRAPE", deployed.metrics_url)
    monkeypatch.setenv("GFTUNE_TIME_SCALE", "200")
    tune = gftune("tune", "--repo", repo.path, "--api", api)
    assert tune.exit_code in (0, 2), tune.output
    outputs["tune"] = tune.output
    monkeypatch.delenv("GFTUNE_SCRAPE")
    applied = gftune("apply", "--repo", repo.path, "--api", api, "--auto-approve", "--format", "json",
                     "--target", JOIN, "--no-github")
    outputs["apply"] = applied.output
    report = json.loads(applied.stdout)
    assert report["pipelines"][0]["pipeline_id"] == JOIN, applied.output
    for text in outputs.values():
        check(text)
