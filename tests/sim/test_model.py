"""The fluid model, driven through the store on a manual clock (deterministic, no waiting).

The tuning issue relies on these: each scenario's right fix removes its symptom in the model, the
wrong one does not, restarts cost time and lag, and the ground truth's minimum configuration works.
"""

from __future__ import annotations

import copy

import pytest

from gftune.desired import paths
from gftune.sim import truth as truth_module
from gftune.sim.capacity import sink_workers
from gftune.sim.errors import ApiError
from tests.sim.helpers import World, orders_doc


def test_state_does_not_depend_on_when_it_is_read():
    lazy, busy = World("backpressure-sink-bound"), World("backpressure-sink-bound")
    pid = lazy.pid()
    lazy.run(300)
    for _ in range(1000):
        busy.run(0.3)
        busy.store.health(pid)
    assert busy.clock.now() == pytest.approx(300)
    assert busy.counters(pid) == lazy.counters(pid)


def test_noise_is_seeded():
    a, b, c = World("healthy"), World("healthy"), World("healthy", seed=99)
    for world in (a, b, c):
        world.run(100)
    pid = a.pid()
    assert a.counters(pid) == b.counters(pid)
    assert a.counters(pid) != c.counters(pid)
    read_a, read_c = (w.counters(pid)["kafka_records_read('ingestor',)"] for w in (a, c))
    assert read_c == pytest.approx(read_a, rel=0.01)  # 2% noise per step, averaged over 100 steps


@pytest.mark.parametrize(("cpu", "workers"), [(None, 1), (1.0, 1), (1.5, 1), (2.0, 1), (2.5, 1), (3.0, 1),
                                              (3.5, 2), (5.0, 3), (8.0, 6)])
def test_sink_workers_follow_gomaxprocs_minus_two(cpu, workers):
    assert sink_workers(cpu) == workers


# --- each scenario's fix -------------------------------------------------------------------------

def _set(path: str, value):
    def change(doc):
        paths.set_value(doc, path, value)
    return change


def test_backpressure_sink_bound_fixed_by_sink_replicas_or_cpu():
    for change in (_set("sink.replicas", 2), _set("sink.limits", {"cpu": "5", "memory": "1.5Gi"})):
        world = World("backpressure-sink-bound")
        pid = world.pid()
        world.run(120)
        assert world.backpressure(pid) == 1
        world.put_resources(pid, change)
        lag_after_restart = world.truth(pid)["records"]["kafka_lag"]
        world.run(60)
        assert world.truth(pid)["records"]["kafka_lag"] < lag_after_restart  # catching up
        world.run(600)
        assert world.backpressure(pid) == 0
        assert world.read_rate(pid) == pytest.approx(8000, rel=0.03)


def test_backpressure_sink_bound_not_fixed_by_more_ingestors():
    world = World("backpressure-sink-bound")
    pid = world.pid()
    world.put_resources(pid, lambda r: r["ingestor"]["base"].update(replicas=4))
    world.run(300)
    assert world.backpressure(pid) == 1
    assert world.read_rate(pid) == pytest.approx(4950, rel=0.01)


@pytest.mark.parametrize("fix", ["batch", "replicas"])
def test_sink_batch_bound_fixed_by_bigger_batches_or_replicas(fix):
    world = World("sink-batch-bound")
    pid = world.pid()
    world.run(120)
    assert world.rates(pid)["clickhouse_records_written('sink',)"] == pytest.approx(1887, rel=0.01)
    if fix == "batch":
        world.edit(pid, _set("sink.max_batch_size", 5000))
    else:
        world.put_resources(pid, _set("sink.replicas", 4))
    world.run(1200)  # drain the backlog built up meanwhile
    assert world.backpressure(pid) == 0
    assert world.rates(pid)["clickhouse_records_written('sink',)"] == pytest.approx(5000, rel=0.03)


def test_underprovisioned_ingestor_fixed_by_cpu_not_by_more_replicas_than_partitions():
    world = World("underprovisioned-ingestor")
    pid = world.pid()
    assert world.read_rate(pid) == pytest.approx(2500, rel=0.01)
    world.put_resources(pid, lambda r: r["ingestor"]["base"].update(replicas=8))  # 4 partitions: 4 idle
    assert world.read_rate(pid) == pytest.approx(5000, rel=0.01)
    world.put_resources(pid, lambda r: r["ingestor"]["base"].update(
        replicas=2, limits={"cpu": "1", "memory": "512Mi"}))
    assert world.read_rate(pid) == pytest.approx(10000, rel=0.01)  # catching up at full speed
    world.put_resources(pid, lambda r: r["ingestor"]["base"].update(limits={"cpu": "4", "memory": "512Mi"}))
    assert world.read_rate(pid) == pytest.approx(10000, rel=0.01)  # more CPU than needed does nothing


