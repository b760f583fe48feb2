"""A kept fix's catch-up surplus is given back after a short hold without backlog (issue 13), once.

A pipeline reading 8000/s with 4 ingestor replicas of 6000/s (33% busy: what a fix sized for a
backlog leaves once it is drained) and 2 sink replicas that keep up, scraped by a real Prometheus.
It has just been changed (stop, edit, resume). Without a record that apply kept that change for a
scale-up row, the 10-minute hold passes and nothing is proposed (``overprovisioned`` waits 30 minutes
and an hour after any change). With the ``gftune:applied=stream-backpressure@…`` tag apply writes,
``catch-up-release`` proposes the ingestors back to 2 (67% busy, inside the 0.5-0.9 band) and
nothing else. Applied (by hand) and recorded as its own kept change, it proposes nothing again.
The simulator's truth (read only here) confirms 2 replicas carry the input.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gftune.desired.repo import load_repo
from gftune.live import read_live_sync
from gftune.orchestration.policies import plan_policies
from gftune.plan import tags
from gftune.sim import Simulator
from tests.policy.conftest import PASSWORD_ENV, ROOT, TIME_SCALE, write_repo
from tests.support.api import edit_by_hand, live
from tests.support.prometheus import PrometheusServer

PIPELINE = "orders-released"
INGESTOR = "resources.sources[orders].replicas"
SCENARIO = {
    "name": "catch-up-surplus",
    "description": "8000/s on 4 ingestor replicas of 6000/s (a drained catch-up's surplus) and 2 sink replicas.",
    "seed": 5,
    "pipelines": [{
        "file": str(ROOT / "scenarios" / "pipelines" / "orders.yaml"),
        "pipeline_id": PIPELINE,
        "patch": {"sources": [{"source_id": "orders", "topic": "orders-released"}],
                  "resources": {"sources": [{"source_id": "orders", "replicas": 4,
                                             "limits": {"cpu": "1", "memory": "512Mi"}}],
                                "sink": {"replicas": 2, "limits": {"cpu": "1", "memory": "1536Mi"}}}},
        "model": {"sources": {"orders": {"profile": {"kind": "constant", "rate": 8000}, "noise": 0.02,
                                         "partitions": 8, "record_bytes": 512}},
                  "ingestor": {"per_replica_rate": 6000},
                  "sink": {"insert_overhead": 0.05, "insert_per_row": 2.0e-6, "prepare_per_row": 1.5e-4},
                  "clickhouse": {"insert_budget": 20}},
    }],
}
HOLD_S = 10 * 60 / TIME_SCALE  # the policy's `for: 10m`, in wall seconds
RATE_WINDOW_S = 5 * 60 / TIME_SCALE  # after a restart the 5m rates need a window of data before they hold


class Servers:
    def __init__(self, sim: Simulator, prometheus: PrometheusServer, repo: Path) -> None:
        self.sim, self.prometheus, self.repo = sim, prometheus, repo

    def outcome(self) -> Any:
        state = load_repo(self.repo, overrides={"api_url": self.sim.api_url, "prometheus_url": self.prometheus.url},
                          env={"GFTUNE_TIME_SCALE": str(TIME_SCALE), PASSWORD_ENV: "sim-password"})
        state.pipelines = {PIPELINE: state.pipelines[PIPELINE]}
        found = read_live_sync(state.config, [PIPELINE])
        return plan_policies(state, found, state.config, datetime.now(UTC)).outcomes[PIPELINE]

    def record_kept(self, policies: list[str]) -> None:
        """What apply writes once it kept a change: ``gftune:applied=<policies>@<now>``."""
        current = live(self.sim.api_url, PIPELINE).get("metadata", {}).get("tags") or []
        body = {"metadata": {"tags": tags.with_applied(current, policies, datetime.now(UTC))}}
        answer = httpx.patch(f"{self.sim.api_url}/api/v1/pipeline/{PIPELINE}/metadata", json=body, timeout=10)
        assert answer.status_code < 300, answer.text

    def truth(self) -> dict[str, Any]:
        return self.sim.truth(PIPELINE)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    sim = Simulator(scenarios=[SCENARIO], time_scale=TIME_SCALE)
    sim.start()
    prometheus = None
    try:
        prometheus = PrometheusServer([sim], "250ms", workdir=tmp_path_factory.mktemp("prom-release")).start()
        yield Servers(sim, prometheus, write_repo(tmp_path_factory.mktemp("repo-release"), sim.api_url))
    finally:
        if prometheus is not None:
            prometheus.stop()
        sim.stop()


@pytest.mark.slow
def test_a_kept_fixs_surplus_is_released_once_after_the_hold(servers: Servers) -> None:
    edit_by_hand(servers.sim.api_url, PIPELINE, {})  # the fix: a change (stop, edit, resume)
    time.sleep(HOLD_S + RATE_WINDOW_S + 2)
    assert servers.truth()["utilisation"]["ingestor[orders]"] < 0.5, "the scenario leaves a surplus"
    assert servers.outcome().proposals == [], "an unrecorded change is no kept fix: the slack waits for overprovisioned"

    servers.record_kept(["stream-backpressure"])  # apply's last write moves updated_at: the cooldown starts again
    time.sleep(HOLD_S + 1)
    outcome = servers.outcome()
    proposals = outcome.proposals
    assert [p.policy for p in proposals] == ["catch-up-release"], outcome.notes
    changes = {c.path: (c.old, c.new) for c in proposals[0].changes}
    assert changes == {INGESTOR: (4, 2)}, "ingestors only, to what 8000/s needs at 75% (the sink is never shrunk)"
    assert any(e.signal == "applied_by" and e.measured is not None for e in proposals[0].evidence)

    edit_by_hand(servers.sim.api_url, PIPELINE, {INGESTOR: 2})
    servers.record_kept(["catch-up-release"])
    time.sleep(HOLD_S + RATE_WINDOW_S + 2)
    truth = servers.truth()
    assert 0.5 < truth["utilisation"]["ingestor[orders]"] < 0.9, truth["utilisation"]
    assert truth["utilisation"]["sink"] < 0.9
    assert servers.outcome().proposals == [], "released once: its own kept change is no catch-up"
