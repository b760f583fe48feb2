"""The GitHub client against the local GitHub stand-in server: the living PR comment, size budgets,
rate limits (primary and secondary), GitHub Enterprise URLs, App tokens, artifacts, the job summary."""

from __future__ import annotations

import json
import time

import pytest

from gftune import comment, github
from gftune.desired.secrets import masker
from tests.support.github_standin import MAX_BODY, GitHubStandIn, jwt_keypair

REPO = "acme/pipelines"


@pytest.fixture
def gh(standin):
    with github.GitHub(standin.url, standin.token, retries=2) as session:
        yield session


def _pr(standin, number):
    return comment.PullRequest(standin.url, REPO, number)


def _since(standin, mark):
    return standin.requests[mark:]


def test_pr_from_actions_environment(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 17, "head": {"sha": "f" * 40}}}))
    env = {"GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": "http://x/",
           "GITHUB_SHA": "a" * 40}
    assert github.pull_request_from_env(env) == comment.PullRequest("http://x", REPO, 17)
    assert github.head_sha_from_env(env) == "f" * 40  # the PR head, not the test merge commit
    event.write_text(json.dumps({"issue": {"number": 9, "pull_request": {"url": "u"}}}))
    assert github.pr_number_from_env(env) == 9
    event.write_text(json.dumps({"issue": {"number": 9}}))  # an issue, not a PR
    assert github.pr_number_from_env(env) is None
    assert github.pr_number_from_env({"GITHUB_REF": "refs/pull/23/merge"}) == 23
    assert github.pr_number_from_env({"GITHUB_REF": "refs/heads/main"}) is None
    assert github.pull_request_from_env({"GITHUB_REPOSITORY": REPO}) is None
    explicit = github.pull_request_from_env({"GITHUB_REPOSITORY": REPO}, number=5)
    assert explicit == comment.PullRequest(github.DEFAULT_API_URL, REPO, 5)


def test_token_from_gh_token_first_then_github_token():
    assert github.plain_token_from_env({"GH_TOKEN": "ghp_aaaa1111", "GITHUB_TOKEN": "ghs_bbbb2222"}) == \
        ("ghp_aaaa1111", "GH_TOKEN")
    assert github.plain_token_from_env({"GITHUB_TOKEN": "ghs_bbbb2222"}) == ("ghs_bbbb2222", "GITHUB_TOKEN")
    assert github.plain_token_from_env({"GH_TOKEN": " "})[0] is None
    assert masker.mask("x ghp_aaaa1111 y") == "x *** y"


def test_marker_names_gftune_and_the_pull_request(standin):
    marker = comment.comment_marker(_pr(standin, 12))
    assert "gftune" in marker and "acme/pipelines#12" in marker and marker.startswith("<!--")
    assert comment.comment_marker(_pr(standin, 1)) != marker


def test_login_of_an_installation_token_comes_from_graphql(standin, gh):
    assert gh.login == "github-actions[bot]"  # GET /user answers 403 for such a token
    user_token = standin.add_token("ghp_user_token_0001", "octo-user")
    with github.GitHub(standin.url, user_token) as other:
        assert other.login == "octo-user"


def test_one_comment_updated_in_place_across_pages_with_history(standin, gh):
    pr = _pr(standin, 1)
    for i in range(130):  # our comment will sit on the second page of 100
        standin.seed(REPO, 1, f"review comment {i}")
    first = github.upsert_comment(gh, pr, ["### gftune plan: 1 to update\nrun 1"], kind="plan", commit="a" * 40)
    assert first.action == "created"
    second = github.upsert_comment(gh, pr, ["### gftune plan: 2 to update\nrun 2"], kind="plan", commit="b" * 40)
    assert second.action == "updated" and second.comment_id == first.comment_id
    third = github.upsert_comment(gh, pr, ["### gftune plan: 2 to update\nrun 2"], kind="plan", commit="b" * 40)
    assert third.action == "unchanged"
    final = github.upsert_comment(gh, pr, ["### gftune apply: 1 verified\nok"], kind="apply", commit="c" * 40)
    assert final.action == "updated" and final.comment_id == first.comment_id
    ours = [c for c in standin.comments_on(REPO, 1) if c.user == "github-actions[bot]"]
    assert len(ours) == 1 and len(standin.comments_on(REPO, 1)) == 131
    body = ours[0].body
    assert body.startswith(comment.comment_marker(pr))
    assert body.index("gftune apply: 1 verified") < body.index("Earlier in this pull request (2 superseded reports)")
    history = body[body.index("Earlier in this pull request"):]
    assert history.index("gftune plan: 2 to update") < history.index("gftune plan: 1 to update")  # newest first
    assert "`bbbbbbb`" in history and "`aaaaaaa`" in history and "run 1" not in history
    pages = [r.query.get("page") for r in standin.requests if r.method == "GET" and r.path.endswith("/1/comments")]
    assert ["2"] in pages  # followed the Link header


