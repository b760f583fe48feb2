"""The baselines' edges against the real servers: PromQL readings from a real Prometheus scraping the
simulator, and changes through the GlassFlow API (stop -> PUT /resources or /edit -> Running)."""

from __future__ import annotations

import time

import pytest

from benchmarks.baselines.user import PipelineApi, PromReader
from benchmarks.harness import held_clock, wait_for_first_scrape

pytestmark = pytest.mark.prometheus

SCALE = 60.0


def test_readings_and_changes_on_the_simulator(sim_factory, prometheus_factory):
    clock = held_clock(SCALE)
    sim = sim_factory("step-up-x2", time_scale=SCALE, clock=clock)
    prom = prometheus_factory([sim], scrape_interval="200ms")
    wait_for_first_scrape(prom, 1)
    clock.release()  # the scenario's t = 0 is observed
    pid = "orders-step-up-x2"
    api = PipelineApi(sim.api_url, pid, sim.clock.now, SCALE)
    reader = PromReader(prom.url, pid, "orders-step-up-x2", SCALE)
    # a 180 s window of a Running pipeline (it starts Running at t = 0): 3 wall seconds of 200 ms
    # scrapes, so that a scrape a loaded machine delays does not move the rate by a sixth
    while sim.clock.now() < 270:
        time.sleep(0.1)
    r = reader.readings(sim.clock.now(), 180.0)
    assert r.read_rate == pytest.approx(4000, rel=0.1)  # per simulated second, at any time scale
    assert r.sink_rate == pytest.approx(4000, rel=0.1)
    assert r.partitions == 8 and r.backpressure == 0.0
    assert r.depth is not None and r.depth < 8000 and r.lag is not None

    config = api.config()
    assert (config.ingestor_replicas, config.sink_replicas, config.max_batch_size) == (1, 1, 1000)
    record = api.change({"resources.sink.replicas": 2})
    assert record["call"] == "put_resources" and record["t_running"] > record["t_stopped"] > record["t_request"]
    record = api.change({"sink.max_batch_size": 2000, "resources.sources[orders].replicas": 2})
    assert record["call"] == "edit"
    after = api.config()
    assert (after.ingestor_replicas, after.sink_replicas, after.max_batch_size) == (2, 2, 2000)
    assert api.status() == "Running"
    assert sim.truth(pid)["records"]["lost"] == 0
