"""A real Prometheus scrapes the simulator, and the seed's PromQL (tune-pipeline-skill) returns the
values each scenario's ``truth:`` block states, within 10%.

The seed queries use ``[5m]`` windows; with the time scale, 5 sim minutes pass in ``300 / scale``
wall seconds, so the window is scaled the same way gftune scales its own windows.

Batch sizes: ``histogram_quantile`` interpolates linearly inside a bucket. The scenarios use
``max_batch_size: 1000``, the upper bound of the (100, 1000] bucket of reference §5.3, so every
batch lands in that bucket and p95 reads 100 + 0.95 x 900 = 955 — which is what the truth blocks
state, and which is within 5% of the configured 1000, i.e. "p95 at max_batch_size".
"""

from __future__ import annotations

import time

import pytest

from gftune.sim import scenarios

pytestmark = pytest.mark.prometheus

SCALE = 60
WINDOW = f"{300 // SCALE}s"
NS = "glassflow"
SCENARIOS = ("healthy", "backpressure-sink-bound", "sink-retries", "partition-capped-ingestor", "sink-batch-bound")


def _truth(name: str) -> tuple[str, dict]:
    [spec] = scenarios.load(name).pipelines
    return spec.pipeline_id, spec.truth


def _close(measured: float, expected: float, tolerance: float = 0.10) -> bool:
    if expected == 0:
        return measured == 0
    return abs(measured - expected) <= tolerance * abs(expected)


@pytest.fixture(scope="module")
def scraped(request):
    """One simulator with five scenarios, one Prometheus; queried once the rate windows are full."""
    from gftune.sim import Simulator
    from tests.support.prometheus import PrometheusServer

    sim = Simulator(list(SCENARIOS), time_scale=SCALE).start()
    prom = PrometheusServer([sim], "1s")
    try:
        prom.start()
        prom.wait_for_series(f"{NS}_gfm_kafka_records_read_total", timeout=30)
        time.sleep(300 / SCALE + 4)  # one full window after the first samples (streams fill within ~1 s)
        yield prom
    finally:
        prom.stop()
        sim.stop()


def _seed_queries(pid: str) -> dict[str, str]:
    """The seed's questions in the collector's names (the default): every replica is a series of its
    own, so rates are summed and gauges maximised over the pods; a backpressure series exists only once
    an episode happened (``or vector(0)``)."""
    sel = f'{{pipeline_id="{pid}"}}'
    return {
        "read_rate": f"sum(rate({NS}_gfm_kafka_records_read_total{sel}[{WINDOW}]))",
        "sink_rate": f"sum(rate({NS}_gfm_clickhouse_records_written_total{sel}[{WINDOW}]))",
        "backpressure": f"max({NS}_gfm_ingestor_backpressure_active_ratio{sel}) or vector(0)",
        "stream_depth_ratio": f"max({NS}_gfm_stream_depth_ratio_per_second{sel})",
        "sink_batch_p95": f"histogram_quantile(0.95, sum by (le) (rate({NS}_gfm_sink_batch_size_records_bucket{sel}[{WINDOW}])))",
        "retries": f"sum by (outcome) (rate({NS}_gfm_sink_retries_total{sel}[{WINDOW}]))",
    }


@pytest.mark.parametrize("name", SCENARIOS)
def test_seed_queries_match_the_scenario_truth(scraped, name):
    pid, truth = _truth(name)
    queries = _seed_queries(pid)
    checked = 0
    read_truth = truth.get("read_rate", truth["source_rate"])
    read = scraped.value(queries["read_rate"])
    assert _close(read, read_truth), f"read rate {read} vs {read_truth}"
    checked += 1
    for key in ("sink_rate", "stream_depth_ratio", "sink_batch_p95"):  # within 10% of the truth
        if key in truth:
            measured = scraped.value(queries[key])
            assert _close(measured, truth[key]), f"{key} {measured} vs {truth[key]}"
            checked += 1
    if "backpressure" in truth:
        assert scraped.value(queries["backpressure"]) == truth["backpressure"]
        checked += 1
    if "retry_rate" in truth:
        by_outcome = {r["metric"]["outcome"]: float(r["value"][1]) for r in scraped.query(queries["retries"])}
        assert _close(by_outcome.get("retry", 0.0), truth["retry_rate"]), by_outcome
        assert by_outcome.get("exhausted", 0.0) == truth.get("exhausted_rate", 0)
        checked += 1
    assert checked >= 4


def test_lag_growth_reads_from_the_kafka_exporter_series(scraped):
    pid, truth = _truth("partition-capped-ingestor")
    group = scraped.query(f'{NS}_gfm_kafka_records_read_total{{pipeline_id="{pid}"}}')
    assert group, "the pipeline is scraped"
    partitions = scraped.query(f'kafka_topic_partitions{{topic="{pid}"}}')  # each scenario pipeline has its topic
    assert [float(p["value"][1]) for p in partitions] == [truth["partitions"]]
    from gftune.glassflow.topology import consumer_group

    lag = f'sum(kafka_consumergroup_lag{{consumergroup="{consumer_group(pid)}"}})'
    assert len(scraped.query(f'kafka_consumergroup_lag{{consumergroup="{consumer_group(pid)}"}}')) == truth["partitions"]
    # gauges are not scaled: their slope per wall second is SCALE x the slope per sim second
    growth = scraped.value(f"deriv({lag}[{WINDOW}:1s])") / SCALE
    assert _close(growth, truth["lag_growth"]), growth
