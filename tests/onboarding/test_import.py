"""`gftune import` against the simulator (issue 14): the demo's five pipelines into an empty repository,
written as a person would have written them; `validate` passes, `plan` reports no changes, no secret leaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gftune.desired import adopt, secrets
from tests.support.repos import ROOT, gftune

DEMO = sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))


@pytest.fixture
def demo(sim_factory: Any) -> Any:
    return sim_factory("demo", time_scale=200)


def live_documents(api_url: str) -> dict[str, dict[str, Any]]:
    rows = httpx.get(f"{api_url}/api/v1/pipeline", timeout=10).json()
    return {row["pipeline_id"]: httpx.get(f"{api_url}/api/v1/pipeline/{row['pipeline_id']}", timeout=10).json()
            for row in rows}


def live_secret_values(api_url: str) -> dict[str, str]:
    """``{path: value}`` of every secret field of every live pipeline (as GET shows them: in clear)."""
    return {f"{pid} {path}": value for pid, doc in live_documents(api_url).items()
            for path, value in secrets.iter_secret_fields(doc) if value}


def spec(repo: Path, pipeline_id: str) -> dict[str, Any]:
    return yaml.safe_load((repo / "pipelines" / f"{pipeline_id}.yaml").read_text())["spec"]


def test_import_the_demo_into_an_empty_repository_then_validate_and_plan_no_changes(demo, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    result = gftune("import", "--repo", repo, "--api", demo.api_url)
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in (repo / "pipelines").glob("*.yaml")) == DEMO

    values = live_secret_values(demo.api_url)
    assert values, "the demo's pipelines carry passwords"
    for file in (repo / "pipelines").glob("*.yaml"):
        text = file.read_text()
        for where, value in values.items():
            assert value not in text, f"{file.name} holds the secret of {where}"
    for value in values.values():
        assert value not in result.output
    # The references, named as in the example repository, are listed at the end with where they are used.
    assert "CLICKHOUSE_PASSWORD (not set): sink.connection_params.password of" in result.output
    assert "KAFKA_PASSWORD (not set): sources[login-attempts].connection_params.password of " \
           "fraud-detection-logins-tested" in result.output

    validate = gftune("validate", "--repo", repo)
    assert validate.exit_code == 0, validate.output

    env = {"CLICKHOUSE_PASSWORD": values["join-demo-pipeline sink.connection_params.password"],
           "KAFKA_PASSWORD": values["fraud-detection-logins-tested sources[login-attempts].connection_params.password"]}
    plan = gftune("plan", "--repo", repo, "--api", demo.api_url, env=env)
    assert plan.exit_code == 0, plan.output
    assert "5 unchanged" in plan.output


def test_imported_files_leave_out_what_the_server_fills_in(demo, tmp_path):
    repo = tmp_path / "repo"
    assert gftune("import", "--repo", repo, "--api", demo.api_url).exit_code == 0
    texts = {p.stem: p.read_text() for p in (repo / "pipelines").glob("*.yaml")}
    for name, text in texts.items():
        assert "0m0s" not in text, name  # Go's 1h0m0s is written 1h
        assert "schema_version" not in text and "consumer_group_initial_offset: earliest" not in text, name
        assert "gftune:" not in text and "maxAge: 24h" not in text, name

    dedup = spec(repo, "deduplication-demo-pipeline")
    assert dedup["transforms"][0]["config"]["time_window"] == "1h"
    # What differs from the server's defaults stays, and only that (the sink's limits are the defaults).
    assert dedup["resources"]["nats"] == {"stream": {"maxBytes": "25GB"}}
    assert dedup["resources"]["sources"][0]["replicas"] == 2
    assert dedup["resources"]["sink"] == {"requests": {"cpu": "500m", "memory": "500Mi"}}
    assert "replicas" not in dedup["resources"]["transform"][0]  # 1 is the default

    fraud = spec(repo, "fraud-detection-logins-tested")
    assert "resources" not in fraud  # the scenario leaves every resource at the Helm chart's defaults
    assert fraud["metadata"] == {"tags": ["tutorial", "fraud-detection"]}
    assert fraud["sources"][0]["connection_params"]["username"] == "gftune-demo-kafka-user"  # not a secret
    assert "time_window" not in next(t for t in fraud["transforms"] if t["type"] == "filter")["config"]

    join = spec(repo, "join-demo-pipeline")
    assert "type" not in join["join"]  # temporal is the only (and default) join type
    assert join["sink"]["connection_params"]["secure"] is False  # required by the API: kept although false
    ran = spec(repo, "ran-5g-telemetry")
    assert ran["sink"]["connection_params"]["skip_certificate_verification"] is True
    assert [t["source_id"] for t in ran["resources"]["transform"]] == ["ran_metrics"]  # one deployment, one entry


def test_import_refuses_to_overwrite_without_force(demo, tmp_path):
    repo = tmp_path / "repo"
    assert gftune("import", "--repo", repo, "--api", demo.api_url).exit_code == 0
    file = repo / "pipelines" / "join-demo-pipeline.yaml"
    edited = file.read_text() + "# my note\n"
    file.write_text(edited)

    again = gftune("import", "--repo", repo, "--api", demo.api_url)
    assert again.exit_code == 1
    assert "pipelines/join-demo-pipeline.yaml exists (pipeline join-demo-pipeline); --force overwrites it" \
        in again.output
    assert "nothing written" in again.output
    assert file.read_text() == edited

    forced = gftune("import", "join-demo-pipeline", "--repo", repo, "--api", demo.api_url, "--force")
    assert forced.exit_code == 0, forced.output
    assert "overwrote pipelines/join-demo-pipeline.yaml" in forced.output
    assert "# my note" not in file.read_text()


def test_import_by_id_by_tag_and_with_labels(demo, tmp_path):
    one = tmp_path / "one"
    result = gftune("import", "join-demo-pipeline", "--repo", one, "--api", demo.api_url, "--label", "team=commerce")
    assert result.exit_code == 0, result.output
    assert [p.stem for p in (one / "pipelines").glob("*.yaml")] == ["join-demo-pipeline"]
    doc = yaml.safe_load((one / "pipelines" / "join-demo-pipeline.yaml").read_text())
    assert doc["metadata"] == {"name": "join-demo-pipeline", "labels": {"team": "commerce"}}

    tagged = tmp_path / "tagged"
    result = gftune("import", "--repo", tagged, "--api", demo.api_url, "--tag", "otlp", "--format", "json")
    assert result.exit_code == 0
    assert sorted(p.stem for p in (tagged / "pipelines").glob("*.yaml")) == ["otlp-traces", "ran-5g-telemetry"]
    doc = json.loads(result.stdout)
    assert sorted(i["file"] for i in doc["imported"]) == ["pipelines/otlp-traces.yaml", "pipelines/ran-5g-telemetry.yaml"]
    assert [(s["name"], s["state"], len(s["used_by"])) for s in doc["secrets"]] == [("CLICKHOUSE_PASSWORD", "not set", 2)]

    unknown = gftune("import", "no-such-pipeline", "--repo", tmp_path / "none", "--api", demo.api_url)
    assert unknown.exit_code == 1
    assert "no live pipeline no-such-pipeline" in unknown.output and "join-demo-pipeline" in unknown.output
    assert not (tmp_path / "none" / "pipelines").exists()

    bad_label = gftune("import", "--repo", tmp_path / "none", "--api", demo.api_url, "--label", "team")
    assert bad_label.exit_code == 1 and "expected KEY=VALUE" in bad_label.output


def test_join_resources_and_the_code_defaults(sim_factory, tmp_path):
    """Join resources exist only in GET /resources: they are imported as gftune's resources.join. A cluster
    without the Helm chart runs with the code's fallback defaults: those are left out too."""
    scenario = tmp_path / "join.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "import-join", "description": "a join with its own join resources", "resource_defaults": "code",
        "pipelines": [{
            "file": str(ROOT / "pipelines" / "join-demo-pipeline.yaml"),
            "patch": {"sink": {"connection_params": {"password": "join-secret-5521"}},
                      "resources": {"join": {"requests": {"cpu": "750m", "memory": "512Mi"}},
                                    "sink": {"replicas": 2}}},
            "model": {"sources": {"orders": {"profile": {"kind": "constant", "rate": 100}, "partitions": 4},
                                  "user_events": {"profile": {"kind": "constant", "rate": 100}, "partitions": 4}}},
        }]}))
    sim = sim_factory(str(scenario), time_scale=200)
    repo = tmp_path / "repo"
    assert gftune("import", "--repo", repo, "--api", sim.api_url).exit_code == 0
    resources = spec(repo, "join-demo-pipeline")["resources"]
    assert resources == {"sink": {"replicas": 2},
                         "join": {"requests": {"cpu": "750m", "memory": "512Mi"},
                                  "limits": {"cpu": "1", "memory": "1Gi"}}}
    assert "join-secret-5521" not in (repo / "pipelines" / "join-demo-pipeline.yaml").read_text()
    plan = gftune("plan", "--repo", repo, "--api", sim.api_url, env={"CLICKHOUSE_PASSWORD": "join-secret-5521"})
    assert plan.exit_code == 0, plan.output


