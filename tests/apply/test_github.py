"""PR comment upsert, size budgeting and the step summary, against the local GitHub stand-in server."""

from __future__ import annotations

import json

import pytest

from gftune import github
from gftune.desired.secrets import masker
from tests.support.github_standin import MAX_BODY, GitHubStandIn

REPO = "acme/pipelines"


@pytest.fixture(scope="module")
def standin():
    server = GitHubStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def client(standin):
    with github.GitHubClient(standin.url, standin.token, retries=0) as c:
        yield c


def _pr(standin, number):
    return github.PullRequest(standin.url, REPO, number)


def test_pr_from_actions_environment(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 17}}))
    env = {"GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": "http://x/"}
    assert github.pull_request_from_env(env) == github.PullRequest("http://x", REPO, 17)
    event.write_text(json.dumps({"issue": {"number": 9, "pull_request": {"url": "u"}}}))
    assert github.pr_number_from_env(env) == 9
    event.write_text(json.dumps({"issue": {"number": 9}}))  # an issue, not a PR
    assert github.pr_number_from_env(env) is None
    assert github.pr_number_from_env({"GITHUB_REF": "refs/pull/23/merge"}) == 23
    assert github.pr_number_from_env({"GITHUB_REF": "refs/heads/main"}) is None
    assert github.pull_request_from_env({"GITHUB_REPOSITORY": REPO}) is None
    explicit = github.pull_request_from_env({"GITHUB_REPOSITORY": REPO}, number=5)
    assert explicit == github.PullRequest(github.DEFAULT_API_URL, REPO, 5)


def test_marker_is_stable_and_order_independent():
    assert github.report_marker(["b", "a"]) == github.report_marker(["a", "b", "a"])
    assert github.report_marker(["a"]) != github.report_marker(["a", "b"])
    assert github.report_marker(["a"]).startswith("<!-- gftune:report id=")


def test_one_comment_updated_in_place_across_pages(standin, client):
    pr = _pr(standin, 1)
    for i in range(130):  # our comment will sit on the second page of 100
        standin.seed(REPO, 1, f"review comment {i}")
    marker = github.report_marker(["orders-dedup"])
    first = github.upsert_comment(client, pr, marker, ["## run 1\nverdict: improved"])
    assert first.action == "created"
    second = github.upsert_comment(client, pr, marker, ["## run 2\nverdict: regressed"])
    assert second.action == "updated" and second.comment_id == first.comment_id
    third = github.upsert_comment(client, pr, marker, ["## run 2\nverdict: regressed"])
    assert third.action == "unchanged"
    ours = [c for c in standin.comments_on(REPO, 1) if marker in c.body]
    assert len(ours) == 1 and "run 2" in ours[0].body
    assert len(standin.comments_on(REPO, 1)) == 131
    pages = [r.query.get("page") for r in standin.requests if r.method == "GET" and r.path.endswith("/1/comments")]
    assert ["2"] in pages  # followed the Link header
    other = github.upsert_comment(client, pr, github.report_marker(["other-pipe"]), ["other set"])
    assert other.action == "created" and other.comment_id != first.comment_id


def test_standin_enforces_the_length_limit(standin, client):
    with pytest.raises(github.GitHubError) as err:
        client.create_comment(_pr(standin, 2), "x" * (MAX_BODY + 1))
    assert err.value.status == 422 and "Body is too long (maximum is 65536 characters)" in str(err.value)


def test_oversize_report_falls_back_to_a_shorter_rendering(standin, client):
    pr = _pr(standin, 3)
    full = "# summary\n" + "detail line\n" * 10_000  # 120k characters
    compact = "# summary\nverdict: improved\n"
    result = github.upsert_comment(client, pr, github.report_marker(["p1"]), [full, compact])
    assert result.cut_level == 1
    assert standin.comments_on(REPO, 3)[0].body.endswith(compact)


def test_oversize_single_rendering_is_cut_in_the_middle_and_accepted(standin, client):
    pr = _pr(standin, 4)
    body = "# summary table\n" + "".join(f"step {i}: done\n" for i in range(20_000)) + "## Verdict: improved\n"
    assert len(body) > MAX_BODY
    result = github.upsert_comment(client, pr, github.report_marker(["p1"]), [body])
    assert result.action == "created" and result.cut_level == 1
    stored = standin.comments_on(REPO, 4)[0].body
    assert len(stored) <= MAX_BODY
    assert "# summary table" in stored and stored.rstrip().endswith("## Verdict: improved")
    assert "65,536-character comment limit" in stored


