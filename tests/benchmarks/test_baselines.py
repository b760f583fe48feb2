"""The baselines' rules (benchmarks/baselines): each decides what its method documents, from readings."""

from __future__ import annotations

import math

from benchmarks.baselines import hpa, manual, numaflow, oracle
from benchmarks.baselines.user import LiveConfig, Readings, internal_path


def readings(**values: float | None) -> Readings:
    base = dict(at=0.0, read_rate=4000.0, sink_rate=4000.0, lag=1000.0, lag_growth=0.0, depth=2000.0,
                lag_avg=1000.0, depth_avg=2000.0, backpressure=0.0, batch_p95=955.0, retry_rate=0.0,
                exhausted_rate=0.0, partitions=8.0)
    base.update(values)
    return Readings(**base)


def config(ingestor: int = 1, sink: int = 1, max_msgs: float = 8000.0, batch: int = 1000) -> LiveConfig:
    return LiveConfig(source_id="orders", topic="orders", ingestor_replicas=ingestor, ingestor_cpu=1.0,
                      sink_replicas=sink, sink_cpu=1.0, max_batch_size=batch, max_msgs=max_msgs, doc={})


# --- HPA ---------------------------------------------------------------------------------------------------

def test_hpa_formula_and_tolerance():
    assert hpa.recommend(2, 30.0, 20.0, 0.1) == 3  # ceil(2 x 1.5)
    assert hpa.recommend(2, 21.0, 20.0, 0.1) == 2  # within 10%: no change
    assert hpa.recommend(4, 5.0, 20.0, 0.1) == 1
    assert hpa.recommend(1, 0.9, 0.5, 0.1) == 2  # a stream 90% full against a 50% target


def test_hpa_scales_up_at_most_double_or_plus_four_and_down_only_after_the_window():
    settings = hpa.Settings()
    memory = hpa.Deployment()
    assert hpa.next_replicas(1, 400.0, 20.0, 0.0, memory, settings, cap=10) == 5  # +4 beats x2 from 1
    assert hpa.next_replicas(5, 400.0, 20.0, 15.0, memory, settings, cap=10) == 10  # x2, then the cap
    assert hpa.next_replicas(5, 400.0, 20.0, 30.0, memory, settings, cap=8) == 8  # partitions cap the ingestor
    memory = hpa.Deployment()
    assert hpa.next_replicas(4, 40.0, 20.0, 0.0, memory, settings, cap=10) == 8
    # the load falls: the highest recommendation of the last 300 s holds the count ...
    assert hpa.next_replicas(8, 1.0, 20.0, 100.0, memory, settings, cap=10) == 8
    assert hpa.next_replicas(8, 1.0, 20.0, 299.0, memory, settings, cap=10) == 8
    # ... until it has left the window
    assert hpa.next_replicas(8, 1.0, 20.0, 301.0, memory, settings, cap=10) == 1
    assert hpa.next_replicas(3, None, 20.0, 400.0, memory, settings, cap=10) == 3  # no metric: no change


def test_hpa_metrics_are_lag_seconds_and_stream_fill():
    lag_s, fill = hpa.metrics(readings(lag=80000.0, read_rate=4000.0, depth=7200.0), config())
    assert lag_s == 20.0 and fill == 0.9
    lag_s, fill = hpa.metrics(readings(read_rate=0.0, depth=None), config())
    assert lag_s is None and fill is None
    _, fill = hpa.metrics(readings(depth=4000.0), config(max_msgs=math.inf, batch=1000))
    assert fill == 0.5  # an unlimited stream counts as 8 batches


# --- Numaflow ----------------------------------------------------------------------------------------------

def test_numaflow_source_rule():
    s = numaflow.Settings()
    assert numaflow.desired_source(2, 60000.0, 10000.0, s) == 1  # 6 s of pending against 20 s: round(0.6)
    assert numaflow.desired_source(2, 300000.0, 5000.0, s) == 6  # the docs' shape: 60 s x 2 / 20 s
    assert numaflow.desired_source(2, 0.0, 5000.0, s) == 1
    assert numaflow.desired_source(2, None, 5000.0, s) is None


def test_numaflow_buffer_reader_rule():
    s = numaflow.Settings()
    # 8000 x 0.8 = 6400 usable; pending 6400 or more: +2
    assert numaflow.desired_reader(1, 7200.0, 4950.0, 8000.0, s) == 3
    # pending 3200 leaves 3200 free on 2 replicas (1600 each); 4000 available wanted -> round(2.5) = 2
    assert numaflow.desired_reader(2, 3200.0, 8000.0, 8000.0, s) == 2
    assert numaflow.desired_reader(4, 400.0, 8000.0, 8000.0, s) == 3  # 6000 free / 4 = 1500 each -> 2.67


