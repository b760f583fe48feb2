"""The ClickHouse server's own metrics as an optional source (``metrics.clickhouse``): read from a
simulator serving ClickHouse's endpoint next to the collector's, by direct scrape and through a real
Prometheus, the sink's busy time (preparation + flushes x the server's mean INSERT time) is the one
the simulated sink really spent; not configured, the signals are unknown and say why."""

from __future__ import annotations

import time

import pytest

from gftune.desired.config import Config
from gftune.metrics.sources import PrometheusSource, ScrapeSource, clickhouse_matchers, open_source
from gftune.policy.signals import read_signals
from gftune.sim import Simulator

SCALE = 30.0
WINDOW = 300.0 / SCALE
NAMES = ("sink_busy", "sink_utilization", "clickhouse_insert_seconds", "clickhouse_insert_rate",
         "clickhouse_insert_share", "sink_flush_rate")


@pytest.fixture(scope="module")
def sim():
    simulator = Simulator(["healthy"], time_scale=SCALE, clickhouse_metrics=True).start()
    time.sleep(WINDOW + 1)  # a window of flushes behind every rate
    yield simulator
    simulator.stop()


def _read(source, sim) -> dict:
    [pid] = sim.truths
    snapshot = source.snapshot(window_s=WINDOW)
    return read_signals(snapshot, pid, NAMES, time_scale=SCALE)


def _check_against_the_truth(readings: dict, sim: Simulator) -> None:
    [pid] = sim.truths
    truth = sim.truth(pid)
    params = sim.store.rows[pid].model.params["sink"]
    for name in NAMES:
        assert readings[name].known, (name, readings[name].detail)
    # the sink is the server's only writer here: every INSERT is one of its flushes
    assert readings["clickhouse_insert_share"].value == pytest.approx(1.0, rel=0.05)
    flushes = readings["sink_flush_rate"].value
    rows_per_flush = truth["load"]["sink"] / flushes
    assert readings["clickhouse_insert_seconds"].value == pytest.approx(
        params["insert_overhead"] + params["insert_per_row"] * rows_per_flush, rel=0.05)
    # preparation + INSERT time = what the simulated replicas were busy for: the sink model's cost of
    # the flushes they made (the truth's own busy figure is one step's, too lumpy to compare with)
    workers = truth["details"]["sink_workers"]
    cycle = (params["prepare_per_row"] * rows_per_flush / workers + params["insert_overhead"]
             + params["insert_per_row"] * rows_per_flush)
    assert readings["sink_busy"].value == pytest.approx(flushes * cycle, rel=0.05)
    replicas = sim.store.rows[pid].model.sink_replicas
    assert readings["sink_utilization"].value == pytest.approx(readings["sink_busy"].value / replicas, rel=0.1)
    # not GlassFlow's lower bound alone (preparation): the INSERTs' own seconds are in it
    assert readings["sink_busy"].value > flushes * params["insert_overhead"]


def test_by_direct_scrape_of_both_endpoints(sim):
    source = ScrapeSource(sim.metrics_url, clickhouse_url=sim.clickhouse_url)
    try:
        _check_against_the_truth(_read(source, sim), sim)
    finally:
        source.close()


def test_not_configured_the_clickhouse_signals_are_unknown_and_say_why(sim):
    source = ScrapeSource(sim.metrics_url)
    try:
        readings = _read(source, sim)
    finally:
        source.close()
    assert readings["sink_flush_rate"].known  # GlassFlow's own signals are there
    for name in ("sink_busy", "sink_utilization", "clickhouse_insert_seconds"):
        assert not readings[name].known
        assert "metrics.clickhouse" in readings[name].detail


def test_a_clickhouse_endpoint_that_fails_leaves_only_its_signals_unknown(sim):
    source = ScrapeSource(sim.metrics_url, clickhouse_url=sim.clickhouse_url.replace("/metrics", "/nowhere"))
    try:
        readings = _read(source, sim)
    finally:
        source.close()
    assert readings["sink_flush_rate"].known
    assert not readings["sink_busy"].known


@pytest.mark.prometheus
def test_through_a_real_prometheus_scraping_clickhouse(sim):
    from tests.support.prometheus import PrometheusServer

    prom = PrometheusServer([sim.metrics_url, sim.clickhouse_url], "1s")
    try:
        prom.start()
        prom.wait_for_series("ClickHouseProfileEvents_InsertQuery", timeout=30)
        time.sleep(WINDOW + 3)
        # gftune.yaml: metrics.clickhouse.scrape only -> the instance Prometheus gives that target
        config = Config(prometheus_url=prom.url, clickhouse_scrape=sim.clickhouse_url)
        source = open_source(config)
        assert isinstance(source, PrometheusSource)
        assert source.clickhouse == clickhouse_matchers(None, sim.clickhouse_url)
        readings = _read(source, sim)
        assert 'instance="127.0.0.1:' in readings["sink_busy"].query
        _check_against_the_truth(readings, sim)
        # match labels that select no server: unknown, not zero
        other = PrometheusSource(prom.url, clickhouse=(("job", "=", "no-such-clickhouse"),))
        assert not _read(other, sim)["sink_busy"].known
    finally:
        prom.stop()
