"""`gftune plan` against the simulator: every done-when bullet of issue 4."""

from __future__ import annotations

import json

import pytest

from tests.support.api import api, wait_status
from tests.support.repos import EXAMPLES, SECRETS, apply_plan, deploy_examples, gftune, plan_json

FAST = {"time_scale": 200}


@pytest.fixture
def deployed(sim_factory, repo):
    sim = sim_factory(**FAST)
    deploy_examples(repo, sim.api_url)
    return sim


def lifecycle(entry):
    return [s["action"] if s["action"] != "wait_status" else f"wait {s['status']}" for s in entry["lifecycle"]]


def by_id(plan):
    return {p["pipeline_id"]: p for p in plan["pipelines"]}


def planned(repo, api_url, pipeline_id):
    """``gftune plan --format json``: its exit code, the plan and ``pipeline_id``'s entry."""
    code, plan = plan_json(repo, api_url)
    return code, plan, by_id(plan)[pipeline_id]


def test_every_example_pipeline_plans_no_changes_after_creation(deployed, repo):
    assert len(EXAMPLES) == 5
    result = gftune("plan", "--repo", repo.path, "--api", deployed.api_url)
    assert result.exit_code == 0, result.stdout
    assert "No changes" in result.stdout
    assert "5 unchanged" in result.stdout
    code, plan = plan_json(repo, deployed.api_url)
    assert code == 0
    assert [p["action"] for p in plan["pipelines"]] == ["noop"] * 5
    assert sorted(p["pipeline_id"] for p in plan["pipelines"]) == EXAMPLES


def test_no_metrics_is_said(deployed, repo):
    result = gftune("plan", "--repo", repo.path, "--api", deployed.api_url)
    assert "policies not evaluated: no --prometheus/--scrape configured" in result.stdout


def test_replica_change_is_one_stop_put_running_cycle_and_converges(deployed, repo):
    repo.edit("deduplication-demo-pipeline", lambda s: s["resources"]["sources"][0].update(replicas=3))
    result = gftune("plan", "--repo", repo.path, "--api", deployed.api_url)
    assert result.exit_code == 2
    assert "resources.sources[users].replicas: 2 → 3" in result.stdout
    assert "stop → wait Stopped → PUT /resources → wait Running" in result.stdout
    code, plan, entry = planned(repo, deployed.api_url, "deduplication-demo-pipeline")
    assert (code, entry["action"], entry["kind"]) == (2, "update", "resources")
    assert lifecycle(entry) == ["stop", "wait Stopped", "put_resources", "wait Running"]
    assert entry["downtime_s"] > 0
    assert plan["summary"]["update"] == 1 and plan["summary"]["unchanged"] == 4
    apply_plan(plan, deployed.api_url, repo)
    live = api(deployed.api_url).get_resources("deduplication-demo-pipeline")["pipeline_resources"]
    assert live["ingestor"]["base"]["replicas"] == 3
    assert live["transform"]["storage"] == {"size": "20Gi"}  # the rest was sent back unchanged
    assert plan_json(repo, deployed.api_url)[0] == 0


def test_config_and_resources_change_is_one_edit(deployed, repo):
    def change(spec):
        spec["sink"]["max_batch_size"] = 2000
        spec["resources"]["sink"]["replicas"] = 2

    repo.edit("deduplication-demo-pipeline", change)
    code, plan, entry = planned(repo, deployed.api_url, "deduplication-demo-pipeline")
    assert (code, entry["kind"]) == (2, "both")
    assert lifecycle(entry) == ["stop", "wait Stopped", "edit", "wait Running"]
    sent = apply_plan(plan, deployed.api_url, repo)
    assert [a for _, a in sent].count("edit") == 1 and "put_resources" not in [a for _, a in sent]
    live = api(deployed.api_url)
    assert live.get("deduplication-demo-pipeline")["sink"]["max_batch_size"] == 2000
    resources = live.get_resources("deduplication-demo-pipeline")["pipeline_resources"]
    assert resources["sink"]["replicas"] == 2
    assert resources["ingestor"]["base"]["replicas"] == 2 and resources["transform"]["storage"]["size"] == "20Gi"
    assert plan_json(repo, deployed.api_url)[0] == 0


