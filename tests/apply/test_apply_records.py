"""Apply accounts for records (issue 15): the DLQ state route is read before and after every stop; a stop
that hangs until the operator forces it sweeps the streams to the DLQ, and apply then reports the records
and ends "applied with losses" (exit 5), never a plain "verified". Against the simulator, through the CLI."""

from __future__ import annotations

import json
import time

from tests.support import apply as h
from tests.support.api import live
from tests.support.apply import HEALTHY as PID


def test_a_clean_stop_loses_nothing_and_says_so(setup):
    _, repo = setup
    h.change_pipeline(repo, PID, {"resources.sink.replicas": 3}, "more sink replicas")
    _, p = h.auto_apply(repo, 0)
    assert p["outcome"] == "verified"
    [stop] = p["records"]["stops"]
    assert stop["dlq_before"] == stop["dlq_after"] and p["records"]["lost"] == 0
    assert p["records"]["lines"] == [f"around apply.stop: DLQ {stop['dlq_before']} → {stop['dlq_after']} (+0)"]


def test_records_swept_by_a_forced_stop_make_the_run_applied_with_losses(setup):
    sim, repo = setup
    sim.store.patch_model(PID, {"sink": {"insert_overhead": 30.0}})  # ClickHouse crawls: a backlog builds
    time.sleep(6)  # two model minutes
    sim.add_fault({"kind": "stuck_transition", "operation": "stop", "pipeline": PID})  # forced at the timeout
    h.change_pipeline(repo, PID, {"resources.sink.replicas": 3}, "more sink replicas")
    proc, doc = h.apply_json(repo, "--auto-approve")
    p = doc["pipelines"][0]
    assert p["outcome"] == "applied with losses", json.dumps(p, indent=1)[:3000]
    assert proc.returncode == 5
    [stop] = p["records"]["stops"]
    swept = stop["dlq_after"] - stop["dlq_before"]
    assert swept > 100 and p["records"]["lost"] == swept
    assert live(sim.api_url, PID, "/dlq/state")["total_messages"] == stop["dlq_after"]
    assert p["records"]["lines"][0].startswith(f"around apply.stop: DLQ {stop['dlq_before']} → ")
    assert any(n.startswith("records lost from the pipeline: around apply.stop") for n in p["notes"])
