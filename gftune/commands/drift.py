"""``gftune drift``: the nightly report of live state that differs from git, with who moved what.

What counts as drift, the ``tuning.drift`` ignore rules and tolerance bands, and the status check
are in :mod:`gftune.plan.drift`; who moved each field in :mod:`gftune.plan.attribution`. This
module is the edge: it reads git (the pipeline files' history, for attribution without tags), the
live pipelines, and GitHub.

* ``--reconcile`` puts git's state back on every drifted pipeline through the normal apply path
  (lock, stop, update, resume, verify, provenance), then checks again; the exit code is the check's.
* ``--github-issue`` keeps one tracking issue: opened on drift, updated while it lasts, closed when
  the pipelines are back in sync.
* Inside GitHub Actions the Markdown report is appended to the job summary.

Exit codes (design.md §3): 0 in sync, 2 drift, 1 error (including a reconcile that failed).
Live pipelines that are neither in git nor created by gftune are listed as unmanaged, not drift.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from gftune import exitcodes, github
from gftune.apply import lock
from gftune.commands.common import (
    ServerOptions,
    changed_since_option,
    echo,
    finish,
    format_option,
    plan_from_options,
    server_options,
    shard_option,
)
from gftune.desired import secrets
from gftune.desired.drift_rules import DriftRules
from gftune.gitrepo import spec_at, spec_history
from gftune.live import LiveState
from gftune.orchestration.plan import PlanRun, plan_options
from gftune.plan import attribution, tags
from gftune.plan.drift import (
    DriftEntry,
    DriftField,
    DriftReport,
    reconcile_entry,
    render_markdown,
    render_text,
    status_drift,
    summary_line,
)
from gftune.plan.model import CREATE, ERROR, FORMAT_VERSION, Plan
from gftune.plan.render import value


def _lock_owner(tags: list[str], now: float) -> str | None:
    held = [lk for lk in lock.locks_in(tags) if not lk.expired(now)]
    return held[0].describe(now) if held else None


def drifted_entry(pid: str, path: str | None, live: LiveState, changes: list[Any], rules: DriftRules, *,
                  head: str | None, desired_spec: dict[str, Any], root: Path, file: Path,
                  resolver: secrets.Resolver, now: float) -> tuple[DriftEntry | None, list[str]]:
    """The drift of one pipeline that exists in git and live, or (None, notes) when it is in sync."""
    notes: list[str] = []
    kept = []
    for change in changes:
        pattern = rules.ignored(change.path)
        band = rules.band(change.path)
        if pattern is not None:
            notes.append(f"{change.path}: git {value(change.new)}, live {value(change.old)}: ignored "
                         f"(tuning.drift.ignore {pattern})")
        elif band is not None and not change.sensitive and band.within(change.new, change.old):
            notes.append(f"{change.path}: git {value(change.new)}, live {value(change.old)}: inside its "
                         f"{band.describe()} tolerance")
        else:
            kept.append(change)
    owner = _lock_owner(live.tags, now)
    status = status_drift(live.status, live.tags, rules, lock_owner=owner,
                          changed_at=(live.health or {}).get("updated_at"))
    if owner is not None and live.status != "Running":
        notes.append(f"status {live.status}: a gftune run holds the lock ({owner})")
    if rules.ignores_status and live.status not in (None, "Running"):
        notes.append(f"status {live.status}: ignored (tuning.drift.ignore status)")
    if not kept and status is None:
        return None, notes
    applied = tags.provenance_commit(live.tags)
    entry = DriftEntry(pid, "drifted", path=path, status=live.status, applied_commit=applied, notes=notes)
    if kept:
        history = spec_history(root, file) if applied is None else []
        if applied is None and history:
            entry.notes.append(attribution.NO_TAGS_NOTE)
        who = attribution.attribute_fields(
            [c.path for c in kept], live_doc=live.pipeline or {}, live_resources=live.resources, head=head,
            applied_commit=applied, applied_spec=spec_at(root, file, applied, head, desired_spec),
            desired_spec=desired_spec, history=history, resolver=resolver)
        entry.fields = [DriftField(c.path, c.new, c.old, who[c.path].text, c.sensitive, who[c.path].commit)
                        for c in kept]
    if status is not None:
        entry.fields.append(status)
    kinds = {f.attribution for f in entry.fields}
    entry.attribution = kinds.pop() if len(kinds) == 1 else "mixed (see each field)"
    return entry, []


def build_report(run: PlanRun, state: Any, head: str | None, env: Mapping[str, str], *,
                 now: float | None = None) -> DriftReport:
    plan = run.plan
    resolver = state.resolver(env)
    clock = time.time() if now is None else now
    entries: list[DriftEntry] = []
    in_sync: list[str] = []
    notes: dict[str, list[str]] = {}
    for p in plan.pipelines:
        live = run.live.get(p.pipeline_id)
        if p.action == ERROR or live is None:
            entries.append(DriftEntry(p.pipeline_id, "error", path=p.path, errors=list(p.errors)))
            continue
        if p.action == CREATE:
            entries.append(DriftEntry(p.pipeline_id, "missing", path=p.path,
                                      attribution="in git, not live (never created, or deleted outside gftune)"))
            continue
        desired = state.pipelines[p.pipeline_id]
        entry, quiet = drifted_entry(p.pipeline_id, p.path, live, p.changes, DriftRules.from_doc(desired.drift),
                                     head=head, desired_spec=desired.spec, root=state.root, file=desired.path,
                                     resolver=resolver, now=clock)
        if entry is None:
            in_sync.append(p.pipeline_id)
            if quiet:
                notes[p.pipeline_id] = quiet
        else:
            entries.append(entry)
    for pid in run.scope.orphans:
        entries.append(DriftEntry(pid, "orphaned",
                                  attribution="created by gftune, no longer in git (`gftune plan --allow-delete` "
                                              "would delete it)"))
    entries.sort(key=lambda e: e.pipeline_id)
    return DriftReport(entries=entries, in_sync=in_sync, unmanaged=list(run.scope.unmanaged),
                       errors=list(plan.errors), git=plan.git, api_url=plan.api_url, notes=notes,
                       selection=plan.selection)


def reconcile_plan(run: PlanRun, report: DriftReport, state: Any) -> Plan:
    """The plan that puts git's state back on every drifted or missing pipeline (orphans are left:
    deleting needs `gftune plan --allow-delete` and a review)."""
    wanted = {e.pipeline_id for e in report.entries if e.state in ("drifted", "missing")}
    timeout = plan_options(state, allow_delete=False, env={}).timeouts.running_s
    entries = [reconcile_entry(p, running_timeout_s=timeout) for p in run.plan.pipelines if p.pipeline_id in wanted]
    return dataclasses.replace(run.plan, pipelines=entries, id=str(uuid.uuid4()))


def _reconcile(state: Any, plan: Plan, env: Mapping[str, str]) -> int:
    """Apply ``plan`` through the normal apply path; the report goes to stderr (stdout is drift's)."""
    from gftune.apply import executor as applymod
    from gftune.apply import report as apply_report
    from gftune.apply.journal import JournalStore
    from gftune.apply.state import JournalError
    from gftune.client import GlassFlowClient
    from gftune.commands.apply import ConsoleReporter, apply_context
    from gftune.gitrepo import current_commit
    from gftune.metrics.snapshots import MetricsError
    from gftune.metrics.sources import open_source

    async def run() -> Any:
        source = open_source(state.config)
        try:
            async with GlassFlowClient.from_config(state.config) as client:
                ctx = apply_context(state.config, state.root, client, source, env=env, reporter=reporter,
                               owner=lock.default_owner(dict(env)))
                return await applymod.apply_plan(plan, ctx, current_commit=current_commit(state.root),
                                                 check_age=False)
        finally:
            if source is not None:
                source.close()

    reporter = ConsoleReporter()
    echo(f"Reconciling {len(plan.pipelines)} pipeline(s) to git's state: "
         f"{', '.join(p.pipeline_id for p in plan.pipelines)}", err=True)
    try:
        result = asyncio.run(run())
    except (JournalError, MetricsError) as exc:
        echo(f"error: reconcile: {exc}", err=True)
        return exitcodes.ERROR
    finally:
        reporter.close()
    if result.journal is None:
        for message in result.messages:
            echo(message, err=True)
        return result.exit_code
    doc = apply_report.build(result.journal, now=time.time(), exit_code=result.exit_code,
                             messages=result.messages)
    echo(apply_report.render_text(doc), err=True, nl=False)
    echo(f"Journal: {JournalStore(state.root).path(result.journal.run_id)}", err=True)
    return result.exit_code


def _publish(report: DriftReport, environ: Mapping[str, str], config: Any, github_issue: bool) -> None:
    markdown = [render_markdown(report, secrets.masker.mask)]
    if environ.get("GITHUB_STEP_SUMMARY"):
        written = github.append_step_summary(environ["GITHUB_STEP_SUMMARY"], markdown)
        echo("job summary: " + ("written" if written is not None else "skipped (over 1 MiB)"), err=True)
    if not github_issue:
        return
    repository = config.github_repository or environ.get("GITHUB_REPOSITORY")
    token, source = github.plain_token_from_env(environ)
    if not repository or not token:
        echo("tracking issue: skipped: set GITHUB_REPOSITORY and GH_TOKEN (or GITHUB_TOKEN)", err=True)
        return
    if report.exit_code == exitcodes.ERROR:
        echo("tracking issue: left as it is: the drift check had errors", err=True)
        return
    s = report.summary
    count = s["drifted"] + s["missing"] + s["orphaned"]
    title = f"gftune drift: {count} pipeline{'s' if count != 1 else ''} differ{'s' if count == 1 else ''} from git"
    try:
        with github.GitHub(github.api_url_from_env(environ, config.github_api), token, token_source=source,
                           max_wait=github.max_wait_from_env(environ)) as gh:
            result = github.track_drift(gh, repository, drifted=report.exit_code == exitcodes.CHANGES, title=title,
                                        renderings=markdown, run_url=github.run_url_from_env(environ),
                                        commit=(report.git or {}).get("commit"))
    except github.GitHubError as exc:
        echo(f"tracking issue: failed: {exc}", err=True)
        return
    if result.action != "none":
        echo(f"tracking issue: {result.action} #{result.number} {result.url}".rstrip(), err=True)


@click.command(name="drift")
@server_options
@format_option("text", "json", "markdown")
@click.option("--target", "targets", multiple=True, metavar="ID", help="Check only this pipeline (repeatable).")
@click.option("--shard", metavar="I/N", callback=shard_option,
              help="Check only shard I of N (same split as `gftune plan --shard`).")
@changed_since_option
@click.option("--reconcile", is_flag=True,
              help="Put git's state back on every drifted or missing pipeline through the normal apply path "
                   "(lock, stop, update, resume, verify), then check again.")
@click.option("--github-issue", is_flag=True,
              help="Keep one tracking issue in GITHUB_REPOSITORY (GH_TOKEN or GITHUB_TOKEN, issues: write): opened "
                   "on drift, updated while it lasts, closed when back in sync.")
def command(opts: ServerOptions, fmt: str, targets: tuple[str, ...], shard: str | None, changed_since: str | None,
            reconcile: bool, github_issue: bool) -> None:
    """Nightly drift report: live state that differs from git, field by field and by status, each
    attributed (changed outside gftune, git changed since the last apply, git ahead of live, never
    applied by gftune), honouring each pipeline's tuning.drift ignore rules and tolerance bands.

    Exit 0 in sync, 2 drift, 1 error."""
    environ = dict(os.environ)

    def check() -> tuple[Any, PlanRun, DriftReport]:
        state, run = plan_from_options(opts, fmt=fmt, targets=targets, shard=shard, policies=False,
                                       changed_since=changed_since)
        return state, run, build_report(run, state, (run.plan.git or {}).get("commit"), environ)

    state, run, report = check()
    code: int | None = None
    reconciled: dict[str, Any] | None = None
    if reconcile and report.exit_code == exitcodes.CHANGES:
        plan = reconcile_plan(run, report, state)
        if plan.pipelines:
            if fmt == "text":
                echo(render_text(report, secrets.masker.mask), nl=False)
                echo()
            applied = _reconcile(state, plan, environ)
            reconciled = {"pipelines": [p.pipeline_id for p in plan.pipelines], "apply_exit_code": applied,
                          "before": summary_line(report)}
            state, run, report = check()
            if applied == exitcodes.ERROR:
                code = exitcodes.ERROR
    if fmt == "json":
        data = report.to_dict(FORMAT_VERSION)
        data["reconciled"] = reconciled
        echo(secrets.masker.dumps(data, indent=2, ensure_ascii=False), masked=True)
    elif fmt == "markdown":
        echo(render_markdown(report, secrets.masker.mask), nl=False)
    else:
        echo(render_text(report, secrets.masker.mask), nl=False)
    _publish(report, environ, state.config, github_issue)
    finish(code if code is not None else report.exit_code)
