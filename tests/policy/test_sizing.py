"""One-step sizing on plain numbers: DS2's worked example, Flink's target, hysteresis, caps."""

import copy
from dataclasses import replace

import pytest

from gftune.plan.evidence import FieldChange
from gftune.policy import sink_model, sizing
from gftune.policy.facts import PipelineFacts
from gftune.policy.fit import ingestor_cpu_gain
from gftune.policy.sink_model import SinkReplica
from gftune.policy.sizing import SinkState, SizingInput, StageState, nice_batch, size, target_capacity
from gftune.policy.testing import TEST_PIPELINE


def test_ds2_worked_example_sizes_both_operators_in_one_step():
    # DS2 §2, Fig. 2: o1 observed 10 rec/s and truly 10 rec/s (always busy), emitting 10 records per
    # input; o2 observed 100 rec/s but truly 200 (busy half the time). For 40 rec/s at the source,
    # o1 goes 1 -> 4 and o2 must double, decided in the same step.
    result = size(SizingInput(
        source_rate=40.0, target_utilization=1.0, restart_s=0.0,
        stages=(StageState("ingestor", 1, processed_rate=10.0, busy_rate=1.0, selectivity=10.0),
                StageState("transform", 1, processed_rate=100.0, busy_rate=0.5))))
    assert result.decision("ingestor").replicas_to == 4
    assert result.decision("transform").replicas_to == 2
    assert result.decision("transform").true_rate == pytest.approx(200.0)
    assert result.predicted_sink_rate == pytest.approx(400.0)


def test_flink_target_capacity():
    # input / u + lag / catch-up + input x restart / catch-up
    assert target_capacity(1000, 300_000, utilization=0.7, catch_up_s=1800, restart_s=300) == pytest.approx(
        1000 / 0.7 + 300_000 / 1800 + 1000 * 300 / 1800)
    # Flink's defaults without lag: ~1.6 x input (anchors §4.3)
    assert target_capacity(1000, 0, utilization=0.7, catch_up_s=1800, restart_s=300) == pytest.approx(1595.2, rel=1e-3)


# --- the sink: GlassFlow's flush loop, and what its metrics show of it ----------------------------------------
#
# A saturated sink replica flushes back to back. One flush of B rows takes a + (b + r + m x w_now / w) x B
# seconds: the insert (a + b x B, measured nowhere), preparation outside the worker pool (r) and the
# mapping its w = GOMAXPROCS - 2 workers share (m). The metrics show its flush rate F = 1 / T, the rows
# it flushes (F x B), the rows inserted, and the preparation seconds per second (F x (r + m) x B) and
# the mapping's (F x m x B). These tests build the readings that loop produces and check the model
# predicts the loop at another batch, CPU or replica count.

def _flush_seconds(a: float, b: float, r: float, m: float, batch: float, workers_ratio: float = 1.0) -> float:
    return a + (b + r + m * workers_ratio) * batch


def _replica(pod: str, a: float, b: float, r: float, m: float, batch: float, *, net: float = 1.0,
             arrival: float | None = None) -> SinkReplica:
    """What one sink pod's metrics show: saturated (``arrival`` None) or flushing what arrives."""
    cycle = _flush_seconds(a, b, r, m, batch)
    flushes = 1.0 / cycle if arrival is None else arrival / batch
    return SinkReplica(pod, flushes, flushes * batch, flushes * batch * net, flushes * (r + m) * batch,
                       flushes * m * batch)


SINK_BOUND = dict(a=0.05, b=2e-6, r=0.0, m=1.5e-4)  # backpressure-sink-bound: ~4,950/s at 1000, one worker


def _sink_bound(**kw) -> SizingInput:
    # 8000/s arrive; the sink does 4950/s on one worker, 75% of its cycle preparing records
    replica = _replica("sink-0", batch=1000, **SINK_BOUND)
    defaults = dict(source_rate=8000.0, restart_s=60.0, catch_up_s=1800.0,
                    stages=(StageState("ingestor", 2, 4950.0, 0.825, cap_replicas=4),
                            StageState("sink", 1, replica.written, None)),
                    sink=SinkState(cpu=1.5, batch=1000, saturated=True, evidence="test", replicas=(replica,),
                                   producer_replicas=2, producer="ingestor"))
    defaults.update(kw)
    return SizingInput(**defaults)


