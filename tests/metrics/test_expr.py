"""Signal expressions: the PromQL they render and the same arithmetic on two parsed scrapes."""

import pytest

from gftune.metrics import naming
from gftune.metrics.expr import Aggregate, Quantile, Rate, Raw, ScrapePair, Selector, format_window
from gftune.metrics.sources import ScrapeSnapshot, parse_exposition
from gftune.policy.signals import SignalContext, read_with

BEFORE = """\
# TYPE glassflow_gfm_kafka_records_read_total counter
glassflow_gfm_kafka_records_read_total{component="ingestor",pipeline_id="p1"} 1000
glassflow_gfm_kafka_records_read_total{component="ingestor",pipeline_id="p2"} 50
# TYPE glassflow_gfm_clickhouse_records_written_total counter
glassflow_gfm_clickhouse_records_written_total{component="sink",pipeline_id="p1"} 400
# TYPE glassflow_gfm_ingestor_backpressure_active gauge
glassflow_gfm_ingestor_backpressure_active{pipeline_id="p1"} 0
# TYPE glassflow_gfm_sink_batch_size_records histogram
glassflow_gfm_sink_batch_size_records_bucket{pipeline_id="p1",le="100"} 0
glassflow_gfm_sink_batch_size_records_bucket{pipeline_id="p1",le="1000"} 10
glassflow_gfm_sink_batch_size_records_bucket{pipeline_id="p1",le="+Inf"} 10
glassflow_gfm_sink_batch_size_records_sum{pipeline_id="p1"} 5000
glassflow_gfm_sink_batch_size_records_count{pipeline_id="p1"} 10
"""
AFTER = """\
# TYPE glassflow_gfm_kafka_records_read_total counter
glassflow_gfm_kafka_records_read_total{component="ingestor",pipeline_id="p1"} 3000
glassflow_gfm_kafka_records_read_total{component="ingestor",pipeline_id="p2"} 60
# TYPE glassflow_gfm_clickhouse_records_written_total counter
glassflow_gfm_clickhouse_records_written_total{component="sink",pipeline_id="p1"} 1400
# TYPE glassflow_gfm_ingestor_backpressure_active gauge
glassflow_gfm_ingestor_backpressure_active{pipeline_id="p1"} 1
# TYPE glassflow_gfm_sink_batch_size_records histogram
glassflow_gfm_sink_batch_size_records_bucket{pipeline_id="p1",le="100"} 0
glassflow_gfm_sink_batch_size_records_bucket{pipeline_id="p1",le="1000"} 20
glassflow_gfm_sink_batch_size_records_bucket{pipeline_id="p1",le="+Inf"} 30
glassflow_gfm_sink_batch_size_records_sum{pipeline_id="p1"} 25000
glassflow_gfm_sink_batch_size_records_count{pipeline_id="p1"} 30
"""


@pytest.fixture
def snapshot():
    pair = ScrapePair(parse_exposition(BEFORE, 1000.0), parse_exposition(AFTER, 1010.0))
    detected = naming.detect(pair.before.names() | pair.after.names())
    from datetime import UTC, datetime
    return ScrapeSnapshot(pair, detected, datetime.fromtimestamp(1010.0, UTC), 10.0)


def test_promql_rendering():
    n = naming.Naming("glassflow", naming.DOCUMENTED)
    sel = Selector("kafka_records_read_total", (("pipeline_id", "=", "p1"),))
    assert Rate(sel).promql(n, 300) == 'sum (rate(glassflow_gfm_kafka_records_read_total{pipeline_id="p1"}[300s]))'
    assert Quantile(0.95, Selector("sink_batch_size_records", (("pipeline_id", "=", "p1"),))).promql(n, 5) == (
        'histogram_quantile(0.95, sum by (le) (rate(glassflow_gfm_sink_batch_size_records_bucket{pipeline_id="p1"}[5s])))')
    gauge = Aggregate("max", Selector("stream_depth_ratio", (("pipeline_id", "=", "p1"),)))
    assert gauge.promql(naming.Naming("ns", naming.COLLECTOR), 5) == 'max (ns_gfm_stream_depth_ratio_per_second{pipeline_id="p1"})'
    assert format_window(2.5) == "2500ms"
    raw = Raw('rate({prefix}kafka_records_read_total{pipeline_id="{pipeline_id}"}[{window}])', "p9")
    assert raw.promql(n, 60) == 'rate(glassflow_gfm_kafka_records_read_total{pipeline_id="p9"}[60s])'


def test_local_rates_quantiles_and_gauges(snapshot):
    readings = read_with(snapshot, SignalContext("p1", {"sink": {"max_batch_size": 1000}}),
                         ["source_rate", "sink_rate", "sink_source_ratio", "ingestor_backpressure",
                          "sink_batch_mean", "sink_batch_p50", "sink_batch_fill", "dlq_rate", "sink_flush_rate"])
    assert readings["source_rate"].value == pytest.approx(200.0)
    assert readings["sink_rate"].value == pytest.approx(100.0)
    assert readings["sink_source_ratio"].value == pytest.approx(0.5)
    assert readings["ingestor_backpressure"].value == 1.0
    assert readings["sink_batch_mean"].value == pytest.approx(1000.0)
    # 20 new batches: 10 in (100, 1000], 10 above 1000 -> median at the 1000 bound
    assert readings["sink_batch_p50"].value == pytest.approx(1000.0)
    assert readings["sink_batch_fill"].value == pytest.approx(1.0)
    assert readings["sink_flush_rate"].value == pytest.approx(2.0)
    # no DLQ series at all: unknown, never zero
    assert readings["dlq_rate"].value is None and readings["dlq_rate"].status == "unknown"
    assert "computed locally from two scrapes" in readings["source_rate"].query


