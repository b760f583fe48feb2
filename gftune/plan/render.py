"""A plan as text (rich, Terraform-like), JSON (the plan document) and Markdown (PR comments).

Pure functions from :class:`gftune.plan.model.Plan` to strings. Every string they return has been
through the secret masker; the plan itself never holds a secret value (secret fields are shown
as ``(sensitive)`` and references), so masking is the second line of defence.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape

from gftune.desired.secrets import masker
from gftune.plan.canonical import SECRET_MASK
from gftune.plan.evidence import Escalation, Evidence, Proposal
from gftune.plan.model import BLOCKED, CREATE, DELETE, ERROR, JOIN_RESET, NOOP, UPDATE, Change, PipelinePlan, Plan

SYMBOLS = {CREATE: "+", UPDATE: "~", DELETE: "-", BLOCKED: "!", ERROR: "x", NOOP: "="}
STYLES = {CREATE: "green", UPDATE: "yellow", DELETE: "red", BLOCKED: "magenta", ERROR: "bold red", NOOP: "dim"}
VERBS = {CREATE: "create", UPDATE: "update", DELETE: "delete", BLOCKED: "blocked", ERROR: "error",
         NOOP: "no changes"}
STEP_NAMES = {"stop": "stop", "edit": "POST /edit", "put_resources": "PUT /resources", "create": "POST /pipeline",
              "delete": "DELETE", "wait_gone": "wait until gone", "rename": "PATCH name (no restart)",
              "patch_metadata": "PATCH metadata (no restart)", "terminate": "terminate"}
NO_METRICS = "policies not evaluated: no --prometheus/--scrape configured"
MAX_VALUE = 160
LIST_UNCHANGED = 12


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds}s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}m{rest:02d}s" if minutes < 120 else f"{minutes // 60}h{minutes % 60:02d}m"


def value(v: Any) -> str:
    """A value as JSON (strings quoted), shortened; ``(absent)`` and ``(sensitive)`` as words."""
    if v is None:
        return "(absent)"
    text = v if v == SECRET_MASK else json.dumps(v, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def change_line(change: Change) -> str:
    if change.sensitive:
        # The new side is shown only when git holds a reference (e.g. ${env:CH_PASSWORD}).
        shown = f" → {value(change.new)}" if change.new not in (None, SECRET_MASK) else ""
        return f"{change.path}: (sensitive value changed){shown}"
    return f"{change.path}: {value(change.old)} → {value(change.new)}"


def step_name(step: dict[str, Any]) -> str:
    if step.get("action") == "wait_status":
        return f"wait {step.get('status')}"
    return STEP_NAMES.get(step.get("action", ""), str(step.get("action")))


def lifecycle_line(steps: list[dict[str, Any]]) -> str:
    """``stop → wait Stopped → PUT /resources → wait Running [if ...: ...]``."""
    parts: list[str] = []
    conditional: list[str] = []
    for step in steps:
        if step.get("when") == JOIN_RESET:
            conditional.append(step_name(step))
            continue
        if conditional:
            parts.append(f"[if the edit reset join resources: {' → '.join(conditional)}]")
            conditional = []
        parts.append(step_name(step))
    if conditional:
        parts.append(f"[if join resources differ: {' → '.join(conditional)}]")
    return " → ".join(parts)


def _evidence_lines(evidence: Iterable[Evidence]) -> list[str]:
    lines = []
    for e in evidence:
        lines += [f"  evidence: {e.describe()}", f"    query: {e.query}"]
    return lines


def proposal_lines(p: Proposal) -> list[str]:
    # A rationale is "why | sizing"; the sizing names one stage per "; "-separated part.
    why, _, sizing = p.rationale.partition(" | ")
    lines = [f"policy {p.policy}" + (f": {why}" if why else "")]
    lines += [f"  sizing: {part}" for part in sizing.split("; ") if part]
    lines += _evidence_lines(p.evidence)
    lines += [f"  predicted: {x.describe()}" for x in p.predictions]
    lines += [f"  note: {n}" for n in p.notes]
    return lines


def escalation_lines(e: Escalation) -> list[str]:
    lines = [f"escalation from policy {e.policy}: {e.reason}"]
    lines += _evidence_lines(e.evidence)
    lines.append(f"  next step: {e.next_step}")
    return lines


def summary_line(plan: Plan) -> str:
    s = plan.summary
    text = (f"Plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
            f"{s['blocked']} blocked, {s['unchanged']} unchanged (downtime ≈ {duration(s['downtime_s'])})")
    extras = []
    if s["errors"]:
        extras.append(f"{s['errors']} error{'s' if s['errors'] != 1 else ''}")
    if s["proposals"]:
        extras.append(f"{s['proposals']} policy proposal{'s' if s['proposals'] != 1 else ''} not in git")
    if s["escalations"]:
        extras.append(f"{s['escalations']} escalation{'s' if s['escalations'] != 1 else ''}")
    return text + (f"; {', '.join(extras)}." if extras else ".")


def header_line(plan: Plan) -> str:
    parts = [f"api {plan.api_url}"] if plan.api_url else []
    if plan.git:
        branch = plan.git.get("branch") or "detached"
        parts.append(f"git {str(plan.git.get('commit'))[:12]} ({branch}{', dirty' if plan.git.get('dirty') else ''})")
    if plan.shard:
        parts.append(f"shard {plan.shard}")
    if plan.targets:
        parts.append("targets " + ", ".join(plan.targets))
    return " · ".join(parts)


def metrics_line(plan: Plan) -> str | None:
    if plan.metrics:
        source = plan.metrics.get("source")
        naming = plan.metrics.get("naming")
        if plan.policies_evaluated:
            return f"policies evaluated with metrics from {source}" + (f" ({naming} names)" if naming else "")
        return f"metrics: {source}; no policies in the repository"
    return NO_METRICS if not plan.policies_evaluated else None


def _title(p: PipelinePlan) -> str:
    verb = VERBS[p.action]
    if p.action == UPDATE and p.kind:
        verb += f" ({p.kind})"
    status = f"  [{p.status}]" if p.status else ""
    where = f"  {p.path}" if p.path else ""
    return f"{SYMBOLS[p.action]} {p.pipeline_id}{where}{status}  {verb}"


def created_lines(doc: dict[str, Any]) -> list[str]:
    """What a create brings up, in a few lines (the document itself is in the JSON plan)."""
    sources = ", ".join(f"{s.get('source_id')} ({s.get('type')}" + (f" topic {s['topic']})" if s.get("topic") else ")")
                        for s in doc.get("sources") or [])
    lines = [f"sources: {sources}"]
    transforms = [f"{t.get('type')}:{t.get('source_id')}" for t in doc.get("transforms") or []]
    if (doc.get("join") or {}).get("enabled"):
        transforms.insert(0, "join")
    if transforms:
        lines.append("transforms: " + ", ".join(transforms))
    sink = doc.get("sink") or {}
    lines.append(f"sink: clickhouse table {sink.get('table')} (batch {sink.get('max_batch_size')}, "
                 f"delay {sink.get('max_delay_time')})")
    return lines


def pipeline_lines(p: PipelinePlan) -> list[tuple[str, str]]:
    """(style, line) pairs for one pipeline; the first is its title."""
    out: list[tuple[str, str]] = [(STYLES[p.action], _title(p))]
    if p.action == CREATE:
        out += [("green", f"    + {line}") for line in created_lines(p.payload.get("document") or {})]
    for change in p.changes:
        out.append(("", f"    ~ {change_line(change)}"))
        if change.proposal is not None:
            why = proposal_lines(change.proposal)
            out += [("cyan", f"        why: {why[0]}")] + [("cyan", f"             {line}") for line in why[1:]]
    for blocker in p.blocked:
        out.append(("magenta", f"    ! {blocker.code}: {blocker.message}"))
        out.append(("", f"      remedy: {blocker.remedy}"))
    for error in p.errors:
        out.append(("red", f"    x {error}"))
    if p.lifecycle:
        downtime = f"   (downtime ≈ {duration(p.downtime_s)})" if p.downtime_s else "   (no downtime)"
        out.append(("", f"    lifecycle: {lifecycle_line(p.lifecycle)}{downtime}"))
    for proposal in p.proposals:
        out.append(("cyan", "    ? proposal not in git (adopt with `gftune tune --write`):"))
        out += [("cyan", f"      ~ {c.path}: {value(c.old)} → {value(c.new)}") for c in proposal.changes]
        out += [("cyan", f"        {line}") for line in proposal_lines(proposal)]
    for escalation in p.escalations:
        out += [("magenta", f"    ! {line}") for line in escalation_lines(escalation)]
    out += [("dim", f"    note: {note}") for note in p.notes]
    return out


def render_text(plan: Plan, *, color: bool = False, width: int = 120) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width, highlight=False,
                      soft_wrap=True, emoji=False)
    header = header_line(plan)
    if header:
        console.print(escape(header), style="bold")
    if (line := metrics_line(plan)) is not None:
        console.print(escape(line), style="dim")
    for note in (plan.metrics or {}).get("notes") or []:
        console.print(escape(f"  {note}"), style="dim")
    for error in plan.errors:
        console.print(escape(f"error: {error}"), style="bold red")
    shown = [p for p in plan.pipelines if p.action != NOOP or p.proposals or p.escalations]
    unchanged = [p.pipeline_id for p in plan.pipelines if p not in shown]
    if not plan.pipelines:
        console.print("No pipelines in scope: nothing to plan (check --target / --shard and pipelines/).",
                      style="yellow")
    for p in shown:
        console.print()
        for style, line in pipeline_lines(p):
            console.print(escape(line), style=style or None)
    if unchanged:
        console.print()
        names = ", ".join(unchanged[:LIST_UNCHANGED]) + (" …" if len(unchanged) > LIST_UNCHANGED else "")
        console.print(escape(f"= {len(unchanged)} unchanged: {names}"), style="dim")
    if plan.unmanaged:
        console.print(escape(f"{len(plan.unmanaged)} live pipeline(s) not in git and not created by gftune are "
                             "left alone (see `gftune drift`)"), style="dim")
    for warning in plan.warnings:
        console.print(escape(f"warning: {warning}"), style="yellow")
    console.print()
    console.print(escape(summary_line(plan)), style="bold")
    if plan.exit_code == 0 and plan.pipelines:
        console.print("No changes. Live pipelines match git.", style="green")
    return masker.mask(buffer.getvalue())


def masked_data(data: Any) -> Any:
    """Every string of a JSON-able structure (keys too) through the masker, before encoding."""
    if isinstance(data, dict):
        return {masked_data(k): masked_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return [masked_data(v) for v in data]
    if isinstance(data, str):
        return masker.mask(data)
    return data


def render_json(plan: Plan) -> str:
    return masker.mask(json.dumps(masked_data(plan.to_dict()), indent=2, ensure_ascii=False, default=str))


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_code(text: Any) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def render_markdown(plan: Plan, *, details: bool = True) -> str:
    """The plan for a PR comment; ``details=False`` keeps the summary table only (for size limits)."""
    s = plan.summary
    lines = [f"### gftune plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
             f"{s['blocked']} blocked, {s['unchanged']} unchanged", ""]
    header = header_line(plan)
    if header:
        lines += [header, ""]
    if (line := metrics_line(plan)) is not None:
        lines += [f"_{line}_", ""]
    if notes := (plan.metrics or {}).get("notes"):
        lines += [*(f"- _{_md(note)}_" for note in notes), ""]
    lines += [f"**error:** {_md(e)}" for e in plan.errors]
    if not plan.pipelines:
        lines += ["No pipelines in scope: nothing to plan.", ""]
    else:
        lines += ["| | pipeline | action | changes | downtime |", "|---|---|---|---|---|"]
        for p in plan.pipelines:
            action = VERBS[p.action] + (f" ({p.kind})" if p.action == UPDATE and p.kind else "")
            lines.append(f"| {_md_code(SYMBOLS[p.action])} | {_md(p.pipeline_id)} | {action} | {len(p.changes)} | "
                         f"{'≈ ' + duration(p.downtime_s) if p.downtime_s else '—'} |")
        lines.append("")
    for p in plan.pipelines if details else ():
        if p.action == NOOP and not p.proposals and not p.escalations:
            continue
        lines += [f"<details><summary>{_md_code(SYMBOLS[p.action])} <b>{_md(p.pipeline_id)}</b>: "
                  f"{VERBS[p.action]}{f' ({p.kind})' if p.kind and p.action == UPDATE else ''}</summary>", ""]
        if p.changes:
            lines += ["| field | old | new | why |", "|---|---|---|---|"]
            for c in p.changes:
                old = SECRET_MASK if c.sensitive else value(c.old)
                new = value(c.new) if not c.sensitive or c.new not in (None, SECRET_MASK) else SECRET_MASK
                why = "; ".join(line.strip() for line in proposal_lines(c.proposal)) if c.proposal else ""
                lines.append(f"| {_md_code(c.path)} | {_md_code(old)} | {_md_code(new)} | {_md(why)} |")
            lines.append("")
        for b in p.blocked:
            lines += [f"- **blocked ({_md(b.code)}):** {_md(b.message)}", f"  - remedy: {_md(b.remedy)}"]
        lines += [f"- **error:** {_md(e)}" for e in p.errors]
        if p.lifecycle:
            cost = f"downtime ≈ {duration(p.downtime_s)}" if p.downtime_s else "no downtime"
            lines.append(f"- lifecycle: {_md(lifecycle_line(p.lifecycle))} ({cost})")
        for proposal in p.proposals:
            lines.append("- proposal not in git (adopt with `gftune tune --write`): " + ", ".join(
                f"{_md_code(c.path)} {_md(value(c.old))} → {_md(value(c.new))}" for c in proposal.changes))
            lines += [f"  - {_md(line.strip())}" for line in proposal_lines(proposal)]
        for e in p.escalations:
            lines += [f"- **{_md(line.strip())}**" if i == 0 else f"  - {_md(line.strip())}"
                      for i, line in enumerate(escalation_lines(e))]
        lines += [f"- note: {_md(n)}" for n in p.notes]
        lines += ["", "</details>", ""]
    for warning in plan.warnings:
        lines.append(f"> warning: {_md(warning)}")
    if plan.unmanaged:
        lines.append(f"> {len(plan.unmanaged)} live pipeline(s) not in git and not created by gftune are left alone.")
    lines += ["", f"**{summary_line(plan)}**"]
    return masker.mask("\n".join(lines) + "\n")


def plan_file_text(plan: Plan) -> str:
    """The ``--out`` file: the plan document. Messages are masked; payloads are left intact (they
    hold references, never values; masking them could corrupt a field that shares a secret's text)."""
    data = plan.to_dict()
    payloads = [p.pop("payload") for p in data["pipelines"]]
    masked = masked_data(data)
    for entry, payload in zip(masked["pipelines"], payloads, strict=True):
        entry["payload"] = payload
    return json.dumps(masked, indent=2, ensure_ascii=False) + "\n"