def test_the_model_predicts_the_flush_loop_at_another_batch_and_cpu():
    replica = _replica("sink-0", batch=1000, **SINK_BOUND)
    model, why = sizing.fit_sink_model(SinkState(cpu=1.5, batch=1000, saturated=True, replicas=(replica,)))
    assert model is not None and not why
    assert replica.rows == pytest.approx(1000 / 0.202)
    for batch, cpu, workers in ((2000, 1.5, 1), (1000, 5.0, 3), (5000, 6.0, 4)):
        truth = batch / _flush_seconds(0.05, 2e-6, 0.0, 1.5e-4, batch, 1 / workers)
        assert model.per_replica(batch, cpu) == pytest.approx(truth, rel=1e-6)
    assert "T = 1/F" in model.describe() and "insert + ack" in model.describe()


@pytest.mark.parametrize("true_row_cost", [5e-7, 1e-5])
def test_an_assumed_insert_row_cost_that_is_wrong_moves_the_prediction_little(true_row_cost):
    # one saturated batch size cannot split the insert into a + b x B: b is assumed (2 us)
    params = dict(a=0.1, b=true_row_cost, r=2e-6, m=8e-6)
    replica = _replica("sink-0", batch=1000, **params)
    model, _ = sizing.fit_sink_model(SinkState(cpu=1.5, batch=1000, saturated=True, replicas=(replica,)))
    truth = 2000 / _flush_seconds(batch=2000, **params)
    assert model.per_replica(2000, 1.5) == pytest.approx(truth, rel=0.1)


def test_without_a_backlog_the_sink_capacity_is_not_established():
    # 4 replicas share 4,000/s and flush what arrives: the cycle includes idle time
    idle = tuple(_replica(f"sink-{k}", batch=300, arrival=1000.0, **SINK_BOUND) for k in range(4))
    inp = _sink_bound(source_rate=4000.0, stages=(StageState("sink", 4, 4000.0, None),),
                      sink=SinkState(cpu=1.5, batch=1000, saturated=False, evidence="its flushes are 30% full",
                                     replicas=idle))
    result = size(inp)
    sink = result.decision("sink")
    assert not result.changed and sink.capacity_now is None
    assert "not established" in sink.reason and "30% full" in sink.reason
    note = next(n for n in result.notes if n.startswith("sink:"))
    assert "busy >= F x T_prep = 15%" in note  # the only bound: 1000/s x 150 us


def test_the_saturated_replica_is_the_one_writing_most_and_shares_follow_the_topology():
    # 3 ingestors -> 2 sinks: streams carry 2/3 and 1/3. sink-0 is saturated; sink-1 flushes what arrives.
    busy = _replica("sink-0", batch=1000, **SINK_BOUND)
    light = _replica("sink-1", batch=1000, arrival=busy.rows / 2, **SINK_BOUND)
    sink = SinkState(cpu=1.5, batch=1000, saturated=True, replicas=(light, busy), producer_replicas=3)
    model, _ = sizing.fit_sink_model(sink)
    assert model.measured_on == "sink-0"
    # the pipeline carries what the busier stream's replica carries over its share
    assert sink_model.capacity(model, sink, 2, 1.5, 1000) == pytest.approx(busy.rows * 1.5)
    # 3 replicas behind 3 ingestors: even shares
    assert sink_model.capacity(model, sink, 3, 1.5, 1000) == pytest.approx(busy.rows * 3)


def test_net_rows_count_not_redeliveries():
    # a retrying sink flushes NAKed rows again: a quarter of what it flushes never got in
    replica = _replica("sink-0", batch=1000, net=0.75, **SINK_BOUND)
    model, _ = sizing.fit_sink_model(SinkState(cpu=1.5, batch=1000, saturated=True, replicas=(replica,)))
    assert model.net == pytest.approx(0.75)
    assert model.per_replica(1000, 1.5) == pytest.approx(replica.written)