def test_other_pipelines_do_not_leak(snapshot):
    readings = read_with(snapshot, SignalContext("p2"), ["source_rate", "sink_rate"])
    assert readings["source_rate"].value == pytest.approx(1.0)
    assert readings["sink_rate"].status == "unknown"


def test_raw_promql_is_unknown_in_scrape_mode(snapshot):
    result = snapshot.instant(Raw("up"))
    assert result.status == "unknown" and "Prometheus" in result.detail


def test_gauge_condition_is_checked_at_both_scrapes(snapshot):
    gauge = Aggregate("max", Selector("ingestor_backpressure_active", (("pipeline_id", "=", "p1"),)))
    series = snapshot.over(gauge, 10.0)  # the scrapes are 10 s apart
    assert [v for _, v in next(iter(series.series.values()))] == [0.0, 1.0]
    assert series.complete


def test_a_for_longer_than_the_scrape_window_is_not_established(snapshot):
    """Two scrapes 10 s apart cannot show that a condition held for 60 s."""
    gauge = Aggregate("max", Selector("ingestor_backpressure_active", (("pipeline_id", "=", "p1"),)))
    series = snapshot.over(gauge, 60.0)
    assert not series.complete
    assert "direct scrape covers 10.0s, not the 60.0s asked for" in series.detail


def test_naming_detection_both_modes():
    documented = naming.detect(["glassflow_gfm_ingestor_backpressure_active", "glassflow_gfm_stream_depth_ratio"])
    assert documented.mode == naming.DOCUMENTED and documented.namespace == "glassflow"
    collector = naming.detect(["acme_gfm_ingestor_backpressure_active_ratio", "acme_gfm_stream_depth_ratio"])
    assert collector.mode == naming.COLLECTOR and collector.namespace == "acme"
    assert "only GlassFlow namespace" in collector.detail
    assert collector.metric("stream_depth_ratio") == "acme_gfm_stream_depth_ratio_per_second"
    assert collector.metric("stream_depth") == "acme_gfm_stream_depth_ratio"
    forced = naming.detect(["glassflow_gfm_ingestor_backpressure_active"], mode="collector")
    assert forced.mode == naming.COLLECTOR


def test_a_gauge_that_disappears_between_scrapes_is_stale_not_zero():
    after = AFTER.replace('glassflow_gfm_ingestor_backpressure_active{pipeline_id="p1"} 1\n', "")
    pair = ScrapePair(parse_exposition(BEFORE, 1000.0), parse_exposition(after, 1010.0))
    from datetime import UTC, datetime
    snap = ScrapeSnapshot(pair, naming.detect(pair.before.names()), datetime.fromtimestamp(1010.0, UTC), 10.0)
    reading = read_with(snap, SignalContext("p1"), ["ingestor_backpressure"])["ingestor_backpressure"]
    assert reading.status == "stale" and reading.value is None and "disappeared" in reading.detail


def test_counter_reset_between_scrapes_counts_from_zero():
    after = AFTER.replace('pipeline_id="p1"} 3000', 'pipeline_id="p1"} 500')  # the ingestor restarted
    pair = ScrapePair(parse_exposition(BEFORE, 1000.0), parse_exposition(after, 1010.0))
    from datetime import UTC, datetime
    snap = ScrapeSnapshot(pair, naming.detect(pair.before.names()), datetime.fromtimestamp(1010.0, UTC), 10.0)
    assert read_with(snap, SignalContext("p1"), ["source_rate"])["source_rate"].value == pytest.approx(50.0)


def test_batch_quantile_is_capped_at_the_pipelines_max_batch_size(snapshot):
    # Between the scrapes, 10 batches fell in (1000, +Inf]: histogram_quantile returns the upper
    # bucket bound; no batch can exceed max_batch_size, so the estimate is capped there.
    bounded = SignalContext("p1", {"sink": {"max_batch_size": 800}})
    readings = read_with(snapshot, bounded, ["sink_batch_p95", "sink_batch_p95_fill"])
    assert readings["sink_batch_p95"].value == 800
    assert readings["sink_batch_p95"].query.startswith("clamp_max(histogram_quantile(0.95,")
    assert readings["sink_batch_p95_fill"].value == 1.0
    unbounded = read_with(snapshot, SignalContext("p1", None), ["sink_batch_p95"])["sink_batch_p95"]
    assert unbounded.value > 800 and "clamp_max" not in unbounded.query


def test_clamp_max_keeps_nan_and_renders_promql(snapshot):
    from gftune.metrics.expr import ClampMax, Const

    n = naming.Naming("glassflow", naming.DOCUMENTED)
    assert ClampMax(Const(5), 3).promql(n, 60) == "clamp_max(5, 3)"
    assert ClampMax(Const(2), 3).local(snapshot.pair, n) == {(): 2}
    nan = ClampMax(Const(float("nan")), 3).local(snapshot.pair, n)[()]
    assert nan != nan