def test_partition_cap_needs_partitions_before_replicas():
    world = World("partition-capped-ingestor")
    pid = world.pid()
    world.put_resources(pid, lambda r: r["ingestor"]["base"].update(replicas=4))
    assert world.read_rate(pid) == pytest.approx(6000, rel=0.01)  # two replicas idle
    assert not world.truth(pid)["min_config"]["feasible"]
    world.store.patch_model(pid, {"sources": {"orders": {"partitions": 4}}})  # the Kafka-side change
    assert world.read_rate(pid) == pytest.approx(12000, rel=0.01)
    assert world.truth(pid)["min_config"]["feasible"]


def test_sink_retries_fixed_by_replicas_but_retries_remain():
    world = World("sink-retries")
    pid = world.pid()
    world.run(60)
    world.put_resources(pid, _set("sink.replicas", 2))
    world.run(900)
    rates = world.rates(pid)
    assert world.backpressure(pid) == 0
    assert rates["clickhouse_records_written('sink',)"] == pytest.approx(4000, rel=0.03)
    # a quarter of the flushes fail and are NAKed: 4000 / 0.75 rows flushed, a quarter of them retried
    assert rates["sink_retries('retry',)"] == pytest.approx(4000 / 3, rel=0.05)  # rows, not attempts
    assert rates["sink_nack_messages()"] == rates["sink_retries('retry',)"]
    assert rates["processor_messages('sink', 'retry')"] == rates["sink_retries('retry',)"]
    assert rates["sink_errors_by_classification('retryable', 'NETWORK_ERROR')"] == pytest.approx(
        rates["sink_batch_size_records()_count"] / 4, rel=0.05)  # +1 per failed flush
    assert rates.get("sink_retries('exhausted',)", 0) == 0


def test_retry_exhaustion_is_not_a_sizing_problem():
    world = World("retry-exhaustion")  # 13% of the INSERTs fail with TOO_MANY_PARTS: "unknown", to the DLQ
    pid = world.pid()

    def exhausted_per_flush() -> float:
        rates = world.rates(pid, 600)
        assert rates["dlq_records_written('sink', 'sink_rejection_TOO_MANY_PARTS')"] == \
            pytest.approx(rates["sink_retries('exhausted',)"])
        assert rates["sink_errors_by_classification('unknown', 'TOO_MANY_PARTS')"] == pytest.approx(
            rates["sink_batch_size_records()_count"] * 0.13, rel=1e-6)
        assert "sink_retries('retry',)" not in rates and "sink_nack_messages()" not in rates  # never retried
        return rates["sink_retries('exhausted',)"] / rates["sink_batch_size_records()_count"]

    before = exhausted_per_flush()
    world.put_resources(pid, _set("sink.replicas", 6))
    world.run(300)
    assert before == pytest.approx(0.13 * 1000, rel=0.02)  # rows of the failed flushes
    assert exhausted_per_flush() == pytest.approx(0.13 * world.rates(pid, 60)["sink_batch_size_records()_sum"] /
                                                  world.rates(pid, 60)["sink_batch_size_records()_count"], rel=0.1)


def test_dedup_storage_fills_then_a_shorter_window_fixes_it():
    world = World("dedup-storage")
    pid = world.pid()
    world.run(600)
    row = world.store.row(pid)
    assert row.model.dedup_fill() > 0.99
    rates = world.rates(pid)
    # a full store holds new keys back (nothing is dropped, and dedup_overflow means filter/transform failures)
    assert "dlq_records_written('dedup', 'dedup_overflow')" not in rates
    assert world.backpressure(pid) == 1  # the ingestor_out stream fills behind the stalled dedup pod
    assert world.backpressure(pid, "dedup") is None  # its own output has room
    # lookups take longer per record as the store fills: 1 + 6 x fill^2 times an empty store's
    empty_store_lookup = row.model.transform_record_cost(0.0)[1]["dedup_lookup"]
    per_record = rates["processing_duration_seconds('dedup_filter', 'lookup')_sum"] / \
        rates["processor_messages('dedup', 'success')"]
    assert per_record == pytest.approx(7 * empty_store_lookup, rel=0.02)
    with pytest.raises(ApiError) as refused:  # storage is immutable
        world.edit(pid, _set("resources.transform[orders].storage.size", "4Gi"))
    assert refused.value.status == 422
    doc_change = _set("transforms[dedup:orders].config.time_window", "20m")
    world.store.edit(pid, _edited(world, pid, doc_change))
    world.run(15)
    world.run(900)
    assert world.store.row(pid).model.dedup_fill() < 0.8
    assert world.backpressure(pid) == 0


