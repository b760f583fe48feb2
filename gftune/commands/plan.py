"""``gftune plan``: desired (git) vs live (API) vs metrics (policies) → what would change, and how.

Exit codes (design.md §3): 0 no changes, 2 changes or policy proposals, 3 blocked (immutable field,
unsettled status, escalation), 1 error (bad repository, a pipeline that could not be read, ...).

:func:`gftune.orchestration.plan.produce_plan` is the whole read-and-plan step (the I/O edge around the
pure :func:`gftune.plan.model.build_plan`); ``apply --auto-approve`` and ``drift`` reuse it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from gftune import exitcodes
from gftune.commands.common import (
    ServerOptions,
    UnresolvedReferencesError,
    changed_since_option,
    echo,
    fail,
    finish,
    format_option,
    plan_from_options,
    server_options,
    shard_option,
)
from gftune.desired.repo import PIPELINES_DIR
from gftune.orchestration.plan import explain_changes
from gftune.plan.markdown import render_markdown
from gftune.plan.model import Plan
from gftune.plan.render import plan_file_text, render_json, render_text


def output(plan: Plan, fmt: str, *, verbose: bool = False) -> None:
    if fmt == "json":
        echo(render_json(plan), nl=False, masked=True)
        echo()
    elif fmt == "markdown":
        from gftune.github import run_url_from_env

        echo(render_markdown(plan, run_url=run_url_from_env(os.environ)), nl=False)
    else:
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        echo(render_text(plan, color=color, width=shutil.get_terminal_size((120, 24)).columns, verbose=verbose),
             nl=False)


@click.command(name="plan")
@server_options
@format_option("text", "json", "markdown")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Save the plan (JSON) for `gftune apply FILE`; apply refuses it once live state moves.")
@click.option("--target", "targets", multiple=True, metavar="ID", help="Plan only this pipeline (repeatable).")
@click.option("--shard", metavar="I/N", callback=shard_option,
              help="Plan only shard I of N (1-based; a stable split for CI matrix jobs).")
@click.option("--allow-delete", is_flag=True,
              help="Plan deletion of pipelines gftune created that are no longer in git.")
@changed_since_option
@click.option("--github-pr", type=int, metavar="N",
              help="Post the plan as the pull request's gftune comment (GH_TOKEN or GITHUB_TOKEN, GITHUB_REPOSITORY); "
                   "inside GitHub Actions the event's pull request is used by default.")
@click.option("--no-github", is_flag=True, help="Do not post to GitHub even inside GitHub Actions.")
@click.option("-v", "--verbose", is_flag=True,
              help="Text output: also the sizing inputs, every query and the policy notes (JSON always has them).")
@click.option("--strict", is_flag=True,
              help="Exit 1 when a policy could not be evaluated (its PromQL failed); without it, exit 3.")
def command(opts: ServerOptions, fmt: str, out: Path | None, targets: tuple[str, ...], shard: str | None,
            allow_delete: bool, changed_since: str | None, github_pr: int | None, no_github: bool,
            verbose: bool, strict: bool) -> None:
    """Show what would change in each pipeline, through which lifecycle, at what cost in downtime.

    Exit 0 no changes, 2 changes (or policy proposals), 3 blocked (or a policy could not be evaluated),
    1 error."""
    try:
        state, run = plan_from_options(opts, fmt=fmt, targets=targets, shard=shard, allow_delete=allow_delete,
                                       changed_since=changed_since)
    except UnresolvedReferencesError as exc:
        if fmt != "json":
            raise
        fail(exc.problems, fmt=fmt)
    if not state.pipelines and not allow_delete:
        echo(f"warning: no pipeline files under {state.root / PIPELINES_DIR}", err=True)
    plan = run.plan
    explain_changes(run, state, os.environ)
    output(plan, fmt, verbose=verbose)
    if out is not None:
        try:
            out.write_text(plan_file_text(plan), encoding="utf-8")
        except OSError as exc:
            echo(f"error: cannot write the plan to {out}: {exc.strerror or exc}", err=True)
            finish(exitcodes.ERROR)
        echo(f"Saved the plan to {out}: `gftune apply {out}` carries out exactly these steps "
             "(it refuses the plan if the live pipelines change first).", err=True)
    elif fmt == "text" and plan.exit_code == exitcodes.CHANGES:
        echo("Note: no --out given, so `gftune apply` will plan again and may act on newer state.", err=True)
    if not no_github:
        publish_plan(plan, state.config, github_pr)
    finish(plan.exit_code_for(strict=strict))


def publish_plan(plan: Any, config: Any, number: int | None) -> None:
    """The plan as the pull request's living gftune comment (apply later edits the same comment into
    its verdict) and the job summary."""
    from gftune import github

    # The comment's footer links the workflow run (gftune.github), so the report itself does not.
    def renderings() -> list[str]:
        return [render_markdown(plan), render_markdown(plan, details=False)]

    for line in github.publish(renderings, kind="plan", environ=os.environ, number=number,
                               repository=config.github_repository, api_url=config.github_api):
        echo(line, err=True)