def test_only_comments_by_the_tokens_own_user_are_edited(standin, gh):
    pr = _pr(standin, 2)
    marker = comment.comment_marker(pr)
    forged = standin.seed(REPO, 2, marker + "\nI wrote gftune's marker by hand", user="mallory")
    other_pr = standin.seed(REPO, 2, comment.comment_marker(_pr(standin, 3)) + "\nanother PR's", user=gh.login)
    result = github.upsert_comment(gh, pr, ["### gftune plan: 0 to create"], kind="plan")
    assert result.action == "created" and result.comment_id not in (forged.id, other_pr.id)
    bodies = {c.id: c.body for c in standin.comments_on(REPO, 2)}
    assert bodies[forged.id].endswith("by hand") and bodies[other_pr.id].endswith("another PR's")


def test_duplicates_of_our_comment_are_folded_into_one(standin, gh):
    pr = _pr(standin, 4)
    marker = comment.comment_marker(pr)
    keep = standin.seed(REPO, 4, marker + "\nold", user=gh.login)
    standin.seed(REPO, 4, marker + "\nold twin", user=gh.login)
    result = github.upsert_comment(gh, pr, ["### new"], kind="plan")
    assert result.action == "updated" and result.comment_id == keep.id and result.removed_duplicates == 1
    assert [c.id for c in standin.comments_on(REPO, 4)] == [keep.id]


def test_standin_enforces_the_length_limit(standin, gh):
    with pytest.raises(github.GitHubError) as err, gh.calling("post"):
        gh.repo(REPO).get_issue(5).create_comment("x" * (MAX_BODY + 1))
    assert err.value.status == 422 and "Body is too long (maximum is 65536 characters)" in str(err.value)


def test_oversize_report_falls_back_to_a_shorter_rendering(standin, gh):
    full = "# summary\n" + "detail line\n" * 10_000  # 120k characters
    compact = "# summary\nverdict: improved\n"
    result = github.upsert_comment(gh, _pr(standin, 6), [full, compact], kind="plan")
    assert result.cut_level == 1
    assert "verdict: improved" in standin.comments_on(REPO, 6)[0].body


def test_oversize_single_rendering_is_cut_in_the_middle_and_accepted(standin, gh):
    body = "# summary table\n" + "".join(f"step {i}: done\n" for i in range(20_000)) + "## Verdict: improved\n"
    assert len(body) > MAX_BODY
    result = github.upsert_comment(gh, _pr(standin, 7), [body], kind="apply")
    assert result.action == "created" and result.cut_level == 1
    stored = standin.comments_on(REPO, 7)[0].body
    assert len(stored) <= MAX_BODY
    assert "# summary table" in stored and "## Verdict: improved" in stored[-2000:]
    assert "65,536-character comment limit" in stored


def test_no_secret_or_token_in_any_request_body(standin, gh):
    secret = "s3cr3t-clickhouse-pw"
    masker.add(secret)
    try:
        github.upsert_comment(gh, _pr(standin, 8), [f"password was {secret} and token {standin.token}"], kind="plan")
    finally:
        masker.discard(secret)
    bodies = standin.bodies_sent()
    assert bodies
    assert not any(secret in b or standin.token in b for b in bodies)
    assert "***" in standin.comments_on(REPO, 8)[0].body