def test_sink_replicas_and_cpu_are_chosen_for_the_least_cpu():
    result = size(_sink_bound(sink=SinkState(**{**_sink_bound().sink.__dict__, "may_change_batch": False})))
    sink = result.decision("sink")
    assert (sink.replicas_to, sink.cpu_to) == (3, 1.5)  # 3 x 1.5 cores beats 1 x 6 and 2 x 4
    assert sink.capacity_after >= result.target_rate
    # the ingestor is in backpressure here in reality; with busy time given it sits inside the band
    assert result.decision("ingestor").replicas_to == 2
    # at most 2 replicas: one replica with 6 cores (4 workers) carries it for less CPU than 2 x 4
    capped = size(_sink_bound(max_replicas=2, sink=SinkState(**{**_sink_bound().sink.__dict__,
                                                                "may_change_batch": False})))
    assert (capped.decision("sink").replicas_to, capped.decision("sink").cpu_to) == (1, 6.0)


def test_the_batch_comes_before_replicas_when_the_per_flush_cost_dominates():
    # sink-retries-like: a = 0.1 s per flush, little per row. Batch 2000 alone carries the target.
    params = dict(a=0.1, b=2e-6, r=2e-6, m=8e-6)
    replica = _replica("sink-0", batch=1000, **params)
    base = SinkState(cpu=1.5, batch=1000, saturated=True, replicas=(replica,), may_change_cpu=False, max_msgs=8000,
                     producer_replicas=2, producer="ingestor")
    inp = SizingInput(source_rate=10_000.0, backlog=300_000.0,
                      stages=(StageState("ingestor", 2, replica.rows, replica.rows / 6000.0, cap_replicas=4),
                              StageState("sink", 1, replica.written, None)), sink=base)
    sink = size(inp).decision("sink")
    assert (sink.replicas_to, sink.batch_to) == (1, 2000)
    assert sink.capacity_after == pytest.approx(2000 / _flush_seconds(batch=2000, **params))
    fixed = size(SizingInput(**{**inp.__dict__, "sink": SinkState(**{**base.__dict__, "may_change_batch": False})}))
    assert fixed.decision("sink").replicas_to == 2 and fixed.decision("sink").batch_to == 1000
    tight = SinkState(**{**base.__dict__, "memory_ceiling": 160 * 2**20, "row_bytes": 1024.0})
    assert size(SizingInput(**{**inp.__dict__, "sink": tight})).decision("sink").batch_to == 1000


def test_a_bigger_sink_gets_bigger_batches_within_the_insert_budget():
    result = size(_sink_bound(backlog=3_600_000.0))
    sink = result.decision("sink")
    inserts = sink.capacity_after / sink.batch_to
    assert sink.batch_to > 1000 and inserts <= 10
    assert nice_batch(1485) == 2000 and nice_batch(12_000) == 20_000 and nice_batch(1000) == 1000


def test_batches_only_fill_as_far_as_the_stream_holds_them():
    # one stream per sink replica, DiscardNew: the batch being inserted (unacked) and the next one
    assert sizing.fill_limit(8000) == pytest.approx(4000.0)
    assert sizing.fill_limit(None) == float("inf") and sizing.fill_limit(-1) == float("inf")
    # the guards: two fetches of batch x workers in maxMsgs; batches x workers within memory_ceiling
    assert sizing.batch_ceiling(SinkState(cpu=5.0, max_msgs=8000), 5.0) == 1333
    assert sizing.batch_ceiling(SinkState(cpu=1.0), 1.0) == sizing.MAX_BATCH


def test_hysteresis_band_and_no_scale_down_with_backlog():
    stages = (StageState("ingestor", 4, 2000.0, 0.4), StageState("transform", 4, 2000.0, 0.4))
    quiet = size(SizingInput(source_rate=2000.0, stages=stages, band=(0.05, 0.9)))
    assert not quiet.changed  # 10% busy, inside a [5%, 90%] band
    low = size(SizingInput(source_rate=2000.0, stages=stages))
    assert low.decision("ingestor").replicas_to == 2  # 10% busy: halves, never below half
    backlog = size(SizingInput(source_rate=2000.0, stages=stages, backlog=10_000_000))
    assert backlog.decision("ingestor").replicas_to >= 4, "no scale-down while a backlog exists"
    assert backlog.backlog_present


