"""`gftune tune` writes proposals back into git: only the targeted values change.

The unit tests splice values into YAML text (block and flow style, quoting, missing keys). The
end-to-end test runs one of the example repository's converted GlassFlow demos
(``pipelines/deduplication-demo-pipeline.yaml``) in the simulator with a sink too slow for its
topic, runs ``gftune tune --write`` against it, and diffs the file: the changed lines are exactly
the proposed values, every comment and the key order are unchanged, and the commit on the new
branch carries the evidence.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from gftune.cli import cli
from gftune.desired import paths
from gftune.plan.evidence import Evidence, Expectation, FieldChange, Proposal, VerifySpec
from gftune.sim import Simulator
from gftune.writeback import TuneError, commit_message, pr_body, render_scalar, set_in_text
from tests.policy.conftest import ROOT, TIME_SCALE, wait_warm

DEMO = ROOT / "pipelines" / "deduplication-demo-pipeline.yaml"

TEXT = """\
# a comment at the top
spec:
  sink:
    max_batch_size: 1000   # rows per insert
    max_delay_time: '5s'
  resources:
    sources:
      - source_id: orders
        replicas: 2
        limits: {cpu: '1', memory: 512Mi}
    sink:
      replicas: 1
# trailing comment
"""


def S(path: str) -> tuple[paths.Step, ...]:
    return (paths.Key("spec"), *paths.parse(path))


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    old, new = before.splitlines(), after.splitlines()
    import difflib
    removed, added = [], []
    for line in difflib.ndiff(old, new):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def test_values_are_spliced_in_place_keeping_comments_and_quotes():
    text = set_in_text(TEXT, S("sink.max_batch_size"), 4000)
    text = set_in_text(text, S("sink.max_delay_time"), "2s")
    text = set_in_text(text, S("resources.sources[orders].limits.cpu"), "2")
    removed, added = changed_lines(TEXT, text)
    assert removed == ["    max_batch_size: 1000   # rows per insert", "    max_delay_time: '5s'",
                       "        limits: {cpu: '1', memory: 512Mi}"]
    assert added == ["    max_batch_size: 4000   # rows per insert", "    max_delay_time: '2s'",
                     "        limits: {cpu: '2', memory: 512Mi}"]


def test_missing_keys_are_inserted_in_the_files_style():
    text = set_in_text(TEXT, S("resources.sink.limits.cpu"), "4")
    text = set_in_text(text, S("resources.sources[orders].limits.storage"), "1Gi")
    text = set_in_text(text, S("resources.sources[extra].replicas"), 3)
    removed, added = changed_lines(TEXT, text)
    assert removed == ["        limits: {cpu: '1', memory: 512Mi}"]
    assert added == ["        limits: {cpu: '1', memory: 512Mi, storage: 1Gi}", "      - source_id: extra",
                     "        replicas: 3", "      limits:", "        cpu: '4'"]
    data = YAML(typ="safe").load(text)
    assert data["spec"]["resources"]["sink"] == {"replicas": 1, "limits": {"cpu": "4"}}
    assert text.startswith("# a comment at the top\n") and text.endswith("# trailing comment\n")


def test_scalars_that_would_change_type_are_quoted():
    assert render_scalar("2") == "'2'"
    assert render_scalar("1500m") == "1500m"
    assert render_scalar("true") == "'true'"
    assert render_scalar("1.5Gi") == "1.5Gi"
    assert render_scalar(20000) == "20000"
    with pytest.raises(TuneError):
        set_in_text(TEXT, S("resources.sources"), 3)  # a list, not a value


def _proposal() -> Proposal:
    evidence = (Evidence("stream-backpressure", "ingestor_backpressure", "max (x)", "5m", 1.0, ">= 1 for 2m", "0/1"),)
    return Proposal("p1", "stream-backpressure", (FieldChange("resources.sink.replicas", 1, 3),), evidence,
                    (Expectation("sink_rate", ">=", 8000.0, "sink rate 4,950/s -> >=8,000/s"),),
                    VerifySpec(), "Downstream slower than the source", ("a note",))


def test_commit_message_and_pr_body_carry_the_evidence():
    message = commit_message([_proposal()])
    assert message.splitlines()[0] == "tune: stream-backpressure for p1"
    assert "resources.sink.replicas: 1 -> 3" in message
    assert "evidence: ingestor_backpressure = 1" in message
    assert "predicted: sink rate 4,950/s -> >=8,000/s" in message
    body = pr_body([_proposal()])
    assert "| `p1` | `resources.sink.replicas` | 1 | **3** | stream-backpressure |" in body
    assert "| `ingestor_backpressure` | **1** | >= 1 for 2m |" in body and "**Verification:**" in body
    assert "sink rate 4,950/s -> >=8,000/s" in body
    # the evidence's queries are folded
    folded = body[body.index("<details><summary>Sizing, inputs, queries and notes"):]
    assert "query: max (x)" in folded and "note: a note" in folded


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _keys(node: Any, prefix: str = "") -> list[str]:
    """Every mapping key in document order, as dotted paths (list items by position)."""
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(f"{prefix}{key}")
            out += _keys(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _keys(value, f"{prefix}{index}.")
    return out


@pytest.mark.slow
def test_the_pr_body_is_printed_only_when_not_saved_to_a_file(tmp_path: Path) -> None:
    from gftune.commands.tune import print_text
    from gftune.policy.arbitrate import PolicyOutcome
    from gftune.policy.engine import PolicyReport

    report = PolicyReport("direct scrape", {"orders": PolicyOutcome(proposals=[_proposal()])})
    written = {"branch": "gftune/tune-x", "sha": "0123456789abcdef", "files": ["pipelines/orders.yaml"]}
    body = "## gftune tune: policy proposals\n(the evidence again)"
    runner = CliRunner()
    with runner.isolation() as (out, _err, *_):
        print_text(report, [], written, body, None)
        printed = out.getvalue().decode()
    assert "open a pull request with this body" in printed and "(the evidence again)" in printed
    with runner.isolation() as (out, _err, *_):
        print_text(report, [], written, body, tmp_path / "pr.md")
        printed = out.getvalue().decode()
    assert f"gh pr create --body-file {tmp_path / 'pr.md'}" in printed and "(the evidence again)" not in printed


def test_tune_write_changes_only_the_targeted_values(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "pipelines").mkdir(parents=True)
    shutil.copy(DEMO, repo / "pipelines" / DEMO.name)
    shutil.copytree(ROOT / "policies", repo / "policies", ignore=shutil.ignore_patterns(".gitkeep"))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "example repo")
    before = (repo / "pipelines" / DEMO.name).read_text()

    scenario = {"name": "demo-sink-bound", "seed": 12, "pipelines": [{
        "file": str(DEMO),
        "model": {"sources": {"users": {"profile": {"kind": "constant", "rate": 8000}, "partitions": 6,
                                        "record_bytes": 512}},
                  "ingestor": {"per_replica_rate": 6000},
                  "sink": {"insert_overhead": 0.05, "insert_per_row": 2.0e-6, "prepare_per_row": 1.5e-4}}}]}
    sim = Simulator(scenarios=[scenario], time_scale=TIME_SCALE)
    sim.start()
    try:
        wait_warm(time.monotonic())
        env = {"GFTUNE_API": sim.api_url, "GFTUNE_SCRAPE": sim.metrics_url, "GFTUNE_TIME_SCALE": str(TIME_SCALE),
               "GIT_AUTHOR_NAME": "gftune", "GIT_AUTHOR_EMAIL": "gftune@example.com",
               "GIT_COMMITTER_NAME": "gftune", "GIT_COMMITTER_EMAIL": "gftune@example.com"}
        shown = CliRunner().invoke(cli, ["tune", "--repo", str(repo)], env=env, catch_exceptions=False)
        assert shown.exit_code == 2, shown.output
        assert "+++ b/pipelines/deduplication-demo-pipeline.yaml" in shown.stdout
        assert (repo / "pipelines" / DEMO.name).read_text() == before, "without --write nothing is written"

        result = CliRunner().invoke(cli, ["tune", "--repo", str(repo), "--write", "--branch", "gftune/tune-test",
                                          "--format", "json"], env=env, catch_exceptions=False)
    finally:
        sim.stop()
    assert result.exit_code == 2, result.output
    import json
    report = json.loads(result.stdout)
    proposals = report["outcomes"]["deduplication-demo-pipeline"]["proposals"]
    assert [p["policy"] for p in proposals] == ["stream-backpressure"]
    changes = {c["path"]: c for c in proposals[0]["changes"]}
    assert "resources.sink.replicas" in changes
    assert all(int(changes[p]["new"]) <= 6 for p in changes if p.endswith("replicas")), "max_replicas 6"

    after = (repo / "pipelines" / DEMO.name).read_text()
    removed, added = changed_lines(before, after)
    # one line per changed value (two values of one flow mapping share a line), nothing else
    assert 0 < len(removed) == len(added) <= len(changes), (removed, added)
    keys = {path.rsplit(".", 1)[-1] for path in changes}
    assert all(any(f"{key}:" in line for key in keys) for line in removed + added), (removed, added)
    for path, change in changes.items():
        key = path.rsplit(".", 1)[-1]
        unquoted = [line.replace("'", "").replace('"', "") for line in removed], \
            [line.replace("'", "").replace('"', "") for line in added]
        assert any(f"{key}: {change['old']}" in line for line in unquoted[0]), (path, removed)
        assert any(f"{key}: {change['new']}" in line for line in unquoted[1]), (path, added)
    assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == \
        [line for line in after.splitlines() if line.lstrip().startswith("#")], "comments unchanged"
    yaml = YAML(typ="rt")
    old_doc, new_doc = yaml.load(before), yaml.load(after)
    assert _keys(old_doc) == _keys(new_doc), "key order unchanged"
    for path, change in changes.items():
        assert paths.get(new_doc["spec"], path) == change["new"]

    assert _git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "gftune/tune-test"
    assert _git(repo, "rev-parse", "main") != _git(repo, "rev-parse", "HEAD")
    message = _git(repo, "log", "-1", "--format=%B")
    assert message.startswith("tune: stream-backpressure for deduplication-demo-pipeline")
    assert "evidence: ingestor_backpressure = 1" in message and "predicted: sink rate" in message
    assert _git(repo, "diff", "--name-only", "main", "HEAD") == "pipelines/deduplication-demo-pipeline.yaml"
    assert "## gftune tune: policy proposals" in report["pr_body"]
    assert report["written"]["branch"] == "gftune/tune-test"