def test_bad_token_is_refused_and_not_echoed(standin):
    wrong = "ghp_wrong_token_value_123"
    with github.GitHub(standin.url, wrong, token_source="GH_TOKEN") as bad, pytest.raises(github.GitHubError) as err:
        github.upsert_comment(bad, _pr(standin, 9), ["hello"], kind="plan")
    assert err.value.status == 401 and "Bad credentials (check GH_TOKEN)" in str(err.value)
    assert wrong not in str(err.value)
    assert standin.comments_on(REPO, 9) == []


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_rate_limit_is_waited_out_and_retried(standin, gh, status):
    number = 10 if status == 403 else 11
    assert gh.login  # resolve the identity first, so the throttle hits the write
    standin.throttle(1, retry_after=1, status=status, methods=("POST",))
    mark = len(standin.requests)
    result = github.upsert_comment(gh, _pr(standin, number), ["### after a secondary limit"], kind="plan")
    assert result.action == "created"
    posts = [r for r in _since(standin, mark) if r.method == "POST"]
    assert [r.status for r in posts] == [status, 201]
    assert posts[1].at - posts[0].at >= 0.9  # obeyed retry-after: 1
    assert len(standin.comments_on(REPO, number)) == 1


def test_a_secondary_limit_that_outlasts_the_retries_is_still_a_rate_limit(standin):
    with github.GitHub(standin.url, standin.token, retries=2) as session:
        assert session.login
        standin.throttle(3, retry_after=0, methods=("POST",))  # the first try and both retries
        with pytest.raises(github.GitHubError) as err:
            github.upsert_comment(session, _pr(standin, 18), ["x"], kind="plan")
    assert "rate limit" in str(err.value) and "permission" not in str(err.value)
    assert standin.comments_on(REPO, 18) == []


def test_primary_rate_limit_waits_for_the_reset(standin):
    token = standin.add_token("ghp_primary_0002", "octo-primary")
    with github.GitHub(standin.url, token) as session:
        assert session.login == "octo-primary"
        standin.exhaust(token, reset_in=1.0)
        started = time.monotonic()
        result = github.upsert_comment(session, _pr(standin, 12), ["### after the reset"], kind="plan")
    assert result.action == "created" and time.monotonic() - started >= 0.9


def test_a_rate_limit_longer_than_the_cap_says_when_it_resets_not_permissions(standin):
    token = standin.add_token("ghp_primary_0003", "octo-capped")
    with github.GitHub(standin.url, token, max_wait=1.0) as session:
        assert session.login == "octo-capped"
        standin.exhaust(token, reset_in=600)
        with pytest.raises(github.GitHubError) as err:
            github.upsert_comment(session, _pr(standin, 13), ["x"], kind="plan")
    message = str(err.value)
    assert "rate limit" in message and "resets at" in message and "permission" not in message
    standin.throttle(1, retry_after=3600, methods=("GET",))
    with github.GitHub(standin.url, standin.token, max_wait=1.0) as session, pytest.raises(github.GitHubError) as err:
        github.upsert_comment(session, _pr(standin, 13), ["x"], kind="plan")
    assert "rate limit" in str(err.value) and "3600" in str(err.value)


def test_a_permissions_403_is_reported_once_and_not_retried(standin):
    token = standin.add_token("ghs_read_only_0004", "github-actions[bot]", installation=True, read_only=True)
    mark = len(standin.requests)
    with github.GitHub(standin.url, token, token_source="GITHUB_TOKEN") as session, \
            pytest.raises(github.GitHubError) as err:
        github.upsert_comment(session, _pr(standin, 17), ["x"], kind="plan")
    assert err.value.status == 403 and "Resource not accessible by integration" in str(err.value)
    assert "GITHUB_TOKEN lacks a permission" in str(err.value) and "rate limit" not in str(err.value)
    assert [r.method for r in _since(standin, mark) if r.path.endswith("/17/comments")] == ["GET", "POST"]


def test_github_enterprise_layout(tmp_path):
    server = GitHubStandIn(api_prefix="/api/v3").start()
    try:
        assert server.url.endswith("/api/v3")
        with github.GitHub(server.url, server.token) as session:
            assert session.login == "github-actions[bot]"
            result = github.upsert_comment(session, comment.PullRequest(server.url, REPO, 1), ["### on GHES"],
                                           kind="plan")
        assert result.action == "created"
        paths = {r.path for r in server.requests}
        assert "/api/graphql" in paths and "/api/v3/repos/acme/pipelines/issues/1/comments" in paths
    finally:
        server.stop()


