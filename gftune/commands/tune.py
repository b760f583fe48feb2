"""``gftune tune``: evaluate tuning policies and write their bounded proposals into git.

Reads the live pipelines and the metrics like ``plan`` does, evaluates the repository's policies,
and shows each proposal with its evidence and the exact diff it would make to
``pipelines/<id>.yaml``. With ``--write`` the diff is applied (only the targeted values change;
comments, key order and quoting stay) and committed on a new branch, and a pull-request body is
printed (``--pr-body FILE`` saves it). Exit 0 nothing to do, 2 proposals (shown or written), 1 error.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from gftune import exitcodes
from gftune.commands.apply import load_plan_file
from gftune.commands.common import (
    FORMAT_VERSION,
    ScrapeWait,
    ServerOptions,
    echo,
    echo_json,
    finish,
    format_option,
    server_options,
)
from gftune.gitrepo import current_branch
from gftune.orchestration.policies import plan_policies
from gftune.policy.engine import PolicyReport


def _read_live(state: Any, targets: list[str]) -> dict[str, Any]:
    from gftune.client import ApiError
    from gftune.live import read_live_sync

    try:
        return read_live_sync(state.config, targets)
    except (ApiError, OSError) as exc:
        echo(f"error: cannot read the live pipelines from {state.config.api_url}: {exc}", err=True)
        finish(exitcodes.ERROR)


def print_text(report: PolicyReport, edits: list[Any], written: dict[str, Any] | None, pr_body: str,
               pr_body_file: Path | None) -> None:
    """tune's text output: the proposals and escalations per pipeline, the edits, what was committed,
    and the pull request's body unless it was saved to ``pr_body_file``."""
    echo(f"Metrics: {report.source_description or 'none configured (--prometheus or --scrape)'}")
    for note in report.notes:
        echo(f"  {note}")
    for pipeline_id, outcome in sorted(report.outcomes.items()):
        if not outcome.proposals and not outcome.escalations and not outcome.errors:
            continue
        echo("")
        echo(pipeline_id)
        for error in outcome.errors:
            echo(f"  policy error: {error}")
        for proposal in outcome.proposals:
            echo(f"  {proposal.policy}:")
            for change in proposal.changes:
                echo(f"    {change.path}: {change.old} -> {change.new}")
            for e in proposal.evidence[:8]:
                echo(f"    evidence: {e.describe()}")  # as the plan and the commit message say it
            for p in proposal.predictions:
                echo(f"    predicted: {p.describe()}")
            for note in proposal.notes:
                echo(f"    note: {note}")
        for escalation in outcome.escalations:
            echo(f"  needs a human ({escalation.policy}): {escalation.reason}")
            echo(f"    next step: {escalation.next_step}")
    quiet = [pid for pid, o in report.outcomes.items() if not o.proposals and not o.escalations and not o.errors]
    if quiet:
        echo("")
        echo(f"No proposals for {', '.join(sorted(quiet))}.")
    if edits:
        echo("")
        for edit in edits:
            echo(edit.diff().rstrip("\n"))
    if written is not None:
        echo("")
        if written.get("branch"):
            echo(f"Committed {', '.join(written['files'])} on branch {written['branch']} ({written['sha'][:12]}).")
            if pr_body_file is not None:
                # The body repeats the evidence shown above; it is in the file for `gh pr create`.
                echo(f"Push the branch and open a pull request with the body in {pr_body_file} "
                     f"(e.g. `gh pr create --body-file {pr_body_file}`).")
            else:
                echo("Push the branch and open a pull request with this body:")
                echo("")
                echo(pr_body)
        else:
            echo(f"Wrote {', '.join(written['files'])} (not committed).")
    elif edits:
        echo("")
        echo("Run `gftune tune --write` to write these changes and commit them on a new branch.")


