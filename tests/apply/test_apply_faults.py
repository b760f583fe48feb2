"""Faults during apply: the pipeline is never left stopped, and a killed run resumes exactly once."""

from __future__ import annotations

import json

import pytest

from tests.support import apply as h
from tests.support.api import live, status

PID = "orders-healthy"
EDIT = "POST /api/v1/pipeline/{id}/edit"


def _setup(sim_factory, tmp_path, *, metrics=True, settle="20s", window="60s", time_scale=20):
    sim = sim_factory("healthy", time_scale=time_scale)
    config = h.config_yaml(sim.api_url, scrape=sim.metrics_url if metrics else None, settle=settle, window=window,
                           time_scale=time_scale)
    repo = h.adopt(tmp_path / "repo", sim.api_url, PID, config)
    return sim, repo


def _failing_apply(sim_factory, tmp_path, fault: dict) -> tuple:
    """Bigger batches committed, then `gftune apply` (no metrics) with the simulator's ``fault`` armed,
    which must exit 1: the simulator and the pipeline's report."""
    sim, repo = _setup(sim_factory, tmp_path, metrics=False)
    h.change_pipeline(repo, PID, {"sink.max_batch_size": 2000}, "bigger batches")
    sim.add_fault(fault)
    _, p = h.auto_apply(repo, 1)
    return sim, p


def test_5xx_on_edit_after_the_stop_restores_and_resumes(sim_factory, tmp_path):
    sim, p = _failing_apply(sim_factory, tmp_path, {"kind": "http_error", "route": EDIT, "status": 503, "pipeline": PID})
    assert p["outcome"] == "restored"
    assert "503" in p["error"]
    states = {s["step"]: s["state"] for s in p["timeline"]}
    assert states["apply.edit"] == "failed" and states["restore.plan"] == "done"
    assert states["restore.wait_status(Running)"] == "done" and states["finish.provenance"] == "skipped"
    assert status(sim.api_url, PID) == "Running"
    assert live(sim.api_url, PID)["sink"]["max_batch_size"] == 1000
    assert not any(t.startswith("gftune:lock=") for t in live(sim.api_url, PID)["metadata"]["tags"] or [])
    assert "the update failed and the previous configuration was restored" in p["next_move"]


