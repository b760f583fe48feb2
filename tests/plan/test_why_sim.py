"""Why every change is in the plan, against the simulator: a git change names its commit and author;
a change that undoes an edit made outside gftune says so, with the live value, when the live
pipeline last changed (its ``/health``) and the value git sets back (Terraform's "changed outside
of Terraform")."""

from __future__ import annotations

import json

import git

from tests.support.api import api
from tests.support.repos import change_live_replicas, gftune, tag_applied

PIPE = "deduplication-demo-pipeline"
ADA = git.Actor("Ada Reviewer", "ada@example.com")


def plan(repo, api_url, *extra):
    return gftune("plan", "--repo", repo.path, "--api", api_url, *extra)


def entry_of(repo, api_url):
    result = plan(repo, api_url, "--format", "json")
    return next(p for p in json.loads(result.stdout)["pipelines"] if p["pipeline_id"] == PIPE)


def test_a_change_that_reverts_a_live_edit_says_so(deployed, repo):
    tag_applied(deployed.api_url, PIPE, repo.head)  # git = what was applied
    change_live_replicas(deployed.api_url, PIPE, 5)  # someone scales the ingestor by hand
    changed_at = api(deployed.api_url).get_health(PIPE)["updated_at"]
    [change] = entry_of(repo, deployed.api_url)["changes"]
    assert (change["path"], change["old"], change["new"]) == ("resources.sources[users].replicas", 5, 2)
    assert change["why"]["kind"] == "live_edit" and change["why"]["live_changed_at"] == changed_at
    assert change["why"]["applied_commit"] == repo.head
    when = changed_at.replace("T", " ")[:16] + " UTC"
    wording = (f"reverts a live edit: live value 5 was set outside gftune (the live pipeline last changed at "
               f"{when}); this sets it back to 2")
    text = plan(repo, deployed.api_url).stdout
    assert f"    ~ resources.sources[users].replicas: 5 → 2\n        why: {wording}\n" in text
    markdown = plan(repo, deployed.api_url, "--format", "markdown").stdout
    assert "| `~` | deduplication-demo-pipeline | `resources.sources[users].replicas` 5 → 2 | reverts a live edit |" \
        in markdown
    assert f"- `resources.sources[users].replicas`: {wording}" in markdown


def test_a_git_change_names_its_commit_and_author(deployed, repo):
    tag_applied(deployed.api_url, PIPE, repo.head)
    repo.edit(PIPE, lambda spec: spec["resources"]["sink"].update(replicas=3))
    repo.git.git.add(A=True)
    sha = repo.git.index.commit("three sink replicas for the spring sale", author=ADA, committer=ADA).hexsha
    repo.edit("join-demo-pipeline", lambda spec: spec["sink"].update(max_delay_time="5s"))  # not committed
    [change] = entry_of(repo, deployed.api_url)["changes"]
    why = change["why"]
    assert (why["kind"], why["commit"], why["author"], why["subject"]) == (
        "git", sha, "Ada Reviewer", "three sink replicas for the spring sale")
    text = plan(repo, deployed.api_url).stdout
    assert f"why: git {sha[:7]} by Ada Reviewer, {why['committed_at'][:10]}: “three sink replicas for the spring " \
           "sale”" in text
    # A value only in the working tree is said to be uncommitted, not pinned on an older commit.
    assert "why: an uncommitted change in the working tree" in text
    markdown = plan(repo, deployed.api_url, "--format", "markdown").stdout
    assert f"| `resources.sink.replicas` 1 → 3 | git {sha[:7]} (Ada Reviewer) |" in markdown
    assert "| `sink.max_delay_time` \"10s\" → \"5s\" | uncommitted |" in markdown


def test_a_field_git_never_applied_names_the_commit_that_set_it(deployed, repo):
    # No provenance tag (created outside gftune's apply): the field's value is traced in the file's history.
    first = repo.head
    repo.edit(PIPE, lambda spec: spec["resources"]["sink"].update(replicas=2))
    repo.git.git.add(A=True)
    sha = repo.git.index.commit("two sink replicas", author=ADA, committer=ADA).hexsha
    repo.edit(PIPE, lambda spec: spec.update(name="Dedup demo"), commit=True)  # a later commit of another field
    changes = {c["path"]: c["why"] for c in entry_of(repo, deployed.api_url)["changes"]}
    assert changes["resources.sink.replicas"]["commit"] == sha and changes["resources.sink.replicas"]["author"] \
        == "Ada Reviewer"
    assert changes["name"]["commit"] == repo.head and changes["name"]["commit"] not in (sha, first)
