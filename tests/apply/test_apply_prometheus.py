"""Verification with a real Prometheus scraping the simulator: improved, regressed (reverted), data gap."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from gftune.apply import report
from tests.support import apply as h
from tests.support.api import live, status
from tests.support.metrics_gate import MetricsGate

pytestmark = pytest.mark.prometheus


def _wait_for_data(prometheus, pipeline_id, seconds):
    prometheus.wait_for_series(f'glassflow_gfm_clickhouse_records_written_total{{pipeline_id="{pipeline_id}"}}')
    time.sleep(seconds)


def test_tuning_change_from_a_policy_is_verified_as_improved(sim_factory, prometheus_factory, tmp_path):
    pid = "orders-backpressure"
    scale = 30
    sim = sim_factory("backpressure-sink-bound", time_scale=scale)
    prometheus = prometheus_factory(sim)
    repo = h.adopt(tmp_path / "repo", sim.api_url, pid, h.config_yaml(sim.api_url, prometheus=prometheus.url,
                                                                     time_scale=scale, settle="60s", window="2m"))
    shutil.copy(Path(h.ROOT, "policies", "stream-backpressure.yaml"), repo / "policies")
    h.commit(repo, "policy")
    _wait_for_data(prometheus, pid, 330 / scale)  # the policy's 5m rate window and 2m `for:`
    tuned = h.gftune("tune", "--repo", str(repo), "--write")
    assert tuned.returncode == 2, tuned.stdout + tuned.stderr
    proc, doc = h.apply_json(repo, "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    p = doc["pipelines"][0]
    assert p["outcome"] == "verified" and p["verdict"]["label"] == "improved", p["verdict"]
    assert p["policies"] == ["stream-backpressure"]
    expectations = {c["name"]: c for c in p["verdict"]["checks"] if c["kind"] == "expectation"}
    # the share of time the ingestors spent in backpressure: most of it before, none after
    assert expectations["backpressure_share"]["outcome"] == "pass"
    assert expectations["backpressure_share"]["before"] > 0.5
    assert expectations["stream_depth_ratio"]["outcome"] == "pass"
    signals = {s["name"]: s for s in p["signals"]}
    assert signals["ingestor_backpressure"]["symptom"]
    assert signals["sink_rate"]["after"] > signals["sink_rate"]["before"] * 1.5
    assert "rate(glassflow_gfm_clickhouse_records_written_total" in signals["sink_rate"]["query"]
    # Kafka lag is a gauge: its slope per wall second is time_scale x the model's. The journal's
    # baseline must show the scenario's truth, ~3,050 records/s of lag growth (not 30 x that).
    journal = json.loads((repo / ".gftune" / "runs" / f"{doc['run_id']}.json").read_text())
    growth = journal["pipelines"][pid]["baseline"]["consumer_lag_growth"]["value"]
    assert 3050 * 0.7 < growth < 3050 * 1.3, growth
    assert len(p["chart"]["t"]) >= 5 and max(p["chart"]["sink"]) > 6000
    markdown = report.render_markdown(doc)
    # the symptom's row; sized for 85% plus the backlog over 30 minutes, the catch-up may still hold the
    # ingestors back at the window's end (the expectations above judged it as catching up)
    assert "xychart-beta" in markdown
    assert re.search(r"\| \*\*ingestor backpressure\*\* \(symptom\) \| 1 \| [01] \|", markdown), markdown
    assert live(sim.api_url, pid, "/resources")["pipeline_resources"]["sink"]["replicas"] >= 2
    assert status(sim.api_url, pid) == "Running"


def test_bad_change_is_judged_regressed_and_reverted(sim_factory, prometheus_factory, tmp_path):
    pid = "orders-healthy"
    sim = sim_factory("healthy", time_scale=20)
    prometheus = prometheus_factory(sim)
    repo = h.adopt(tmp_path / "repo", sim.api_url, pid, h.config_yaml(sim.api_url, prometheus=prometheus.url))
    _wait_for_data(prometheus, pid, 4)
    h.change_pipeline(repo, pid, {"resources.sink.replicas": 1, "sink.max_batch_size": 100}, "cut the sink")
    _, p = h.auto_apply(repo, 4)
    assert p["outcome"] == "reverted"
    failed = {c["name"] for c in p["verdict"]["checks"] if c["outcome"] == "fail"}
    assert "sink_rate" in failed
    assert p["revert_verdict"]["outcome"] == "pass"
    assert status(sim.api_url, pid) == "Running"
    assert live(sim.api_url, pid)["sink"]["max_batch_size"] == 1000
    assert live(sim.api_url, pid, "/resources")["pipeline_resources"]["sink"]["replicas"] == 2


def test_data_gap_during_the_window_is_inconclusive_and_the_change_kept(sim_factory, prometheus_factory, tmp_path):
    pid = "orders-healthy"
    sim = sim_factory("healthy", time_scale=20)
    gate = MetricsGate(sim.metrics_url).start()
    try:
        prometheus = prometheus_factory(gate.url)
        repo = h.adopt(tmp_path / "repo", sim.api_url, pid, h.config_yaml(sim.api_url, prometheus=prometheus.url))
        _wait_for_data(prometheus, pid, 4)
        h.change_pipeline(repo, pid, {"resources.sink.replicas": 3}, "more sink replicas")
        stop = threading.Event()

        def darken_when_observing():
            runs = repo / ".gftune" / "runs"
            while not stop.is_set():
                for path in runs.glob("*.json") if runs.is_dir() else ():
                    try:
                        steps = json.loads(path.read_text())["pipelines"][pid]["steps"]
                    except (ValueError, KeyError):
                        continue
                    if any(s["phase"] == "verify" and s["action"] == "observe" and s["state"] != "pending"
                           for s in steps):
                        gate.dark = True
                        return
                time.sleep(0.02)

        watcher = threading.Thread(target=darken_when_observing, daemon=True)
        watcher.start()
        proc, doc = h.apply_json(repo, "--auto-approve")
        stop.set()
        assert gate.dark and gate.refused > 0
        assert proc.returncode == 5, proc.stderr
        p = doc["pipelines"][0]
        assert p["outcome"] == "inconclusive"
        assert any("observation window" in r or "unknown" in r for r in p["verdict"]["reasons"]), p["verdict"]
        assert "investigate" in p["next_move"]
        assert live(sim.api_url, pid, "/resources")["pipeline_resources"]["sink"]["replicas"] == 3  # kept
        assert status(sim.api_url, pid) == "Running"
    finally:
        gate.stop()
