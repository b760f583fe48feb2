"""``gftune drift``: the nightly report of live state that differs from git, with who moved what.

Read-only (no policies, no writes). Every differing field is attributed using the provenance tag
apply leaves on a pipeline (``gftune:commit=<sha>``) and the pipeline file as it was at that commit:

* live differs from what was applied, git did not change the field → **changed outside gftune**;
* git changed the field since the applied commit, live still has the applied value →
  **git changed since the last apply** (a plan/apply will roll it out);
* both moved → **changed in git and outside gftune**;
* no provenance tag → **never applied by gftune**.

Exit codes (design.md §3): 0 in sync, 2 drift, 1 error. Live pipelines that are neither in git nor
created by gftune are listed as unmanaged but are not drift.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from gftune import exitcodes
from gftune.commands.common import ServerOptions, echo, finish, format_option, server_options
from gftune.commands.plan import PlanRun, plan_from_options, shard_option
from gftune.desired import secrets
from gftune.gitrepo import read_at_commit
from gftune.glassflow import resources as res
from gftune.live import LiveState
from gftune.plan import canonical
from gftune.plan.diff import diff_config, diff_resources
from gftune.plan.model import CREATE, ERROR, FORMAT_VERSION, PipelinePlan
from gftune.plan.render import value

OUTSIDE = "changed outside gftune"
GIT_CHANGED = "git changed since the last apply"
BOTH = "changed in git and outside gftune"
NEVER = "never applied by gftune"
UNKNOWN = "applied from a commit not available here: cannot tell git changes from outside changes"


@dataclass
class DriftField:
    path: str
    git: Any
    live: Any
    attribution: str
    sensitive: bool = False


@dataclass
class DriftEntry:
    pipeline_id: str
    state: str  # drifted | missing | orphaned | error
    path: str | None = None
    status: str | None = None
    applied_commit: str | None = None
    attribution: str = ""
    fields: list[DriftField] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftReport:
    entries: list[DriftEntry]
    in_sync: list[str]
    unmanaged: list[str]
    errors: list[str]
    git: dict[str, Any] | None
    api_url: str | None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def summary(self) -> dict[str, int]:
        counts = {"drifted": 0, "missing": 0, "orphaned": 0, "errors": len(self.errors)}
        for entry in self.entries:
            counts["errors" if entry.state == "error" else entry.state] += 1
        return {**counts, "in_sync": len(self.in_sync), "unmanaged": len(self.unmanaged)}

    @property
    def exit_code(self) -> int:
        s = self.summary
        if s["errors"]:
            return exitcodes.ERROR
        return exitcodes.CHANGES if s["drifted"] or s["missing"] or s["orphaned"] else exitcodes.OK

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "kind": "drift", "created_at": self.created_at, "git": self.git,
                "api_url": self.api_url, "in_sync": self.exit_code == exitcodes.OK, "summary": self.summary,
                "pipelines": [e.to_dict() for e in self.entries], "unchanged": list(self.in_sync),
                "unmanaged": list(self.unmanaged), "errors": list(self.errors)}


# --- attribution (pure) -----------------------------------------------------------------------

def changed_paths(spec: dict[str, Any], against_doc: dict[str, Any], against_internal: dict[str, Any] | None,
                  resolver: canonical.Resolver, *, against_resolver: canonical.Resolver | None = None) -> set[str]:
    """Field paths where ``spec`` (a git document) differs from another document + internal resources."""
    config = diff_config(canonical.canonical_config(spec, resolver=resolver),
                         canonical.canonical_config(against_doc, resolver=against_resolver))
    leaves, _ = canonical.desired_resource_leaves(spec)
    return {d.path for d in config} | {d.path for d in diff_resources(leaves, against_internal)}


def attribute(plan: PipelinePlan, live: LiveState, head: str | None, applied_spec: dict[str, Any] | None,
              desired_spec: dict[str, Any], resolver: canonical.Resolver) -> DriftEntry:
    """One drifted pipeline: which fields differ and who moved each of them."""
    applied = canonical.provenance_commit(live.tags)
    entry = DriftEntry(plan.pipeline_id, "drifted", path=plan.path, status=live.status, applied_commit=applied)

    if applied is None:
        def why(path: str) -> str:
            return NEVER
    elif applied == head:
        def why(path: str) -> str:
            return OUTSIDE  # git is what was applied, so it is live that moved
    elif applied_spec is None:
        def why(path: str) -> str:
            return UNKNOWN
    else:
        outside = changed_paths(applied_spec, live.pipeline or {}, live.resources, resolver)
        in_git = changed_paths(desired_spec, applied_spec, res.v3_to_internal(applied_spec), resolver,
                               against_resolver=resolver)

        def why(path: str) -> str:
            git_moved, live_moved = _covers(path, in_git), _covers(path, outside)
            return BOTH if git_moved and live_moved else GIT_CHANGED if git_moved else OUTSIDE

    entry.fields = [DriftField(c.path, c.new, c.old, why(c.path), c.sensitive) for c in plan.changes]
    kinds = {f.attribution for f in entry.fields}
    entry.attribution = kinds.pop() if len(kinds) == 1 else "mixed (see each field)"
    return entry


def _covers(path: str, paths: set[str]) -> bool:
    """``path`` or one of its parents/children moved (a whole transform added covers its fields)."""
    return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") or p.startswith(path + ".")
               or p.startswith(path + "[") for p in paths)


def build_report(run: PlanRun, state: Any, head: str | None, env: Mapping[str, str]) -> DriftReport:
    plan = run.plan

    resolver = state.resolver(env)

    entries: list[DriftEntry] = []
    in_sync: list[str] = []
    for p in plan.pipelines:
        live = run.live.get(p.pipeline_id)
        if p.action == ERROR or live is None:
            entries.append(DriftEntry(p.pipeline_id, "error", path=p.path, errors=list(p.errors)))
        elif p.action == CREATE:
            entries.append(DriftEntry(p.pipeline_id, "missing", path=p.path,
                                      attribution="in git, not live (never created, or deleted outside gftune)"))
        elif p.changes:
            desired = state.pipelines[p.pipeline_id]
            applied_spec = _spec_at(state.root, desired.path, canonical.provenance_commit(live.tags), head,
                                    desired.spec)
            entries.append(attribute(p, live, head, applied_spec, desired.spec, resolver))
        else:
            in_sync.append(p.pipeline_id)
    for pid in run.scope.orphans:
        entries.append(DriftEntry(pid, "orphaned",
                                  attribution="created by gftune, no longer in git (`gftune plan --allow-delete` "
                                              "would delete it)"))
    entries.sort(key=lambda e: e.pipeline_id)
    return DriftReport(entries=entries, in_sync=in_sync, unmanaged=list(run.scope.unmanaged),
                       errors=list(plan.errors), git=plan.git, api_url=plan.api_url)


def _spec_at(root: Path, file: Path, commit: str | None, head: str | None, current: dict[str, Any]
             ) -> dict[str, Any] | None:
    if commit is None:
        return None
    if commit == head:
        return current
    text = read_at_commit(root, commit, file)
    if text is None:
        return None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    spec = doc.get("spec") if isinstance(doc, dict) else None
    return spec if isinstance(spec, dict) else None


# --- rendering --------------------------------------------------------------------------------

SYMBOL = {"drifted": "~", "missing": "+", "orphaned": "-", "error": "x"}


def _field_text(f: DriftField) -> str:
    if f.sensitive:
        return f"{f.path}: (sensitive value differs)  ({f.attribution})"
    return f"{f.path}: git {value(f.git)}, live {value(f.live)}  ({f.attribution})"


def summary_line(report: DriftReport) -> str:
    s = report.summary
    text = (f"Drift: {s['drifted']} drifted, {s['missing']} missing, {s['orphaned']} orphaned, "
            f"{s['in_sync']} in sync, {s['unmanaged']} unmanaged")
    return text + (f", {s['errors']} error(s)." if s["errors"] else ".")


def render_text(report: DriftReport) -> str:
    lines = []
    head = report.git.get("commit", "")[:12] if report.git else None
    lines.append(f"gftune drift · api {report.api_url}" + (f" · git {head}" if head else " · not a git repository"))
    lines += [f"error: {e}" for e in report.errors]
    for e in report.entries:
        title = f"{SYMBOL[e.state]} {e.pipeline_id}  {e.state}"
        if e.attribution:
            title += f": {e.attribution}"
        if e.applied_commit:
            title += f" (last applied from {e.applied_commit[:12]})"
        lines += ["", title]
        lines += [f"    {_field_text(f)}" for f in e.fields]
        lines += [f"    x {err}" for err in e.errors]
    if report.unmanaged:
        lines += ["", f"unmanaged (live, not in git, not created by gftune): {', '.join(report.unmanaged)}"]
    if not report.entries and not report.in_sync and not report.unmanaged and not report.errors:
        lines += ["", "No pipelines in scope: nothing to compare."]
    lines += ["", summary_line(report)]
    if report.exit_code == exitcodes.OK:
        lines.append("In sync: live pipelines match git.")
    return secrets.masker.mask("\n".join(lines) + "\n")


def render_markdown(report: DriftReport) -> str:
    lines = [f"### {summary_line(report)}", ""]
    if report.entries:
        lines += ["| | pipeline | state | field | git | live | attribution |", "|---|---|---|---|---|---|---|"]
        for e in report.entries:
            rows = e.fields or [None]
            for f in rows:
                cells = ["`" + SYMBOL[e.state] + "`", e.pipeline_id, e.state]
                if f is None:
                    cells += ["", "", "", e.attribution or "; ".join(e.errors)]
                else:
                    shown = ("(sensitive)", "(sensitive)") if f.sensitive else (value(f.git), value(f.live))
                    cells += [f"`{f.path}`", f"`{shown[0]}`", f"`{shown[1]}`", f.attribution]
                lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    if report.unmanaged:
        lines.append(f"Unmanaged live pipelines (not drift): {', '.join(report.unmanaged)}")
    lines += [f"**error:** {e}" for e in report.errors]
    return secrets.masker.mask("\n".join(lines) + "\n")


@click.command(name="drift")
@server_options
@format_option("text", "json", "markdown")
@click.option("--target", "targets", multiple=True, metavar="ID", help="Check only this pipeline (repeatable).")
@click.option("--shard", metavar="I/N", callback=shard_option,
              help="Check only shard I of N (same split as `gftune plan --shard`).")
def command(opts: ServerOptions, fmt: str, targets: tuple[str, ...], shard: str | None) -> None:
    """Nightly drift report: live state that differs from git, each field attributed (changed outside
    gftune, git changed since the last apply, never applied by gftune). Read-only.

    Exit 0 in sync, 2 drift, 1 error."""
    state, run = plan_from_options(opts, fmt=fmt, targets=targets, shard=shard, policies=False)
    head = (run.plan.git or {}).get("commit")
    report = build_report(run, state, head, os.environ)
    if fmt == "json":
        echo(secrets.masker.dumps(report.to_dict(), indent=2, ensure_ascii=False), masked=True)
    elif fmt == "markdown":
        echo(render_markdown(report), nl=False)
    else:
        echo(render_text(report), nl=False)
    finish(report.exit_code)
