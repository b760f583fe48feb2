"""Every record the model reads from Kafka is accounted for, whatever the lifecycle does to it.

Kafka input = Kafka lag + read; read = what the streams store (backlog and unacked in-flight
messages) + written to ClickHouse + DLQ + dropped by the transform (filtered, duplicates) + lost
(maxAge expiry) + purged (terminate) + swept to the DLQ by the operator at a forced stop. Only maxAge expiry of a backlog loses records;
stop, resume, edit and PUT /resources never do, and a graceful stop drains the consumers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gftune.desired import paths
from tests.sim.helpers import World

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
EXPIRING = {"stream-loss"}  # the only scenario whose streams expire records (maxAge)


def balance(world: World, pid: str) -> dict[str, float]:
    """The terms of the record balance, read from the truth and the model's counters."""
    truth = world.truth(pid)
    records = truth["records"]
    model = world.store.row(pid).model
    # An OTLP source has no Kafka counter: what the receiver took is what left its queue ("lag").
    read = records["read"]
    if not model.kafka:
        assert read == pytest.approx(records["kafka_input"] - records["kafka_lag"], abs=1e-6)
    terms = {
        "streams": sum(records["stream_depth"].values()),
        "written": records["written"],
        "dlq": sum(records["dlq"].values()),
        "filtered": records["filtered"],
        "duplicates": records["duplicates"],
        "lost": records["lost"],
        "purged": records.get("purged", 0.0),
        "swept": records["swept"],
    }
    return {"input": records.get("kafka_input", read + records["kafka_lag"]), "lag": records["kafka_lag"],
            "read": read, **terms, "unaccounted": read - sum(terms.values())}


class Checked(World):
    """A world that checks the record balance after every sim second it runs."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
        self.worst = 0.0

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds)):
            super().run(1)
            for pid in self.store.rows:
                b = balance(self, pid)
                tolerance = 1e-6 * max(1.0, b["read"])
                assert abs(b["unaccounted"]) <= tolerance, f"{self.name} t={self.clock.now():.0f}: {b}"
                assert b["input"] == pytest.approx(b["lag"] + b["read"], rel=1e-9), b
                self.worst = max(self.worst, abs(b["unaccounted"]))


@pytest.mark.parametrize("name", SCENARIOS)
def test_records_are_conserved_across_stop_resume_edit_put_and_terminate(name):
    world = Checked(name)
    pid = world.pid()
    world.run(120)
    world.stop(pid)
    assert sum(world.truth(pid)["records"]["stream_depth"].values()) == 0, "Stopped once the consumers drained"
    world.store.operate(pid, "resume")
    world.wait_for(pid, "Running")
    world.run(30)
    world.edit(pid, lambda doc: None)  # an edit that changes nothing
    world.run(30)
    world.put_resources(pid, lambda resources: None)  # a PUT that changes nothing
    world.run(30)
    if name not in EXPIRING:
        assert world.truth(pid)["records"]["lost"] == 0
    lost_before_terminate = world.truth(pid)["records"]["lost"]
    world.store.operate(pid, "terminate")
    world.wait_for(pid, "Stopped")
    records = world.truth(pid)["records"]
    assert records["lost"] == lost_before_terminate, "a purge is counted as purged, not as loss"
    world.store.operate(pid, "resume")
    world.wait_for(pid, "Running")
    world.run(60)
    assert world.truth(pid)["records"]["kafka_input"] > 0


def test_resume_and_no_op_changes_lose_nothing_in_backpressure_sink_bound():
    world = World("backpressure-sink-bound")
    pid = world.pid()
    world.run(120)
    for _ in range(3):
        world.stop(pid)
        world.store.operate(pid, "resume")
        world.wait_for(pid, "Running")
        world.run(20)
    world.edit(pid, lambda doc: None)
    world.run(20)
    world.put_resources(pid, lambda resources: None)
    world.run(20)
    world.put_resources(pid, lambda resources: paths.set_value(resources, "sink.replicas", 2))  # the fix
    world.run(600)
    assert world.truth(pid)["records"]["lost"] == 0


def test_a_stop_waits_for_the_consumers_to_drain():
    world = World("sink-batch-bound")  # a 100000-message stream drained at ~1890/s
    pid = world.pid()
    world.run(120)
    depth = sum(world.truth(pid)["records"]["stream_depth"].values())
    assert depth > 80_000
    world.store.operate(pid, "stop")
    world.run(30)
    assert world.status(pid) == "Stopping", "not drained yet"
    waited = 30 + world.wait_for(pid, "Stopped")
    assert waited == pytest.approx(depth / 1887, rel=0.1)
    records = world.truth(pid)["records"]
    assert sum(records["stream_depth"].values()) == 0
    assert records["dlq"] == {} and records["lost"] == 0


def test_a_stop_that_cannot_drain_in_time_sweeps_the_rest_to_the_dlq():
    world = World("sink-batch-bound")
    pid = world.pid()
    world.run(120)
    world.store.patch_model(pid, {"sink": {"insert_overhead": 20.0}})  # ClickHouse slows to a crawl
    world.store.operate(pid, "stop")
    assert world.wait_for(pid, "Stopped") == pytest.approx(300, abs=2)  # the stop timeout
    records = world.truth(pid)["records"]
    assert sum(records["stream_depth"].values()) == 0
    assert records["swept"] > 50_000  # moved to the DLQ by the operator, not by a component
    assert records["dlq"] == {}  # gfm_dlq_records_written_total is untouched by the sweep
    assert world.store.dlq_state(pid)["total_messages"] == int(records["swept"])
    assert world.store.dlq_consume(pid, 1)[0]["error"] == "retry_exhausted_on_stop"
    assert records["lost"] == 0
