"""The example repository for tests that plan and apply against the simulator: a git copy of
``pipelines/`` with known secrets in the environment, the CLI in process, and ``apply_plan`` — the
real ``gftune apply`` carrying out a saved plan (so that tests check that what plan proposes really
converges, through the same executor users run)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from click.testing import CliRunner

from gftune.apply.context import ApplyContext
from gftune.apply.executor import apply_plan as apply_saved_plan
from gftune.apply.journal import JournalStore
from gftune.apply.lifecycle import API_ACTIONS
from gftune.apply.state import DONE
from gftune.cli import cli
from gftune.client import GlassFlowClient
from gftune.desired import secrets
from gftune.desired.config import Config
from gftune.plan.model import Plan
from tests.support.api import api, wait_status

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "CLICKHOUSE_PASSWORD": "Ch-Known-Secret-7781",
    "KAFKA_PASSWORD": "Kafka-Known-Secret-4410",
    "KAFKA_USERNAME": "kafka-user",
    "CLICKHOUSE_USER": "ch-user",
}
EXAMPLES = sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))
# The values the demo scenario creates its pipelines with (scenarios/demo.yaml, each pipeline's patch:).
DEMO_SECRETS = {"CLICKHOUSE_PASSWORD": "gftune-demo-clickhouse-pw", "KAFKA_PASSWORD": "gftune-demo-kafka-pw"}


@dataclass
class Repo:
    path: Path
    git: git.Repo

    def spec(self, pipeline_id: str) -> dict[str, Any]:
        return yaml.safe_load((self.path / "pipelines" / f"{pipeline_id}.yaml").read_text())["spec"]

    def edit(self, pipeline_id: str, change: Callable[[dict[str, Any]], None], *, commit: bool = False) -> None:
        """Change a pipeline file (YAML round trip through PyYAML: comments are not needed here)."""
        file = self.path / "pipelines" / f"{pipeline_id}.yaml"
        doc = yaml.safe_load(file.read_text())
        change(doc["spec"])
        file.write_text(yaml.safe_dump(doc, sort_keys=False))
        if commit:
            self.commit(f"edit {pipeline_id}")

    def commit(self, message: str) -> str:
        self.git.git.add(A=True)
        return self.git.index.commit(message).hexsha

    @property
    def head(self) -> str:
        return self.git.head.commit.hexsha


def example_repo(root: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """The example pipelines in a fresh git repository at ``root``; no metrics configured; secrets in env."""
    (root / "pipelines").mkdir(parents=True)
    for file in (ROOT / "pipelines").glob("*.yaml"):
        shutil.copy(file, root / "pipelines" / file.name)
    (root / "gftune.yaml").write_text("apiVersion: gftune/v1\nkind: Config\napi: {retries: 2, timeout: 5s}\n")
    for name in [n for n in list(os.environ) if n.startswith("GFTUNE_")]:
        monkeypatch.delenv(name)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    repository = git.Repo.init(root, initial_branch="main")
    with repository.config_writer() as cfg:
        cfg.set_value("user", "name", "gftune tests").set_value("user", "email", "tests@example.invalid")
    result = Repo(root, repository)
    result.commit("example pipelines")
    return result


def gftune(*args: Any, env: dict[str, str] | None = None) -> Any:
    """Run the CLI in-process; returns click's Result (exit_code, stdout, stderr). ``env`` adds
    environment variables for this run only."""
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def plan_json(repo: Repo, api_url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = gftune("plan", "--repo", repo.path, "--api", api_url, "--format", "json", *extra)
    return result.exit_code, json.loads(result.stdout)


def apply_plan(plan: dict[str, Any], api_url: str, repo: Repo) -> list[tuple[str, str]]:
    """Carry out a saved plan document with gftune's executor (lock, capture, the plan's lifecycle,
    verification by health only: no metrics are configured, and the settle and observation windows are
    zero); returns the lifecycle steps it carried out, ``(pipeline_id, action)`` in order."""
    config = Config(api_url=api_url, verify_settle=0.0, verify_window=0.0)

    async def run() -> Any:
        async with GlassFlowClient(api_url) as client:
            ctx = ApplyContext(client=client, config=config, store=JournalStore(repo.path), owner="tests@plan",
                               resolver=secrets.Resolver(SECRETS, base_dir=repo.path))
            return await apply_saved_plan(Plan.from_dict(plan), ctx, check_age=False)

    result = asyncio.run(run())
    assert result.journal is not None, result.messages
    outcomes = {pid: run.outcome for pid, run in result.journal.pipelines.items()}
    assert all(o in ("verified", "applied") for o in outcomes.values()), (outcomes, result.messages, [
        (run.error, [(s.name, s.state, s.detail) for s in run.steps]) for run in result.journal.pipelines.values()])
    return [(pid, step.action) for pid, run in result.journal.pipelines.items() for step in run.steps
            if step.phase == "apply" and step.action in API_ACTIONS and step.state == DONE]


def deploy_examples(repo: Repo, api_url: str) -> dict[str, Any]:
    """Create every example pipeline with the bodies a plan would send; returns that plan.

    The pipelines are left without the provenance tag the apply recorded (``gftune:commit=``): as if
    they were created before gftune applied anything, so that a test states provenance itself
    (:func:`tag_applied`)."""
    code, plan = plan_json(repo, api_url)
    assert code == 2, plan
    assert {p["action"] for p in plan["pipelines"]} == {"create"}
    apply_plan(plan, api_url, repo)
    client = api(api_url)
    for entry in plan["pipelines"]:
        tags = client.get(entry["pipeline_id"])["metadata"]["tags"] or []
        client.patch_metadata(entry["pipeline_id"], [t for t in tags if not t.startswith("gftune:commit=")])
    return plan


def change_live_replicas(api_url: str, pipeline_id: str, replicas: int) -> None:
    """What an operator does by hand: stop, PUT the resources with one change, wait for Running."""
    client = api(api_url)
    client.stop(pipeline_id)
    wait_status(api_url, pipeline_id, "Stopped")
    body = client.get_resources(pipeline_id)["pipeline_resources"]
    body["ingestor"]["base"]["replicas"] = replicas
    client.put_resources(pipeline_id, body)
    wait_status(api_url, pipeline_id, "Running")


def tag_applied(api_url: str, pipeline_id: str, commit: str) -> None:
    """The provenance tag apply leaves on a pipeline it applied from ``commit``."""
    client = api(api_url)
    tags = client.get(pipeline_id)["metadata"]["tags"] or []
    client.patch_metadata(pipeline_id, [*tags, f"gftune:commit={commit}"])
