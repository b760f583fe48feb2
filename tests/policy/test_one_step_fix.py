"""The sink's fix sizes the ingestor in the same change-set when Prometheus remembers it running clean
(issue 13: one-step fixes).

``step-up-x2``, its step moved to t = 900: 4000/s -> 8000/s on 1 ingestor (6000/s per replica) + 1 sink replica
(~4950/s). After the step the sink saturates and the ingestor backpressures: its batch time counts the
waits, so its capacity is not established *now*. Before the step it ran without backpressure, and a
real Prometheus scraping the simulator holds that hour: ``stream-backpressure``'s one proposal sizes
the sink and the ingestor together, its evidence says where the ingestor's capacity came from, and
once applied (one restart) both stages keep up, which the simulator's truth (read only here) confirms.
The step is moved later than the scenario's 600 s so that the history holds the 5 clean minutes the
sizing needs however long Prometheus takes to start on a loaded machine (its first scrape can come
5 model minutes after the simulator's clock started).
The same plan by direct scrape has no past: the ingestor is left as it is and the plan says why.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gftune.desired import paths
from gftune.desired.repo import load_repo
from gftune.live import read_live_sync
from gftune.orchestration.policies import plan_policies
from gftune.sim import Simulator
from tests.policy.conftest import PASSWORD_ENV, TIME_SCALE, write_repo
from tests.support.api import wait_status
from tests.support.prometheus import PrometheusServer

PIPELINE = "orders-step-up-x2"
INGESTOR = "resources.sources[orders].replicas"
TRUE_INGESTOR_RATE = 6000.0  # the scenario's per_replica_rate (truth: read by the test only)
STEP_AT = 900.0
ROOT = Path(__file__).resolve().parents[2]


def step_up_scenario() -> dict[str, Any]:
    """``scenarios/step-up-x2.yaml`` with its step at ``STEP_AT``."""
    doc = yaml.safe_load((ROOT / "scenarios" / "step-up-x2.yaml").read_text())
    pipeline = doc["pipelines"][0]
    pipeline["file"] = str(ROOT / "scenarios" / pipeline["file"])
    pipeline["model"]["sources"]["orders"]["profile"]["at"] = STEP_AT
    pipeline["truth"]["step_at"] = STEP_AT
    return doc


class Servers:
    def __init__(self, sim: Simulator, prometheus: PrometheusServer, repo: Path) -> None:
        self.sim, self.prometheus, self.repo = sim, prometheus, repo
        self.http = httpx.Client(base_url=sim.api_url, timeout=60)

    def plan(self, metrics: dict[str, str]) -> Any:
        state = load_repo(self.repo, overrides={"api_url": self.sim.api_url, **metrics},
                          env={"GFTUNE_TIME_SCALE": str(TIME_SCALE), PASSWORD_ENV: "sim-password"})
        state.pipelines = {PIPELINE: state.pipelines[PIPELINE]}
        live = read_live_sync(state.config, [PIPELINE])
        return plan_policies(state, live, state.config, datetime.now(UTC)).outcomes[PIPELINE]

    def model_time(self) -> float:
        return float(self.http.get(f"/_sim/truth/{PIPELINE}").json()["sim_seconds"])

    def truth(self) -> dict[str, Any]:
        return self.http.get(f"/_sim/truth/{PIPELINE}").json()

    def apply(self, changes: list[Any]) -> None:
        """What `gftune apply` does, by hand: stop, wait Stopped, POST /edit (resumes), wait Running."""
        doc = self.http.get(f"/api/v1/pipeline/{PIPELINE}").json()
        new = copy.deepcopy(doc)
        for change in changes:
            paths.set_value(new, change.path, change.new)
        assert self.http.post(f"/api/v1/pipeline/{PIPELINE}/stop").status_code == 200
        wait_status(self.sim.api_url, PIPELINE, "Stopped")
        assert self.http.post(f"/api/v1/pipeline/{PIPELINE}/edit", json=new).status_code == 200
        wait_status(self.sim.api_url, PIPELINE, "Running")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    sim = Simulator(scenarios=[step_up_scenario()], time_scale=TIME_SCALE)
    sim.start()
    prometheus = None
    try:
        # every 15 model seconds (the collector pushes every 10)
        prometheus = PrometheusServer([sim], "250ms", workdir=tmp_path_factory.mktemp("prom-step")).start()
        servers = Servers(sim, prometheus, write_repo(tmp_path_factory.mktemp("repo-step"), sim.api_url))
        yield servers
        servers.http.close()
    finally:
        if prometheus is not None:
            prometheus.stop()
        sim.stop()


def first_proposal(servers: Servers, metrics: dict[str, str], until_model_s: float) -> Any:
    """Plan until a policy proposes (the step, then `for: 2m` of backpressure and full flushes)."""
    while True:
        outcome = servers.plan(metrics)
        if outcome.proposals or servers.model_time() > until_model_s:
            return outcome
        time.sleep(0.5)


@pytest.mark.slow
def test_the_sink_fix_sizes_the_ingestor_from_its_clean_history(servers: Servers) -> None:
    prometheus = {"prometheus_url": servers.prometheus.url}
    while servers.model_time() < STEP_AT + 120:  # the step, and backpressure established
        time.sleep(0.5)
    outcome = first_proposal(servers, prometheus, until_model_s=STEP_AT + 900)
    assert [p.policy for p in outcome.proposals] == ["stream-backpressure"], outcome.notes
    proposal = outcome.proposals[0]
    changes = {c.path: c.new for c in proposal.changes}
    assert changes["resources.sink.replicas"] >= 2
    assert changes[INGESTOR] >= 2, proposal.notes
    assert changes[INGESTOR] <= 8, "within the topic's partitions"
    clean = next(e for e in proposal.evidence if e.signal == "ingestor_clean_rate")
    assert clean.measured == pytest.approx(TRUE_INGESTOR_RATE, rel=0.15)
    assert "quantile_over_time" in clean.query and "== 0" in clean.query, clean.query
    assert "without backpressure" in clean.threshold and clean.window, clean.threshold
    assert "busy time without backpressure" in proposal.rationale

    # direct scrape: no past, so today's behaviour, and the plan says why
    scraped = servers.plan({"scrape_url": servers.sim.metrics_url})
    fix = next(p for p in scraped.proposals if p.policy == "stream-backpressure")
    assert INGESTOR not in {c.path for c in fix.changes}
    assert any("needs a Prometheus source" in n for n in fix.notes), fix.notes

    # one change-set: once it is live both stages keep up with the 8000/s (no second step to wait for)
    servers.apply(list(proposal.changes))
    time.sleep(180 / TIME_SCALE)  # past the restart and the first flushes
    utilisation = servers.truth()["utilisation"]
    assert utilisation["ingestor[orders]"] < 0.9, utilisation
    assert utilisation["sink"] < 0.9, utilisation