def test_no_secret_or_token_in_any_request_body(standin, client):
    secret = "s3cr3t-clickhouse-pw"
    masker.add(secret)
    try:
        github.upsert_comment(client, _pr(standin, 5), github.report_marker(["p1"]),
                              [f"password was {secret} and token {standin.token}"])
    finally:
        masker.discard(secret)
    bodies = standin.bodies_sent()
    assert bodies
    assert not any(secret in b or standin.token in b for b in bodies)
    assert "***" in standin.comments_on(REPO, 5)[0].body


def test_bad_token_is_refused_and_not_echoed(standin):
    wrong = "ghp_wrong_token_value_123"
    with github.GitHubClient(standin.url, wrong, retries=0) as bad, pytest.raises(github.GitHubError) as err:
        github.upsert_comment(bad, _pr(standin, 6), github.report_marker(["p1"]), ["hello"])
    assert err.value.status == 401 and "Bad credentials" in str(err.value)
    assert wrong not in str(err.value)
    assert standin.comments_on(REPO, 6) == []


def test_step_summary_appends_and_respects_the_cap(tmp_path):
    path = tmp_path / "summary.md"
    assert github.append_step_summary(path, ["first"]) == 0
    assert github.append_step_summary(path, ["second"]) == 0
    assert path.read_text() == "first\n\nsecond\n\n"
    big = "x" * github.STEP_SUMMARY_LIMIT
    assert github.append_step_summary(path, [big, "short"]) == 1
    assert github.append_step_summary(path, [big]) is None
    assert path.read_text().endswith("short\n\n")


def _big_report(pipelines=300):
    """An apply report of many pipelines, far over GitHub's limit when rendered in full."""
    from gftune.apply import journal as jn
    from gftune.apply import report

    j = jn.RunJournal("run-big", "plan-big", "a" * 40, "me@host", 1_700_000_000.0, finished_at=1_700_000_100.0)
    for i in range(pipelines):
        pid = f"pipeline-{i:04d}"
        run = jn.PipelineRun(pid, "update", {"pipeline_id": pid, "changes": [
            {"path": "resources.sink.replicas", "old": 1, "new": 2, "source": "git", "sensitive": False}]})
        run.steps = [jn.Step("apply", a, {}, jn.DONE, 1_700_000_000.0 + k, 1_700_000_000.5 + k, 1, "Running", "x" * 40)
                     for k, a in enumerate(["lock", "capture", "stop", "wait_status", "edit", "wait_status"])]
        run.outcome = "verified" if i % 7 else "reverted"
        j.pipelines[pid] = run
    return report.build(j, exit_code=4)


def test_an_oversize_apply_report_collapses_detail_and_keeps_the_summary(standin, client):
    from gftune.apply import report

    doc = _big_report()
    renderings = report.markdown_renderings(doc)
    assert len(renderings[0]) > MAX_BODY
    result = github.upsert_comment(client, _pr(standin, 7), github.report_marker(report.pipeline_ids(doc)),
                                   renderings)
    assert result.action == "created" and result.cut_level >= 1
    body = standin.comments_on(REPO, 7)[0].body
    assert len(body) <= MAX_BODY
    assert "| `pipeline-0299` | ✅ verified |" in body and "| `pipeline-0000` | ↩️ reverted |" in body


def test_publish_writes_the_summary_and_comments_on_the_merged_pr(standin, tmp_path):
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": standin.url,
           "GITHUB_TOKEN": standin.token, "GITHUB_SHA": "abc123", "GITHUB_REF": "refs/heads/main"}
    standin.merge(REPO, "abc123", 8)
    done = github.publish(["# report"], ["p1"], environ=env)
    assert done[0] == "job summary: written" and "PR comment on acme/pipelines#8: created" in done[1]
    assert summary.read_text() == "# report\n\n"
    assert standin.comments_on(REPO, 8)[0].body.endswith("# report")
    assert github.publish(["# report"], ["p1"], environ={**env, "GITHUB_SHA": "fff000"})[1:] == []  # no PR
    no_token = {k: v for k, v in env.items() if k != "GITHUB_TOKEN"}
    assert "GITHUB_TOKEN is not set" in github.publish(["x"], ["p1"], environ=no_token, number=8)[-1]
    assert github.publish(["x"], ["p1"], environ={}) == []
