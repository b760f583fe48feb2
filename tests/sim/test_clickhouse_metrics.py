"""The ClickHouse server's own Prometheus endpoint (an option): the ProfileEvents counters as
``src/Server/PrometheusMetricsWriter.cpp`` writes them (``ClickHouseProfileEvents_<Event>``, TYPE
counter, no ``_total``, no labels), on a port of its own, with values from the simulated INSERTs."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from gftune.sim import Simulator, scenarios
from gftune.sim.clock import ManualClock

EVENTS = {"Query", "InsertQuery", "FailedQuery", "FailedInsertQuery", "QueryTimeMicroseconds",
          "InsertQueryTimeMicroseconds", "InsertedRows", "InsertedBytes"}
SAMPLE = re.compile(r"^(ClickHouseProfileEvents_[A-Za-z]+) (\S+)$")


def _values(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for line in text.splitlines() if (m := SAMPLE.match(line))}


def test_off_by_default():
    clock = ManualClock(time_scale=10.0)
    sim = Simulator(["healthy"], time_scale=10.0, clock=clock).start()
    try:
        clock.advance(60)
        assert sim.clickhouse_url == ""
        assert "ClickHouseProfileEvents" not in httpx.get(sim.metrics_url).text
    finally:
        sim.stop()


def test_the_servers_profile_events_as_clickhouse_writes_them():
    clock = ManualClock(time_scale=1.0)
    sim = Simulator(["healthy"], clock=clock, clickhouse_metrics=True).start()
    try:
        assert sim.clickhouse_url.endswith("/metrics") and str(sim.clickhouse_port) in sim.clickhouse_url
        assert sim.clickhouse_port not in (sim.port, sim.metrics_port)
        first = httpx.get(sim.clickhouse_url)
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
        clock.advance(600)
        text = httpx.get(sim.clickhouse_url).text
        # exactly what the writer prints: HELP, TYPE counter, then the bare name and an integer
        for event in EVENTS:
            name = f"ClickHouseProfileEvents_{event}"
            assert f"# TYPE {name} counter" in text
            assert re.search(rf"^{name} \d+$", text, re.M), name
        assert "_total" not in text and "{" not in text
        assert "ClickHouseProfileEvents" not in httpx.get(sim.metrics_url).text  # not on the collector's endpoint
        assert httpx.get(sim.clickhouse_url.replace("/metrics", "/other")).status_code == 404

        values = _values(text)
        [pid] = sim.truths
        truth = sim.truth(pid)
        assert values["ClickHouseProfileEvents_InsertedRows"] == pytest.approx(truth["records"]["written"], abs=2)
        assert values["ClickHouseProfileEvents_InsertQuery"] == values["ClickHouseProfileEvents_Query"] > 0
        assert values["ClickHouseProfileEvents_FailedInsertQuery"] == 0  # healthy: no INSERT fails
        # every INSERT costs the sink model's insert_overhead + insert_per_row x rows on the server
        params = sim.store.rows[pid].model.params["sink"]
        inserts = values["ClickHouseProfileEvents_InsertQuery"]
        mean_rows = values["ClickHouseProfileEvents_InsertedRows"] / inserts
        expected = params["insert_overhead"] + params["insert_per_row"] * mean_rows
        mean_seconds = values["ClickHouseProfileEvents_InsertQueryTimeMicroseconds"] / inserts / 1e6
        assert mean_seconds == pytest.approx(expected, rel=0.02)
    finally:
        sim.stop()


def test_failed_inserts_count_but_write_no_rows():
    clock = ManualClock(time_scale=1.0)
    sim = Simulator(["sink-retries"], clock=clock, clickhouse_metrics=True).start()
    try:
        clock.advance(300)
        values = _values(httpx.get(sim.clickhouse_url).text)
        [pid] = sim.truths
        failed, total = values["ClickHouseProfileEvents_FailedInsertQuery"], values["ClickHouseProfileEvents_InsertQuery"]
        assert 0 < failed < total
        assert values["ClickHouseProfileEvents_InsertedRows"] == pytest.approx(sim.truth(pid)["records"]["written"],
                                                                                abs=2)
    finally:
        sim.stop()


@pytest.mark.prometheus
def test_a_real_prometheus_reads_the_insert_time_per_insert():
    """rate(InsertQueryTimeMicroseconds) / rate(InsertQuery) through a real Prometheus: the mean
    server time of one INSERT, as gftune's clickhouse signals read it."""
    from tests.support.prometheus import PrometheusServer

    scale = 60
    sim = Simulator(["healthy"], time_scale=scale, clickhouse_metrics=True).start()
    prom = PrometheusServer([sim.clickhouse_url], "1s")
    try:
        prom.start()
        prom.wait_for_series("ClickHouseProfileEvents_InsertQuery", timeout=30)
        time.sleep(300 / scale + 3)
        window = f"{300 // scale}s"
        query = (f"sum(rate(ClickHouseProfileEvents_InsertQueryTimeMicroseconds[{window}])) / 1e6"
                 f" / sum(rate(ClickHouseProfileEvents_InsertQuery[{window}]))")
        def value(promql: str) -> float:
            [sample] = prom.query(promql)
            return float(sample["value"][1])

        per_insert = value(query)
        [pid] = sim.truths
        params = sim.store.rows[pid].model.params["sink"]
        rows = value(f"sum(rate(ClickHouseProfileEvents_InsertedRows[{window}]))"
                     f" / sum(rate(ClickHouseProfileEvents_InsertQuery[{window}]))")
        assert per_insert == pytest.approx(params["insert_overhead"] + params["insert_per_row"] * rows, rel=0.05)
        # counters are divided by the time scale: rate() over wall seconds is rows per sim second
        sink_rate = scenarios.load("healthy").pipelines[0].truth["sink_rate"]
        assert value(f"sum(rate(ClickHouseProfileEvents_InsertedRows[{window}]))") == pytest.approx(sink_rate, rel=0.1)
    finally:
        prom.stop()
        sim.stop()