def open_tuning_pr(state: Any, *, branch: str, base: str | None, title: str, body: str, fmt: str = "text"
                   ) -> dict[str, Any]:
    """Push ``branch`` and open or update its pull request; says (and warns in Actions) when the token
    is the workflow's own GITHUB_TOKEN, whose pull requests start no workflow. Exits 1 on failure."""
    from gftune import github
    from gftune.gitrepo import GitError, push_branch

    environ = dict(os.environ)
    repository = state.config.github_repository or environ.get("GITHUB_REPOSITORY")
    api = github.api_url_from_env(environ, state.config.github_api)
    if not repository or not base:
        echo("error: --open-pr needs GITHUB_REPOSITORY and the branch the proposals are for (check out a branch)",
             err=True)
        finish(exitcodes.ERROR)
    try:
        token, source = github.token_from_env(environ, api_url=api, repository=repository)
        if not token:
            raise github.GitHubError(f"--open-pr needs a token: {source} or a GitHub App")
        push_branch(state.root, branch, token=token)
        with github.GitHub(api, token, token_source=source, max_wait=github.max_wait_from_env(environ)) as gh:
            result = github.open_or_update_pull(gh, repository, head=branch, base=base, title=title, body=body)
    except (github.GitHubError, GitError) as exc:
        echo(f"error: pull request: {exc}", err=True)
        finish(exitcodes.ERROR)
    echo(f"Pull request {repository}#{result.number} {result.action} from {branch} into {base} as {result.author} "
         f"(token: {source}) {result.url}".rstrip(), err=True)
    if not github.triggers_workflows(result.author):
        echo(f"warning: {github.NO_WORKFLOWS_NOTE}", err=True)
        if environ.get("GITHUB_ACTIONS") == "true" and fmt != "json":  # an annotation on the run
            echo(f"::warning title=gftune tune::{github.NO_WORKFLOWS_NOTE}")
    return {"number": result.number, "action": result.action, "url": result.url, "author": result.author,
            "token": source, "triggers_workflows": github.triggers_workflows(result.author)}


@click.command(name="tune")
@server_options
@format_option("text", "json", "markdown")
@click.option("--write", is_flag=True, help="Write the proposals into pipelines/*.yaml and commit them on a branch.")
@click.option("--branch", metavar="NAME", default=None,
              help="Branch for the commit (default gftune/tune-<date>-<hash>).")
@click.option("--no-commit", is_flag=True, help="With --write: only write the files, do not commit.")
@click.option("--pr-body", "pr_body_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also save the pull-request body (Markdown) to FILE.")
@click.option("--target", "targets", multiple=True, metavar="ID", help="Only this pipeline (repeatable).")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write the proposals of this saved plan (`gftune plan --out`), as reviewed, instead of "
                   "evaluating the policies again.")
@click.option("--reevaluate", is_flag=True,
              help="With --plan: evaluate the policies now and say in the PR body which values differ from "
                   "the reviewed plan, and why.")
@click.option("--open-pr", is_flag=True,
              help="With --write: push the branch (replacing an earlier push) and open or update one pull request "
                   "with the evidence as its body (GITHUB_REPOSITORY; a GitHub App via GFTUNE_GITHUB_APP_ID + "
                   "GFTUNE_GITHUB_APP_PRIVATE_KEY, else GH_TOKEN or GITHUB_TOKEN).")
