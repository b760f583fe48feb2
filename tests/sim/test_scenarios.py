"""Scenario files: every one loads and its pipelines pass the API; errors point at the problem."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gftune.sim import ScenarioError, Simulator, available_scenarios
from gftune.sim import scenarios as scenario_files
from gftune.sim.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))

# the symptom table of seeds/tune-pipeline-skill.txt, row -> the scenario that reproduces it
SYMPTOM_ROWS = {
    "ingestor backpressure / stream near capacity": "backpressure-sink-bound",
    "partition-capped ingestor": "partition-capped-ingestor",
    "under-provisioned ingestor": "underprovisioned-ingestor",
    "batch-bound sink": "sink-batch-bound",
    "sink retries": "sink-retries",
    "retry exhaustion": "retry-exhaustion",
    "dedup storage": "dedup-storage",
    "terminal errors": "terminal-errors",
}


def test_the_names_other_modules_rely_on_exist():
    assert set(SYMPTOM_ROWS.values()) | {"healthy"} <= set(NAMES)
    assert {p.stem for p in available_scenarios()} >= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_scenario_loads_and_its_pipelines_are_accepted_by_the_api(name):
    scenario = scenario_files.load(name)
    assert scenario.name == name
    assert scenario.description and scenario.signature
    store = Simulator([name], clock=ManualClock()).build()  # preloading goes through create()
    assert set(store.rows) == {p.pipeline_id for p in scenario.pipelines}
    for spec in scenario.pipelines:
        assert spec.truth, f"{name}: {spec.pipeline_id} has no truth block"
        assert store.health(spec.pipeline_id)["overall_status"] == ("Running" if spec.running else "Created")


@pytest.mark.parametrize("name", NAMES)
def test_the_readme_has_a_line_per_scenario(name):
    readme = (ROOT / "scenarios" / "README.md").read_text()
    assert f"| `{name}` |" in readme


def test_errors_point_at_the_problem(tmp_path):
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("name: broken\npipelines:\n  - spec: {a: 1\n")
    with pytest.raises(ScenarioError, match=r"broken\.yaml:4:1: "):
        scenario_files.load(str(bad_yaml))
    cases = [
        ({"nmae": "x"}, "unknown key(s) nmae"),
        ({"pipelines": [{"file": "a.yaml", "spec": {}}]}, "pipelines[0]: give exactly one of 'file'"),
        ({"pipelines": [{"spec": {"pipeline_id": "abcde"}, "model": {"sink": {"insert_overhaed": 1}}}]},
         "pipelines[0].model.sink.insert_overhaed: unknown key"),
        ({"model": {"sources": {"orders": {"profile": {"kind": "step", "rate": 1}}}}},
         "model.sources.orders.profile: profile kind 'step' needs 'to'"),
        ({"model": {"source": {"noise": "lots"}}}, "model.source.noise: must be a number"),
        ({"resource_defaults": "prod"}, "resource_defaults must be one of helm, code"),
    ]
    for data, message in cases:
        with pytest.raises(ScenarioError) as excinfo:
            scenario_files.parse(data, "inline.yaml", tmp_path)
        assert message in str(excinfo.value), (data, str(excinfo.value))
    with pytest.raises(ScenarioError, match=r"unknown scenario 'nope'; known: .*healthy"):
        scenario_files.load("nope")


def test_a_document_the_api_rejects_is_reported_with_the_apis_reason():
    scenario = {"name": "bad-doc", "pipelines": [{"spec": {"version": "v3", "pipeline_id": "abc", "name": "x",
                                                           "sources": [], "sink": {}}}]}
    with pytest.raises(ScenarioError, match="pipeline abc: the API rejects it: validation failed: expected required"):
        Simulator([scenario], clock=ManualClock()).build()


def test_join_resources_of_a_gftune_pipeline_file_are_set_as_put_resources_would():
    """gftune's files carry ``resources.join`` (the v3 document cannot: a create with it is a 422);
    a scenario creates the pipeline without it and sets it the way ``gftune apply`` does, by PUT."""
    join_file = ROOT / "pipelines" / "join-demo-pipeline.yaml"
    entry = {"file": str(join_file), "patch": {"resources": {"join": {"limits": {"cpu": "2", "memory": "3Gi"}}}}}
    scenario = scenario_files.parse({"name": "join", "pipelines": [entry]}, "inline.yaml", ROOT)
    (spec,) = scenario.pipelines
    assert "join" not in spec.doc["resources"]
    assert spec.join_resources == {"replicas": 1, "requests": {"cpu": "500m", "memory": "256Mi"},
                                   "limits": {"cpu": "2", "memory": "3Gi"}}
    store = Simulator([{"name": "join", "pipelines": [entry]}], clock=ManualClock()).build()
    resources = store.get_resources("join-demo-pipeline")["pipeline_resources"]
    assert resources["join"] == spec.join_resources
    assert resources["sink"]["replicas"] == 1 and set(resources["ingestor"]) == {"left", "right"}
    assert b'"join":{' not in store.get("join-demo-pipeline").split(b'"resources"')[1], "GET's v3 view has no join"

    bad = {"file": str(join_file), "patch": {"resources": {"join": {"limits": {"memory": "1GB"}}}}}
    with pytest.raises(ScenarioError, match=r"join-demo-pipeline: the API rejects it: invalid pipeline resources: "
                                            r'invalid memory quantity "1GB"'):
        Simulator([{"name": "bad-join", "pipelines": [bad]}], clock=ManualClock()).build()


def test_scenarios_declaring_the_same_pipeline_conflict():
    with pytest.raises(ScenarioError, match="declared by both"):
        Simulator(["healthy", "healthy"])


def test_an_installed_package_finds_its_scenarios_by_name(tmp_path):
    """The layout a non-editable install leaves: the package alone (the wheel resolves the
    ``gftune/examples`` symlinks into files), no checkout around it, no ``./scenarios``."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "gftune", site / "gftune", ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GFTUNE_SCENARIOS"}
    env["PYTHONPATH"] = str(site)
    script = ("import gftune, json; from gftune.sim import available_scenarios, Simulator; "
              "from gftune.sim.clock import ManualClock; "
              "store = Simulator(['backpressure-sink-bound'], clock=ManualClock()).build(); "
              "demo = Simulator(['demo'], clock=ManualClock()).build(); "
              "print(json.dumps({'package': gftune.__file__, 'rows': sorted(store.rows), 'demo': sorted(demo.rows), "
              "'found': [str(p) for p in available_scenarios()]}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["package"].startswith(str(site)), "the copy is what got imported"
    assert out["rows"] == ["orders-backpressure"]
    assert out["demo"] == sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml")), "the packaged example files"
    packaged = site / "gftune" / "examples" / "scenarios"
    assert {Path(p).stem for p in out["found"]} == set(NAMES)
    assert all(Path(p).parent == packaged for p in out["found"]), out["found"]
