"""One-step sizing on plain numbers: DS2's worked example, Flink's target, hysteresis, caps."""

from pathlib import Path

import pytest
import yaml

from gftune.policy import sizing
from gftune.policy.sizing import SinkState, SizingInput, StageState, nice_batch, size, target_capacity
from gftune.sim.model import PipelineModel


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


ROOT = Path(__file__).resolve().parents[2]


# --- the sink's per-batch model: a + b x B, predicted at another batch --------------------------------

def _sim_sink(sink: dict, error_rate: float = 0.0, cpu: str = "1500m"):
    """The simulator's sink (gftune/sim/model.py): the formula the predictions are judged against."""
    doc = yaml.safe_load((ROOT / "scenarios" / "pipelines" / "orders.yaml").read_text())["spec"]
    doc = {**doc, "resources": {"sink": {"replicas": 1, "limits": {"cpu": cpu, "memory": "1.5Gi"}}}}
    return PipelineModel("p", doc, doc["resources"], {"sink": sink, "clickhouse": {"error_rate": error_rate}})


def _readings(model, replicas: int, rows_per_s: float, batch: float, error_rate: float) -> StageState:
    """What gftune measures of ``replicas`` sink replicas taking ``rows_per_s`` in batches of ``batch``."""
    cycle, _ = model.sink_cycle(batch, error_rate)
    batches = rows_per_s / batch
    return StageState("sink", replicas, rows_per_s, batches * cycle)


def _prepare(model, rows_per_s: float, batch: float) -> float:
    return rows_per_s / batch * float(model.params["sink"]["prepare_per_row"]) * batch / model.workers


@pytest.mark.parametrize("measured, predicted", [(300, 2000), (1000, 2000), (900, 5000), (2000, 500)])
def test_sink_capacity_at_another_batch_follows_the_simulators_formula(measured, predicted):
    # sink-retries: a = 0.1 s, b = 2 us, p = 10 us, a quarter of the inserts retried after 0.5 s
    params = {"insert_overhead": 0.1, "insert_per_row": 2e-6, "prepare_per_row": 1e-5, "max_retries": 8,
              "retry_backoff": 0.5}
    sim = _sim_sink(params, 0.25)
    stage = _readings(sim, 4, 4000.0, measured, 0.25)
    state = SinkState(cpu=1.5, prepare_rate=_prepare(sim, 4000.0, measured), batch=1000, batch_mean=measured)
    model = sizing.fit_sink_model(stage, state)
    assert model.fitted
    truth = sim.sink_replica_capacity(predicted, 0.25)
    assert model.per_replica(predicted, 1.5) == pytest.approx(truth, rel=0.03)
    # the old estimate (per-record time constant) is off by up to half at small measured batches
    constant = sizing.SinkModel(0.0, stage.busy_rate / stage.processed_rate - model.prepare_row, model.prepare_row,
                                1, fitted=False)
    if measured < predicted / 3:
        assert constant.per_replica(predicted, 1.5) < 0.6 * truth


def test_sink_capacity_with_cpu_heavy_preparation_and_more_workers():
    # backpressure-sink-bound: a = 0.05 s, p = 150 us per row shared by the workers
    params = {"insert_overhead": 0.05, "insert_per_row": 2e-6, "prepare_per_row": 1.5e-4}
    sim = _sim_sink(params)
    stage = _readings(sim, 1, 4950.0, 1000, 0.0)
    model = sizing.fit_sink_model(stage, SinkState(cpu=1.5, prepare_rate=_prepare(sim, 4950.0, 1000), batch=1000,
                                                   batch_mean=1000))
    for batch, cpu, workers in ((2000, 1.5, 1), (1000, 5.0, 3), (5000, 6.0, 4)):
        assert model.per_replica(batch, cpu) == pytest.approx(sim.sink_replica_capacity(batch, 0.0, workers),
                                                               rel=0.02)


def test_an_under_filled_over_sized_sink_is_judged_at_full_batches():
    # 4 replicas share 4000/s in batches of 300 (max_batch_size 1000): per row it looks slow, but
    # loaded each replica fills batches of 1000 and does ~3,200/s (the simulator's truth)
    params = {"insert_overhead": 0.1, "insert_per_row": 2e-6, "prepare_per_row": 1e-5, "max_retries": 8,
              "retry_backoff": 0.5}
    sim = _sim_sink(params, 0.25)
    stage = _readings(sim, 4, 4000.0, 300, 0.25)
    result = size(SizingInput(source_rate=4000.0, stages=(stage,), sink=SinkState(
        cpu=1.5, prepare_rate=_prepare(sim, 4000.0, 300), batch=1000, batch_mean=300, may_change_cpu=False)))
    sink = result.decision("sink")
    assert sink.capacity_now == pytest.approx(4 * sim.sink_replica_capacity(1000, 0.25), rel=0.03)
    assert sink.replicas_to == 2  # 31% utilised at full batches: halves (never below half)
    assert "per insert" in sink.estimator