def test_partition_cap_is_reported_not_exceeded():
    result = size(SizingInput(source_rate=8000.0, stages=(StageState("ingestor", 2, 6000.0, 2.0, cap_replicas=2),)))
    decision = result.decision("ingestor")
    assert decision.replicas_to == 2 and decision.needed > 2 and "partitions" in decision.capped


def test_frozen_stage_and_observed_rate_fallback():
    frozen = size(SizingInput(source_rate=9000.0, stages=(
        StageState("transform", 1, 4500.0, 1.0, frozen="dedup is on"),)))
    assert frozen.decision("transform").replicas_to == 1 and frozen.decision("transform").capped
    # no busy time: seen saturated (Kafka lag growing without backpressure), its observed rate is
    # its capacity
    observed = size(SizingInput(source_rate=9000.0, backlog=5_000_000,
                                stages=(StageState("ingestor", 2, 6000.0, None, cap_replicas=8, saturated=True),)))
    decision = observed.decision("ingestor")
    assert decision.estimator.startswith("observed") and decision.true_rate == pytest.approx(3000.0)
    assert decision.replicas_to > 2
    # a backlog alone does not make a stage saturated: the bottleneck may be elsewhere
    unknown = size(SizingInput(source_rate=9000.0, backlog=5_000_000, stages=(
        StageState("ingestor", 2, 6000.0, None, unknown_why="it is in backpressure"),)))
    assert not unknown.changed and "not established (it is in backpressure)" in unknown.notes[0]


def test_workers_follow_the_cpu_limit():
    assert [sizing.sink_workers(c) for c in (None, 1, 1.5, 2, 3, 4, 5, 8)] == [1, 1, 1, 1, 1, 2, 3, 6]


def test_while_a_backlog_drains_a_stage_carries_what_its_upstream_pushes():
    # backpressure-sink-bound after a long wait: the backlog raises the ingestors 2 -> 3 (18,000/s).
    # While their lag lasts they push all of that: a sink sized only for the target (~13,000/s) would
    # let the stream fill again (backpressure back)
    inp = _sink_bound(backlog=3_600_000.0, insert_budget=None)
    result = size(inp)
    assert result.decision("ingestor").replicas_to == 3
    sink = result.decision("sink")
    assert result.target_rate < 18_000.0
    assert sink.target == pytest.approx(18_000.0)
    # 3 x 6,170/s at batch 5000 >= 18,000/s (4 x 4,950/s at 1000 would cost a pod more)
    assert (sink.replicas_to, sink.batch_to) == (3, 5000) and sink.capacity_after >= 18_000.0
    assert any("pushes while the backlog drains" in n for n in result.notes)
    # a burst the stream absorbs within the settle time + verify window is left to backpressure
    short = size(_sink_bound(backlog=300_000.0, insert_budget=None))
    assert short.decision("sink").target == pytest.approx(short.target_rate)
    # without a backlog, the upstream's surplus capacity is not sized for
    steady = size(_sink_bound(backlog=0.0, insert_budget=None))
    assert steady.decision("sink").target == pytest.approx(steady.target_rate)
    # an upstream that delivers less than the target bounds what the stage is sized for
    capped = size(_sink_bound(backlog=3_600_000.0, insert_budget=None,
                              stages=(StageState("ingestor", 2, 4950.0, 0.825, cap_replicas=2),
                                      StageState("sink", 1, 4950.0, None))))
    assert capped.decision("sink").target == pytest.approx(12_000.0)
    assert any("upstream can deliver" in n for n in capped.notes)
    # seen saturated without backpressure (Kafka lag growing), its read rate is what it delivers
    observed = size(_sink_bound(backlog=3_600_000.0, insert_budget=None,
                                stages=(StageState("ingestor", 2, 4950.0, None, cap_replicas=2, saturated=True),
                                        StageState("sink", 1, 4950.0, None))))
    assert observed.decision("sink").target == pytest.approx(4950.0)
    # an upstream whose capacity is not established (in backpressure) bounds nothing
    unknown = size(_sink_bound(backlog=3_600_000.0, insert_budget=None,
                               stages=(StageState("ingestor", 2, 4950.0, None, cap_replicas=2),
                                       StageState("sink", 1, 4950.0, None))))
    assert unknown.decision("sink").target == pytest.approx(unknown.target_rate)


