"""One-step sizing on plain numbers: DS2's worked example, Flink's target, hysteresis, caps."""

import pytest

from gftune import sizing
from gftune.sizing import SinkState, SizingInput, StageState, nice_batch, size, target_capacity


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


def _sink_bound(**kw) -> SizingInput:
    # the backpressure-sink-bound scenario: 8000/s arrive; the sink does 4950/s on one worker,
    # 75% of its time preparing records (which workers parallelise)
    defaults = dict(source_rate=8000.0, restart_s=60.0, catch_up_s=1800.0,
                    stages=(StageState("ingestor", 2, 4950.0, 0.825, cap_replicas=4),
                            StageState("sink", 1, 4950.0, 1.0)),
                    sink=SinkState(cpu=1.5, prepare_rate=0.7425, batch=1000))
    defaults.update(kw)
    return SizingInput(**defaults)


def test_sink_replicas_and_cpu_are_chosen_for_the_least_cpu():
    result = size(_sink_bound())
    sink = result.decision("sink")
    assert (sink.replicas_to, sink.cpu_to) == (3, 1.5)  # 3 x 1.5 cores beats 1 x 6 and 2 x 4
    assert sink.capacity_after >= result.target_rate
    assert result.decision("ingestor").replicas_to == 2  # 67% busy: inside the band, untouched
    # at most 2 replicas: one replica with 6 cores (4 workers) carries it for less CPU than 2 x 4
    capped = size(_sink_bound(max_replicas=2)).decision("sink")
    assert (capped.replicas_to, capped.cpu_to) == (1, 6.0)
    assert capped.capacity_after >= result.target_rate


def test_cpu_does_not_help_a_sink_without_preparation_work():
    result = size(_sink_bound(sink=SinkState(cpu=1.5, prepare_rate=0.0, batch=1000), max_replicas=2))
    sink = result.decision("sink")
    assert sink.cpu_to == 1.5 and sink.replicas_to == 2 and sink.capped


def test_hysteresis_band_and_no_scale_down_with_backlog():
    stages = (StageState("ingestor", 4, 2000.0, 0.4), StageState("sink", 4, 2000.0, 0.4))
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
    # no busy time: with a backlog the stage is saturated, so its observed rate is its capacity
    observed = size(SizingInput(source_rate=9000.0, backlog=5_000_000,
                                stages=(StageState("ingestor", 2, 6000.0, None, cap_replicas=8),)))
    decision = observed.decision("ingestor")
    assert decision.estimator.startswith("observed") and decision.true_rate == pytest.approx(3000.0)
    assert decision.replicas_to > 2
    unknown = size(SizingInput(source_rate=9000.0, stages=(StageState("ingestor", 2, 6000.0, None),)))
    assert not unknown.changed and "no busy time" in unknown.notes[0]


def test_a_bigger_sink_gets_bigger_batches_within_the_insert_budget():
    result = size(_sink_bound(backlog=3_600_000.0))
    sink = result.decision("sink")
    inserts = sink.capacity_after / sink.batch_to
    assert sink.batch_to > 1000 and inserts <= 10
    assert nice_batch(1485) == 2000 and nice_batch(12_000) == 20_000 and nice_batch(1000) == 1000


def test_workers_follow_the_cpu_limit():
    assert [sizing.sink_workers(c) for c in (None, 1, 1.5, 2, 3, 4, 5, 8)] == [1, 1, 1, 1, 1, 2, 3, 6]