def test_edit_echoes_the_stateless_transform_block(deployed, repo):
    repo.edit("otlp-traces", lambda s: s["sink"].update(max_delay_time="5s"))
    repo.edit("ran-5g-telemetry", lambda s: s["transforms"][0]["config"].update(expression="metric_name != 'x'"))
    code, plan = plan_json(repo, deployed.api_url)
    assert code == 2 and plan["summary"]["update"] == 2
    before = api(deployed.api_url).get_resources("otlp-traces")["pipeline_resources"]
    apply_plan(plan, deployed.api_url, repo)
    assert api(deployed.api_url).get_resources("otlp-traces")["pipeline_resources"] == before
    assert plan_json(repo, deployed.api_url)[0] == 0


def test_immutable_max_age_is_blocked_and_the_pipeline_untouched(deployed, repo):
    client = api(deployed.api_url)
    before = (client.get("deduplication-demo-pipeline"), client.get_resources("deduplication-demo-pipeline"),
              client.status("deduplication-demo-pipeline"))
    repo.edit("deduplication-demo-pipeline", lambda s: s["resources"]["nats"]["stream"].update(maxAge="48h"))
    result = gftune("plan", "--repo", repo.path, "--api", deployed.api_url)
    assert result.exit_code == 3
    assert "immutable: resources.nats.stream.maxAge is immutable" in result.stdout
    assert "recreate" in result.stdout
    code, _, entry = planned(repo, deployed.api_url, "deduplication-demo-pipeline")
    assert (code, entry["action"], entry["lifecycle"]) == (3, "blocked", [])
    after = (client.get("deduplication-demo-pipeline"), client.get_resources("deduplication-demo-pipeline"),
             client.status("deduplication-demo-pipeline"))
    assert after == before and after[2] == "Running"


def test_join_config_change_restores_join_resources(deployed, repo):
    repo.edit("join-demo-pipeline", lambda s: s["resources"]["join"]["limits"].update(memory="2Gi"))
    code, plan, entry = planned(repo, deployed.api_url, "join-demo-pipeline")
    assert (code, entry["kind"]) == (2, "resources")
    apply_plan(plan, deployed.api_url, repo)
    repo.edit("join-demo-pipeline", lambda s: s["sink"].update(max_batch_size=3000))
    code, plan, entry = planned(repo, deployed.api_url, "join-demo-pipeline")
    assert entry["kind"] == "config" and "join_restore" in entry["payload"]
    sent = [a for _, a in apply_plan(plan, deployed.api_url, repo)]
    assert sent.count("put_resources") == 1  # the edit reset join to the server default: restored
    join = api(deployed.api_url).get_resources("join-demo-pipeline")["pipeline_resources"]["join"]
    assert join["limits"]["memory"] == "2Gi"
    assert plan_json(repo, deployed.api_url)[0] == 0


def test_stopped_pipeline_is_updated_and_left_stopped(deployed, repo):
    client = api(deployed.api_url)
    client.stop("ran-5g-telemetry")
    wait_status(deployed.api_url, "ran-5g-telemetry", "Stopped")
    repo.edit("ran-5g-telemetry", lambda s: s["resources"]["sink"].update(replicas=2))
    code, plan, entry = planned(repo, deployed.api_url, "ran-5g-telemetry")
    assert code == 2
    assert lifecycle(entry) == ["put_resources", "wait Running", "stop", "wait Stopped"]
    assert entry["downtime_s"] == 0
    apply_plan(plan, deployed.api_url, repo)
    assert client.status("ran-5g-telemetry") == "Stopped"
    assert plan_json(repo, deployed.api_url)[0] == 0