def test_github_app_installation_token(standin):
    private, public = jwt_keypair()
    standin.register_app(4242, public, "gftune-tuner")
    env = {"GFTUNE_GITHUB_APP_ID": "4242", "GFTUNE_GITHUB_APP_PRIVATE_KEY": private.replace("\n", "\\n"),
           "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": standin.url}
    token, source = github.token_from_env(env)
    assert token and token.startswith("ghs_") and source == "GitHub App 4242"
    with github.GitHub(standin.url, token) as session:
        assert session.login == "gftune-tuner[bot]"
    assert masker.mask(token) == "***"
    _, other_public = jwt_keypair()
    standin.register_app(4243, other_public, "impostor")  # the key does not match this app
    with pytest.raises(github.GitHubError) as err:
        github.token_from_env({**env, "GFTUNE_GITHUB_APP_ID": "4243"})
    assert "GitHub App 4243" in str(err.value) and "401" in str(err.value) and "PRIVATE KEY" not in str(err.value)


def test_plan_artifact_of_a_run(standin, gh):
    run = standin.add_run(REPO, "plan.yml", event="pull_request", head_sha="d" * 40, pull_requests=(14,))
    standin.add_artifact(run.id, "gftune-plan", {"plan.json": b'{"pipelines": []}'})
    runs = gh.workflow_runs(REPO, "plan.yml", head_sha="d" * 40, event="pull_request")
    assert [r.id for r in runs] == [run.id]
    assert gh.artifact_file(REPO, run.id, "gftune-plan", "plan.json") == b'{"pipelines": []}'
    assert gh.artifact_file(REPO, run.id, "other", "plan.json") is None
    blob = [r for r in standin.requests if r.path.startswith("/_blobs/")][-1]
    assert blob.status == 200 and blob.headers["authorization-scheme"] == ""  # the token stays with GitHub


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
    from gftune.apply import report
    from gftune.apply import state as rec

    j = rec.RunJournal("run-big", "plan-big", "a" * 40, "me@host", 1_700_000_000.0, finished_at=1_700_000_100.0)
    for i in range(pipelines):
        pid = f"pipeline-{i:04d}"
        run = rec.PipelineRun(pid, "update", {"pipeline_id": pid, "changes": [
            {"path": "resources.sink.replicas", "old": 1, "new": 2, "source": "git", "sensitive": False}]})
        run.steps = [rec.Step("apply", a, {}, rec.DONE, 1_700_000_000.0 + k, 1_700_000_000.5 + k, 1, "Running", "x" * 40)
                     for k, a in enumerate(["lock", "capture", "stop", "wait_status", "edit", "wait_status"])]
        run.outcome = "verified" if i % 7 else "reverted"
        j.pipelines[pid] = run
    return report.build(j, now=j.finished_at, exit_code=4)


def test_an_oversize_apply_report_collapses_detail_and_keeps_the_summary(standin, gh):
    from gftune.apply import report

    doc = _big_report()
    renderings = report.markdown_renderings(doc)
    assert len(renderings[0]) > MAX_BODY
    result = github.upsert_comment(gh, _pr(standin, 15), renderings, kind="apply")
    assert result.action == "created" and result.cut_level >= 1
    body = standin.comments_on(REPO, 15)[0].body
    assert len(body) <= MAX_BODY
    assert "| `pipeline-0299` | ✅ verified |" in body and "| `pipeline-0000` | ↩️ reverted |" in body


def test_publish_writes_the_summary_and_comments_on_the_merged_pr(standin, tmp_path):
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": standin.url,
           "GITHUB_TOKEN": standin.token, "GITHUB_SHA": "abc123", "GITHUB_REF": "refs/heads/main",
           "GITHUB_SERVER_URL": "https://github.invalid", "GITHUB_RUN_ID": "99"}
    standin.merge(REPO, "abc123", 16)
    done = github.publish(["# report"], kind="apply", environ=env)
    assert done[0] == "job summary: written" and "PR comment on acme/pipelines#16: created" in done[1]
    assert summary.read_text() == "# report\n\n"
    body = standin.comments_on(REPO, 16)[0].body
    assert "# report" in body and "[workflow run](https://github.invalid/acme/pipelines/actions/runs/99)" in body
    assert github.publish(["# report"], kind="apply", environ={**env, "GITHUB_SHA": "fff000"})[1:] == []  # no PR
    no_token = {k: v for k, v in env.items() if k != "GITHUB_TOKEN"}
    assert "GH_TOKEN or GITHUB_TOKEN is not set" in github.publish(["x"], kind="plan", environ=no_token,
                                                                   number=16)[-1]
    assert github.publish(["x"], kind="plan", environ={}) == []