def test_transient_5xx_is_retried_with_backoff(sim_factory, tmp_path):
    sim, repo = _setup(sim_factory, tmp_path, metrics=False, settle="10s", window="20s")
    h.change_pipeline(repo, PID, {"sink.max_batch_size": 2000}, "bigger batches")
    sim.add_fault({"kind": "http_error", "route": EDIT, "status": 502, "times": 2})
    sim.add_fault({"kind": "http_error", "route": "POST /api/v1/pipeline/{id}/stop", "status": 500, "times": 1})
    proc, doc = h.apply_json(repo, "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    assert doc["pipelines"][0]["outcome"] == "verified"
    assert doc["pipelines"][0]["verdict"]["label"] == "healthy, not verified by metrics"
    assert "retrying (1/5)" in proc.stderr
    assert live(sim.api_url, PID)["sink"]["max_batch_size"] == 2000
    assert status(sim.api_url, PID) == "Running"


def test_failed_on_resume_is_reported_and_restored(sim_factory, tmp_path):
    sim, p = _failing_apply(sim_factory, tmp_path, {"kind": "fail_on_resume", "pipeline": PID, "times": 1})
    assert p["outcome"] == "restored"
    assert "went Failed instead of Running" in p["error"]
    steps = {s["step"]: s for s in p["timeline"]}
    assert steps["apply.wait_status(Running)"]["state"] == "failed"
    assert steps["restore.edit"]["state"] == "done" and steps["restore.stop"]["observed"] == "Failed"
    assert status(sim.api_url, PID) == "Running"
    assert live(sim.api_url, PID)["sink"]["max_batch_size"] == 1000
    assert h.sent(sim, "POST", "/edit") == 2


def test_a_resources_restore_echoes_what_the_server_rewrote(sim_factory, tmp_path):
    """PUT /resources turns the stored default maxBytes "0" into "-1" (reference §3.5): putting the
    captured "0" back would be refused as an immutable change and leave the failed change in place."""
    sim, repo = _setup(sim_factory, tmp_path, metrics=False)
    before = live(sim.api_url, PID, "/resources")["pipeline_resources"]
    assert before["nats"]["stream"]["maxBytes"] == "0"
    h.change_pipeline(repo, PID, {"resources.sink.replicas": 3}, "more sink replicas")
    sim.add_fault({"kind": "fail_on_resume", "pipeline": PID, "times": 1})
    _, p = h.auto_apply(repo, 1)
    assert p["outcome"] == "restored", p.get("error")
    steps = {s["step"]: s for s in p["timeline"]}
    assert steps["restore.put_resources"]["state"] == "done"
    assert status(sim.api_url, PID) == "Running"
    after = live(sim.api_url, PID, "/resources")["pipeline_resources"]
    assert after["sink"]["replicas"] == before["sink"]["replicas"]
    assert after["nats"]["stream"]["maxBytes"] == "-1"  # the server's rewrite, echoed back unchanged
    assert h.sent(sim, "PUT", "/resources") == 2


def test_when_the_restore_fails_too_the_pipeline_is_still_resumed(sim_factory, tmp_path):
    sim, p = _failing_apply(sim_factory, tmp_path, {"kind": "fail_on_resume", "pipeline": PID, "times": 2})
    assert p["outcome"] == "failed"
    phases = [s["phase"] for s in p["timeline"]]
    assert "restore" in phases and "rescue" in phases
    assert status(sim.api_url, PID) == "Running"  # never left stopped or Failed


KILL_POINTS = ["lock", "capture", "apply.stop", "apply.wait_status(Stopped)", "apply.edit",
               "apply.wait_status(Running)", "verify.settle", "verify.observe", "verify.judge", "finish.provenance",
               "finish.unlock"]


@pytest.mark.parametrize("moment", ["before", "after"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_at_any_journal_step_then_resume(sim_factory, tmp_path, point, moment):
    sim, repo = _setup(sim_factory, tmp_path, metrics=False, settle="10s", window="20s", time_scale=50)
    h.change_pipeline(repo, PID, {"sink.max_batch_size": 2000, "resources.sink.replicas": 3}, "batches + replicas")
    killed = h.gftune("apply", "--repo", str(repo), "--auto-approve",
                      env={**h.test_env(), "GFTUNE_FAILPOINT": f"{point}:{moment}"})
    assert killed.returncode == -9, killed.stderr
    runs = sorted((repo / ".gftune" / "runs").glob("*.json"))
    assert len(runs) == 1
    journal = json.loads(runs[0].read_text())
    assert journal["state"] == "running"
    resumed, doc = h.apply_json(repo, "--resume", runs[0].stem)
    assert resumed.returncode == 0, resumed.stderr
    assert doc["pipelines"][0]["outcome"] == "verified"
    assert status(sim.api_url, PID) == "Running"
    pipeline = live(sim.api_url, PID)
    assert pipeline["sink"]["max_batch_size"] == 2000
    assert live(sim.api_url, PID, "/resources")["pipeline_resources"]["sink"]["replicas"] == 3
    assert h.sent(sim, "POST", "/edit") == 1  # exactly one update, even when killed right after sending it
    assert h.sent(sim, "PUT", "/resources") == 0
    tags = pipeline["metadata"]["tags"]
    assert not any(t.startswith("gftune:lock=") for t in tags)
    assert f"gftune:commit={h.git(repo, 'rev-parse', 'HEAD').strip()}" in tags
    assert json.loads(runs[0].read_text())["state"] == "finished"
