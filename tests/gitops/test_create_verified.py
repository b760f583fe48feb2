"""Applying a new pipeline ends verified by what a new pipeline can show: Running and records
reaching the sink (it has no "before" to compare with), with a real Prometheus scraping the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.gitops import repo as r

pytestmark = pytest.mark.prometheus


def _create(dev, new_id: str, source: str = "otlp-traces") -> dict:
    """A branch that adds pipeline ``new_id`` (a copy of ``source``), applied with `gftune apply
    --auto-approve --changed-since main`, which must exit 0: the new pipeline's report."""
    r.git(dev, "checkout", "-q", "-b", f"add-{new_id}")
    text = (dev / "pipelines" / f"{source}.yaml").read_text().replace(source, new_id)
    (dev / "pipelines" / f"{new_id}.yaml").write_text(text)
    r.commit(dev, f"{new_id}: a new pipeline")
    proc = subprocess.run([sys.executable, "-m", "gftune", "apply", "--repo", str(dev), "--auto-approve",
                           "--changed-since", "main", "--format", "json"], capture_output=True, text=True,
                          env={**os.environ, **r.SECRETS}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    [p] = json.loads(proc.stdout)["pipelines"]
    return p


def test_a_new_pipeline_ends_verified_with_records_flowing(sim_factory, prometheus_factory, tmp_path):
    scale = 20
    sim = sim_factory(r.scenario(), time_scale=scale)
    prometheus = prometheus_factory(sim)
    _, dev = r.make_origin(tmp_path, r.config(sim.api_url, prometheus.url, time_scale=scale, settle="20s",
                                              window="60s"))
    p = _create(dev, "otlp-traces-eu")
    assert (p["pipeline_id"], p["kind"], p["outcome"]) == ("otlp-traces-eu", "create", "verified"), p
    assert p["verdict"]["label"] == "created: Running, records flowing", p["verdict"]
    checks = {c["name"]: c for c in p["verdict"]["checks"]}
    assert checks["status"]["outcome"] == "pass" and checks["sink_rate"]["outcome"] == "pass"
    assert checks["sink_rate"]["after"] > 100  # the simulator feeds a new OTLP pipeline 1,000 records/s
    assert "no before reading" not in json.dumps(p)


def test_a_new_pipeline_without_metrics_is_healthy_not_verified_by_metrics(sim_factory, tmp_path):
    sim = sim_factory(r.scenario(), time_scale=20)
    _, dev = r.make_origin(tmp_path, r.config(sim.api_url, None, settle="2s", window="4s"))
    p = _create(dev, "otlp-traces-us")
    assert p["outcome"] == "verified" and p["verdict"]["label"] == "healthy, not verified by metrics"


class _Reading:
    def __init__(self, value, status="ok"):
        self.value, self.status = value, status


def test_judge_created_by_what_a_new_pipeline_shows():
    from gftune.apply import verify

    def judge(status="Running", **after):
        return verify.judge_created(status=status, after={k: _Reading(v) for k, v in after.items()})

    flowing = judge(sink_rate=950.0, source_rate=1000.0)
    assert flowing.outcome == verify.PASS and flowing.label == "created: Running, records flowing"
    quiet = judge(sink_rate=0.0, source_rate=0.0)
    assert quiet.outcome == verify.PASS and quiet.label == "created: Running, no records arrived yet"
    stuck = judge(sink_rate=0.0, source_rate=1000.0)
    assert stuck.outcome == verify.FAIL and "1,000 records/s arrive but none reached the sink" in stuck.reasons[0]
    dlq = judge(sink_rate=900.0, source_rate=1000.0, dlq_rate=12.0)
    assert dlq.outcome == verify.FAIL and "dlq_rate" in dlq.reasons[0]
    assert judge(status="Failed", sink_rate=1.0).outcome == verify.FAIL
    unknown = verify.judge_created(status="Running", after={}, gaps=["sink_rate: no data"])
    assert unknown.outcome == verify.INCONCLUSIVE and unknown.notes == ("new pipeline: sink_rate: no data",)
    assert verify.Verdict.from_dict(flowing.to_dict()) == flowing
