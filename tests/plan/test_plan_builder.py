"""The pure plan builder: classification, lifecycle steps, payloads, policies, staleness, scope."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from gftune import exitcodes
from gftune.live import LiveState
from gftune.plan.build import PlanOptions, build_plan, plan_pipeline
from gftune.plan.evidence import Escalation, FieldChange, Proposal
from gftune.plan.model import BLOCKED, CREATE, DELETE, ERROR, NOOP, UPDATE, Plan, in_shard, parse_shard, select_scope
from gftune.plan.staleness import entry_stale_reasons
from tests.support.documents import PASSWORD, desired_doc, live_internal, resolver
from tests.support.plans import (
    CREATED,
    OPTIONS,
    PLAN_ID,
    Desired,
    Outcome,
    actions,
    live,
    make_plan,
    plan_for,
    proposal,
)


def test_in_sync_is_noop():
    plan = plan_for()
    assert (plan.action, plan.kind, plan.changes, plan.lifecycle, plan.downtime_s) == (NOOP, None, [], [], 0.0)
    assert plan.fingerprint["status"] == "Running"


def test_replica_change_on_running_pipeline_is_one_put_cycle():
    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 3
    plan = plan_for(spec)
    assert (plan.action, plan.kind) == (UPDATE, "resources")
    assert actions(plan) == ["stop", ("wait_status", "Stopped"), "put_resources", ("wait_status", "Running")]
    assert plan.downtime_s == 42.0
    body = plan.payload["resources"]["pipeline_resources"]
    expected = live_internal()
    expected["ingestor"]["base"]["replicas"] = 3
    assert body == expected  # the full GET body plus the change, never a partial block
    assert "document" not in plan.payload


def test_config_and_resources_change_is_one_edit_carrying_full_resources():
    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 3
    spec["sink"]["max_batch_size"] = 5000
    plan = plan_for(spec)
    assert (plan.action, plan.kind) == (UPDATE, "both")
    assert actions(plan) == ["stop", ("wait_status", "Stopped"), "edit", ("wait_status", "Running")]
    document = plan.payload["document"]
    assert document["sink"]["max_batch_size"] == 5000
    assert document["sink"]["connection_params"]["password"] == "${env:CH_PASSWORD}"  # reference, not value
    resources = document["resources"]
    assert resources["sources"] == [{"source_id": "orders", **live_internal()["ingestor"]["base"], "replicas": 3}]
    assert resources["nats"] == live_internal()["nats"]  # immutable fields echoed as GET showed them
    assert resources["transform"][0]["storage"] == {"size": "10Gi"}
    assert "gftune:managed" in document["metadata"]["tags"]
    assert "resources" not in plan.payload


def test_edit_keeps_live_gftune_tags():
    spec = desired_doc()
    spec["sink"]["table"] = "orders2"
    state = live(doc=lambda d: d.update(metadata={"tags": ["gftune:commit=abc", "gftune:managed"]}))
    document = plan_for(spec, state).payload["document"]
    assert document["metadata"]["tags"] == ["gftune:commit=abc", "gftune:managed"]


def test_immutable_change_is_blocked_with_a_remedy_and_no_steps():
    spec = desired_doc()
    spec["resources"]["nats"]["stream"]["maxAge"] = "48h"
    plan = plan_for(spec)
    assert plan.action == BLOCKED and plan.lifecycle == [] and plan.payload == {}
    [blocker] = plan.blocked
    assert blocker.code == "immutable" and "resources.nats.stream.maxAge" in blocker.message
    assert "recreate" in blocker.remedy and "dedup state" in blocker.remedy


def test_same_immutable_value_spelled_differently_is_not_a_change():
    spec = desired_doc()
    spec["resources"]["nats"]["stream"]["maxAge"] = "1440m"
    assert plan_for(spec).action == NOOP


def test_transform_replicas_are_immutable_with_dedup():
    spec = desired_doc()
    spec["resources"]["transform"][0]["replicas"] = 2
    plan = plan_for(spec)
    assert plan.action == BLOCKED and plan.blocked[0].code == "immutable"
    # without dedup the transform can scale
    spec["transforms"] = [spec["transforms"][0]]
    spec["resources"]["transform"][0].pop("storage")
    state = live(doc=lambda d: d.update(transforms=[d["transforms"][1]]))
    state.immutable = state.immutable[:4]
    state.resources["transform"].pop("storage")
    plan = plan_for(spec, state)
    assert plan.action == UPDATE, plan.blocked


@pytest.mark.parametrize("status", ["Created", "Stopping", "Resuming", "Terminating", None, "Exploding"])
def test_unsettled_or_unknown_status_blocks_a_disruptive_change(status):
    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 3
    plan = plan_for(spec, live(status))
    assert plan.action == BLOCKED and plan.blocked[0].code == "transitional"
    assert (status or "unknown") in plan.blocked[0].message and "re-run" in plan.blocked[0].remedy


def test_stopped_pipeline_is_stopped_again_after_the_update():
    spec = desired_doc()
    spec["resources"]["sink"]["replicas"] = 2
    plan = plan_for(spec, live("Stopped"))
    assert actions(plan) == ["put_resources", ("wait_status", "Running"), "stop", ("wait_status", "Stopped")]
    assert plan.downtime_s == 0.0 and any("stopped again" in n for n in plan.notes)


def test_failed_pipeline_is_updated_directly():
    spec = desired_doc()
    spec["resources"]["sink"]["replicas"] = 2
    plan = plan_for(spec, live("Failed"))
    assert actions(plan) == ["put_resources", ("wait_status", "Running")]


def test_tags_and_name_change_without_restart():
    spec = desired_doc()
    spec["metadata"] = {"tags": ["team:payments"]}
    spec["name"] = "Orders (EU)"
    state = live("Stopping", doc=lambda d: d.update(metadata={"tags": ["gftune:managed"]}))
    plan = plan_for(spec, state)
    assert (plan.action, plan.kind, plan.downtime_s) == (UPDATE, "config", 0.0)
    assert actions(plan) == ["rename", "patch_metadata"]
    assert plan.payload == {"name": "Orders (EU)", "metadata": {"tags": ["team:payments", "gftune:managed"]}}


def test_create_sends_desired_document_with_references_and_managed_tag():
    state = LiveState("orders-dedup", exists=False)
    plan = plan_for(state=state)
    assert plan.action == CREATE and plan.fingerprint is None
    assert actions(plan) == ["create", ("wait_status", "Running")]
    assert plan.payload["document"]["sink"]["connection_params"]["password"] == "${env:CH_PASSWORD}"
    assert "gftune:managed" in plan.payload["document"]["metadata"]["tags"]


def test_create_with_unset_secret_is_an_error_naming_the_variable():
    plan = plan_for(state=LiveState("orders-dedup", exists=False), options=PlanOptions(resolver=resolver({})))
    assert plan.action == ERROR and "CH_PASSWORD" in plan.errors[0]


def test_invalid_target_state_is_blocked_before_anything_is_stopped():
    spec = desired_doc()
    spec["sink"]["mapping"][0]["column_type"] = "Nullable(String)"
    plan = plan_for(spec)
    assert plan.action == BLOCKED and plan.lifecycle == []
    assert any(b.code == "invalid" and "Nullable" in b.message for b in plan.blocked)


def test_invalid_quantity_is_blocked():
    spec = desired_doc()
    spec["resources"]["sink"]["limits"] = {"memory": "1GB"}
    plan = plan_for(spec)
    assert plan.action == BLOCKED and plan.blocked[0].code == "invalid"


def test_read_error_is_named():
    state = LiveState("orders-dedup", exists=True, error="GET /api/v1/pipeline/orders-dedup/resources: HTTP 500")
    plan = plan_for(state=state)
    assert plan.action == ERROR and "HTTP 500" in plan.errors[0]


def test_secret_change_is_sensitive_and_never_holds_a_value():
    plan = plan_for(options=PlanOptions(resolver=resolver({"CH_PASSWORD": "rotated-password-1"})))
    assert plan.action == UPDATE and plan.kind == "config"
    [change] = plan.changes
    assert change.sensitive and change.old == "(sensitive)"
    text = json.dumps(plan.to_dict())
    assert PASSWORD not in text and "rotated-password-1" not in text


def join_spec():
    return {
        "version": "v3", "pipeline_id": "joined-pipe", "name": "J",
        "sources": [{"type": "kafka", "source_id": side, "topic": side,
                     "connection_params": {"brokers": ["k:9092"], "protocol": "PLAINTEXT", "mechanism": "NO_AUTH"},
                     "schema_fields": [{"name": "id", "type": "string"}]} for side in ("a", "b")],
        "join": {"enabled": True, "type": "temporal", "left_source": {"source_id": "a", "key": "id", "time_window": "1h"},
                 "right_source": {"source_id": "b", "key": "id", "time_window": "1h"},
                 "output_fields": [{"source_id": "a", "name": "id"}]},
        "sink": {"type": "clickhouse", "table": "t", "max_batch_size": 100, "max_delay_time": "1s",
                 "connection_params": {"host": "h", "port": "9000", "http_port": "8123", "database": "d",
                                       "username": "u", "password": "${env:CH_PASSWORD}", "secure": False},
                 "mapping": [{"name": "id", "column_name": "id", "column_type": "String"}]},
        "resources": {"join": {"limits": {"memory": "2Gi"}}},
    }


def join_live():
    doc = copy.deepcopy(join_spec())
    doc.pop("resources")
    doc["sink"]["connection_params"]["password"] = PASSWORD
    internal = {"nats": {"stream": {"maxAge": "24h", "maxBytes": "0", "maxMsgs": 800}},
                "ingestor": {"left": {"replicas": 1}, "right": {"replicas": 1}},
                "join": {"replicas": 1, "limits": {"memory": "2Gi", "cpu": "1"}}, "sink": {"replicas": 1}}
    return LiveState("joined-pipe", exists=True, pipeline=doc, resources=internal,
                     immutable=["nats/stream/maxAge"], status="Running")


def test_join_config_change_adds_a_conditional_join_restore_cycle():
    spec = join_spec()
    spec["sink"]["max_batch_size"] = 200
    plan = plan_pipeline(Desired("joined-pipe", spec), join_live(), OPTIONS)
    assert plan.action == UPDATE
    assert "join" not in plan.payload["document"]["resources"]
    assert plan.payload["join_restore"] == {"join": {"replicas": 1, "limits": {"memory": "2Gi", "cpu": "1"}}}
    conditional = [s for s in plan.lifecycle if s.get("when") == "join_reset"]
    assert [s["action"] for s in conditional] == ["stop", "wait_status", "put_resources", "wait_status"]
    assert plan.downtime_s == 84.0  # up to two restarts
    assert any("join" in n for n in plan.notes)


def test_join_resource_only_change_is_a_put():
    spec = join_spec()
    spec["resources"]["join"]["limits"]["memory"] = "3Gi"
    plan = plan_pipeline(Desired("joined-pipe", spec), join_live(), OPTIONS)
    assert plan.kind == "resources"
    assert plan.payload["resources"]["pipeline_resources"]["join"]["limits"] == {"memory": "3Gi", "cpu": "1"}


def test_policy_proposal_already_in_git_rides_on_the_change():
    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 3
    plan = plan_for(spec, outcome=Outcome([proposal(new="3")], [], []))
    [change] = plan.changes
    assert change.proposal is not None and change.proposal.policy == "scale-ingestor"
    assert plan.proposals == []


def test_policy_proposal_adopted_in_git_with_another_value_rides_on_the_change():
    # After `tune --write` the policy, re-evaluated on a grown backlog, wants 4; git reviewed 3.
    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 3
    plan = plan_for(spec, outcome=Outcome([proposal(new=4)], [], []))
    [change] = plan.changes
    assert change.proposal is not None and plan.proposals == []
    assert any("now suggests 4 (git has 3)" in note for note in plan.notes)


def test_policy_proposal_against_the_git_change_stays_pending():
    # git lowers replicas while the policy wants more: the policy's case is not answered by git.
    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 1
    plan = plan_for(spec, outcome=Outcome([proposal(new=3)], [], []))
    [change] = plan.changes
    assert change.proposal is None and len(plan.proposals) == 1


def test_policy_proposal_compares_quantities_by_value():
    spec = desired_doc()
    spec["resources"]["sink"]["limits"] = {"cpu": "3", "memory": "2Gi"}
    wanted = Proposal(pipeline_id="orders-dedup", policy="p",
                      changes=(FieldChange("resources.sink.limits.memory", "1Gi", "2048Mi"),), evidence=())
    plan = plan_for(spec, outcome=Outcome([wanted], [], []))
    memory = next(c for c in plan.changes if c.path.endswith("limits.memory"))
    assert dataclasses.replace(memory.proposal, cost=None) == wanted
    assert not any("now suggests" in n for n in plan.notes)
    assert memory.proposal.cost == plan.cost  # an adopted proposal costs what its pipeline's update costs


def test_policy_proposal_not_in_git_is_pending():
    plan = plan_for(outcome=Outcome([proposal()], [], ["signal x was stale"]))
    assert plan.action == NOOP and len(plan.proposals) == 1 and plan.policy_notes == ["signal x was stale"]


def test_exit_codes_follow_the_contract():
    noop = plan_for()
    changed_spec = desired_doc()
    changed_spec["resources"]["sink"]["replicas"] = 3
    update = plan_for(changed_spec)
    blocked_spec = desired_doc()
    blocked_spec["resources"]["nats"]["stream"]["maxAge"] = "1h"
    blocked = plan_for(blocked_spec)
    error = plan_for(state=LiveState("orders-dedup", exists=True, error="boom"))
    pending = plan_for(outcome=Outcome([proposal()], [], []))
    escalated = plan_for(outcome=Outcome([], [Escalation("orders-dedup", "p", "retries exhausted", (), "look")], []))
    assert make_plan([noop]).exit_code == exitcodes.OK
    assert make_plan([]).exit_code == exitcodes.OK
    assert make_plan([noop, update]).exit_code == exitcodes.CHANGES
    assert make_plan([pending]).exit_code == exitcodes.CHANGES
    assert make_plan([update, blocked]).exit_code == exitcodes.BLOCKED
    assert make_plan([escalated]).exit_code == exitcodes.BLOCKED
    assert make_plan([update, blocked, error]).exit_code == exitcodes.ERROR
    assert make_plan([noop], errors=["list failed"]).exit_code == exitcodes.ERROR


def test_plan_json_round_trip():
    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 3
    plan = make_plan([plan_for(spec, outcome=Outcome([proposal()], [], []))], git={"commit": "abc", "branch": "main",
                                                                                    "dirty": False}, shard="1/2")
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["format_version"] == "1" and data["summary"]["update"] == 1
    again = Plan.from_dict(data)
    assert again.to_dict() == data


def test_plan_from_another_format_version_is_refused():
    with pytest.raises(ValueError, match="format_version"):
        Plan.from_dict({"format_version": "0", "id": "x", "created_at": "now"})


def test_stale_plan_is_detected():
    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 3
    entry = plan_for(spec).to_dict()
    assert entry_stale_reasons(entry, live()) == []
    assert any("status" in r for r in entry_stale_reasons(entry, live("Stopped")))
    assert any("resources" in r for r in entry_stale_reasons(entry, live(internal=lambda i: i["sink"].update(replicas=5))))
    assert any("configuration" in r
               for r in entry_stale_reasons(entry, live(doc=lambda d: d["sink"].update(table="other"))))
    # a canonically equal re-rendering of the same config is not staleness
    assert entry_stale_reasons(entry, live(doc=lambda d: d["sink"].update(max_delay_time="60s"))) == []
    assert entry_stale_reasons(entry, LiveState("orders-dedup", exists=False)) != []
    create = plan_for(state=LiveState("orders-dedup", exists=False)).to_dict()
    assert entry_stale_reasons(create, LiveState("orders-dedup", exists=False)) == []
    assert entry_stale_reasons(create, live()) != []


def test_fingerprint_holds_no_secret():
    assert PASSWORD not in json.dumps(plan_for().fingerprint)


def test_shards_partition_pipelines_stably():
    ids = [f"pipe-{i:04d}" for i in range(400)]
    shards = [[p for p in ids if in_shard(p, (i, 4))] for i in range(1, 5)]
    assert sorted(p for shard in shards for p in shard) == ids
    assert all(60 < len(s) < 140 for s in shards)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_scope_targets_orphans_and_unmanaged():
    rows = [{"pipeline_id": "kept", "metadata": {"tags": ["gftune:managed"]}},
            {"pipeline_id": "gone-from-git", "metadata": {"tags": ["gftune:managed"]}},
            {"pipeline_id": "hand-made", "metadata": {"tags": None}}]
    scope = select_scope(["kept", "new-one"], rows)
    assert (scope.desired, scope.orphans, scope.unmanaged) == (["kept", "new-one"], ["gone-from-git"], ["hand-made"])
    scope = select_scope(["kept", "new-one"], rows, targets=["kept", "nope"])
    assert (scope.desired, scope.orphans, scope.unknown_targets) == (["kept"], [], ["nope"])


def test_orphans_need_allow_delete():
    state = live()
    state.pipeline_id = "gone-from-git"
    scope = select_scope([], [{"pipeline_id": "gone-from-git", "metadata": {"tags": ["gftune:managed"]}}])
    plan = build_plan({}, {"gone-from-git": state}, OPTIONS, scope=scope, plan_id=PLAN_ID, now=CREATED)
    assert plan.pipelines == [] and "--allow-delete" in plan.warnings[0]
    plan = build_plan({}, {"gone-from-git": state}, PlanOptions(allow_delete=True), scope=scope,
                      plan_id=PLAN_ID, now=CREATED)
    [entry] = plan.pipelines
    assert entry.action == DELETE
    assert actions(entry) == ["stop", ("wait_status", "Stopped"), "delete", "wait_gone"]


def test_build_plan_orders_and_counts(tmp_path: Path):
    spec = desired_doc()
    spec["resources"]["sink"]["replicas"] = 3
    scope = select_scope(["orders-dedup"], [])
    plan = build_plan({"orders-dedup": Desired("orders-dedup", spec)}, {"orders-dedup": live()}, OPTIONS,
                      scope=scope, plan_id=PLAN_ID, now=CREATED, api_url="http://x")
    summary = plan.summary
    cost = summary.pop("cost")
    assert summary == {"create": 0, "update": 1, "delete": 0, "blocked": 0, "unchanged": 0, "errors": 0,
                       "proposals": 0, "escalations": 0, "policy_errors": 0, "downtime_s": 42.0}
    # sink 1 -> 3 replicas of 1000m/500Mi requested, 1500m/1.5Gi limits: one restart of a Running pipeline
    assert cost == {"restarts": 1, "downtime_s": 42.0, "irreversible": [],
                    "resources": {"pods": {"sink": 2}, "cpu_requests": 2.0, "memory_requests": 2 * 500 * 2**20,
                                  "cpu_limits": 3.0, "memory_limits": 3 * 2**30, "unknown": []}}