def test_the_batch_comes_before_replicas_when_the_per_insert_cost_dominates():
    # sink-retries at plan time: one replica, full batches of 1000, 3,200/s of 4,000/s arriving.
    # Batch 2000 alone carries ~6,150/s: no second pod.
    params = {"insert_overhead": 0.1, "insert_per_row": 2e-6, "prepare_per_row": 1e-5, "max_retries": 8,
              "retry_backoff": 0.5}
    sim = _sim_sink(params, 0.25)
    read = sim.sink_replica_capacity(1000, 0.25)
    stage = _readings(sim, 1, read, 1000, 0.25)
    inp = SizingInput(source_rate=4000.0, backlog=300_000.0, stages=(
        StageState("ingestor", 2, read, read / 6000.0, cap_replicas=4), stage), sink=SinkState(
        cpu=1.5, prepare_rate=_prepare(sim, read, 1000), batch=1000, batch_mean=1000, may_change_cpu=False,
        max_msgs=8000))
    sink = size(inp).decision("sink")
    assert (sink.replicas_to, sink.batch_to) == (1, 2000)
    assert sink.capacity_after == pytest.approx(sim.sink_replica_capacity(2000, 0.25), rel=0.02)
    assert sink.capacity_after >= sink.target
    # not allowed to touch the batch: replicas, as before
    fixed = size(SizingInput(**{**inp.__dict__, "sink": SinkState(**{**inp.sink.__dict__, "may_change_batch": False})}))
    assert fixed.decision("sink").replicas_to == 2 and fixed.decision("sink").batch_to == 1000
    # a memory ceiling that holds no bigger batch leaves replicas as the lever
    tight = SinkState(**{**inp.sink.__dict__, "memory_ceiling": 160 * 2**20, "row_bytes": 1024.0})
    assert size(SizingInput(**{**inp.__dict__, "sink": tight})).decision("sink").batch_to == 1000


def test_batches_only_fill_as_far_as_the_stream_holds_them():
    # maxMsgs 8000 per replica's stream: producers stop at 7,200, two batches of 3,600 at most
    assert sizing.fill_limit(8000) == pytest.approx(3600.0)
    assert sizing.fill_limit(None) == float("inf") and sizing.fill_limit(-1) == float("inf")
    # the guards: two fetches of batch x workers in maxMsgs; batches x workers within memory_ceiling
    assert sizing.batch_ceiling(SinkState(cpu=5.0, max_msgs=8000), 5.0) == 1333
    assert sizing.batch_ceiling(SinkState(cpu=1.0), 1.0) == sizing.MAX_BATCH


def test_without_the_mean_batch_the_old_estimate_is_kept_and_said():
    result = size(_sink_bound())
    sink = result.decision("sink")
    assert "mean batch unknown" in sink.estimator
    assert sink.true_rate == pytest.approx(4950.0)


def test_while_a_backlog_drains_a_stage_carries_what_its_upstream_pushes():
    # backpressure-sink-bound after a long wait: the backlog raises the ingestors 2 -> 3 (18,000/s).
    # While their lag lasts they push all of that: a sink sized only for the target (~13,000/s) would
    # let the stream fill again (backpressure back, or DiscardOld losses on a bytes-only stream)
    inp = _sink_bound(backlog=3_600_000.0, insert_budget=None)
    result = size(inp)
    assert result.decision("ingestor").replicas_to == 3
    sink = result.decision("sink")
    assert result.target_rate < 18_000.0
    assert sink.target == pytest.approx(18_000.0)
    assert sink.replicas_to == 4  # 4 x 4,950/s >= 18,000/s; the target alone would need 3
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
                                      StageState("sink", 1, 4950.0, 1.0))))
    assert capped.decision("sink").target == pytest.approx(12_000.0)
    assert any("upstream can deliver" in n for n in capped.notes)
    # an observed (saturated) upstream rate is not what it can deliver: no bound from it
    observed = size(_sink_bound(backlog=3_600_000.0, insert_budget=None,
                                stages=(StageState("ingestor", 2, 4950.0, None, cap_replicas=2),
                                        StageState("sink", 1, 4950.0, 1.0))))
    assert observed.decision("sink").target == pytest.approx(observed.target_rate)
