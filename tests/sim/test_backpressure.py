"""Backpressure as GlassFlow records it (reference §4): episodes, not a threshold.

A stream with DiscardNew refuses a publish once it holds MaxMsgs messages; the ingestor then
retries only those messages and reads nothing new until its batch is done. Each such batch is one
episode: ``…_active`` is recorded 1 at its start and 0 at its end, ``…_events_total`` +1 at the
start, the length in ``…_duration_seconds`` at the end. Nothing is recorded before the first
episode, so a pipeline that never saturates has no backpressure series at all.
"""

from __future__ import annotations

import pytest

from gftune.desired import paths
from gftune.glassflow import instruments as ins
from tests.sim.helpers import World, orders_doc


def test_a_saturated_stream_is_full_and_every_kafka_batch_is_an_episode():
    world = World("backpressure-sink-bound")  # 8000/s into a sink that takes ~4950/s
    pid = world.pid()
    world.run(120)
    assert world.depth_ratio(pid) == pytest.approx(1.0)  # full: DiscardNew at maxMsgs, no 0.9 threshold
    assert world.backpressure(pid) == 1
    rates = world.rates(pid, 120)
    batches = rates["kafka_records_read('ingestor',)"] / 1000  # the model's Kafka batch: 1000 records
    assert rates["ingestor_backpressure_events()"] == pytest.approx(batches, rel=0.02)
    assert rates["component_backpressure_events('ingestor',)"] == rates["ingestor_backpressure_events()"]
    # the episodes cover the ingestors' whole time: one second of backpressure per second per replica
    assert rates["ingestor_backpressure_duration_seconds()_sum"] == pytest.approx(2.0, rel=0.02)
    # the Kafka batch's wall time includes the waits: per record it is 1 / (what the replica got through)
    per_record = rates["processing_duration_seconds('ingestor', 'batch')_sum"] / \
        rates["processing_duration_seconds('ingestor', 'batch')_count"]
    assert per_record == pytest.approx(2 / rates["kafka_records_read('ingestor',)"], rel=0.02)


def test_after_the_right_change_the_backlog_drains_and_the_episodes_end():
    world = World("backpressure-sink-bound")
    pid = world.pid()
    world.run(120)
    fix = world.truth(pid)["min_config"]["changes"]
    assert fix["resources.sink.replicas"] == {"from": 1, "to": 2}
    world.put_resources(pid, lambda resources: paths.set_value(resources, "sink.replicas", 2))
    assert world.backpressure(pid) is None, "new pods: nothing recorded yet"
    waited = 0
    while world.truth(pid)["records"]["kafka_lag"] > 0:
        assert waited < 3600, "the Kafka backlog never drained"
        world.run(10)
        waited += 10
    world.run(60)
    assert world.backpressure(pid) == 0  # the last episode ended (catching up filled the streams for a while)
    assert world.rates(pid, 60).get("ingestor_backpressure_events()", 0) == 0
    # no backlog left: each stream holds about what one model step brings it (8000/s over 2), not 8000
    assert world.depth_ratio(pid) < 0.6
    assert world.truth(pid)["records"]["lost"] == 0


@pytest.mark.parametrize("name", ["healthy", "spike", "overprovisioned"])
def test_no_backpressure_series_while_the_streams_have_room(name):
    world = World(name)
    pid = world.pid()
    world.run(500)  # spike: a 60 s burst at 300 s
    assert world.backpressure(pid) is None
    assert not [k for k in world.counters(pid) if "backpressure" in k]
    assert world.depth_ratio(pid) < 0.5


def test_a_restart_drops_the_pods_series_until_the_next_episode():
    world = World("backpressure-sink-bound")
    pid = world.pid()
    world.run(60)
    assert world.backpressure(pid) == 1
    world.stop(pid)  # the sink drains the stream; the pods are deleted
    world.store.operate(pid, "resume")
    world.wait_for(pid, "Running")
    assert world.backpressure(pid) is None
    world.run(30)  # the Kafka lag refills the stream at once: episodes again
    assert world.backpressure(pid) == 1


