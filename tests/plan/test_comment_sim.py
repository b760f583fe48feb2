"""The pull request comment of the demo's plan, against the simulator's demo scenario: short enough to
read (under 2,500 characters outside its <details> blocks), the headline with cost and risk, the
verdict with its readings, the evidence folded, and what to do next — before and after the proposal
is written into git."""

from __future__ import annotations

import re
import shutil
import time

import httpx
import pytest

from tests.support.repos import ROOT, gftune

TIME_SCALE = 30  # as `gftune demo`
DEMO_SECRETS = {  # the values scenarios/demo.yaml creates its pipelines with
    "CLICKHOUSE_PASSWORD": "gftune-demo-clickhouse-pw", "CLICKHOUSE_USER": "gftune-demo-clickhouse-user",
    "KAFKA_PASSWORD": "gftune-demo-kafka-pw", "KAFKA_USERNAME": "gftune-demo-kafka-user"}
FOLDED = re.compile(r"<details>.*?</details>", re.S)


@pytest.fixture
def demo(sim_factory, repo, monkeypatch):
    sim = sim_factory("demo", time_scale=TIME_SCALE)
    shutil.copytree(ROOT / "policies", repo.path / "policies")
    (repo.path / "gftune.yaml").write_text(
        f"apiVersion: gftune/v1\nkind: Config\napi: {{url: '{sim.api_url}'}}\n"
        f"metrics: {{scrape: '{sim.metrics_url}'}}\ntime_scale: {TIME_SCALE}\n")
    for name, value in DEMO_SECRETS.items():
        monkeypatch.setenv(name, value)
    repo.commit("the demo repository")
    wait_for_first_flushes(sim.metrics_url)
    return repo


def wait_for_first_flushes(metrics_url: str, timeout: float = 60.0) -> None:
    """A pod's series exist only once recorded and pushed (every 10 s), so a plan taken the moment the
    simulator starts finds no sink flush to judge the sink by (as on a freshly started cluster). The
    demo command gets there while it builds its repository; this test waits for the first flushes."""
    deadline = time.monotonic() + timeout
    while "sink_batch_size_records_count{" not in httpx.get(metrics_url, timeout=10).text:
        assert time.monotonic() < deadline, "the demo's sink recorded no flush within a minute"
        time.sleep(0.5)


def visible(markdown: str) -> str:
    return FOLDED.sub("", markdown)


def test_the_demo_s_comment_is_short_and_says_what_to_do(demo):
    result = gftune("plan", "--repo", demo.path, "--format", "markdown")
    assert result.exit_code == 2, result.output
    comment = result.stdout
    assert len(visible(comment)) < 2500, len(visible(comment))
    assert re.match(r"### gftune plan: 1 proposal not in git · adopting it: 1 restart \(~2 s of downtime\), "
                    r"\+\d sink pods?; requests \+[\d.]+ CPU, \+[\d,]+ MiB · nothing irreversible\n", comment), comment
    assert "The sink is the bottleneck at" in visible(comment) and "/s predicted" in visible(comment)
    # the readings table (which policy fires first depends on timing: stream-backpressure or sink-cpu-bound)
    assert re.search(r"\| reading \| value \| threshold \|\n\|---\|---\|---\|\n(\| `\w+` \| [\d.,]+(/s)? \| "
                     r"(>=|&lt;|>|&lt;=) [\d.]+( for \d+m)? \|\n)+", comment), comment
    assert "query: " not in visible(comment) and "query: " in comment  # every query, folded
    assert visible(comment).rstrip().endswith("**Next:** adopt with `gftune tune --write` (or wait for the "
                                              "scheduled tune pull request), then review its plan.")

    # The tune branch: the proposal is in git now, its verdict rides on the change.
    assert gftune("tune", "--repo", demo.path, "--write", "--no-commit").exit_code == 2
    demo.commit("tune: stream-backpressure")
    comment = gftune("plan", "--repo", demo.path, "--format", "markdown").stdout
    assert len(visible(comment)) < 2500, len(visible(comment))
    assert comment.startswith("### gftune plan: 1 to update")
    assert "| policy stream-backpressure |" in comment or "| git " in comment
    assert "**Next:** merge to apply it" in comment
