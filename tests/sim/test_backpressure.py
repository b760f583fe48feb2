"""Stream depth, its ratio and ingestor backpressure tell one story.

The depth is what NATS stores (backlog plus the sink's unacked in-flight messages); the ingestor
is held back exactly when that depth reaches ``backpressure_threshold x maxMsgs``, so the gauge is
1 whenever the ratio is at the threshold and 0 whenever it is below, and 0 while the ingestor is
not running. Once a correctly sized change has drained the backlog, the stream is far from full.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gftune.desired import paths
from gftune.sim import Simulator
from gftune.sim.clock import ManualClock
from tests.sim.helpers import World
from tests.sim.test_conservation import SCENARIOS

THRESHOLD = 0.9
EPS = 1e-9  # float rounding of a depth held exactly at the threshold


def agree(active: float, ratio: float, running: bool) -> bool:
    if not running:
        return active == 0
    return active == (1 if ratio >= THRESHOLD - EPS else 0)


class Watched(World):
    """A world that checks, after every sim second, that the gauge and the depth ratio agree."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[tuple[float, str, float, float]] = []

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds)):
            super().run(1)
            for pid, row in self.store.rows.items():
                gauges = row.model.gauges()
                if not gauges["streams"] or gauges["max_msgs"] == float("inf"):
                    continue
                ratio = max(depth for _, depth in gauges["streams"]) / gauges["max_msgs"]
                active = gauges["ingestor_backpressure_active"]
                self.seen.append((self.clock.now(), row.status, active, ratio))
                assert agree(active, ratio, row.status == "Running"), \
                    f"{pid} t={self.clock.now():.0f} {row.status}: backpressure {active} at depth ratio {ratio:.3f}"


def test_after_the_right_change_the_backlog_drains_and_the_stream_empties():
    world = Watched("backpressure-sink-bound")
    pid = world.pid()
    world.run(120)
    assert world.gauges(pid)["ingestor_backpressure_active"] == 1
    world.stop(pid)
    world.store.operate(pid, "resume")  # a restart with no change: back to the same backpressure
    world.wait_for(pid, "Running")
    world.run(30)
    assert world.gauges(pid)["ingestor_backpressure_active"] == 1
    fix = world.truth(pid)["min_config"]["changes"]
    assert fix["resources.sink.replicas"] == {"from": 1, "to": 2}
    world.put_resources(pid, lambda resources: paths.set_value(resources, "sink.replicas", 2))
    waited = 0
    while world.truth(pid)["records"]["kafka_lag"] > 0:
        assert waited < 3600, "the Kafka backlog never drained"
        world.run(10)
        waited += 10
    world.run(60)
    ratio = max(depth for _, depth in world.gauges(pid)["streams"]) / world.gauges(pid)["max_msgs"]
    assert ratio < 0.35, f"caught up, the stream is far from full (ratio {ratio:.3f})"
    assert world.gauges(pid)["ingestor_backpressure_active"] == 0
    assert world.truth(pid)["records"]["lost"] == 0
    statuses = {status for _, status, _, _ in world.seen}
    assert {"Running", "Stopping", "Resuming"} <= statuses  # the checks covered every phase


def test_the_exposed_gauge_and_ratio_agree_for_every_scenario_at_once():
    clock = ManualClock(time_scale=10.0)
    sim = Simulator(SCENARIOS, time_scale=10.0, clock=clock).start()
    try:
        checked = set()
        for step in range(40):
            if step in (10, 20):  # the operator acts from the next model step on
                for pid in sim.store.rows:
                    sim.store.operate(pid, "stop" if step == 10 else "resume")
            clock.advance(15)
            samples: dict[str, dict[str, float]] = {}
            for family in text_string_to_metric_families(httpx.get(sim.metrics_url).text):
                for sample in family.samples:
                    if "pipeline_id" in sample.labels:
                        samples.setdefault(sample.name, {})[sample.labels["pipeline_id"]] = sample.value
            statuses = {row["pipeline_id"]: row["status"] for row in sim.store.list()}
            for pid, ratio in samples["glassflow_gfm_stream_depth_ratio"].items():
                active = samples["glassflow_gfm_ingestor_backpressure_active"][pid]
                assert agree(active, ratio, statuses[pid] == "Running"), (step, pid, statuses[pid], active, ratio)
                checked.add((pid, active))
        assert {active for _, active in checked} == {0, 1}
    finally:
        sim.stop()


@pytest.mark.parametrize("name", ["healthy", "spike"])
def test_no_backpressure_while_the_stream_has_room(name):
    world = Watched(name)
    world.run(500)  # spike: a 60 s burst at 300 s
    assert max(ratio for _, _, _, ratio in world.seen) < 0.8
    assert {active for _, _, active, _ in world.seen} == {0}