def _edited(world, pid, change):
    import json

    doc = json.loads(world.store.get(pid))
    change(doc)
    return doc


@pytest.mark.parametrize("name", ["backpressure-sink-bound", "sink-batch-bound", "underprovisioned-ingestor",
                                  "sink-retries", "healthy"])
def test_applying_the_truths_minimum_configuration_leaves_every_stage_below_the_cap(name):
    world = World(name)
    pid = world.pid()
    world.run(60)
    minimum = world.truth(pid)["min_config"]
    assert minimum["feasible"]
    world.stop(pid)
    import json

    doc = json.loads(world.store.get(pid))
    for path, value in minimum["values"].items():
        paths.set_value(doc, path, value)
    world.store.edit(pid, doc)
    world.run(1800)
    truth = world.truth(pid)
    assert max(truth["utilisation"].values()) <= 0.85 + 1e-9, truth["utilisation"]
    assert world.backpressure(pid) in (None, 0)
    assert truth["min_config"]["changes"] == {}  # already minimal
    assert truth["details"]["insert_rate"] <= truth["details"]["insert_budget"]


# --- lifecycle costs and failure modes ------------------------------------------------------------------

def test_restarts_stop_the_flow_and_lag_grows_meanwhile():
    world = World("healthy")
    pid = world.pid()
    world.run(30)
    world.store.operate(pid, "stop")
    world.run(5)
    assert world.status(pid) == "Stopped"
    lag = world.truth(pid)["records"]["kafka_lag"]
    rates = world.rates(pid, 60)
    assert rates.get("kafka_records_read('ingestor',)", 0) == 0
    assert rates.get("clickhouse_records_written('sink',)", 0) == 0
    assert world.truth(pid)["records"]["kafka_lag"] == pytest.approx(lag + 5000 * 60, rel=0.02)
    world.store.operate(pid, "resume")
    world.run(5)
    assert world.status(pid) == "Resuming"
    assert world.rates(pid, 4).get("kafka_records_read('ingestor',)", 0) == 0  # pods still starting
    world.run(120)
    assert world.truth(pid)["records"]["kafka_lag"] < 1000  # caught up at the ingestor's full rate


def test_a_batch_too_big_for_the_sink_memory_is_an_oom_and_the_pipeline_fails():
    world = World("sink-batch-bound")
    pid = world.pid()
    world.run(120)  # Kafka lag builds up
    world.stop(pid)
    # ingestors that catch up faster than even 50000-row batches drain: the sink fills whole batches
    world.store.patch_model(pid, {"ingestor": {"per_replica_rate": 30000}})
    world.store.edit(pid, _edited(world, pid, lambda d: (
        _set("sink.max_batch_size", 50000)(d), _set("resources.sink.limits", {"cpu": "5", "memory": "256Mi"})(d))))
    world.run(15)
    assert world.status(pid) == "Failed"
    assert any("OOM" in note for note in world.store.row(pid).notes)
    # what the killed sink held unacked is still in the stream, to be redelivered
    records = world.truth(pid)["records"]
    assert sum(records["stream_depth"].values()) > 10_000 and records["lost"] == 0


def test_a_full_stream_refuses_publishes_and_loses_nothing():
    """DiscardNew: a stream at maxBytes (or maxMsgs) refuses what would pass it; the producer holds
    back (backpressure) and nothing already stored is dropped."""
    world = World({"pipelines": [{"spec": orders_doc("orders-bytes", resources={
        "nats": {"stream": {"maxMsgs": -1, "maxBytes": "4Mi"}}, "sink": {"replicas": 1}}),
        "model": {"source": {"profile": {"kind": "constant", "rate": 8000}},
                  "sink": {"prepare_per_row": 1.5e-4, "insert_overhead": 0.05}}}]})
    world.run(300)
    truth = world.truth("orders-bytes")
    assert world.backpressure("orders-bytes") == 1  # refused by bytes: episodes without a depth ratio
    assert world.depth_ratio("orders-bytes") is None  # no ratio without maxMsgs
    assert truth["records"]["lost"] == 0
    assert sum(truth["records"]["stream_depth"].values()) == pytest.approx(4 * 2**20 / 512)