def test_tag_change_needs_no_restart(deployed, repo):
    repo.edit("otlp-traces", lambda s: s["metadata"].update(tags=["observability", "otlp", "tier-1"]))
    code, plan, entry = planned(repo, deployed.api_url, "otlp-traces")
    assert (code, lifecycle(entry), entry["downtime_s"]) == (2, ["patch_metadata"], 0)
    apply_plan(plan, deployed.api_url, repo)
    tags = api(deployed.api_url).get("otlp-traces")["metadata"]["tags"]
    assert "tier-1" in tags and "gftune:managed" in tags
    assert plan_json(repo, deployed.api_url)[0] == 0


def test_secret_values_appear_in_no_output(deployed, repo, tmp_path, monkeypatch):
    """Known secrets are in env and in the live config; then one is rotated so the plan shows a change."""
    rotated = "Rotated-Known-Secret-9923"
    secret_values = [SECRETS["CLICKHOUSE_PASSWORD"], SECRETS["KAFKA_PASSWORD"], rotated]
    outputs = {}
    for run, password in (("same", SECRETS["CLICKHOUSE_PASSWORD"]), ("rotated", rotated)):
        monkeypatch.setenv("CLICKHOUSE_PASSWORD", password)
        for fmt in ("text", "json", "markdown"):
            out = tmp_path / f"plan-{run}-{fmt}.json"
            result = gftune("plan", "--repo", repo.path, "--api", deployed.api_url, "--format", fmt, "--out", out)
            outputs[run, fmt] = (result.exit_code, result.stdout, result.stderr, out.read_text())
        drift = gftune("drift", "--repo", repo.path, "--api", deployed.api_url, "--format", "json")
        outputs[run, "drift"] = (drift.exit_code, drift.stdout, drift.stderr, "")
    assert outputs["same", "text"][0] == 0
    code, text = outputs["rotated", "text"][:2]
    assert code == 2 and "sink.connection_params.password: (sensitive value changed)" in text
    assert json.loads(outputs["rotated", "json"][1])["summary"]["update"] == 5  # every sink uses it
    for (run, fmt), (_, *texts) in outputs.items():
        for text in texts:
            for secret in secret_values:
                assert secret not in text, (run, fmt)


def test_a_pipeline_that_cannot_be_read_is_named_and_the_others_planned(deployed, repo):
    deployed.add_fault({"kind": "http_error", "route": "GET /api/v1/pipeline/{id}/resources",
                        "pipeline": "otlp-traces", "status": 503})
    result = gftune("plan", "--repo", repo.path, "--api", deployed.api_url)
    assert result.exit_code == 1
    assert "x otlp-traces" in result.stdout and "503" in result.stdout and "/resources" in result.stdout
    code, plan = plan_json(repo, deployed.api_url)
    assert code == 1
    assert by_id(plan)["otlp-traces"]["action"] == "error"
    assert [p["action"] for p in plan["pipelines"] if p["pipeline_id"] != "otlp-traces"] == ["noop"] * 4


def test_target_and_shard(deployed, repo):
    code, plan = plan_json(repo, deployed.api_url, "--target", "otlp-traces", "--target", "join-demo-pipeline")
    assert code == 0
    assert [p["pipeline_id"] for p in plan["pipelines"]] == ["join-demo-pipeline", "otlp-traces"]
    assert plan["targets"] == ["otlp-traces", "join-demo-pipeline"]
    shards = [plan_json(repo, deployed.api_url, "--shard", f"{i}/2")[1] for i in (1, 2)]
    ids = [[p["pipeline_id"] for p in s["pipelines"]] for s in shards]
    assert sorted(ids[0] + ids[1]) == EXAMPLES and not set(ids[0]) & set(ids[1])
    bad = gftune("plan", "--repo", repo.path, "--api", deployed.api_url, "--shard", "3/2")
    assert bad.exit_code == 1 and "--shard" in bad.stderr  # a usage error; 2 would mean "changes"
    unknown = gftune("plan", "--repo", repo.path, "--api", deployed.api_url, "--target", "nope-nope")
    assert unknown.exit_code == 0 and "no such pipeline" in unknown.stdout and "No pipelines in scope" in unknown.stdout