def test_a_throttled_ingestor_is_sized_at_the_cpu_the_change_set_gives_it():
    # 1 replica at 500m reads 3000/s of 10000/s (seen saturated); the same change-set raises it to a core
    throttled = StageState("ingestor", 1, 3000.0, None, cap_replicas=8, saturated=True)
    alone = size(SizingInput(source_rate=10000.0, stages=(throttled,)))
    raised = size(SizingInput(source_rate=10000.0, stages=(replace(throttled, cpu_gain=2.0),)))
    assert alone.decision("ingestor").replicas_to == 5  # 13,667/s at 3000/s per replica
    decision = raised.decision("ingestor")
    assert decision.replicas_to == 3 and decision.capacity_after == pytest.approx(18000.0)
    assert decision.true_rate == pytest.approx(3000.0), "the rate measured now, as measured"
    assert "CPU limit" in decision.estimator and any("2x" in n for n in raised.notes)


def test_the_cpu_gain_counts_each_limit_up_to_one_core():
    doc = copy.deepcopy(TEST_PIPELINE)
    doc["resources"]["sources"][0]["limits"]["cpu"] = "500m"
    facts = PipelineFacts("p1", doc)
    path = "resources.sources[orders].limits.cpu"
    assert ingestor_cpu_gain(facts, [FieldChange(path, "500m", "1")]) == pytest.approx(2.0)
    assert ingestor_cpu_gain(facts, [FieldChange(path, "500m", "4")]) == pytest.approx(2.0)  # a core at most
    assert ingestor_cpu_gain(facts, [FieldChange("resources.sink.limits.cpu", "1", "2")]) == 1.0
    assert ingestor_cpu_gain(facts, []) == 1.0


def test_a_catch_up_under_way_is_left_to_drain():
    # step-up-x2 after the sink's fix: 2 ingestors (6,000/s each), 2 sink replicas (4,950/s each) for
    # 8,000/s; the 2.1 M records that queued drain at 1,900/s, in ~18 minutes: within the 30-minute
    # catch-up, and 8,000/s alone is 81% of the sink. The saturated sink is that catch-up.
    def after_fix(backlog: float, source_rate: float = 8000.0) -> sizing.SizingResult:
        return size(SizingInput(source_rate=source_rate, backlog=backlog, stages=(
            StageState("ingestor", 2, 9900.0, 9900.0 / 6000.0, cap_replicas=8), StageState("sink", 2, 9900.0, 2.0))))

    held = after_fix(2_100_000.0)
    assert not held.changed and any(n.startswith("a catch-up under way") for n in held.notes)
    assert held.decision("sink").reason.startswith("a catch-up under way")
    # a backlog the current capacity would not drain within the catch-up time is sized for
    assert after_fix(4_000_000.0).decision("sink").replicas_to > 2
    # an input that alone is above the band is sized for, backlog or not
    assert after_fix(2_100_000.0, source_rate=9000.0).decision("sink").replicas_to > 2
    # a stage whose capacity is not established is left out, not a reason to act
    unknown = size(SizingInput(source_rate=8000.0, backlog=2_100_000.0, stages=(
        StageState("ingestor", 2, 9900.0, None, unknown_why="it is in backpressure"),
        StageState("sink", 2, 9900.0, 2.0))))
    assert not unknown.changed


# A sink that keeps up shows no capacity in GlassFlow's metrics; with the ClickHouse server's (its mean
# INSERT time), a replica flushing full batches has a busy cycle: T_prep + t_insert per flush.