# --- naming the secrets (pure) ------------------------------------------------------------------------------

def found(pipeline_id: str, path: str, value: str) -> adopt.FoundSecret:
    return adopt.FoundSecret(pipeline_id, path, (), value)


def test_every_secret_field_has_a_predictable_name():
    assert set(adopt.SECRET_ENV_NAMES) == set(secrets.SECRET_FIELD_PATTERNS)


def test_one_name_per_field_when_every_pipeline_has_the_same_value():
    names = adopt.secret_names([found("a-pipe", "sink.connection_params.password", "x"),
                                found("b-pipe", "sink.connection_params.password", "x")], env={})
    assert set(names.values()) == {"CLICKHOUSE_PASSWORD"}


def test_names_are_qualified_by_pipeline_when_values_differ_or_the_environment_disagrees():
    differ = adopt.secret_names([found("a-pipe", "sink.connection_params.password", "x"),
                                 found("b-pipe", "sink.connection_params.password", "y")], env={})
    assert differ == {("a-pipe", "sink.connection_params.password"): "CLICKHOUSE_PASSWORD_A_PIPE",
                      ("b-pipe", "sink.connection_params.password"): "CLICKHOUSE_PASSWORD_B_PIPE"}
    taken = adopt.secret_names([found("a-pipe", "sink.connection_params.password", "x")],
                               env={"CLICKHOUSE_PASSWORD": "something else"})
    assert list(taken.values()) == ["CLICKHOUSE_PASSWORD_A_PIPE"]
    sources = adopt.secret_names([found("j", "sources[left].schema_registry.api_key", "k1"),
                                  found("j", "sources[right].schema_registry.api_key", "k2")], env={})
    assert sorted(sources.values()) == ["SCHEMA_REGISTRY_API_KEY_J_LEFT", "SCHEMA_REGISTRY_API_KEY_J_RIGHT"]


@pytest.mark.parametrize(("go", "short"), [("1h0m0s", "1h"), ("1h30m0s", "1h30m"), ("1m0s", "1m"),
                                            ("1m30s", "1m30s"), ("10s", "10s"), ("0s", "0s"), ("24h0m0s", "24h"),
                                            ("500ms", "500ms"), ("not a duration", "not a duration")])
def test_short_durations(go, short):
    assert adopt.short_duration(go) == short


def test_import_from_an_api_that_does_not_answer_says_so_and_writes_nothing(tmp_path):
    from tests.support.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = gftune("import", "--repo", tmp_path / "r", "--api", url)
    assert result.exit_code == 1
    assert f"cannot list the pipelines of {url}: GET /api/v1/pipeline: no answer" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()
