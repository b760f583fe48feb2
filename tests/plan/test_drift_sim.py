"""`gftune drift` against the simulator: drift found, attributed to git or to outside changes."""

from __future__ import annotations

import json

from tests.support.api import api
from tests.support.repos import change_live_replicas, gftune, tag_applied

PIPE = "deduplication-demo-pipeline"


def drift(repo, api_url, *extra):
    result = gftune("drift", "--repo", repo.path, "--api", api_url, "--format", "json", *extra)
    return result.exit_code, json.loads(result.stdout)


def entries(report):
    return {e["pipeline_id"]: e for e in report["pipelines"]}


def test_in_sync(deployed, repo):
    result = gftune("drift", "--repo", repo.path, "--api", deployed.api_url)
    assert result.exit_code == 0 and "In sync" in result.stdout, result.stdout + result.stderr
    code, report = drift(repo, deployed.api_url)
    assert code == 0 and report["in_sync"] and report["summary"]["in_sync"] == 5


def test_change_without_provenance_is_attributed_from_the_files_history(deployed, repo):
    # No gftune tags (deployed by hand): live holds a value the file never had in git
    change_live_replicas(deployed.api_url, PIPE, 5)
    code, report = drift(repo, deployed.api_url)
    [field] = entries(report)[PIPE]["fields"]
    assert code == 2
    assert (field["path"], field["git"], field["live"]) == ("resources.sources[users].replicas", 2, 5)
    assert field["attribution"] == "changed outside gftune"
    assert any("no gftune tags" in n for n in entries(report)[PIPE]["notes"])


def test_live_changed_after_an_apply_of_head(deployed, repo):
    tag_applied(deployed.api_url, PIPE, repo.head)
    change_live_replicas(deployed.api_url, PIPE, 5)
    result = gftune("drift", "--repo", repo.path, "--api", deployed.api_url)
    assert result.exit_code == 2
    assert "changed outside gftune" in result.stdout and "git 2, live 5" in result.stdout
    _, report = drift(repo, deployed.api_url)
    assert entries(report)[PIPE]["applied_commit"] == repo.head


def test_git_changed_since_the_last_apply(deployed, repo):
    applied = repo.head
    tag_applied(deployed.api_url, PIPE, applied)
    repo.edit(PIPE, lambda s: s["resources"]["sink"].update(replicas=3), commit=True)
    code, report = drift(repo, deployed.api_url)
    entry = entries(report)[PIPE]
    assert code == 2 and entry["attribution"] == "git changed since the last apply"
    assert [f["path"] for f in entry["fields"]] == ["resources.sink.replicas"]


def test_both_sides_moved_are_attributed_per_field(deployed, repo):
    tag_applied(deployed.api_url, PIPE, repo.head)
    repo.edit(PIPE, lambda s: s["resources"]["sink"].update(replicas=3), commit=True)
    change_live_replicas(deployed.api_url, PIPE, 5)
    _, report = drift(repo, deployed.api_url)
    fields = {f["path"]: f["attribution"] for f in entries(report)[PIPE]["fields"]}
    assert fields == {"resources.sink.replicas": "git changed since the last apply",
                      "resources.sources[users].replicas": "changed outside gftune"}
    markdown = gftune("drift", "--repo", repo.path, "--api", deployed.api_url, "--format", "markdown").stdout
    assert "| `~` | deduplication-demo-pipeline | drifted | `resources.sink.replicas` | `3` | `1` |" in markdown


def test_missing_orphaned_and_unmanaged(deployed, repo):
    old = repo.path / "pipelines" / "otlp-traces.yaml"
    (repo.path / "pipelines" / "otlp-traces-v2.yaml").write_text(old.read_text().replace("otlp-traces", "otlp-traces-v2"))
    old.unlink()
    doc = api(deployed.api_url).get("join-demo-pipeline")
    doc.update(pipeline_id="hand-made-join", metadata={"tags": None})
    doc.pop("resources")
    api(deployed.api_url).create(doc)
    code, report = drift(repo, deployed.api_url)
    states = {e["pipeline_id"]: e["state"] for e in report["pipelines"]}
    assert code == 2
    assert states == {"otlp-traces": "orphaned", "otlp-traces-v2": "missing"}
    assert report["unmanaged"] == ["hand-made-join"]


def test_unmanaged_alone_is_not_drift(deployed, repo):
    doc = api(deployed.api_url).get("join-demo-pipeline")
    doc.update(pipeline_id="hand-made-join", metadata={"tags": None})
    doc.pop("resources")
    api(deployed.api_url).create(doc)
    result = gftune("drift", "--repo", repo.path, "--api", deployed.api_url)
    assert result.exit_code == 0 and "hand-made-join" in result.stdout
