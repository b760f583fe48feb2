"""The functional core of apply (gftune.apply.lifecycle): steps, decisions, matching, staleness and exit codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gftune import exitcodes
from gftune.apply import executor as ap
from gftune.apply import lifecycle as lc
from gftune.apply import state as rec
from gftune.apply.context import ApplyContext, is_transient
from gftune.desired.config import Config
from gftune.plan import model as planmod
from gftune.plan import tags
from gftune.plan.evidence import Expectation, FieldChange, Proposal, VerifySpec
from gftune.plan.staleness import plan_stale_reasons

OBS_RUNNING = lc.Observation(True, "Running")


def _entry(lifecycle, action="update", changes=()):
    return {"pipeline_id": "p1", "action": action, "lifecycle": lifecycle, "changes": list(changes), "payload": {}}


RUNNING_EDIT = [{"action": "stop"}, {"action": "wait_status", "status": "Stopped", "timeout_s": 10},
                {"action": "edit"}, {"action": "wait_status", "status": "Running", "timeout_s": 10}]


def test_update_steps_wrap_the_plan_lifecycle():
    steps = lc.build_steps(_entry(RUNNING_EDIT), VerifySpec((), 60, 300, 0.1))
    assert [s.name for s in steps] == [
        "apply.lock", "apply.capture", "apply.stop", "apply.wait_status(Stopped)", "apply.edit",
        "apply.wait_status(Running)", "verify.settle", "verify.observe", "verify.judge",
        "finish.provenance", "finish.unlock"]
    assert steps[3].params == {"status": "Stopped", "timeout_s": 10}
    assert steps[7].params == {"seconds": 300}


def test_git_change_without_an_exact_proposal_is_judged_by_the_related_policys_expectations():
    spec = VerifySpec((Expectation("ingestor_backpressure", "<=", 0),), settle_s=60, window_s=300, tolerance=0.1)
    pending = Proposal("p1", "stream-backpressure", (FieldChange("resources.sink.replicas", 1, 4),), (),
                       predictions=(Expectation("sink_rate", ">=", 11709),), verify=spec)
    entry = {**_entry(RUNNING_EDIT, changes=[{"path": "resources.sink.replicas", "old": 1, "new": 3,
                                              "proposal": None}]), "proposals": [pending.to_dict()]}
    vp = lc.verify_plan(entry, Config())
    assert [e.signal for e in vp.expect] == ["ingestor_backpressure"]  # not the value-specific sink_rate
    unrelated = {**entry, "changes": [{"path": "sink.max_delay_time", "proposal": None}]}
    assert lc.verify_plan(unrelated, Config()).expect == ()


def test_no_verification_for_non_disruptive_or_deliberately_stopped_pipelines():
    meta = lc.build_steps(_entry([{"action": "patch_metadata"}]), VerifySpec((), 1, 1, 0.1))
    assert [s.action for s in meta] == ["lock", "capture", "patch_metadata", "provenance", "unlock"]
    restop = [{"action": "edit"}, {"action": "wait_status", "status": "Running"}, {"action": "stop"},
              {"action": "wait_status", "status": "Stopped"}]
    assert "judge" not in [s.action for s in lc.build_steps(_entry(restop), VerifySpec((), 1, 1, 0.1))]


def test_create_and_delete_steps():
    create = lc.build_steps(_entry([{"action": "create"}, {"action": "wait_status", "status": "Running"}], "create"),
                            VerifySpec((), 1, 1, 0.1))
    assert [s.action for s in create] == ["create", "wait_status", "settle", "observe", "judge", "provenance"]
    delete = lc.build_steps(_entry([{"action": "delete"}, {"action": "wait_gone"}], "delete"),
                            VerifySpec((), 1, 1, 0.1))
    assert [s.action for s in delete] == ["lock", "capture", "delete", "wait_gone"]


def test_verify_plan_takes_predictions_and_the_strictest_policy_settings():
    exp = Expectation("sink_rate", ">=", 9000)
    proposal = Proposal("p1", "sink-bound", (FieldChange("resources.sink.replicas", 1, 2),), (),
                        predictions=(exp,), verify=VerifySpec((Expectation("ingestor_backpressure", "<=", 0),),
                                                              settle_s=120, window_s=60, tolerance=0.05))
    entry = _entry(RUNNING_EDIT, changes=[{"path": "resources.sink.replicas", "proposal": proposal.to_dict()},
                                          {"path": "sink.max_batch_size", "proposal": proposal.to_dict()},
                                          {"path": "name", "proposal": None}])
    config = Config(verify_settle=60, verify_window=300, verify_tolerance=0.1)
    vp = lc.verify_plan(entry, config)
    assert (vp.settle_s, vp.window_s, vp.tolerance) == (120, 300, 0.05)
    assert [e.signal for e in vp.expect] == ["sink_rate", "ingestor_backpressure"]
    assert VerifySpec.from_dict(vp.to_dict()) == vp


@pytest.mark.parametrize(("action", "params", "obs", "kind", "call"), [
    ("stop", {}, OBS_RUNNING, lc.SEND, "stop"),
    ("stop", {}, lc.Observation(True, "Stopping"), rec.DONE, None),
    ("stop", {}, lc.Observation(True, "Failed"), rec.DONE, None),
    ("stop", {}, lc.Observation(True, "Resuming"), lc.WAIT, None),
    ("stop", {}, lc.Observation(False, None), lc.FAIL, None),
    ("wait_status", {"status": "Stopped"}, lc.Observation(True, "Stopping"), lc.WAIT, None),
    ("wait_status", {"status": "Stopped"}, lc.Observation(True, "Stopped"), rec.DONE, None),
    ("wait_status", {"status": "Running"}, lc.Observation(True, "Failed"), lc.FAIL, None),
    # Failed since before the update was sent: give the operator time, then resume it
    ("wait_status", {"status": "Running"}, lc.Observation(True, "Failed", changed=False, waited_s=1), lc.WAIT, None),
    ("wait_status", {"status": "Running"}, lc.Observation(True, "Failed", changed=False, waited_s=31), lc.SEND,
     "resume"),
    ("wait_status", {"status": "Running"}, lc.Observation(True, "Stopped", stopped_for_s=1), lc.WAIT, None),
    ("wait_status", {"status": "Running"}, lc.Observation(True, "Stopped", stopped_for_s=31), lc.SEND, "resume"),
    ("wait_status", {"status": "Running"}, lc.Observation(True, "Resuming", waited_s=99), lc.FAIL, None),
    ("edit", {}, lc.Observation(True, "Stopped", matches=False), lc.SEND, "edit"),
    ("edit", {}, lc.Observation(True, "Running", matches=True), rec.DONE, None),  # already applied: not resent
    ("edit", {}, lc.Observation(True, "Running", matches=False), lc.FAIL, None),
    ("edit", {}, lc.Observation(True, "Stopping", matches=False), lc.WAIT, None),
    ("put_resources", {}, lc.Observation(True, "Failed", matches=False), lc.SEND, "put_resources"),
    ("create", {}, lc.Observation(False, None), lc.SEND, "create"),
    ("create", {}, lc.Observation(True, "Running", matches=True), rec.DONE, None),
    ("create", {}, lc.Observation(True, "Running", matches=False), lc.FAIL, None),
    ("delete", {}, lc.Observation(False, None), rec.DONE, None),
    ("delete", {}, lc.Observation(True, "Stopped"), lc.SEND, "delete"),
    ("wait_gone", {}, lc.Observation(True, "Stopped", waited_s=3), lc.WAIT, None),
    ("resume", {}, lc.Observation(True, "Failed"), lc.SEND, "resume"),
    ("resume", {}, OBS_RUNNING, rec.DONE, None),
])
def test_decide(action, params, obs, kind, call):
    d = lc.decide(action, params, obs, timeout_s=10, resume_grace_s=30)
    assert d.kind == kind, d
    if call:
        assert d.call == call




def test_transient_errors():
    from gftune.client import ApiError

    assert is_transient(ApiError(0, "transport_error", "x"))
    assert is_transient(ApiError(503, "", "x"))
    assert is_transient(ApiError(409, "PIPELINE_NOT_STOPPED_FOR_EDIT", "x"))
    assert is_transient(ApiError(400, "PIPELINE_IN_TRANSITION", "x"))
    assert not is_transient(ApiError(422, "unprocessable_entity", "x"))
    assert not is_transient(ApiError(400, "bad_request", "x"))


def test_resources_match_normalises_units():
    live = {"sink": {"replicas": 2, "limits": {"memory": "1.5Gi", "cpu": "1500m"}}, "nats": {"stream": {"maxMsgs": 8}}}
    assert lc.resources_match({"sink": {"limits": {"memory": "1536Mi", "cpu": "1.5"}}}, live)
    assert not lc.resources_match({"sink": {"replicas": 3}}, live)
    assert lc.resources_match({}, live)


def test_updates_keep_the_live_gftune_tags_and_provenance_replaces_the_commit():
    doc = {"metadata": {"tags": ["team:a", "gftune:managed"]}}
    live = {"metadata": {"tags": ["gftune:lock=me|r1|9", "gftune:commit=old", "stray"]}}
    assert tags.with_live_gftune_tags(doc, live)["metadata"]["tags"] == [
        "team:a", "gftune:lock=me|r1|9", "gftune:commit=old", "gftune:managed"]
    assert tags.provenance_tags(["x", "gftune:commit=old", "gftune:lock=me|r1|9"], "abc") == [
        "x", "gftune:lock=me|r1|9", "gftune:managed", "gftune:commit=abc"]


def test_plan_staleness_by_age_and_commit():
    plan = planmod.Plan(pipelines=[], id="plan-1", created_at="2025-01-01T00:00:00+00:00", git={"commit": "a" * 40})
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=30)
    assert plan_stale_reasons(plan, now=now, max_age_s=3600, current_commit="a" * 40) == []
    reasons = plan_stale_reasons(plan, now=now + timedelta(hours=1), max_age_s=3600, current_commit="b" * 40)
    assert "older than --max-plan-age" in reasons[0] and "the repository is now at bbbbbbbbbbbb" in reasons[1]


def test_blocked_and_error_entries_are_not_applied_and_give_their_exit_code(tmp_path):
    from gftune.apply.journal import JournalStore

    ok = planmod.PipelinePlan("p-ok", planmod.UPDATE, lifecycle=RUNNING_EDIT)
    blocked = planmod.PipelinePlan("p-blocked", planmod.BLOCKED, blocked=[
        planmod.Blocker("immutable", "resources.nats.stream.maxAge is immutable", "keep it in git")])
    broken = planmod.PipelinePlan("p-error", planmod.ERROR, errors=["cannot read it"])
    same = planmod.PipelinePlan("p-same", planmod.NOOP)
    ctx = ApplyContext(client=None, config=Config(), store=JournalStore(tmp_path), owner="me@host")
    journal, _ = ap.new_journal(planmod.Plan([ok, blocked, broken, same], "plan-1", "2025-01-01T00:00:00+00:00"), ctx, plan_path=None)
    assert list(journal.pipelines) == ["p-ok", "p-blocked", "p-error"]
    assert journal.pipelines["p-blocked"].outcome == "blocked" and not journal.pipelines["p-blocked"].steps
    assert "immutable" in journal.pipelines["p-blocked"].error
    assert journal.pipelines["p-error"].outcome == "failed" and journal.pipelines["p-error"].error == "cannot read it"
    assert lc.exit_code(["verified", journal.pipelines["p-blocked"].outcome]) == exitcodes.BLOCKED


def test_exit_code_worst_outcome_wins():
    assert lc.exit_code([]) == exitcodes.OK
    assert lc.exit_code(["verified", "applied"]) == exitcodes.OK
    assert lc.exit_code(["verified", "blocked"]) == exitcodes.BLOCKED
    assert lc.exit_code(["blocked", "inconclusive"]) == exitcodes.INCONCLUSIVE
    assert lc.exit_code(["inconclusive", "reverted"]) == exitcodes.VERIFY_FAILED
    assert lc.exit_code(["reverted", "restored"]) == exitcodes.ERROR


def test_restored_resources_take_immutable_fields_from_the_live_pipeline():
    from gftune.apply.lifecycle import with_live_immutables

    before = {"nats": {"stream": {"maxAge": "24h", "maxBytes": "0", "maxMsgs": 8000}}, "sink": {"replicas": 2}}
    live = {"nats": {"stream": {"maxAge": "24h0m0s", "maxBytes": "-1", "maxMsgs": 8000}}, "sink": {"replicas": 5}}
    out = with_live_immutables(before, live, ["nats/stream/maxAge", "nats/stream/maxBytes", "transform/replicas"])
    assert out == {"nats": {"stream": {"maxAge": "24h0m0s", "maxBytes": "-1", "maxMsgs": 8000}}, "sink": {"replicas": 2}}
    assert before["nats"]["stream"]["maxBytes"] == "0"  # not modified in place
    assert "transform" not in out  # an immutable field absent from the capture is not added
