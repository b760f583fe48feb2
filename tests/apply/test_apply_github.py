"""`gftune apply` in a pull request: one living comment on the GitHub stand-in, and the job summary."""

from __future__ import annotations

from tests.support import apply as h

PID = "orders-healthy"
REPO = "acme/pipelines"


def test_apply_report_is_one_comment_updated_in_place(sim_factory, standin, tmp_path):
    sim = sim_factory("healthy", time_scale=20)
    repo = h.adopt(tmp_path / "repo", sim.api_url, PID, h.config_yaml(sim.api_url, settle="10s", window="20s"))
    summary = tmp_path / "step-summary.md"
    env = {**h.test_env(), "GITHUB_TOKEN": standin.token, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": standin.url,
           "GITHUB_STEP_SUMMARY": str(summary)}
    standin.seed(REPO, 12, "LGTM")
    outputs = []
    for replicas in (3, 2):
        h.change_pipeline(repo, PID, {"resources.sink.replicas": replicas}, f"{replicas} sink replicas")
        proc = h.gftune("apply", "--repo", str(repo), "--auto-approve", "--github-pr", "12", env=env)
        assert proc.returncode == 0, proc.stderr
        assert "PR comment on acme/pipelines#12: " + ("created" if replicas == 3 else "updated") in proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    comments = standin.comments_on(REPO, 12)
    assert len(comments) == 2 and comments[0].body == "LGTM"
    ours = comments[1].body
    assert ours.startswith("<!-- gftune: the living comment for acme/pipelines#12;")
    assert "| `resources.sink.replicas` | 3 | 2 | git |" in ours  # the second run's change
    assert "### gftune apply: 1 verified" in ours
    assert summary.read_text().count("### gftune apply: 1 verified") == 2
    posts = [r for r in standin.requests if r.method in ("POST", "PATCH") and r.path != "/graphql"]
    assert [r.method for r in posts] == ["POST", "PATCH"]
    assert all(r.authorized for r in standin.requests)
    for text in [*standin.bodies_sent(), summary.read_text(), *outputs]:
        assert standin.token not in text
        assert h.SIM_PASSWORD not in text


def test_plan_comment_becomes_the_apply_report_in_place(sim_factory, standin, tmp_path):
    # The living PR comment: `gftune plan` posts what will change; `gftune apply` edits that same
    # comment into its verdict (same pipelines, same hidden marker), instead of adding another.
    sim = sim_factory("healthy", time_scale=20)
    repo = h.adopt(tmp_path / "repo", sim.api_url, PID, h.config_yaml(sim.api_url, settle="10s", window="20s"))
    env = {**h.test_env(), "GITHUB_TOKEN": standin.token, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": standin.url}
    h.change_pipeline(repo, PID, {"resources.sink.replicas": 3}, "3 sink replicas")
    planned = h.gftune("plan", "--repo", str(repo), "--github-pr", "7", env=env)
    assert planned.returncode == 2, planned.stderr
    assert "PR comment on acme/pipelines#7: created" in planned.stderr
    [comment] = standin.comments_on(REPO, 7)
    assert "### gftune plan: 1 to update · 1 restart" in comment.body and "**Next:** merge to apply" in comment.body
    assert "`resources.sink.replicas`" in comment.body
    applied = h.gftune("apply", "--repo", str(repo), "--auto-approve", "--github-pr", "7", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "PR comment on acme/pipelines#7: updated" in applied.stderr
    [comment] = standin.comments_on(REPO, 7)
    assert "### gftune apply: 1 verified" in comment.body
    report, history = comment.body.split("Earlier in this pull request (1 superseded report)")
    assert "gftune plan:" not in report and "gftune plan: 1 to update · 1 restart" in history
    assert h.gftune("plan", "--repo", str(repo), "--no-github", env=env).returncode == 0
    assert len(standin.comments_on(REPO, 7)) == 1
    for text in standin.bodies_sent():
        assert standin.token not in text and h.SIM_PASSWORD not in text