def test_terminate_purges_the_streams_and_removes_the_dlq_until_resume():
    world = World("terminal-errors")
    pid = world.pid()
    world.run(60)
    assert world.store.dlq_state(pid)["total_messages"] > 0
    world.store.operate(pid, "terminate")
    world.run(5)
    assert world.status(pid) == "Stopped"
    with pytest.raises(ApiError) as missing:
        world.store.dlq_state(pid)
    assert missing.value.status == 404
    world.store.operate(pid, "resume")
    assert world.store.dlq_state(pid)["total_messages"] == 0


def test_a_stuck_stop_is_forced_after_the_stop_timeout_and_swept_to_the_dlq():
    world = World("backpressure-sink-bound")
    pid = world.pid()
    world.run(60)
    world.store.add_fault({"kind": "stuck_transition", "operation": "stop"})
    world.store.operate(pid, "stop")
    world.run(299)
    assert world.status(pid) == "Stopping"
    world.run(2)
    assert world.status(pid) == "Stopped"
    assert world.store.dlq_state(pid)["total_messages"] > 1000  # the stream's backlog, swept


def test_insert_budget_overload_turns_into_retries():
    world = World({"pipelines": [{"spec": orders_doc("orders-budget", patch={"sink": {"max_batch_size": 100}},
                                                     resources={"sink": {"replicas": 4},
                                                                "nats": {"stream": {"maxMsgs": 100000}}}),
                                  "model": {"source": {"profile": {"kind": "constant", "rate": 4000}},
                                            "clickhouse": {"insert_budget": 10}}}]})
    world.run(120)
    rates = world.rates("orders-budget")
    truth = world.truth("orders-budget")
    assert rates["sink_retries('retry',)"] > 2
    assert truth["details"]["insert_failure_probability"] > 0.2
    assert truth["min_config"]["values"]["sink.max_batch_size"] >= 500  # fewer, bigger inserts


def test_truth_says_when_the_immutable_stream_limit_caps_the_batch():
    world = World({"pipelines": [{"spec": orders_doc("orders-capped", patch={"sink": {"max_batch_size": 100}},
                                                     resources={"sink": {"replicas": 4}}),
                                  "model": {"source": {"profile": {"kind": "constant", "rate": 4000}},
                                            "clickhouse": {"insert_budget": 10}}}]})
    world.run(60)
    minimum = world.truth("orders-capped")["min_config"]
    assert not minimum["feasible"]
    assert "maxMsgs 800 (immutable)" in minimum["notes"][0]


def test_truth_reports_capacities_and_bottleneck():
    world = World("backpressure-sink-bound")
    pid = world.pid()
    world.run(60)
    truth = world.truth(pid)
    assert truth["bottleneck"] == "sink"
    assert truth["capacity"]["sink"] == pytest.approx(1000 / 0.202)
    assert truth["capacity"]["ingestor[orders]"] == 12000
    assert truth["configured"]["read_rate"] == 4950
    assert truth["min_config"]["changes"]["resources.sink.replicas"] == {"from": 1, "to": 2}
    copy.deepcopy(truth)  # plain JSON-able data
    assert truth_module.U_CAP == 0.85


def test_a_transition_slower_than_the_reconcile_timeout_fails():
    world = World("healthy")
    pid = world.pid()
    world.stop(pid)
    world.store.add_fault({"kind": "slow_transition", "operation": "resume", "delay": 1200})
    world.store.operate(pid, "resume")
    world.run(899)
    assert world.status(pid) == "Resuming"
    world.run(2)
    assert world.status(pid) == "Failed"


def test_an_idle_sink_flushes_on_the_ticker_what_arrived_since_the_last_tick():
    doc = orders_doc("orders-slow", patch={"sink": {"max_batch_size": 1000, "max_delay_time": "10s"}})
    world = World({"pipelines": [{"spec": doc, "model": {"source": {"profile": {"kind": "constant", "rate": 20}}}}]})
    rates = world.rates("orders-slow", 300)
    assert rates["sink_batch_size_records()_count"] == pytest.approx(0.1, rel=0.05)  # one flush per 10 s
    assert rates["sink_batch_size_records()_sum"] / rates["sink_batch_size_records()_count"] == \
        pytest.approx(200, rel=0.05)  # 20/s x 10 s
    # preparation is what is timed, per flush: p x rows / workers, and per message the same / rows
    prepare = rates["processing_duration_seconds('sink', 'total_preparation')_sum"] / \
        rates["processing_duration_seconds('sink', 'total_preparation')_count"]
    assert prepare == pytest.approx(1e-5 * 200, rel=0.05)
    assert rates["processing_duration_seconds('sink', 'per_message')_sum"] / \
        rates["processing_duration_seconds('sink', 'per_message')_count"] == pytest.approx(prepare / 200, rel=0.05)