def _busy_sink(arrival: float, batch: float = 1000, *, share: float | None = 1.0, insert: bool = True,
               replicas: int = 1) -> SinkState:
    per_replica = arrival / replicas
    flushing = tuple(_replica(f"sink-{k}", batch=batch, arrival=per_replica, **SINK_BOUND) for k in range(replicas))
    insert_s = SINK_BOUND["a"] + SINK_BOUND["b"] * batch
    return SinkState(cpu=1.0, batch=1000, saturated=False, evidence="it keeps up", replicas=flushing,
                     insert_seconds=insert_s if insert else None, insert_share=share, producer_replicas=1,
                     producer="ingestor")


def test_a_sink_flushing_full_batches_is_modelled_from_its_busy_cycle():
    saturated, _ = sizing.fit_sink_model(SinkState(cpu=1.0, batch=1000, saturated=True,
                                                   replicas=(_replica("sink-0", batch=1000, **SINK_BOUND),)))
    busy, why = sizing.fit_sink_model(_busy_sink(3000.0))
    assert busy is not None and not why and busy.cycle_from == "busy" and saturated is not None
    for batch, cpu in ((1000, 1.0), (2000, 1.0), (5000, 6.0)):
        assert busy.per_replica(batch, cpu) == pytest.approx(saturated.per_replica(batch, cpu), rel=1e-6)
    assert "ClickHouse server's mean INSERT" in busy.describe()
    # partial flushes (the ticker fires first): the per-INSERT cost over fewer rows, a lower bound only
    model, why = sizing.fit_sink_model(_busy_sink(3000.0, batch=300))
    assert model is None and "full batches" in why and "it keeps up" in why
    # no INSERT time (the server's metrics are optional), or other writers' INSERTs in its mean
    model, why = sizing.fit_sink_model(_busy_sink(3000.0, insert=False))
    assert model is None and "metrics.clickhouse" in why
    model, why = sizing.fit_sink_model(_busy_sink(3000.0, share=0.5))
    assert model is None and "50% of the ClickHouse server's INSERTs" in why


def test_the_sink_is_sized_with_the_throttled_ingestor_in_one_change_set():
    # step-up-x5: a 500m ingestor reads 3,000/s of 10,000/s (seen saturated) in front of a sink that
    # keeps up with it in full batches of 1,000 (~4,950/s at most). The change-set that gives the
    # ingestor its core and replicas sizes the sink for what they will push.
    ingestor = StageState("ingestor", 1, 3000.0, None, cap_replicas=8, saturated=True, cpu_gain=2.0)
    inp = SizingInput(source_rate=10000.0, backlog=1_000_000.0, restart_s=60.0,
                      stages=(ingestor, StageState("sink", 1, 3000.0, None)), sink=_busy_sink(3000.0))
    result = size(inp)
    sink = result.decision("sink")
    assert result.decision("ingestor").replicas_to == 3
    assert sink.replicas_to == 3 and sink.capacity_after >= sink.target >= 10000.0 / 0.75
    assert sink.utilization_now == pytest.approx(10000.0 / 4950.5, rel=1e-3)
    assert "busy flush cycle" in sink.estimator
    assert result.predicted_sink_rate == pytest.approx(10000.0)
    # without the server's INSERT time the sink is left as it is (and would saturate after the change)
    blind = size(replace(inp, sink=_busy_sink(3000.0, insert=False)))
    assert blind.decision("sink").replicas_to == 1 and blind.decision("sink").capacity_now is None


def test_a_busy_cycle_read_over_one_window_never_gives_replicas_back():
    # 4 replicas at 1,000/s each in full batches (20% busy): the model says 1-2, but one window's
    # reading is not the 30 minutes overprovisioned-sink establishes it over
    inp = SizingInput(source_rate=4000.0, stages=(StageState("sink", 4, 4000.0, None),),
                      sink=_busy_sink(4000.0, replicas=4))
    result = size(inp)
    sink = result.decision("sink")
    assert not result.changed and sink.capacity_now is not None and sink.utilization_now < 0.4
    assert "never gives replicas back" in sink.reason
    assert any("a scale-down needs the busy fraction established" in n for n in result.notes)
