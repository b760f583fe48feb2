"""A pipelines repository made of this repository's own example pipelines, running on the simulator.

* :func:`scenario` — some of GlassFlow's demo pipelines from ``pipelines/*.yaml`` (by default join,
  OTLP traces and 5G telemetry), healthy, as ``scenarios/demo.yaml`` models them, with the secret
  values :data:`SECRETS` that scenario gives them.
* :func:`make_origin` — a bare git repository (the "GitHub" remote) holding ``gftune.yaml`` and
  those pipeline files verbatim, and a developer clone of it.
* :func:`actions_runner`, :func:`open_pull_request`, :func:`run_plan_workflow` — the shipped workflows
  run on that repository, as GitHub would run them for a pull request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.gitops.actions import ActionsRunner, JobResult
from tests.support.github_standin import GitHubStandIn

ROOT = Path(__file__).resolve().parents[2]
# the values scenarios/demo.yaml fills the files' ${env:...} references with
PASSWORD = "gftune-demo-clickhouse-pw"
SECRETS = {"CLICKHOUSE_PASSWORD": PASSWORD, "CLICKHOUSE_USER": "gftune-demo-clickhouse-user",
           "KAFKA_USERNAME": "gftune-demo-kafka-user", "KAFKA_PASSWORD": "gftune-demo-kafka-pw"}
PIPELINES = ("join-demo-pipeline", "otlp-traces", "ran-5g-telemetry")
REPOSITORY = "acme/pipelines"  # the repository's name on the GitHub stand-in
WORKFLOWS = ROOT / ".github" / "workflows"


def scenario(pipelines: tuple[str, ...] = PIPELINES) -> dict[str, Any]:
    demo = yaml.safe_load((ROOT / "scenarios" / "demo.yaml").read_text())
    entries = []
    for entry in demo["pipelines"]:
        path = (ROOT / "scenarios" / entry["file"]).resolve()
        if path.stem in pipelines:
            entries.append({**entry, "file": str(path)})
    assert len(entries) == len(pipelines), "every pipeline must be one of scenarios/demo.yaml's"
    return {"name": "gitops-e2e", "description": "three example pipelines, healthy", "seed": 11, "pipelines": entries}


def git(repo: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.invalid"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=check, capture_output=True, text=True).stdout.strip()


def config(api_url: str, prometheus_url: str | None, *, time_scale: float = 20.0, settle: str = "20s",
           window: str = "60s") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "gftune/v1", "kind": "Config", "api": {"url": api_url, "timeout": "10s", "retries": 2},
        "apply": {"max_plan_age": "1h", "lock_ttl": "30m", "stop_timeout": "5m", "running_timeout": "15m"},
        "verify": {"settle": settle, "window": window, "tolerance": 0.1}, "time_scale": time_scale,
    }
    if prometheus_url:
        doc["metrics"] = {"prometheus": prometheus_url, "namespace": "glassflow"}
    return doc


def make_origin(tmp: Path, cfg: dict[str, Any], *, pipelines: tuple[str, ...] = PIPELINES,
                policies: tuple[str, ...] = (), extra: dict[str, str] | None = None) -> tuple[Path, Path]:
    """(bare origin, developer clone on main) with gftune.yaml, the pipeline and policy files."""
    seed = tmp / "seed"
    (seed / "pipelines").mkdir(parents=True)
    (seed / "policies").mkdir()
    for pid in pipelines:
        shutil.copy(ROOT / "pipelines" / f"{pid}.yaml", seed / "pipelines" / f"{pid}.yaml")
    for name in policies:
        shutil.copy(ROOT / "policies" / f"{name}.yaml", seed / "policies" / f"{name}.yaml")
    (seed / "gftune.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (seed / ".gitignore").write_text(".gftune/\n")
    for name, text in (extra or {}).items():
        target = seed / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "pipelines as they run")
    origin = tmp / "origin.git"
    git(tmp, "clone", "-q", "--bare", str(seed), str(origin))
    dev = tmp / "dev"
    git(tmp, "clone", "-q", str(origin), str(dev))
    shutil.rmtree(seed)
    return origin, dev


def edit(repo: Path, pipeline_id: str, changes: dict[str, Any]) -> None:
    """Change values in a pipeline file (a YAML round trip; field paths as gftune names them)."""
    from gftune.desired import paths

    path = repo / "pipelines" / f"{pipeline_id}.yaml"
    doc = yaml.safe_load(path.read_text())
    for field_path, value in changes.items():
        paths.set_value(doc["spec"], field_path, value)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def allow_any_sha(origin: Path) -> None:
    """GitHub serves any commit a ref reaches (actions/checkout fetches by SHA)."""
    git(origin, "config", "uploadpack.allowAnySHA1InWant", "true")


def push_pull_request(dev: Path, number: int, branch: str) -> tuple[str, str]:
    """Push ``branch`` and the refs GitHub keeps for pull request ``number``: ``refs/pull/N/head`` and
    the test merge ``refs/pull/N/merge`` (the head merged into main). Returns (head sha, merge sha)."""
    git(dev, "push", "-q", "-f", "origin", f"{branch}:refs/heads/{branch}")
    git(dev, "push", "-q", "-f", "origin", f"{branch}:refs/pull/{number}/head")
    head = git(dev, "rev-parse", branch)
    git(dev, "checkout", "-q", "--detach", "main")
    git(dev, "merge", "-q", "--no-ff", "-m", f"Merge {head} into main", branch)
    merge = git(dev, "rev-parse", "HEAD")
    git(dev, "push", "-q", "-f", "origin", f"{merge}:refs/pull/{number}/merge")
    git(dev, "checkout", "-q", branch)
    return head, merge


def merge_pull_request(dev: Path, branch: str) -> tuple[str, str]:
    """Merge ``branch`` into main (a merge commit) and push: (main before, main after)."""
    git(dev, "checkout", "-q", "main")
    before = git(dev, "rev-parse", "HEAD")
    git(dev, "merge", "-q", "--no-ff", "-m", f"Merge branch {branch}", branch)
    git(dev, "push", "-q", "origin", "main")
    return before, git(dev, "rev-parse", "HEAD")


def pull_request_event(number: int, head: str, branch: str, base: str, action: str = "synchronize") -> dict[str, Any]:
    return {"action": action, "number": number,
            "pull_request": {"number": number, "head": {"sha": head, "ref": branch},
                             "base": {"sha": base, "ref": "main"}, "state": "open"}}


def actions_runner(standin: GitHubStandIn, origin: Path, scratch: Path, vars: dict[str, str],
                   secrets: dict[str, str] | None = None) -> ActionsRunner:
    """A runner of the shipped workflows on ``origin`` (the test's gftune on PATH; :data:`SECRETS` by
    default, as the repository's secrets)."""
    return ActionsRunner(standin=standin, repository=REPOSITORY, origin=origin, action_dir=ROOT,
                         tools=Path(sys.executable).parent, scratch=scratch, vars=vars,
                         secrets=dict(SECRETS if secrets is None else secrets))


def open_pull_request(dev: Path, standin: GitHubStandIn, number: int, branch: str) -> tuple[str, str]:
    """Push ``branch`` as pull request ``number`` (:func:`push_pull_request`) and open it on the
    stand-in. Returns (head sha, merge sha)."""
    head, merge = push_pull_request(dev, number, branch)
    standin.open_pull(REPOSITORY, number, head_sha=head, head_ref=branch)
    return head, merge


def run_plan_workflow(runner: ActionsRunner, number: int, branch: str, base: str, head: str, merge: str,
                      action: str = "opened") -> dict[str, JobResult]:
    """plan.yml for a ``pull_request`` event of pull request ``number`` (on its test merge), by job."""
    jobs = runner.run(WORKFLOWS / "plan.yml", event_name="pull_request",
                      event=pull_request_event(number, head, branch, base, action), sha=merge,
                      ref=f"refs/pull/{number}/merge")
    return {j.job: j for j in jobs}