def test_delete_only_with_allow_delete(deployed, repo):
    (repo.path / "pipelines" / "otlp-traces.yaml").unlink()
    result = gftune("plan", "--repo", repo.path, "--api", deployed.api_url)
    assert result.exit_code == 0 and "--allow-delete" in result.stdout
    code, plan = plan_json(repo, deployed.api_url, "--allow-delete")
    entry = by_id(plan)["otlp-traces"]
    assert (code, entry["action"]) == (2, "delete")
    assert lifecycle(entry) == ["stop", "wait Stopped", "delete", "wait_gone"]
    apply_plan(plan, deployed.api_url, repo)
    assert not api(deployed.api_url).exists("otlp-traces")
    assert plan_json(repo, deployed.api_url, "--allow-delete")[0] == 0


def test_pipelines_not_created_by_gftune_are_never_deleted(sim_factory, repo):
    sim = sim_factory(**FAST)
    deploy_examples(repo, sim.api_url)
    doc = api(sim.api_url).get("otlp-traces")
    doc["pipeline_id"] = "hand-made-traces"
    doc["metadata"] = {"tags": None}
    doc.pop("resources")
    api(sim.api_url).create(doc)
    code, plan = plan_json(repo, sim.api_url, "--allow-delete")
    assert code == 0 and plan["unmanaged"] == ["hand-made-traces"]


def test_transitional_status_is_blocked(deployed, repo):
    deployed.add_fault({"kind": "stuck_transition", "operation": "stop", "pipeline": "otlp-traces"})
    api(deployed.api_url).stop("otlp-traces")
    repo.edit("otlp-traces", lambda s: s["resources"]["sink"].update(replicas=2))
    code, _, entry = planned(repo, deployed.api_url, "otlp-traces")
    assert (code, entry["action"]) == (3, "blocked")
    assert entry["blocked"][0]["code"] == "transitional" and "Stopping" in entry["blocked"][0]["message"]


def test_create_plan_from_empty_api_and_saved_plan_file(sim, repo, tmp_path):
    out = tmp_path / "plan.json"
    result = gftune("plan", "--repo", repo.path, "--api", sim.api_url, "--out", out)
    assert result.exit_code == 2 and "Saved the plan" in result.stderr
    saved = json.loads(out.read_text())
    assert saved["format_version"] == "1" and saved["git"]["commit"] == repo.head
    assert {p["action"] for p in saved["pipelines"]} == {"create"}
    assert saved["summary"]["create"] == 5
    for entry in saved["pipelines"]:
        assert entry["lifecycle"][0] == {"action": "create"}
        assert "${env:" in json.dumps(entry["payload"])  # references, never values


def test_empty_repository_says_nothing_in_scope(sim, tmp_path):
    (tmp_path / "pipelines").mkdir()
    result = gftune("plan", "--repo", tmp_path, "--api", sim.api_url)
    assert result.exit_code == 0
    assert "No pipelines in scope" in result.stdout


def test_unreachable_api_is_an_error_for_every_pipeline(repo):
    result = gftune("plan", "--repo", repo.path, "--api", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "cannot list live pipelines" in result.stdout
    assert result.stdout.count("API unreachable") == 5  # every pipeline named, no per-pipeline retries


def test_produce_plan_without_prefetch_reads_everything_itself(deployed, repo):
    """The entry point other commands reuse (apply --auto-approve): no background read."""
    import asyncio

    from gftune.desired.repo import load_repo
    from gftune.orchestration.plan import produce_plan

    state = load_repo(repo.path, overrides={"api_url": deployed.api_url})
    run = asyncio.run(produce_plan(state, env=SECRETS))
    assert run.plan.exit_code == 0 and sorted(run.live) == EXAMPLES
    assert all(state.exists and state.status == "Running" for state in run.live.values())
