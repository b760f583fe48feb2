"""The NATS exporter's JetStream series (an option): names and labels of prometheus-nats-exporter
v0.17.3 ``collector/jsz.go`` behind the chart's collector, values from the simulated streams."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gftune.sim import Simulator
from gftune.sim.clock import ManualClock

SERVER = {"server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader"}
STREAM = SERVER | {"account", "account_id", "stream_name", "stream_leader", "is_stream_leader", "stream_raft_group"}
CONSUMER = STREAM | {"consumer_name", "consumer_leader", "is_consumer_leader", "consumer_desc"}
EXPECTED = {
    "glassflow_jetstream_server_jetstream_disabled": SERVER, "glassflow_jetstream_server_total_streams": SERVER,
    "glassflow_jetstream_server_total_consumers": SERVER, "glassflow_jetstream_server_total_messages": SERVER,
    "glassflow_jetstream_server_total_message_bytes": SERVER,
    "glassflow_jetstream_stream_total_messages": STREAM, "glassflow_jetstream_stream_total_bytes": STREAM,
    "glassflow_jetstream_stream_first_seq": STREAM, "glassflow_jetstream_stream_last_seq": STREAM,
    "glassflow_jetstream_stream_consumer_count": STREAM, "glassflow_jetstream_stream_subject_count": STREAM,
    "glassflow_jetstream_stream_limit_bytes": STREAM,
    "glassflow_jetstream_consumer_delivered_consumer_seq": CONSUMER,
    "glassflow_jetstream_consumer_delivered_stream_seq": CONSUMER,
    "glassflow_jetstream_consumer_num_ack_pending": CONSUMER, "glassflow_jetstream_consumer_num_redelivered": CONSUMER,
    "glassflow_jetstream_consumer_num_waiting": CONSUMER, "glassflow_jetstream_consumer_num_pending": CONSUMER,
    "glassflow_jetstream_consumer_ack_floor_stream_seq": CONSUMER,
    "glassflow_jetstream_consumer_ack_floor_consumer_seq": CONSUMER,
}


def _scrape(nats_exporter: bool) -> tuple[dict, Simulator]:
    clock = ManualClock(time_scale=10.0)
    sim = Simulator(["sink-retries", "join-sink-bound"], time_scale=10.0, clock=clock,
                    nats_exporter=nats_exporter).start()
    clock.advance(120)
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(sim.metrics_url).text)}
    return families, sim


def test_off_by_default():
    families, sim = _scrape(False)
    sim.stop()
    assert not [name for name in families if "jetstream" in name]


def test_the_exporters_jetstream_gauges_with_the_simulated_streams():
    families, sim = _scrape(True)
    try:
        exposed = {name: f for name, f in families.items() if "jetstream" in name}
        assert set(exposed) == set(EXPECTED)
        for name, family in exposed.items():
            assert family.type == "gauge", name
            for sample in family.samples:
                assert set(sample.labels) == EXPECTED[name] | {"job", "instance"}, name
                assert sample.labels["job"] == "nats-exporter"

        def by_stream(name: str) -> dict[str, float]:
            return {s.labels["stream_name"]: s.value for s in exposed[name].samples}

        for pid in ("orders-retries", "orders-join-sink-bound"):
            depths = sim.truth(pid)["records"]["stream_depth"]
            messages = by_stream("glassflow_jetstream_stream_total_messages")
            assert {name: messages[name] for name in depths} == pytest.approx(
                {name: round(depth) for name, depth in depths.items()}, abs=1)
        # sink-retries: NAKed flushes wait for redelivery, delivered but not acked
        sink_stream = next(n for n in sim.truth("orders-retries")["records"]["stream_depth"])
        assert by_stream("glassflow_jetstream_consumer_num_redelivered")[sink_stream] > 1000
        assert by_stream("glassflow_jetstream_consumer_num_ack_pending")[sink_stream] > 1000
        consumers = {s.labels["consumer_name"].split("-")[2] for s in
                     exposed["glassflow_jetstream_consumer_num_pending"].samples}
        assert consumers == {"si", "jl", "jr"}  # sink, join left, join right
    finally:
        sim.stop()
