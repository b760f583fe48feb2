"""Helpers for apply tests: a git repository adopted from a live simulator pipeline, and counters."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from gftune.apply.context import ApplyContext
from gftune.apply.executor import ApplyResult, apply_plan
from gftune.apply.journal import JournalStore
from gftune.client import GlassFlowClient
from gftune.commands.demo import adopted_spec
from gftune.desired import paths
from gftune.desired.repo import load_repo
from gftune.metrics.sources import open_source
from gftune.orchestration.plan import produce_plan

HEALTHY = "orders-healthy"  # the healthy scenario's pipeline (scenarios/healthy.yaml)
SECRET_ENV = "APPLY_TEST_SINK_PASSWORD"  # what gftune.commands.demo.adopted_spec names the sink password
SIM_PASSWORD = "sim-password"  # what the scenarios' pipelines carry (scenarios/pipelines/orders.yaml)
ROOT = Path(__file__).resolve().parents[2]


def config_yaml(api_url: str, *, scrape: str | None = None, prometheus: str | None = None,
                time_scale: float = 20.0, settle: str = "20s", window: str = "60s", tolerance: float = 0.1,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"namespace": "glassflow"}
    if scrape:
        metrics["scrape"] = scrape
    if prometheus:
        metrics["prometheus"] = prometheus
    doc: dict[str, Any] = {
        "apiVersion": "gftune/v1", "kind": "Config", "api": {"url": api_url, "timeout": "10s", "retries": 2},
        "apply": {"max_plan_age": "1h", "lock_ttl": "30m", "stop_timeout": "5m", "running_timeout": "15m"},
        "verify": {"settle": settle, "window": window, "tolerance": tolerance}, "time_scale": time_scale,
    }
    if scrape or prometheus:
        doc["metrics"] = metrics
    for key, value in (extra or {}).items():
        doc[key] = value
    return doc


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def adopt(repo: Path, api_url: str, pipeline_id: str, config: dict[str, Any],
          changes: dict[str, Any] | None = None) -> Path:
    """A git repository whose pipeline file is the live pipeline (secret as a reference) + ``changes``."""
    repo.mkdir(parents=True, exist_ok=True)
    live = httpx.get(f"{api_url}/api/v1/pipeline/{pipeline_id}", timeout=10).json()
    spec, env = adopted_spec(live, prefix="APPLY_TEST_")
    assert env == {SECRET_ENV: SIM_PASSWORD}
    for path, value in (changes or {}).items():
        paths.set_value(spec, path, value)
    (repo / "pipelines").mkdir(exist_ok=True)
    (repo / "policies").mkdir(exist_ok=True)
    write_pipeline(repo, spec)
    (repo / "gftune.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text(".gftune/\n")
    commit(repo, "adopt live pipeline")
    return repo


def write_pipeline(repo: Path, spec: dict[str, Any]) -> Path:
    doc = {"apiVersion": "gftune/v1", "kind": "Pipeline", "metadata": {"name": spec["pipeline_id"]}, "spec": spec}
    path = repo / "pipelines" / f"{spec['pipeline_id']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def change_pipeline(repo: Path, pipeline_id: str, changes: dict[str, Any], message: str = "change") -> None:
    path = repo / "pipelines" / f"{pipeline_id}.yaml"
    doc = yaml.safe_load(path.read_text())
    for field_path, value in changes.items():
        paths.set_value(doc["spec"], field_path, value)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    commit(repo, message)


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def test_env() -> dict[str, str]:
    return {**os.environ, SECRET_ENV: SIM_PASSWORD}


async def plan_and_apply(repo: Path, **ctx_kw: Any) -> ApplyResult:
    """What `gftune apply --auto-approve` does, in process."""
    env = test_env()
    state = load_repo(repo, env=env)
    assert state.valid, [p.render() for p in state.problems]
    run = await produce_plan(state, env=env)
    source = open_source(state.config)
    try:
        async with GlassFlowClient.from_config(state.config) as client:
            ctx = ApplyContext(client=client, config=state.config, store=JournalStore(repo), metrics=source,
                               resolver=state.resolver(env), **ctx_kw)
            return await apply_plan(run.plan, ctx, current_commit=(run.plan.git or {}).get("commit"))
    finally:
        if source is not None:
            source.close()


def run_plan_and_apply(repo: Path, **ctx_kw: Any) -> ApplyResult:
    return asyncio.run(plan_and_apply(repo, **ctx_kw))


def request_count(metrics_url: str, method: str, path_fragment: str) -> float:
    """Requests the simulator served, from its own gfm_http_server_request_count_total metric
    (divided by the time scale, like every counter it exposes; see :func:`sent`)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    text = httpx.get(metrics_url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("http_server_request_count_total") and \
                    sample.labels.get("method") == method and path_fragment in sample.labels.get("path", ""):
                total += sample.value
    return total


def wait_caught_up(sim: Any, pipeline_id: str, *, queued_at_most: float = 5000.0, window_s: float = 60.0,
                   timeout: float = 60.0) -> None:
    """Until what a restart queued is drained from Kafka and from the streams (at most
    ``queued_at_most`` records left: about a second of the healthy scenario's input, what is in
    flight), by the simulator's truth (read by the test only), then one more metrics window: a
    baseline read over a catch-up is not the steady state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = sim.truth(pipeline_id)["records"]
        if records["kafka_lag"] + sum(records["stream_depth"].values()) <= queued_at_most:
            break
        time.sleep(0.2)
    time.sleep(window_s / sim.time_scale)


def sent(sim: Any, method: str, path_fragment: str) -> int:
    """How many ``method`` requests to a path containing ``path_fragment`` the simulator served."""
    return round(request_count(sim.metrics_url, method, path_fragment) * sim.time_scale)


def apply_json(repo: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Any, dict[str, Any] | None]:
    """``gftune apply --format json`` in a child process: the process and the report (None if none)."""
    proc = gftune("apply", "--repo", str(repo), "--format", "json", *args, env=env)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None)


def save_plan(repo: Path, plan_file: Path) -> Path:
    """``gftune plan --out plan_file`` of a repository that has changes to plan (exit 2)."""
    made = gftune("plan", "--repo", str(repo), "--out", str(plan_file))
    assert made.returncode == 2, made.stderr
    return plan_file


def auto_apply(repo: Path, exit_code: int) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``gftune apply --auto-approve --format json``, which must exit ``exit_code``: the process and the
    report's first pipeline."""
    proc, doc = apply_json(repo, "--auto-approve")
    assert proc.returncode == exit_code, proc.stderr
    assert doc is not None, proc.stderr
    return proc, doc["pipelines"][0]


def gftune(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gftune", *args], env=env or test_env(), capture_output=True,
                          text=True, timeout=timeout)


