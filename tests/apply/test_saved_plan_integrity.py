"""A saved plan is not trusted blindly (issue 15): `gftune apply plan.json` refuses a plan whose payload
was edited (with or without a recomputed digest) or whose pipeline file changed since, and applies an
untouched one. Against the simulator, through the CLI."""

from __future__ import annotations

import json

import pytest

from gftune.plan import integrity
from gftune.plan.model import Plan
from tests.support import apply as h
from tests.support.api import live, status
from tests.support.apply import HEALTHY as PID


@pytest.fixture
def planned(setup, tmp_path):
    sim, repo = setup
    h.change_pipeline(repo, PID, {"sink.max_batch_size": 1500}, "bigger batches")
    return sim, repo, h.save_plan(repo, tmp_path / "plan.json")


def tamper(plan_file, *, reseal: bool) -> None:
    """max_batch_size 7777 in the payload where git says 1500; ``reseal``: recompute the payload digest
    as someone who read gftune's source would."""
    data = json.loads(plan_file.read_text())
    [entry] = [p for p in data["pipelines"] if p["pipeline_id"] == PID]
    assert entry["payload"]["document"]["sink"]["max_batch_size"] == 1500
    entry["payload"]["document"]["sink"]["max_batch_size"] = 7777
    if reseal:
        desired = data["digest"]["desired"]
        data["digest"]["payloads"] = integrity.payloads_digest(Plan.from_dict(data), desired)
    plan_file.write_text(json.dumps(data))


def assert_refused(sim, repo, plan_file, reason: str) -> None:
    edits = h.sent(sim, "POST", "/edit")
    proc, report = h.apply_json(repo, str(plan_file))
    assert proc.returncode == 1 and report is None, proc.stdout + proc.stderr
    assert "plan refused, nothing was changed:" in proc.stderr and reason in proc.stderr, proc.stderr
    assert h.sent(sim, "POST", "/edit") == edits
    assert live(sim.api_url, PID)["sink"]["max_batch_size"] == 1000
    assert status(sim.api_url, PID) == "Running"


def test_an_edited_payload_is_refused(planned):
    sim, repo, plan_file = planned
    tamper(plan_file, reseal=False)
    assert_refused(sim, repo, plan_file, "the plan's payloads or proposals do not match its digest")


def test_an_edited_payload_with_a_recomputed_digest_is_refused(planned):
    sim, repo, plan_file = planned
    tamper(plan_file, reseal=True)
    assert_refused(sim, repo, plan_file, f"{PID}: its document differs from the pipeline file")


def test_a_plan_whose_pipeline_file_changed_is_refused(planned):
    sim, repo, plan_file = planned
    path = repo / "pipelines" / f"{PID}.yaml"
    path.write_text(path.read_text().replace("max_batch_size: 1500", "max_batch_size: 1600"))
    assert_refused(sim, repo, plan_file, f"{PID}: its pipeline file changed since the plan was made")


def test_a_plan_without_a_digest_is_refused(planned):
    sim, repo, plan_file = planned
    data = json.loads(plan_file.read_text())
    del data["digest"]
    plan_file.write_text(json.dumps(data))
    assert_refused(sim, repo, plan_file, "the plan carries no digest")


def test_the_untouched_plan_is_applied(planned):
    sim, repo, plan_file = planned
    proc, report = h.apply_json(repo, str(plan_file))
    assert proc.returncode == 0, proc.stderr
    assert report["pipelines"][0]["outcome"] == "verified"
    assert live(sim.api_url, PID)["sink"]["max_batch_size"] == 1500
