"""Support for plan tests against the simulator: a git copy of the example repository with known
secrets in the environment, the CLI, and a small step runner that carries out a saved plan's
lifecycle exactly as written (so tests can check that what plan proposes really converges)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from click.testing import CliRunner

from gftune.cli import cli
from gftune.client import GlassFlowClient
from gftune.desired import secrets
from gftune.plan import canonical

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "CLICKHOUSE_PASSWORD": "Ch-Known-Secret-7781",
    "KAFKA_PASSWORD": "Kafka-Known-Secret-4410",
    "KAFKA_USERNAME": "kafka-user",
    "CLICKHOUSE_USER": "ch-user",
}
EXAMPLES = sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))


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


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """The example pipelines in a fresh git repository; no metrics configured; secrets in env."""
    root = tmp_path / "repo"
    (root / "pipelines").mkdir(parents=True)
    for file in (ROOT / "pipelines").glob("*.yaml"):
        shutil.copy(file, root / "pipelines" / file.name)
    (root / "gftune.yaml").write_text("apiVersion: gftune/v1\nkind: Config\napi: {retries: 2, timeout: 5s}\n")
    for name in [n for n in list(__import__("os").environ) if n.startswith("GFTUNE_")]:
        monkeypatch.delenv(name)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    repository = git.Repo.init(root, initial_branch="main")
    with repository.config_writer() as cfg:
        cfg.set_value("user", "name", "gftune tests").set_value("user", "email", "tests@example.invalid")
    result = Repo(root, repository)
    result.commit("example pipelines")
    return result


def gftune(*args: str) -> Any:
    """Run the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def plan_json(repo: Repo, api_url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = gftune("plan", "--repo", repo.path, "--api", api_url, "--format", "json", *extra)
    return result.exit_code, json.loads(result.stdout)


async def _wait_status(client: GlassFlowClient, pipeline_id: str, status: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (current := await client.status(pipeline_id)) != status:
        assert loop.time() < deadline, f"{pipeline_id} stayed {current}, expected {status}"
        await asyncio.sleep(0.02)


async def _wait_gone(client: GlassFlowClient, pipeline_id: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await client.exists(pipeline_id):
        assert loop.time() < deadline, f"{pipeline_id} still exists"
        await asyncio.sleep(0.02)


def wait_status(api_url: str, pipeline_id: str, status: str) -> None:
    async def run() -> None:
        async with GlassFlowClient(api_url) as client:
            await _wait_status(client, pipeline_id, status)

    asyncio.run(run())


def _join_matches(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    leaves, _ = canonical.desired_resource_leaves({"resources": {"join": wanted}})
    return all(canonical.resource_values_equal(leaf.internal, canonical.internal_get(current, leaf.internal),
                                               leaf.value) for leaf in leaves)


async def execute(plan: dict[str, Any], api_url: str, base_dir: Path) -> list[tuple[str, str]]:
    """Carry out every create/update/delete of a plan document step by step; returns the requests sent."""
    sent: list[tuple[str, str]] = []
    env = dict(SECRETS)
    async with GlassFlowClient(api_url) as api:
        for entry in plan["pipelines"]:
            if entry["action"] not in ("create", "update", "delete"):
                continue
            pid, payload = entry["pipeline_id"], entry["payload"]
            join_reset: bool | None = None
            for step in entry["lifecycle"]:
                if step.get("when") == "join_reset":
                    if join_reset is None:
                        current = (await api.get_resources(pid))["pipeline_resources"]
                        join_reset = not _join_matches(current, payload["join_restore"]["join"])
                    if not join_reset:
                        continue
                action = step["action"]
                sent.append((pid, action))
                if action == "create":
                    await api.create(secrets.resolve_document(payload["document"], secrets.Resolver(env, base_dir=base_dir)))
                elif action == "edit":
                    await api.edit(pid, secrets.resolve_document(payload["document"], secrets.Resolver(env, base_dir=base_dir)))
                elif action == "put_resources":
                    if step.get("payload") == "join_restore":
                        body = (await api.get_resources(pid))["pipeline_resources"]
                        body["join"] = payload["join_restore"]["join"]
                    else:
                        body = payload["resources"]["pipeline_resources"]
                    await api.put_resources(pid, body)
                elif action == "stop":
                    await api.stop(pid)
                elif action == "wait_status":
                    await _wait_status(api, pid, step["status"])
                elif action == "rename":
                    await api.rename(pid, payload["name"])
                elif action == "patch_metadata":
                    await api.patch_metadata(pid, payload["metadata"]["tags"])
                elif action == "delete":
                    await api.delete(pid)
                elif action == "wait_gone":
                    await _wait_gone(api, pid)
                else:
                    raise AssertionError(f"unknown step {step}")
    return sent


def apply_plan(plan: dict[str, Any], api_url: str, repo: Repo) -> list[tuple[str, str]]:
    return asyncio.run(execute(plan, api_url, repo.path))


def deploy_examples(repo: Repo, api_url: str) -> dict[str, Any]:
    """Create every example pipeline with the bodies a plan would send; returns that plan."""
    code, plan = plan_json(repo, api_url)
    assert code == 2, plan
    assert {p["action"] for p in plan["pipelines"]} == {"create"}
    apply_plan(plan, api_url, repo)
    return plan


def api(api_url: str) -> Any:
    """A synchronous facade over the async client for assertions in tests."""

    class Sync:
        def __getattr__(self, name: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                async def run() -> Any:
                    async with GlassFlowClient(api_url) as client:
                        return await getattr(client, name)(*args, **kwargs)

                return asyncio.run(run())

            return call

    return Sync()


@pytest.fixture
def deployed(sim_factory, repo):
    """The example repository's pipelines created on a simulator, as the plan of ``repo`` says."""
    sim = sim_factory(time_scale=200)
    deploy_examples(repo, sim.api_url)
    return sim


def change_live_replicas(api_url: str, pipeline_id: str, replicas: int) -> None:
    """What an operator does by hand: stop, PUT the resources with one change, wait for Running."""

    async def run() -> None:
        async with GlassFlowClient(api_url) as client:
            await client.stop(pipeline_id)
            await _wait_status(client, pipeline_id, "Stopped")
            body = (await client.get_resources(pipeline_id))["pipeline_resources"]
            body["ingestor"]["base"]["replicas"] = replicas
            await client.put_resources(pipeline_id, body)
            await _wait_status(client, pipeline_id, "Running")

    asyncio.run(run())


def tag_applied(api_url: str, pipeline_id: str, commit: str) -> None:
    """The provenance tag apply leaves on a pipeline it applied from ``commit``."""
    client = api(api_url)
    tags = client.get(pipeline_id)["metadata"]["tags"] or []
    client.patch_metadata(pipeline_id, [*tags, f"gftune:commit={commit}"])
