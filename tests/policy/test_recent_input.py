"""The input after a step, read through a real Prometheus: the metrics window averages it down, the
last two minutes do not (``kafka_input_rate_recent``, the sizing's other reading of the input, and
``source_rate_recent``, what a saturated ingestor reads since).

``step-up-x5`` with its step at t = 600: 2000/s -> 10000/s. Two and a half model minutes after the
step, the 5-minute window still holds half the old input; the last two minutes hold only the new
one. A direct scrape has no range of its own to offer: the reading is unknown and says why.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml

from gftune.metrics.sources import PrometheusSource, ScrapeSource
from gftune.policy import history
from gftune.policy.signals import SignalContext
from gftune.policy.views import SnapshotView
from gftune.sim import Simulator

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
PID = "orders-step-up-x5"
SCALE = 30.0
STEP_AT = 600.0  # late enough that Prometheus scrapes minutes of the old input, even when slow to start
WINDOW_S = 300.0  # model seconds: the default metrics window


def _scenario() -> dict:
    doc = yaml.safe_load((ROOT / "scenarios" / "step-up-x5.yaml").read_text())
    entry = doc["pipelines"][0]
    entry["file"] = str(ROOT / "scenarios" / entry["file"])
    entry["model"]["sources"]["orders"]["profile"]["at"] = STEP_AT
    return doc


def _model_time(sim: Simulator) -> float:
    return float(httpx.get(f"{sim.api_url}/_sim/truth/{PID}", timeout=30).json()["sim_seconds"])


def test_the_input_after_a_step_is_read_over_the_last_two_minutes(sim_factory, prometheus_factory):
    sim = sim_factory(_scenario(), time_scale=SCALE)
    prometheus = prometheus_factory([sim], "250ms")
    prometheus.wait_for_series(f'glassflow_gfm_kafka_records_read_total{{pipeline_id="{PID}"}}')
    assert _model_time(sim) < STEP_AT - WINDOW_S / 2, "Prometheus started too late to see the old input"
    while _model_time(sim) < STEP_AT + 150:
        time.sleep(0.2)
    doc = httpx.get(f"{sim.api_url}/api/v1/pipeline/{PID}", timeout=30).json()
    ctx = SignalContext(PID, doc, time_scale=SCALE)
    source = PrometheusSource(prometheus.url)
    view = SnapshotView(source.snapshot(window_s=WINDOW_S / SCALE), ctx, time_scale=SCALE)
    window = view.reading("kafka_input_rate")
    recent = view.recent("kafka_input_rate_recent", history.RECENT_INPUT_S)
    assert window.known and recent.known, (window.detail, recent.detail)
    # the step is 150 s old: the window still averages in the 2000/s before it, the last 2 minutes do not
    assert window.value < 0.85 * 10000, window
    assert recent.value == pytest.approx(10000, rel=0.12), recent
    assert "[4s]" in recent.query, recent.query  # two model minutes at the clock's speed
    # and what the throttled ingestor (500m: ~3,000/s of the 10,000/s) reads since the step
    read, read_recent = view.reading("source_rate"), view.recent("source_rate_recent", history.RECENT_INPUT_S)
    assert read_recent.value == pytest.approx(3000, rel=0.1), read_recent
    assert read.value < 0.93 * read_recent.value, (read, read_recent)

    scraped = ScrapeSource(sim.metrics_url)
    try:
        direct = SnapshotView(scraped.snapshot(window_s=2.0), ctx, time_scale=SCALE)
        unknown = direct.recent("kafka_input_rate_recent", history.RECENT_INPUT_S)
    finally:
        scraped.close()
    assert not unknown.known and "needs a Prometheus source" in unknown.detail