@pytest.mark.parametrize(("profile", "samples"), [
    ({"kind": "constant", "rate": 100}, {0: 100, 1e6: 100}),
    ({"kind": "step", "rate": 100, "to": 300, "at": 60}, {59: 100, 60: 300, 600: 300}),
    ({"kind": "ramp", "from": 100, "to": 300, "start": 10, "duration": 100}, {0: 100, 60: 200, 110: 300, 500: 300}),
    ({"kind": "sine", "mean": 200, "amplitude": 100, "period": 400}, {0: 200, 100: 300, 300: 100}),
    ({"kind": "spike", "rate": 100, "spike_rate": 1000, "at": 50, "duration": 10}, {49: 100, 50: 1000, 59: 1000, 60: 100}),
])
def test_rate_profiles(profile, samples):
    from gftune.sim import profiles

    profiles.check_profile(profile)
    for t, rate in samples.items():
        assert profiles.rate_at(profile, t) == pytest.approx(rate), t


@pytest.mark.parametrize(("delay", "mean_batch"), [("100ms", 205), ("2s", 4000), ("10s", 10000)])
def test_the_flush_delay_sets_the_batch_when_the_sink_keeps_up(delay, mean_batch):
    doc = orders_doc("orders-delay", patch={"sink": {"max_batch_size": 10000, "max_delay_time": delay}},
                     resources={"nats": {"stream": {"maxMsgs": 200000}}})
    world = World({"pipelines": [{"spec": doc, "model": {"source": {"profile": {"kind": "constant", "rate": 2000}}}}]})
    rates = world.rates("orders-delay", 300)
    mean = rates["sink_batch_size_records()_sum"] / rates["sink_batch_size_records()_count"]
    assert mean == pytest.approx(mean_batch, rel=0.02)
    assert world.truth("orders-delay")["details"]["sink_effective_batch"] == pytest.approx(mean_batch, rel=0.02)


def test_stream_loss_scenario_loses_data_silently():
    world = World("stream-loss")  # maxAge 1m, no message limit, a sink slower than the input
    pid = world.pid()
    world.run(600)  # the backlog's oldest messages reach 1 minute after ~340 s
    lost_before = world.truth(pid)["records"]["expired"]
    rates = world.rates(pid, 60)
    lost_rate = (world.truth(pid)["records"]["expired"] - lost_before) / 60
    assert lost_rate == pytest.approx(1050, rel=0.1)
    assert rates["kafka_records_read('ingestor',)"] == pytest.approx(6000, rel=0.03)
    assert rates["clickhouse_records_written('sink',)"] == pytest.approx(4950, rel=0.03)
    assert not [k for k in rates if k.startswith("dlq_records_written")]  # no metric says so
    assert world.backpressure(pid) is None and world.depth_ratio(pid) is None
    depth = world.truth(pid)["records"]["stream_depth"]
    assert sum(depth.values()) == pytest.approx(6000 * 60, rel=0.05)  # one minute of input


def test_memory_bound_sink_fits_5000_but_not_30000():
    for batch, status in ((5000, "Running"), (30000, "Failed")):
        world = World("memory-bound-sink")
        pid = world.pid()
        world.run(60)
        world.stop(pid)
        world.store.edit(pid, _edited(world, pid, _set("sink.max_batch_size", batch)))
        world.run(60)
        assert world.status(pid) == status, batch


def test_spike_is_absorbed_without_backpressure():
    world = World("spike")
    pid = world.pid()
    world.run(330)
    depth_in_spike = sum(world.truth(pid)["records"]["stream_depth"].values())
    assert depth_in_spike > 100_000
    world.run(170)
    assert sum(world.truth(pid)["records"]["stream_depth"].values()) < 20_000
    assert world.backpressure(pid) is None  # no episode ever: the series do not exist


def test_a_partition_change_restarts_no_pod():
    """A Kafka-side change (PATCH /_sim/model) reaches running pods: their counters go on."""
    world = World("partition-capped-ingestor")
    pid = world.pid()
    world.run(60)
    before = world.counters(pid)["kafka_records_read('ingestor',)"]
    world.store.patch_model(pid, {"sources": {"orders": {"partitions": 4}}})
    world.run(10)
    assert world.counters(pid)["kafka_records_read('ingestor',)"] > before
