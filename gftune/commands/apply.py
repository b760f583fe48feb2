"""``gftune apply``: carry out a saved plan (or plan and apply), verify it with metrics, revert on regression.

Exit codes (design.md §3): 0 applied and verified, 4 verification failed (reverted), 5 inconclusive
(change kept), 3 blocked entries were left out, 1 error (stale plan refused, lock held, a failed
update that had to be restored, ...).

The report goes to stdout (text, JSON or Markdown), progress to stderr, and, in a pull request
(``--github-pr N`` or the GitHub Actions environment), to one PR comment that is edited in place,
plus ``$GITHUB_STEP_SUMMARY`` when set.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from gftune import exitcodes, github
from gftune.apply import executor as applymod
from gftune.apply import lock, report
from gftune.apply.context import ApplyContext
from gftune.apply.journal import JournalStore
from gftune.apply.state import JournalError
from gftune.client import GlassFlowClient
from gftune.commands.common import (
    ConsoleUi,
    ServerOptions,
    changed_since_option,
    echo,
    finish,
    format_option,
    references_checked,
    server_options,
)
from gftune.commands.plan import output
from gftune.desired import secrets
from gftune.desired.config import Config, readable_roots
from gftune.desired.repo import load_repo
from gftune.gitrepo import GitError, current_commit
from gftune.glassflow.durations import DurationError, to_seconds
from gftune.metrics.snapshots import MetricsError
from gftune.metrics.sources import open_source
from gftune.orchestration.plan import produce_plan, sources_now
from gftune.plan.integrity import integrity_problems
from gftune.plan.markdown import render_markdown
from gftune.plan.model import Plan, PlanFormatError
from gftune.plan.render import plan_file_text

WAIT_LINE_EVERY_S = 5.0


class ConsoleReporter:
    """Progress on stderr: events as lines; waits as a spinner on a terminal, else a line every few seconds."""

    def __init__(self, *, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
        self.quiet = quiet
        self.tty = self.console.is_terminal
        self._last_line: dict[str, tuple[float, str | None]] = {}
        self._status: Any = None

    def event(self, pipeline_id: str, message: str) -> None:
        if self.quiet:
            return
        self._clear_status()
        self.console.print(f"[{pipeline_id}] {message}")

    def waiting(self, pipeline_id: str, what: str, elapsed: float, timeout: float | None,
                status: str | None) -> None:
        if self.quiet or elapsed < 1.0:
            return
        limit = f"/{timeout:.0f}s" if timeout else ""
        text = f"[{pipeline_id}] {what}: {elapsed:.0f}s{limit}, status {status or '?'}"
        if self.tty:
            if self._status is None:
                self._status = self.console.status(text)
                self._status.start()
            else:
                self._status.update(text)
            return
        last = self._last_line.get(pipeline_id + what)
        now = time.monotonic()
        if last is None or now - last[0] >= WAIT_LINE_EVERY_S or last[1] != status:
            self._last_line[pipeline_id + what] = (now, status)
            self.console.print(text)

    def _clear_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        self._clear_status()


def load_plan_file(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.ClickException(f"cannot read the plan {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise click.ClickException(f"{path} is not a plan file (invalid JSON: {exc}); "
                                   "make one with `gftune plan --out plan.json`") from None
    if not isinstance(data, dict) or "pipelines" not in data:
        raise click.ClickException(f"{path} is not a plan file; make one with `gftune plan --out plan.json`")
    try:
        return Plan.from_dict(data)
    except PlanFormatError as exc:
        raise click.ClickException(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise click.ClickException(f"{path}: malformed plan ({type(exc).__name__}: {exc})") from None


def _max_age(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return to_seconds(value.strip(), allow_days=True)
    except DurationError:
        raise click.BadParameter(f"{value!r} is not a duration such as 30m, 1h or 2h30m", ctx=ctx,
                                 param=param) from None


def _print_report(doc: Mapping[str, Any], fmt: str) -> None:
    if fmt == "json":
        echo(report.render_json(doc), masked=True)
    elif fmt == "markdown":
        echo(report.render_markdown(doc), nl=False)
    else:
        echo(report.render_text(doc), nl=False)


@click.command(name="apply")
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@server_options
@format_option("text", "json", "markdown")
@click.option("--auto-approve", is_flag=True, help="Plan now and apply that plan without a saved plan file.")
@click.option("--resume", "resume_id", metavar="RUN_ID",
              help="Continue an interrupted run from its journal (.gftune/runs/RUN_ID.json).")
@click.option("--max-plan-age", callback=_max_age, metavar="DURATION",
              help="Refuse a saved plan older than this (default: apply.max_plan_age, 1h).")
@click.option("--target", "targets", multiple=True, metavar="ID", help="With --auto-approve: only this pipeline.")
@changed_since_option
@click.option("--from-pr", is_flag=True,
              help="Apply the plan reviewed on the pull request (GitHub Actions: the event's PR, or the PR the "
                   "pushed commit was merged from): the gftune-plan artifact of its last plan run. A stale plan is "
                   "refused; the new plan goes to the PR's comment instead.")
@click.option("--plan-workflow", default="plan.yml", show_default=True, metavar="FILE",
              help="With --from-pr: the workflow whose runs save the reviewed plan.")
@click.option("--replan", "replan_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="With --from-pr: when the reviewed plan is stale, save the new plan here (apply.yml keeps it as "
                   "the artifact gftune-replan; re-running the job applies it if nothing moved again).")
@click.option("--github-pr", type=int, metavar="N",
              help="Post the report as a comment on pull request N (default: the PR of a GitHub Actions run).")
@click.option("--no-github", is_flag=True, help="Do not post to GitHub even inside GitHub Actions.")
def command(plan_file: Path | None, opts: ServerOptions, fmt: str, auto_approve: bool, resume_id: str | None,
            max_plan_age: float | None, targets: tuple[str, ...], changed_since: str | None, from_pr: bool,
            plan_workflow: str, replan_file: Path | None, github_pr: int | None, no_github: bool) -> None:
    """Apply a saved plan (`gftune apply plan.json`) or plan and apply (`--auto-approve`).

    Each pipeline is locked, stopped, updated, brought back to Running, observed for the verify
    window and judged with the metrics that motivated the change. A regression is reverted.

    Exit 0 applied and verified, 4 reverted, 5 inconclusive (kept), 3 blocked entries skipped, 1 error."""
    modes = sum(bool(x) for x in (plan_file, auto_approve, resume_id, from_pr))
    if modes != 1:
        raise click.UsageError("give exactly one of: a plan file (`gftune apply plan.json`), --auto-approve, "
                               "--from-pr, or --resume RUN_ID")
    if changed_since and not auto_approve:
        raise click.UsageError("--changed-since plans again, so it goes with --auto-approve (a saved plan is "
                               "already limited to what it planned)")
    environ = dict(os.environ)
    if from_pr:
        finish(run_from_pr(opts, fmt=fmt, environ=environ, number=github_pr, plan_workflow=plan_workflow,
                           replan_file=replan_file, no_github=no_github))
    code, doc = run_apply(opts, plan_file=plan_file, auto_approve=auto_approve, resume_id=resume_id,
                          max_plan_age=max_plan_age, targets=targets, fmt=fmt, environ=environ,
                          changed_since=changed_since)
    if doc is not None and not no_github:
        config = opts.load_config(fmt=fmt)
        for line in github.publish(lambda: report.markdown_renderings(doc), kind="apply", environ=environ,
                                   number=github_pr, repository=config.github_repository,
                                   api_url=config.github_api):
            echo(line, err=True)
    finish(code)


def run_apply(opts: ServerOptions, *, plan_file: Path | None, auto_approve: bool, resume_id: str | None,
              max_plan_age: float | None, targets: tuple[str, ...], fmt: str, environ: Mapping[str, str],
              reporter: Any = None, changed_since: str | None = None) -> tuple[int, dict[str, Any] | None]:
    """The whole command without click: returns the exit code and the report document."""
    env = dict(environ)
    if auto_approve:
        state = opts.load_state(fmt=fmt)
        config, repo = state.config, state.root
    else:
        config = opts.load_config(fmt=fmt)
        repo, state = opts.repo, None
    if max_plan_age is not None:
        config.max_plan_age = max_plan_age
    own_reporter = reporter is None
    reporter = reporter or ConsoleReporter()
    try:
        result = asyncio.run(_run(config, repo, state, plan_file=plan_file, resume_id=resume_id, targets=targets,
                                  env=env, reporter=reporter, owner=lock.default_owner(env),
                                  changed_since=changed_since))
    except GitError as exc:
        echo(f"error: --changed-since {changed_since}: {exc}", err=True)
        return exitcodes.ERROR, None
    except (JournalError, MetricsError) as exc:
        echo(f"error: {exc}", err=True)
        return exitcodes.ERROR, None
    except KeyboardInterrupt:
        unfinished = [j.run_id for j in JournalStore(repo).unfinished()]
        hint = (f"; continue it with `gftune apply --resume {unfinished[-1]}`: a pipeline may be stopped"
                if unfinished else "")
        echo(f"\ninterrupted{hint}", err=True)
        return 130, None
    finally:
        if own_reporter:
            reporter.close()
    if result.journal is None:
        for message in result.messages:
            echo(message, err=True)
        return result.exit_code, None
    doc = report.build(result.journal, now=time.time(), exit_code=result.exit_code, messages=result.messages)
    _print_report(doc, fmt)
    if fmt == "text":
        echo(f"Journal: {JournalStore(repo).path(result.journal.run_id)}", err=True)
    return result.exit_code, doc


def apply_context(config: Config, repo: Path, client: Any, source: Any, *, env: Mapping[str, str], reporter: Any,
                  owner: str) -> ApplyContext:
    return ApplyContext(client=client, config=config, store=JournalStore(repo), metrics=source,
                        owner=owner, reporter=reporter,
                        resolver=secrets.Resolver(env, base_dir=Path(repo), roots=readable_roots(Path(repo), config)))


async def _run(config: Config, repo: Path, state: Any, *, plan_file: Path | None, resume_id: str | None,
               targets: tuple[str, ...], env: dict[str, str], reporter: Any, owner: str,
               changed_since: str | None = None) -> applymod.ApplyResult:
    source = open_source(config)
    try:
        async with GlassFlowClient.from_config(config) as client:
            ctx = apply_context(config, repo, client, source, env=env, reporter=reporter, owner=owner)
            if resume_id:
                return await applymod.resume_run(resume_id, ctx)
            if state is not None:
                with references_checked():
                    planned = await produce_plan(state, targets=targets, env=env, changed_since=changed_since,
                                                 ui=ConsoleUi(live_progress=False))
                plan, path, check_age = planned.plan, None, False
            else:
                assert plan_file is not None
                plan, path, check_age = load_plan_file(plan_file), str(plan_file), True
                if plan.api_url and plan.api_url.rstrip("/") != config.api_url.rstrip("/"):
                    return applymod.ApplyResult(None, exitcodes.ERROR, [
                        f"the plan was made against {plan.api_url}, but the API is {config.api_url}: refused"])
                current = load_repo(repo, validate=False)
                problems = integrity_problems(plan, {pid: p.spec for pid, p in current.pipelines.items()})
                if problems:
                    return applymod.ApplyResult(None, exitcodes.ERROR, [
                        "plan refused, nothing was changed:", *problems,
                        "re-run `gftune plan --out plan.json` on the reviewed commit and apply that plan"])
            return await applymod.apply_plan(plan, ctx, plan_path=path, current_commit=current_commit(repo),
                                             check_age=check_age, current_sources=sources_now(repo, plan.sources))
    finally:
        if source is not None:
            source.close()


# --- --from-pr: the plan reviewed on a pull request -------------------------------------------------

def _proposes(plan: Plan) -> bool:
    """Whether a plan carries metric-driven changes (those age: the metrics move; git changes do not)."""
    return any(p.proposals or any(c.source == "policy" for c in p.changes) for p in plan.pipelines)


def _find_reviewed(config: Config, environ: Mapping[str, str], number: int | None, plan_workflow: str
                   ) -> tuple[int, dict[str, Any], Plan | None, list[str]]:
    """The pull request, and its reviewed plan or why there is none usable. Raises GitHubError/ClickException."""
    repository = config.github_repository or environ.get("GITHUB_REPOSITORY")
    token, source = github.plain_token_from_env(environ)
    if not repository or not token:
        raise click.ClickException("--from-pr needs GITHUB_REPOSITORY and GH_TOKEN (or GITHUB_TOKEN) set, as in "
                                   "GitHub Actions")
    api = github.api_url_from_env(environ, config.github_api)
    with github.GitHub(api, token, token_source=source, max_wait=github.max_wait_from_env(environ)) as gh:
        number = number if number is not None else github.pr_number_from_env(environ)
        sha = environ.get("GITHUB_SHA") or ""
        if number is None and sha:
            number = github.find_pull_request(gh, repository, sha)
        if number is None:
            raise click.ClickException(
                f"commit {sha[:12] or '(GITHUB_SHA unset)'} came from no pull request, so no plan was reviewed: "
                "nothing applied. Open a pull request, or apply on purpose with `gftune apply --auto-approve`")
        pull = gh.pull(repository, number)
        head = str(pull["head"]["sha"])
        merged = bool(pull.get("merged_at"))
        found = github.reviewed_plan(gh, repository, head_sha=head, plan_workflow=plan_workflow,
                                     replan_workflow=github.current_workflow(environ) if merged else None,
                                     replan_sha=sha if merged else None)
    if found is None:
        return number, pull, None, [f"no plan was saved for the pull request's last commit {head[:12]} "
                                    f"(did {plan_workflow} run and succeed on it?)"]
    echo(f"reviewed plan: {found.where}, made for commit {found.commit[:12]}", err=True)
    try:
        plan = Plan.from_dict(json.loads(found.data))
    except (ValueError, KeyError, TypeError, PlanFormatError) as exc:
        return number, pull, None, [f"the reviewed plan ({found.where}) cannot be read: {exc}"]
    made_at = (plan.git or {}).get("commit")
    if made_at and made_at != found.commit:
        return number, pull, plan, [f"the reviewed plan was made at {made_at[:12]}, not at {found.commit[:12]}"]
    return number, pull, plan, []


def run_from_pr(opts: ServerOptions, *, fmt: str, environ: Mapping[str, str], number: int | None,
                plan_workflow: str, replan_file: Path | None, no_github: bool) -> int:
    """Apply exactly the plan reviewed on the pull request, or refuse it as stale and plan again."""
    config = opts.load_config(fmt=fmt)
    try:
        number, pull, plan, stale = _find_reviewed(config, environ, number, plan_workflow)
    except github.GitHubError as exc:
        echo(f"error: cannot find the reviewed plan: {exc}", err=True)
        return exitcodes.ERROR
    except click.ClickException as exc:
        echo(f"error: {exc.message}", err=True)
        return exitcodes.ERROR
    state = opts.load_state(fmt=fmt)
    env = dict(environ)
    reporter = ConsoleReporter()
    try:
        outcome = asyncio.run(_apply_reviewed(state, plan, stale, pull, env=env, reporter=reporter))
    except (JournalError, MetricsError, GitError) as exc:
        echo(f"error: {exc}", err=True)
        return exitcodes.ERROR
    finally:
        reporter.close()

    def publish(renderings: list[str], kind: str) -> None:
        if no_github:
            return
        for line in github.publish(renderings, kind=kind, environ=environ, number=number,
                                   repository=config.github_repository, api_url=config.github_api):
            echo(line, err=True)

    if isinstance(outcome, applymod.ApplyResult):
        if outcome.journal is None:
            for message in outcome.messages:
                echo(message, err=True)
            return outcome.exit_code
        doc = report.build(outcome.journal, now=time.time(), exit_code=outcome.exit_code, messages=outcome.messages)
        _print_report(doc, fmt)
        publish(report.markdown_renderings(doc), "apply")
        return outcome.exit_code
    reasons, replanned = outcome
    plan_now = replanned.plan
    nothing_left = plan_now.exit_code == exitcodes.OK
    if nothing_left:
        header = ["### gftune apply: nothing left to apply", "",
                  "The reviewed plan no longer matches what it was made against:", *[f"- {r}" for r in reasons], "",
                  "Planning the same pipelines again finds nothing to do: the change is live already (applied by "
                  "`/gftune apply` before the merge, or by hand) or was undone in git. Nothing was changed."]
    else:
        header = ["### ⚠️ gftune apply: the reviewed plan is stale, nothing was applied", "",
                  "Why:", *[f"- {r}" for r in reasons], "",
                  "Below is the plan now. Review it; re-running this job applies it if nothing moves again."]
    intro = "\n".join([*header, "", "---", ""])
    publish([intro + render_markdown(plan_now), intro + render_markdown(plan_now, details=False)],
            "apply (nothing left)" if nothing_left else "plan (re-planned: the reviewed plan was stale)")
    for line in header:
        if line.strip():
            echo(line.lstrip("#⚠️ "), err=True)
    output(plan_now, fmt)
    if replan_file is not None and not nothing_left:
        replan_file.write_text(plan_file_text(plan_now), encoding="utf-8")
        echo(f"Saved the new plan to {replan_file}.", err=True)
    return exitcodes.OK if nothing_left else exitcodes.ERROR


async def _apply_reviewed(state: Any, plan: Plan | None, stale: list[str], pull: Mapping[str, Any], *,
                          env: dict[str, str], reporter: Any) -> Any:
    """The ApplyResult of the reviewed plan, or (why it is stale, the plan now)."""
    config, repo = state.config, state.root
    source = open_source(config)
    try:
        async with GlassFlowClient.from_config(config) as client:
            ctx = apply_context(config, repo, client, source, env=env, reporter=reporter, owner=lock.default_owner(env))
            if plan is not None and not stale:
                if plan.api_url and plan.api_url.rstrip("/") != config.api_url.rstrip("/"):
                    stale = [f"the plan was made against {plan.api_url}, but the API is {config.api_url}"]
                elif problems := integrity_problems(plan, {pid: p.spec for pid, p in state.pipelines.items()}):
                    stale = problems
                else:
                    now = sources_now(repo, plan.sources)
                    check = {"current_commit": current_commit(repo), "check_age": _proposes(plan),
                             "current_sources": now}
                    stale = await applymod.refusal_reasons(plan, ctx, **check)
                    if not stale:
                        return await applymod.apply_plan(plan, ctx, plan_path="(reviewed on the pull request)",
                                                         **check)
            targets = [p.pipeline_id for p in plan.pipelines] if plan is not None and plan.pipelines else []
            base = None if targets else str((pull.get("base") or {}).get("sha") or "") or None
            with references_checked():
                replanned = await produce_plan(state, targets=targets, changed_since=base, env=env,
                                               ui=ConsoleUi(live_progress=False))
            return stale, replanned
    finally:
        if source is not None:
            source.close()
