"""An ingestor fix that uncovers the sink: improved, the next bottleneck is the sink — kept, not reverted.

The simulator holds ``step-up-x5`` after its step (10000/s into a 500m ingestor that reads ~3,000/s
and one sink replica that writes ~4,950/s), read by a real Prometheus. ``underprovisioned-ingestor``
raises the ingestor to a core; it then reads as fast as the sink lets it, the stream in front of the
sink fills and the ingestor backpressures: the policy's expectation "read rate >= 95% of the input"
misses, but the read rate moved well toward it and the limit is now the sink.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from gftune.apply import report
from gftune.desired import paths
from gftune.plan import tags
from tests.support import apply as h
from tests.support.api import live, status

pytestmark = pytest.mark.prometheus

PID = "orders-step-up-x5"
SCALE = 30


def _after_the_step() -> dict:
    """``step-up-x5`` at its 10000/s from the start (the step already happened)."""
    scenario = yaml.safe_load(Path(h.ROOT, "scenarios", "step-up-x5.yaml").read_text())
    entry = scenario["pipelines"][0]
    entry["file"] = str(Path(h.ROOT, "scenarios", entry["file"]))
    entry["model"]["sources"]["orders"]["profile"] = {"kind": "constant", "rate": 10000}
    return scenario


def test_ingestor_fix_that_saturates_the_sink_is_kept_as_improved_next_bottleneck(sim_factory, prometheus_factory,
                                                                                   tmp_path):
    sim = sim_factory(_after_the_step(), time_scale=SCALE)
    prometheus = prometheus_factory(sim)
    repo = h.adopt(tmp_path / "repo", sim.api_url, PID, h.config_yaml(sim.api_url, prometheus=prometheus.url,
                                                                     time_scale=SCALE, settle="60s", window="2m"))
    for policy in ("underprovisioned-ingestor", "stream-backpressure"):
        shutil.copy(Path(h.ROOT, "policies", f"{policy}.yaml"), repo / "policies")
    h.commit(repo, "policies")
    prometheus.wait_for_series(f'glassflow_gfm_clickhouse_records_written_total{{pipeline_id="{PID}"}}')
    time.sleep(330 / SCALE)  # the policy's 5m rate windows and 2m `for:`
    tuned = h.gftune("tune", "--repo", str(repo), "--write", "--format", "json")
    assert tuned.returncode == 2, tuned.stdout + tuned.stderr
    assert [p["policy"] for o in json.loads(tuned.stdout)["outcomes"].values() for p in o["proposals"]] == [
        "underprovisioned-ingestor"]  # the sink keeps up with what a throttled ingestor reads

    proc, doc = h.apply_json(repo, "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    p = doc["pipelines"][0]
    assert p["outcome"] == "improved", p["verdict"]
    verdict = p["verdict"]
    assert verdict["outcome"] == "next_bottleneck" and verdict["label"] == "improved; the next bottleneck is the sink"
    read = next(c for c in verdict["checks"] if c["kind"] == "expectation" and c["name"] == "source_rate")
    assert read["outcome"] != "pass" and read["after"] > read["before"] * 1.4  # ~3,000/s -> ~4,950/s, short of 9,500
    assert "saturated now" in verdict["reasons"][0] and "it was not before" in verdict["reasons"][0]
    text = report.render_text(doc)
    assert "Verdict: improved; the next bottleneck is the sink" in text
    assert re.search(r"source_rate [\d,]+ → [\d,]+ \(expected >= [\d,]+\)", text), text
    markdown = report.render_markdown(doc)
    assert "improved; the next bottleneck is the sink" in markdown and "scale it up at once" in markdown
    pipeline = live(sim.api_url, PID)
    assert paths.get(pipeline, "resources.sources[orders].limits.cpu") in ("1", "1000m")  # kept, not reverted
    assert status(sim.api_url, PID) == "Running"
    applied = tags.last_applied(tags.tags_of(pipeline))
    assert applied is not None and applied[1] == {"underprovisioned-ingestor"}
    assert not any(t.startswith("gftune:reverted=") for t in tags.tags_of(pipeline))

    # the sink's policy may act at once: the change it did not make was verified by apply
    planned = h.gftune("plan", "--repo", str(repo), "--format", "json")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    entry = json.loads(planned.stdout)["pipelines"][0]
    proposal = next(p for p in entry["proposals"] if p["policy"] == "stream-backpressure")
    assert "verified by apply" in json.dumps(proposal), proposal
