"""`gftune demo`, the README's main command: the whole loop ends with an improved verdict."""

from __future__ import annotations

import pytest
import yaml

from gftune.commands import demo
from tests.apply import helpers as h


def test_adopted_spec_turns_secrets_into_references():
    live = {"pipeline_id": "p1", "metadata": {"tags": ["team:a", "gftune:commit=abc"]},
            "sources": [{"source_id": "orders", "connection_params": {"password": "kafka-pw"}}],
            "sink": {"connection_params": {"password": "ch-pw", "username": "u"}}}
    spec, env = demo.adopted_spec(live)
    assert env == {"GFTUNE_DEMO_SOURCES_ORDERS_PASSWORD": "kafka-pw", "GFTUNE_DEMO_SINK_PASSWORD": "ch-pw"}
    assert spec["sink"]["connection_params"] == {"password": "${env:GFTUNE_DEMO_SINK_PASSWORD}", "username": "u"}
    assert spec["sources"][0]["connection_params"]["password"] == "${env:GFTUNE_DEMO_SOURCES_ORDERS_PASSWORD}"
    assert spec["metadata"] == {"tags": ["team:a"]}
    assert live["sink"]["connection_params"]["password"] == "ch-pw"  # the live document is left alone


def test_demo_config_points_the_example_at_the_simulator(tmp_path):
    example = tmp_path / "gftune.yaml"
    example.write_text("# keep me\napiVersion: gftune/v1\nkind: Config\napi:\n  url: http://x:1\n"
                       "metrics:\n  prometheus: http://p:9\n  window: 5m\ntime_scale: 1\n")
    text = demo.demo_config_text(example, api_url="http://127.0.0.1:5", scrape_url="http://127.0.0.1:6/metrics",
                                 time_scale=30)
    assert text.startswith("# keep me")
    assert yaml.safe_load(text) == {"apiVersion": "gftune/v1", "kind": "Config", "api": {"url": "http://127.0.0.1:5"},
                                    "metrics": {"window": "5m", "scrape": "http://127.0.0.1:6/metrics"},
                                    "time_scale": 30}


@pytest.mark.slow
def test_demo_ends_with_an_improved_verdict(tmp_path):
    repo = tmp_path / "demo"
    proc = h.gftune("demo", "--time-scale", "40", "--repo", str(repo), timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for command in ("$ gftune plan", "$ gftune tune --write", "$ gftune apply --auto-approve"):
        assert command in out
    assert "Verdict: improved" in out and "Next move: accept" in out
    assert "Symptom metric: ingestor backpressure" in out
    assert "gftune apply exited 0 (applied and verified)" in out
    assert h.SIM_PASSWORD not in out
    assert "gftune/tune-" in h.git(repo, "branch", "--list")
    assert list((repo / ".gftune" / "runs").glob("*.json"))
