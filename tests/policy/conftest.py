"""Shared, session-scoped servers for the policy tests.

One simulator runs every symptom scenario at once (distinct pipeline ids) at a time scale of 60
(a wall second is a model minute: a 2m `for:` is 2 s, a 5m rate window 5 s), scraped by one real
Prometheus. A second simulator uses the OTel collector's naming under another namespace, to show
that detection works without configuration. The repositories the tests plan with are built from
the simulator's own pipeline documents plus the built-in policies of ``policies/``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gftune.sim import Simulator
from tests.support.prometheus import PrometheusServer, prometheus_binary

ROOT = Path(__file__).resolve().parents[2]
TIME_SCALE = 60.0
SYMPTOM_SCENARIOS = ("healthy", "backpressure-sink-bound", "partition-capped-ingestor", "underprovisioned-ingestor",
                     "sink-batch-bound", "sink-retries", "retry-exhaustion", "dedup-storage", "terminal-errors",
                     "stream-loss", "overprovisioned")
PASSWORD_ENV = "GFTUNE_TEST_CLICKHOUSE_PASSWORD"
WARM_UP_S = 14.0  # model minutes: rate windows (5 s) and `for:` (2 s) filled, backlogs built
# The plans of test_scenarios wait longer: the overprovisioned policy's `for: 30m` needs 30 s of
# Prometheus data (query_range over it, no gaps), which starts a scrape or two after the simulator.
PLAN_WARM_UP_S = 38.0


def scenario_truth(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
    pipeline = doc["pipelines"][0]
    return {"pipeline_id": pipeline["pipeline_id"], **(pipeline.get("truth") or {})}


def write_repo(root: Path, api_url: str, *, policies: bool = True, labels: dict[str, str] | None = None) -> Path:
    """A gftune repository holding every live pipeline of the simulator, as its API returns it."""
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    if policies:
        shutil.copytree(ROOT / "policies", root / "policies", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".gitkeep"))
    with httpx.Client(timeout=10) as client:
        ids = [p["pipeline_id"] for p in client.get(f"{api_url}/api/v1/pipeline").json()]
        for pipeline_id in ids:
            doc = client.get(f"{api_url}/api/v1/pipeline/{pipeline_id}").json()
            doc["sink"]["connection_params"]["password"] = "${env:" + PASSWORD_ENV + "}"
            doc.pop("metadata", None)
            envelope = {"apiVersion": "gftune/v1", "kind": "Pipeline",
                        "metadata": {"name": pipeline_id, "labels": labels or {"env": "test"}}, "spec": doc}
            (root / "pipelines" / f"{pipeline_id}.yaml").write_text(yaml.safe_dump(envelope, sort_keys=False))
    return root


def wait_warm(started: float, warm_up: float = WARM_UP_S) -> None:
    left = warm_up - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)


class SymptomServers:
    def __init__(self, sim: Simulator, prometheus: PrometheusServer | None, repo: Path, started: float) -> None:
        self.sim = sim
        self.prometheus = prometheus
        self.repo = repo
        self.started = started

    def env(self, mode: str) -> dict[str, str]:
        env = {"GFTUNE_API": self.sim.api_url, "GFTUNE_TIME_SCALE": str(TIME_SCALE), PASSWORD_ENV: "sim-password"}
        if mode == "prometheus":
            assert self.prometheus is not None
            env["GFTUNE_PROMETHEUS"] = self.prometheus.url
        else:
            env["GFTUNE_SCRAPE"] = self.sim.metrics_url
        return env


def _servers(tmp_path_factory: pytest.TempPathFactory, naming: str, namespace: str) -> Iterator[SymptomServers]:
    sim = Simulator(scenarios=list(SYMPTOM_SCENARIOS), time_scale=TIME_SCALE, naming=naming, namespace=namespace)
    sim.start()
    started = time.monotonic()
    prometheus = None
    try:
        if prometheus_binary() is not None:
            prometheus = PrometheusServer([sim], "1s", workdir=tmp_path_factory.mktemp(f"prom-{naming}")).start()
        repo = write_repo(tmp_path_factory.mktemp(f"repo-{naming}"), sim.api_url)
        os.environ.setdefault(PASSWORD_ENV, "sim-password")
        yield SymptomServers(sim, prometheus, repo, started)
    finally:
        if prometheus is not None:
            prometheus.stop()
        sim.stop()


@pytest.fixture(scope="session")
def symptom_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SymptomServers]:
    """Every symptom scenario in one simulator (documented names, namespace glassflow) + Prometheus."""
    yield from _servers(tmp_path_factory, "documented", "glassflow")


@pytest.fixture(scope="session")
def collector_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SymptomServers]:
    """The same scenarios exposed with the OTel collector's names under namespace ``acme``."""
    yield from _servers(tmp_path_factory, "collector", "acme")
