"""Drift: live pipelines that differ from git, each difference attributed (pure; no I/O).

What counts as drift:

* a **field** whose live value differs from git (the plan's changes), unless the pipeline's
  ``tuning.drift`` ignores it or its numeric difference stays inside a tolerance band;
* the **status**: a pipeline git declares (every pipeline file means "running") that is Stopped or
  Failed (or stuck in a transition) without a gftune run holding its lock, unless ``tuning.drift``
  ignores ``status``;
* a pipeline in git and not live (**missing**), or created by gftune and no longer in git
  (**orphaned**). Live pipelines that are neither in git nor created by gftune are unmanaged: listed,
  never drift.

Who moved what (:func:`gftune.plan.attribution.attribute_fields`): changed outside gftune, git
changed since the last apply, git ahead of live (live still has an older commit's value, even when an
edit without metadata wiped gftune's tags), both, or never applied by gftune.

``tuning.drift`` in a pipeline file::

    tuning:
      drift:
        ignore: [resources.sink.replicas, "resources.sources[*].replicas", status]
        tolerance:
          sink.max_batch_size: 10%        # relative to git's value
          resources.sink.replicas: 1      # absolute
          resources.sink.memory_limit: 256Mi
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gftune import exitcodes
from gftune.desired.drift_rules import STATUS_FIELD, DriftRules
from gftune.glassflow.statuses import Status

# --- the report -----------------------------------------------------------------------------------

@dataclass
class DriftField:
    path: str
    git: Any
    live: Any
    attribution: str
    sensitive: bool = False
    commit: str | None = None  # the commit the attribution names (git ahead: live has this commit's value)


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
    notes: list[str] = field(default_factory=list)  # ignored fields, values inside their band, lost tags

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
    notes: dict[str, list[str]] = field(default_factory=dict)  # in-sync pipelines: what was ignored/tolerated
    selection: dict[str, Any] | None = None  # --changed-since
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

    @property
    def drifted_ids(self) -> list[str]:
        return [e.pipeline_id for e in self.entries if e.state != "error"]

    def to_dict(self, format_version: str) -> dict[str, Any]:
        return {"format_version": format_version, "kind": "drift", "created_at": self.created_at, "git": self.git,
                "api_url": self.api_url, "in_sync": self.exit_code == exitcodes.OK, "summary": self.summary,
                "pipelines": [e.to_dict() for e in self.entries], "unchanged": list(self.in_sync),
                "unmanaged": list(self.unmanaged), "notes": {k: list(v) for k, v in self.notes.items()},
                "selection": self.selection, "errors": list(self.errors)}


# --- status ---------------------------------------------------------------------------------------

def status_drift(status: str | None, tags: Sequence[str], rules: DriftRules, *, lock_owner: str | None,
                 changed_at: str | None = None) -> DriftField | None:
    """The status field when it is drift: git means Running; Stopped, Failed or a transition that no
    gftune run is carrying out (no gftune lock) is not what git says."""
    if not status or status == Status.RUNNING or rules.ignores_status:
        return None
    if lock_owner is not None:
        return None  # a gftune run is working on it right now: not drift, and said so by the caller
    when = f" (last change {changed_at})" if changed_at else ""
    if status == Status.FAILED:
        why = f"Failed outside gftune: the pipeline failed and nothing brought it back{when}"
    elif status == Status.STOPPED:
        why = f"stopped outside gftune{when}"
    else:
        why = f"{status} outside gftune{when}"
    return DriftField(STATUS_FIELD, Status.RUNNING.value, status, why)


# --- rendering ------------------------------------------------------------------------------------

SYMBOL = {"drifted": "~", "missing": "+", "orphaned": "-", "error": "x"}


def summary_line(report: DriftReport) -> str:
    s = report.summary
    text = (f"Drift: {s['drifted']} drifted, {s['missing']} missing, {s['orphaned']} orphaned, "
            f"{s['in_sync']} in sync, {s['unmanaged']} unmanaged")
    return text + (f", {s['errors']} error(s)." if s["errors"] else ".")


def _value(value: Any) -> str:
    from gftune.plan.render import value as shown

    return shown(value)


def _field_text(f: DriftField) -> str:
    if f.sensitive:
        return f"{f.path}: (sensitive value differs)  ({f.attribution})"
    return f"{f.path}: git {_value(f.git)}, live {_value(f.live)}  ({f.attribution})"


def render_text(report: DriftReport, mask: Any) -> str:
    lines = []
    head = report.git.get("commit", "")[:12] if report.git else None
    lines.append(f"gftune drift · api {report.api_url}" + (f" · git {head}" if head else " · not a git repository"))
    if report.selection:
        from gftune.plan.changes import Selection

        lines.append(Selection.from_dict(report.selection).summary())
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
        lines += [f"    note: {n}" for n in e.notes]
    for pid, notes in sorted(report.notes.items()):
        lines += ["", f"= {pid}  in sync"] + [f"    note: {n}" for n in notes]
    if report.unmanaged:
        lines += ["", f"unmanaged (live, not in git, not created by gftune): {', '.join(report.unmanaged)}"]
    if not report.entries and not report.in_sync and not report.unmanaged and not report.errors:
        lines += ["", "No pipelines in scope: nothing to compare."]
    lines += ["", summary_line(report)]
    if report.exit_code == exitcodes.OK:
        lines.append("In sync: live pipelines match git.")
    return mask("\n".join(lines) + "\n")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: DriftReport, mask: Any) -> str:
    lines = [f"### {summary_line(report)}", ""]
    if report.selection:
        from gftune.plan.changes import Selection

        lines += [f"_{_cell(Selection.from_dict(report.selection).summary())}_", ""]
    if report.entries:
        lines += ["| | pipeline | state | field | git | live | attribution |", "|---|---|---|---|---|---|---|"]
        for e in report.entries:
            for f in e.fields or [None]:
                cells = ["`" + SYMBOL[e.state] + "`", e.pipeline_id, e.state]
                if f is None:
                    cells += ["", "", "", e.attribution or "; ".join(e.errors)]
                else:
                    shown = ("(sensitive)", "(sensitive)") if f.sensitive else (_value(f.git), _value(f.live))
                    cells += [f"`{f.path}`", f"`{shown[0]}`", f"`{shown[1]}`", f.attribution]
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    notes = [(e.pipeline_id, n) for e in report.entries for n in e.notes] + \
            [(pid, n) for pid, ns in sorted(report.notes.items()) for n in ns]
    if notes:
        lines += ["<details><summary>Notes (ignored fields, values inside their tolerance, tags)</summary>", ""]
        lines += [f"- {_cell(pid)}: {_cell(n)}" for pid, n in notes]
        lines += ["", "</details>", ""]
    if report.unmanaged:
        lines.append(f"Unmanaged live pipelines (not drift): {', '.join(report.unmanaged)}")
    lines += [f"**error:** {_cell(e)}" for e in report.errors]
    return mask("\n".join(lines) + "\n")


def only(entries: Iterable[DriftEntry], states: Iterable[str]) -> list[DriftEntry]:
    wanted = set(states)
    return [e for e in entries if e.state in wanted]


# --- reconcile ------------------------------------------------------------------------------------

def reconcile_entry(entry: Any, *, running_timeout_s: float) -> Any:
    """The plan entry that puts git's state back on a drifted pipeline, for the normal apply path.

    Git declares a pipeline running. A Stopped or Failed pipeline with no field drift is resumed
    (``resume`` → wait Running); one that also has field drift is updated and left Running (the
    plan's trailing re-stop, which keeps a Stopped pipeline stopped, is dropped). Anything else is
    returned as planned.
    """
    import copy

    from gftune.plan.model import NOOP, UPDATE, Change

    status = entry.status
    if status not in (Status.STOPPED, Status.FAILED):
        return entry
    out = copy.deepcopy(entry)
    if out.action == NOOP:
        out.action, out.kind = UPDATE, "status"
        out.changes = [Change(STATUS_FIELD, status, Status.RUNNING.value, STATUS_FIELD)]
        out.lifecycle = [{"action": "resume"},
                         {"action": "wait_status", "status": Status.RUNNING.value, "timeout_s": running_timeout_s}]
        out.notes.append(f"drift: the pipeline is {status} outside gftune; git declares it running, so it is resumed")
        return out
    if out.action == UPDATE and out.lifecycle[-2:] and [s.get("action") for s in out.lifecycle[-2:]] == \
            ["stop", "wait_status"] and status == Status.STOPPED:
        out.lifecycle = out.lifecycle[:-2]
        out.notes = [n for n in out.notes if "stopped again afterwards" not in n]
        out.notes.append("drift: the pipeline was stopped outside gftune; it is left Running after the update")
    return out