def command(opts: ServerOptions, fmt: str, write: bool, branch: str | None, no_commit: bool,
            pr_body_file: Path | None, targets: tuple[str, ...], plan_file: Path | None, reevaluate: bool,
            open_pr: bool) -> None:
    """Evaluate tuning policies against live metrics and write bounded proposals into git.

    With --plan FILE, the proposals of a reviewed plan are written as they were reviewed (nothing is
    measured again); with --plan FILE --reevaluate, the PR body says what changed since the review.
    Exit 0 nothing to do, 2 proposals, 1 error."""
    from gftune import writeback as tune
    from gftune.policy import review

    if reevaluate and plan_file is None:
        raise click.UsageError("--reevaluate compares with a reviewed plan: give it with --plan FILE")
    if open_pr and (not write or no_commit):
        raise click.UsageError("--open-pr goes with --write (and a commit): the pull request is of that branch")
    reviewed = load_plan_file(plan_file) if plan_file is not None else None

    state = opts.load_state(fmt="json" if fmt == "json" else "text")
    base = current_branch(state.root) or os.environ.get("GITHUB_REF_NAME") or None
    unknown = sorted(set(targets) - set(state.pipelines))
    if unknown:
        echo(f"error: no pipeline file for {', '.join(unknown)}", err=True)
        finish(exitcodes.ERROR)
    ids = list(targets) or sorted(state.pipelines)
    if targets:
        state.pipelines = {pid: state.pipelines[pid] for pid in ids}
    now = datetime.now(UTC)
    revisions = None
    live: dict[str, Any] | None = None
    if reviewed is not None and not reevaluate:
        report = review.reviewed_proposals(reviewed, list(targets))
        stale = review.stale_pipelines(reviewed, {pid: p.spec for pid, p in state.pipelines.items()},
                                       sorted(report.outcomes))
        if stale:
            for problem in stale:
                echo(f"error: {plan_file}: {problem}", err=True)
            echo("error: its proposals were reviewed against other files: make a new plan "
                 "(`gftune plan --out FILE`), or evaluate the policies again (`--reevaluate`)", err=True)
            finish(exitcodes.ERROR)
    else:
        if not state.policies:
            echo(f"warning: no policies under {state.root / 'policies'}: nothing to evaluate", err=True)
        live = _read_live(state, ids)
        with ScrapeWait(state.config, has_policies=bool(state.policies)) as wait:  # on stderr, whatever the format
            report = plan_policies(state, live, state.config, now, progress=wait)
        if reviewed is not None:
            revisions = review.revisions(review.reviewed_proposals(reviewed, list(targets)).proposals,
                                         report.proposals)
    proposals = report.proposals
    if live is not None:
        # What each proposal would cost once applied (restarts, downtime, resources), as the plan says it.
        from gftune.orchestration.plan import plan_options
        from gftune.plan.build import proposal_cost

        options = plan_options(state, allow_delete=False, env={})
        proposals = [replace(p, cost=proposal_cost(p, live[p.pipeline_id], options))
                     if p.cost is None and p.pipeline_id in live else p for p in proposals]
    try:
        edits = tune.plan_edits(state, proposals)
    except (tune.TuneError, OSError) as exc:
        echo(f"error: cannot write the proposals back: {exc}", err=True)
        finish(exitcodes.ERROR)
    body = tune.pr_body(proposals, edits, report.escalations, source=report.source_description,
                        reviewed_plan=reviewed.id if reviewed is not None else None, since_review=revisions)
    written: dict[str, Any] | None = None
    if write and edits:
        try:
            if no_commit:
                tune.write_edits(edits)
                written = {"files": [e.file for e in edits]}
            else:
                name = branch or tune.branch_name(proposals, now)
                info = tune.commit_edits(state.root, edits, tune.commit_message(proposals), name)
                written = {"branch": info.branch, "sha": info.sha, "files": info.files}
        except (tune.TuneError, OSError) as exc:
            echo(f"error: {exc}", err=True)
            finish(exitcodes.ERROR)
        if pr_body_file is not None:
            try:
                pr_body_file.parent.mkdir(parents=True, exist_ok=True)
                pr_body_file.write_text(body, encoding="utf-8")
            except OSError as exc:
                echo(f"error: cannot write the pull request body to {pr_body_file}: {exc.strerror or exc}", err=True)
                finish(exitcodes.ERROR)
    pull: dict[str, Any] | None = None
    if open_pr:
        if written is None or not written.get("branch"):
            echo("nothing to propose: no pull request opened", err=True)
        else:
            pull = open_tuning_pr(state, branch=written["branch"], base=base,
                                  title=tune.commit_message(proposals).splitlines()[0], body=body, fmt=fmt)
    if fmt == "json":
        echo_json({"format_version": FORMAT_VERSION, "source": report.source_description, "notes": report.notes,
                   "outcomes": {k: v.to_dict() for k, v in sorted(report.outcomes.items())},
                   "edits": [{"pipeline_id": e.pipeline_id, "file": e.file, "diff": e.diff()} for e in edits],
                   "written": written, "pr_body": body, "pull_request": pull,
                   "reviewed_plan": reviewed.id if reviewed is not None else None,
                   "since_review": [r.to_dict() for r in revisions] if revisions is not None else None})
    elif fmt == "markdown":
        echo(body, nl=False)
    else:
        if revisions:
            echo(f"Since the reviewed plan {reviewed.id}:")
            for revision in revisions:
                echo(f"  {revision.pipeline_id} {revision.describe()}")
            echo("")
        print_text(report, edits, written, body, pr_body_file)
    if any(o.errors for o in report.outcomes.values()):
        finish(exitcodes.ERROR)  # a policy that could not be evaluated: never "nothing to do"
    finish(exitcodes.CHANGES if proposals else exitcodes.OK)