def test_the_dedup_pod_reports_a_full_sink_stream_and_its_depth_is_never_sampled():
    world = World("dedup-sink-bound")
    pid = world.pid()
    world.run(180)
    assert world.backpressure(pid, "dedup") == 1
    sampled = {labels[0] for (name, labels, _pod) in world.gauges(pid) if name == "stream_depth"}
    assert sampled and all("-ingestor-out_" in stream for stream in sampled)
    depths = world.truth(pid)["records"]["stream_depth"]
    full = [name for name, depth in depths.items() if "-dedup-out_" in name and depth >= 0.999 * 8000]
    assert full, depths  # the sink's own stream is full: nobody reports it


def test_three_ingestors_into_two_sinks_split_two_thirds_one_third():
    world = World("sink-replicas-batch")
    pid = world.pid()
    shares = world.truth(pid)["records"]["stream_shares"]
    assert sorted(shares.values()) == pytest.approx([1 / 3, 2 / 3])
    world.run(300)  # stream 0 (100000 messages) fills at ~780/s, then holds the ingestors back

    def written() -> dict[int, float]:
        return {r.index: r.meter.counter(ins.CLICKHOUSE_RECORDS_WRITTEN, ("sink", pid))
                for r in world.store.row(pid).model.sinks}

    before = written()
    world.run(120)
    after = written()
    rates = {k: (after[k] - before[k]) / 120 for k in after}
    assert rates[0] == pytest.approx(1887, rel=0.02)  # the batch-bound replica at its capacity
    assert rates[1] == pytest.approx(rates[0] / 2, rel=0.03)  # half of it: its share is half as large
    assert world.backpressure(pid) == 1
    ratios = {labels[0][-1]: v for (name, labels, _pod), v in world.gauges(pid).items()
              if name == "stream_depth_ratio"}
    assert ratios["0"] == pytest.approx(1.0) and ratios["1"] < 0.1


def test_a_slow_nats_server_is_backpressure_without_a_full_stream():
    """The ingestor's other trigger: its async publisher keeps at most min(4000, 10000 / replicas)
    PubAcks in flight, and a window still full after 1 s is an episode. With NATS taking 2 s to ack,
    two replicas publish at most 4000 / 2 s each, and every Kafka batch waits."""
    world = World({"pipelines": [{"spec": orders_doc("orders-slow-nats", resources={"sources": [
        {"source_id": "orders", "replicas": 2}], "sink": {"replicas": 2}}),
        "model": {"source": {"profile": {"kind": "constant", "rate": 8000}},
                  "nats": {"ack_latency": 2.0}}}]})
    pid = "orders-slow-nats"
    world.run(120)
    rates = world.rates(pid, 60)
    assert rates["kafka_records_read('ingestor',)"] == pytest.approx(4000, rel=0.02)
    assert world.backpressure(pid) == 1
    assert rates["ingestor_backpressure_events()"] == pytest.approx(4, rel=0.05)  # one per 1000-record batch
    assert world.depth_ratio(pid) < 0.5  # the streams have room: NATS is slow, not full


def test_the_otlp_receiver_reports_a_full_stream_once_and_never_a_stop():
    from pathlib import Path

    from gftune.sim.receiver import COMPONENT

    root = Path(__file__).resolve().parents[2]
    world = World({"pipelines": [{
        "file": str(root / "pipelines" / "otlp-traces.yaml"),
        "patch": {"sink": {"connection_params": {"password": "pw"}}},
        "model": {"sources": {"traces": {"profile": {"kind": "constant", "rate": 8000}}},
                  "sink": {"prepare_per_row": 1.5e-4, "insert_overhead": 0.05}}}]})
    world.run(400)
    meter = world.store.receiver.meter
    labels = (COMPONENT, "")  # the receiver never sets its pipeline id
    assert meter.gauges[(ins.COMPONENT_BACKPRESSURE_ACTIVE, labels)] == 1.0
    assert meter.counter(ins.COMPONENT_BACKPRESSURE_EVENTS, labels) == 2  # at 5 s and 5 minutes later
    ok = meter.counter(ins.RECEIVER_REQUEST_COUNT, ("otlp.traces", "otlp-traces", "http", "ok"))
    errors = meter.counter(ins.RECEIVER_REQUEST_COUNT, ("otlp.traces", "otlp-traces", "http", "error"))
    assert ok > 0 and errors > 0  # the refused writes answer the client with an error
