"""`gftune apply` end to end against the simulator (direct scrape of its /metrics), through the CLI."""

from __future__ import annotations

import json
import threading
import time

import httpx
import yaml

from tests.support import apply as h
from tests.support.api import edit_by_hand, live, status
from tests.support.apply import HEALTHY as PID


def test_config_change_is_applied_verified_and_recorded(setup):
    sim, repo = setup
    h.change_pipeline(repo, PID, {"resources.sink.replicas": 3}, "more sink replicas")
    proc, doc = h.apply_json(repo, "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    p = doc["pipelines"][0]
    assert p["outcome"] == "verified" and p["verdict"]["label"] == "healthy, not worse"
    assert p["changes"] == [{"path": "resources.sink.replicas", "old": 2, "new": 3, "source": "git",
                             "sensitive": False}]
    steps = [s["step"] for s in p["timeline"]]
    assert steps[:6] == ["apply.lock", "apply.capture", "apply.stop", "apply.wait_status(Stopped)",
                         "apply.put_resources", "apply.wait_status(Running)"]
    assert all(s["state"] == "done" for s in p["timeline"])
    assert status(sim.api_url, PID) == "Running"
    assert live(sim.api_url, PID, "/resources")["pipeline_resources"]["sink"]["replicas"] == 3
    head = h.git(repo, "rev-parse", "HEAD").strip()
    live_tags = live(sim.api_url, PID)["metadata"]["tags"]
    assert live_tags[:2] == ["gftune:managed", f"gftune:commit={head}"]
    # the kept change, verified now, motivated by no policy (a git change): what the cooldowns read
    assert len(live_tags) == 3 and live_tags[2].startswith("gftune:applied=@")
    journal = json.loads((repo / ".gftune" / "runs" / f"{doc['run_id']}.json").read_text())
    assert journal["state"] == "finished" and journal["exit_code"] == 0
    assert h.SIM_PASSWORD not in json.dumps(journal) and h.SIM_PASSWORD not in proc.stdout + proc.stderr
    again = h.gftune("plan", "--repo", str(repo))
    assert again.returncode == 0, again.stdout + again.stderr  # no phantom drift after apply


# A policy that always proposes a bad change: apply reverts it, and the next plan must back off.
TINY_BATCHES = {"apiVersion": "gftune/v1", "kind": "TuningPolicy", "metadata": {"name": "tiny-batches"},
                "spec": {"when": [{"signal": "sink_rate", "op": ">=", "value": 0}],
                         "then": [{"set": "sink.max_batch_size", "value": 100}], "cooldown": "15m"}}


def test_regression_is_reverted_and_the_old_config_runs(setup):
    sim, repo = setup
    config = h.config_yaml(sim.api_url, scrape=sim.metrics_url, settle="20s", window="60s")
    config["metrics"]["window"] = "60s"  # the policy's window: 3 s of wall time at time_scale 20
    (repo / "gftune.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (repo / "policies" / "tiny-batches.yaml").write_text(yaml.safe_dump(TINY_BATCHES, sort_keys=False))
    h.commit(repo, "policy")
    h.change_pipeline(repo, PID, {"sink.max_batch_size": 100}, "tiny batches, as the policy proposes")
    _, p = h.auto_apply(repo, 4)
    assert p["policies"] == ["tiny-batches"]
    assert p["outcome"] == "reverted" and p["verdict"]["outcome"] == "fail"
    assert any("sink_rate got worse" in r for r in p["verdict"]["reasons"])
    assert p["revert_verdict"]["outcome"] == "pass"
    assert status(sim.api_url, PID) == "Running"
    assert live(sim.api_url, PID)["sink"]["max_batch_size"] == 1000
    assert h.sent(sim, "POST", "/edit") == 2  # the change, then the revert
    tags = live(sim.api_url, PID)["metadata"]["tags"] or []
    assert not any(t.startswith("gftune:commit=") for t in tags)
    # anti-flapping: the revert is recorded on the pipeline, and the policy backs off
    assert [t for t in tags if t.startswith("gftune:reverted=tiny-batches@")], tags
    assert not any(t.startswith("gftune:lock=") for t in tags)
    h.git(repo, "revert", "--no-edit", "HEAD")  # take the change out of git too, as a user would
    again = h.gftune("plan", "--repo", str(repo), "--format", "json")
    assert again.returncode == 0, again.stdout + again.stderr  # no proposal, and the tag is no drift
    entry = json.loads(again.stdout)["pipelines"][0]
    assert not entry.get("proposals")
    assert any(n.startswith("tiny-batches: its change was reverted at") and "backing off until" in n
               for n in entry.get("policy_notes", [])), entry.get("policy_notes")


def test_stale_plan_is_refused_and_the_pipeline_untouched(setup, tmp_path):
    sim, repo = setup
    h.change_pipeline(repo, PID, {"sink.max_batch_size": 2000}, "bigger batches")
    plan_file = h.save_plan(repo, tmp_path / "plan.json")
    # someone edits the pipeline by hand after the plan was made
    edit_by_hand(sim.api_url, PID, {"sink.max_delay_time": "3s"})
    edits = h.sent(sim, "POST", "/edit")
    proc, report = h.apply_json(repo, str(plan_file))
    assert proc.returncode == 1
    assert report is None
    assert "stale plan refused" in proc.stderr and "live configuration changed" in proc.stderr
    assert h.sent(sim, "POST", "/edit") == edits
    assert live(sim.api_url, PID)["sink"]["max_batch_size"] == 1000
    assert status(sim.api_url, PID) == "Running"
    # a plan whose inputs changed since is refused too (here gftune.yaml); a later commit that leaves
    # every file the plan read as it was (a merge, a docs change) does not make it stale
    fresh = h.save_plan(repo, tmp_path / "fresh.json")
    config = (repo / "gftune.yaml").read_text()
    (repo / "gftune.yaml").write_text(config + "# a comment\n")
    h.commit(repo, "touch gftune.yaml")
    proc, _ = h.apply_json(repo, str(fresh))
    assert proc.returncode == 1 and "gftune.yaml changed since the plan was made" in proc.stderr
    (repo / "gftune.yaml").write_text(config)
    h.commit(repo, "back as it was")
    h.wait_caught_up(sim, PID)  # the hand edit restarted it: its catch-up would be the apply's baseline
    proc, report = h.apply_json(repo, str(fresh))
    assert proc.returncode == 0, proc.stderr
    assert live(sim.api_url, PID)["sink"]["max_batch_size"] == 2000


def test_two_concurrent_applies_one_proceeds_one_fails_closed(setup):
    sim, repo = setup
    h.change_pipeline(repo, PID, {"resources.sink.replicas": 3}, "more sink replicas")
    results = {}

    def run(name):
        env = {**h.test_env(), "GITHUB_ACTOR": name, "GITHUB_RUN_ID": "7"}
        results[name] = h.gftune("apply", "--repo", str(repo), "--auto-approve", env=env)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(p.returncode for p in results.values())
    assert codes == [0, 1], {n: (p.returncode, p.stderr[-800:]) for n, p in results.items()}
    loser = next(n for n, p in results.items() if p.returncode == 1)
    winner = "bob" if loser == "alice" else "alice"
    assert f"locked by {winner}@7" in results[loser].stdout + results[loser].stderr
    assert status(sim.api_url, PID) == "Running"
    assert not any(t.startswith("gftune:lock=") for t in live(sim.api_url, PID)["metadata"]["tags"] or [])


def test_unlock_refuses_a_foreign_lock_without_force(setup):
    sim, repo = setup
    foreign = f"gftune:lock=carol@ci|run-9|{int(time.time()) + 600}"
    httpx.patch(f"{sim.api_url}/api/v1/pipeline/{PID}/metadata",
                json={"metadata": {"tags": ["team:x", foreign]}}).raise_for_status()
    h.change_pipeline(repo, PID, {"resources.sink.replicas": 3}, "more sink replicas")
    proc, doc = h.apply_json(repo, "--auto-approve")
    assert proc.returncode == 1
    assert doc["pipelines"][0]["outcome"] == "refused" and "carol@ci" in doc["pipelines"][0]["error"]
    assert h.sent(sim, "POST", "/edit") == 0 and status(sim.api_url, PID) == "Running"
    refused = h.gftune("unlock", PID, "--repo", str(repo))
    assert refused.returncode == 1 and "carol@ci" in refused.stderr and "--force" in refused.stderr
    forced = h.gftune("unlock", PID, "--repo", str(repo), "--force")
    assert forced.returncode == 0 and "removed the lock of carol@ci" in forced.stdout
    assert live(sim.api_url, PID)["metadata"]["tags"] == ["team:x"]
    assert h.gftune("unlock", PID, "--repo", str(repo)).stdout.strip() == f"{PID}: not locked"