def test_numaflow_steps_two_at_a_time_after_cooldown_and_yields_to_backpressure():
    s = numaflow.Settings()
    assert numaflow.step(1, 6, since_last_scale=1000.0, pressured_downstream=False, settings=s) == 3
    assert numaflow.step(6, 1, since_last_scale=1000.0, pressured_downstream=False, settings=s) == 4
    assert numaflow.step(3, 6, since_last_scale=60.0, pressured_downstream=False, settings=s) == 3  # cooldown
    assert numaflow.step(3, 6, since_last_scale=1000.0, pressured_downstream=True, settings=s) == 2
    assert numaflow.step(1, 6, since_last_scale=1000.0, pressured_downstream=True, settings=s) == 1
    assert numaflow.backpressured(5800.0, 8000.0, s) and not numaflow.backpressured(5000.0, 8000.0, s)


def test_numaflow_decides_both_vertices_in_one_change_set():
    s = numaflow.Settings()
    # the sink's stream is full: the sink gets +2, the ingestor's scale-up is vetoed (it gives one up)
    full = readings(lag_avg=2_000_000.0, read_rate=5000.0, depth_avg=7200.0, sink_rate=5000.0)
    changes = numaflow.decide(config(ingestor=2, sink=1), full, 1000.0, 1000.0, s)
    assert changes == {"resources.sources[orders].replicas": 1, "resources.sink.replicas": 3}


# --- the seed's manual procedure -----------------------------------------------------------------------------

def test_manual_matches_the_first_row_and_turns_one_knob():
    s = manual.Settings()
    row = manual.diagnose(readings(backpressure=1.0, depth=7200.0), config(), s)
    assert row == manual.Row("backpressure", "resources.sink.replicas")
    assert manual.turn(row.knob, config(sink=2)) == (2, 3)
    row = manual.diagnose(readings(lag_growth=3000.0, read_rate=3000.0), config(), s)
    assert row == manual.Row("ingestor lag", "resources.sources[orders].replicas")
    capped = manual.diagnose(readings(lag_growth=3000.0, read_rate=3000.0, partitions=2.0), config(ingestor=2), s)
    assert capped == manual.Row("ingestor lag", "")  # partitions: a Kafka-side change, out of scope
    row = manual.diagnose(readings(read_rate=5000.0, sink_rate=1900.0, batch_p95=990.0), config(), s)
    assert row == manual.Row("batch-bound", "sink.max_batch_size")
    assert manual.turn(row.knob, config(batch=1000)) == (1000, 4000)
    assert manual.diagnose(readings(), config(), s) is None  # no row matches: do not guess


def test_manual_verdict_reads_the_rows_own_metric():
    s = manual.Settings()
    bp = manual.Row("backpressure", "resources.sink.replicas")
    assert manual.improved(bp, readings(backpressure=1.0, sink_rate=4950.0), readings(backpressure=0.0), s)
    assert manual.improved(bp, readings(backpressure=1.0, sink_rate=4950.0),
                           readings(backpressure=1.0, sink_rate=6000.0), s)
    assert not manual.improved(bp, readings(backpressure=1.0, sink_rate=4950.0),
                               readings(backpressure=1.0, sink_rate=5000.0), s)


# --- the oracle ----------------------------------------------------------------------------------------------

def test_oracle_acts_once_the_wanted_change_set_held_for_a_window():
    s = oracle.Settings()
    watch = oracle.Watch()
    mc = {"changes": {"resources.sink.replicas": {"from": 1, "to": 2}}}
    changes = oracle.wanted_changes(mc)
    assert changes == {"resources.sink.replicas": 2}
    assert not oracle.due(changes, 600.0, watch, s)
    assert not oracle.due(changes, 640.0, watch, s)
    assert oracle.due(changes, 660.0, watch, s)
    assert not oracle.due({"resources.sink.replicas": 3}, 675.0, watch, s)  # it moved: a new window
    assert not oracle.due({}, 800.0, watch, s)


# --- the user's side ------------------------------------------------------------------------------------------

def test_resource_paths_as_put_resources_names_them():
    assert internal_path("resources.sources[orders].replicas") == "ingestor.base.replicas"
    assert internal_path("resources.sink.limits.cpu") == "sink.limits.cpu"
