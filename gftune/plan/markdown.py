"""A plan as Markdown: the pull request's living comment and the job summary. A headline with the
verdict, one section per pipeline (what, why, cost, the readings), and the evidence folded into
``<details>``; built from the same pieces as the text rendering (:mod:`gftune.plan.render`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gftune.desired.secrets import masker
from gftune.plan.assessment import Cost
from gftune.plan.canonical import SECRET_MASK
from gftune.plan.changes import Selection
from gftune.plan.evidence import Evidence
from gftune.plan.model import (
    BLOCKED,
    CREATE,
    DELETE,
    ERROR,
    NOOP,
    PipelinePlan,
    Plan,
)
from gftune.plan.render import (
    ADOPT,
    LIST_UNCHANGED,
    MD_FIELDS_SHOWN,
    SYMBOLS,
    adopted,
    created_lines,
    escalation_lines,
    header_line,
    lifecycle_line,
    metrics_line,
    next_step,
    on_pipelines,
    proposal_lines,
    readings_rows,
    risk,
    said_once,
    short_why,
    value,
    why_lines,
)
from gftune.plan.verdict import cost_phrase, escalation_verdict, proposal_verdict, resources_phrase, restarts_phrase


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _md_code(text: Any) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def _details(summary: str, body: list[str]) -> list[str]:
    return [f"<details><summary>{summary}</summary>", "", *body, "", "</details>", ""]


def headline(plan: Plan) -> str:
    """The PR comment's first line: what changes, and its cost and risk at a glance."""
    s = plan.summary
    what = [f"{s[k]} to {k}" for k in ("create", "update", "delete") if s[k]]
    what += [f"{s['blocked']} blocked"] if s["blocked"] else []
    what += [f"{s['proposals']} proposal{'s' if s['proposals'] != 1 else ''} not in git"] if s["proposals"] else []
    what += [f"{s['escalations']} escalation{'s' if s['escalations'] != 1 else ''}"] if s["escalations"] else []
    what += [f"{s['errors']} error{'s' if s['errors'] != 1 else ''}"] if s["errors"] else []
    what += [f"{s['policy_errors']} polic{'ies' if s['policy_errors'] != 1 else 'y'} could not be evaluated"
             ] if s["policy_errors"] else []
    if not what:
        what = ["no changes"]
    cost = plan.cost
    parts = [", ".join(what)]
    if s["create"] or s["update"] or s["delete"]:
        parts.append(restarts_phrase(cost))
        if not cost.resources.zero:
            parts.append(resources_phrase(cost.resources))
    if s["proposals"]:
        pending = plan.pending_cost
        parts.append(f"adopting {'it' if s['proposals'] == 1 else 'them'}: {restarts_phrase(pending)}"
                     + ("" if pending.resources.zero else f", {resources_phrase(pending.resources)}"))
    parts.append(f"**{risk(cost)}**" if cost.irreversible else risk(cost))
    return "### gftune plan: " + " · ".join(parts)


def _md_what(p: PipelinePlan) -> str:
    if p.action == CREATE:
        return "new pipeline"
    if p.action == DELETE:
        return "delete"
    if p.action == ERROR:
        return "error: " + _md("; ".join(p.errors))
    if p.action == BLOCKED:
        return "blocked: " + ", ".join(sorted({b.code for b in p.blocked}))
    parts = [f"{_md_code(c.path)} {_md(SECRET_MASK if c.sensitive else value(c.old))} → "
             f"{_md(value(c.new) if not c.sensitive or c.new not in (None, SECRET_MASK) else SECRET_MASK)}"
             for c in p.changes[:MD_FIELDS_SHOWN]]
    if len(p.changes) > MD_FIELDS_SHOWN:
        parts.append(f"{len(p.changes) - MD_FIELDS_SHOWN} more")
    for proposal in p.proposals:
        parts.append("proposal: " + ", ".join(f"{_md_code(c.path)} {_md(value(c.old))} → {_md(value(c.new))}"
                                              for c in proposal.changes))
    if p.escalations:
        parts.append("escalation")
    if p.policy_errors:
        parts.append("policy error")
    return "<br>".join(parts) or "—"


def _md_why(p: PipelinePlan) -> str:
    reasons: list[str] = []
    for change in p.changes:
        if change.proposal is not None:
            reasons.append(f"policy {change.proposal.policy}")
        elif change.why is not None:
            reasons.append(short_why(change.why))
    reasons += [f"policy {x.policy}" for x in [*p.proposals, *p.escalations]]
    return _md(", ".join(dict.fromkeys(reasons))) or "—"


def _md_cost(p: PipelinePlan) -> str:
    cost = p.cost
    if p.proposals and not p.changes:
        cost = sum((x.cost or Cost() for x in p.proposals), Cost())
    if not cost.restarts and cost.resources.zero and not cost.irreversible:
        return "—"
    parts = [restarts_phrase(cost)] if cost.restarts else []
    if cost.resources.pods:
        parts.append(", ".join(f"{n:+d} {stage}" for stage, n in cost.resources.pods.items()))
    elif not cost.resources.zero:
        parts.append("resources")
    if cost.irreversible:
        parts.append("**irreversible**")
    return _md(", ".join(parts))


def _md_readings(evidence: Sequence[Evidence]) -> list[str]:
    rows = readings_rows(evidence)
    if not rows:
        return []
    return ["| reading | value | threshold |", "|---|---|---|",
            *(f"| {_md_code(r[0])} | {_md(r[1])} | {_md(r[2])} |" for r in rows), ""]


def _md_section(p: PipelinePlan) -> list[str]:
    """What a reviewer reads of one pipeline: the why and the verdicts, the readings as a table."""
    lines: list[str] = []
    name = f"**{_md(p.pipeline_id)}**"
    if p.action == CREATE:
        doc = p.payload.get("document") or {}
        lines += [f"{name}: new pipeline ({_md(p.path or '')})", ""]
        lines += [f"- {_md(line)}" for line in created_lines(doc)] + [""]
    whys = why_lines(p.changes)
    if whys:
        lines += [f"{name}:", ""]
        lines += [f"- {_md_code(c.path) + ': ' if c is not None else ''}{_md(t)}" for c, t in whys] + [""]
    for proposal in adopted(p):
        lines += [f"{name} · policy {_md(proposal.policy)}: {_md(proposal_verdict(proposal))}", ""]
        lines += _md_readings(proposal.evidence)
    for proposal in p.proposals:
        lines += [f"{name} · {_md(proposal.policy)} proposes ({ADOPT}): {_md(proposal_verdict(proposal))}", ""]
        lines += _md_readings(proposal.evidence)
    for escalation in p.escalations:
        lines += [f"{name} · escalation from {_md(escalation.policy)}: {_md(escalation_verdict(escalation))}", ""]
        lines += _md_readings(escalation.evidence)
    for b in p.blocked:
        lines += [f"{name} blocked ({_md(b.code)}): {_md(b.message)}. Remedy: {_md(b.remedy)}", ""]
    if p.errors:
        lines += [f"{name} error: {_md('; '.join(p.errors))}", ""]
    lines += [f"{name} **policy error:** {_md(e)}" for e in p.policy_errors] + ([""] if p.policy_errors else [])
    return lines


def _md_evidence(p: PipelinePlan) -> list[str]:
    """The folded part of one pipeline: every change, the lifecycle, sizing, queries and notes."""
    body: list[str] = []
    if p.changes:
        body += ["| field | old | new |", "|---|---|---|"]
        for c in p.changes:
            old = SECRET_MASK if c.sensitive else value(c.old)
            new = value(c.new) if not c.sensitive or c.new not in (None, SECRET_MASK) else SECRET_MASK
            body.append(f"| {_md_code(c.path)} | {_md_code(old)} | {_md_code(new)} |")
        body.append("")
    if p.lifecycle:
        body.append(f"- lifecycle: {_md(lifecycle_line(p.lifecycle))} ({_md(cost_phrase(p.cost, full=True))})")
    for proposal in [*adopted(p), *p.proposals]:
        body += [f"- {_md(line.strip())}" if not line.startswith("    ") else f"  - {_md(line.strip())}"
                 for line in proposal_lines(proposal)]
    for escalation in p.escalations:
        body += [f"- {_md(line.strip())}" for line in escalation_lines(escalation)]
    body += [f"- note: {_md(n)}" for n in p.notes]
    return body


def render_markdown(plan: Plan, *, details: bool = True, run_url: str | None = None) -> str:
    """The plan for a PR comment: the headline (cost and risk), one row per pipeline with something
    to do (what, why, cost), each verdict with its readings, then the evidence folded in
    ``<details>``, the policy notes said once, and what to do next. ``details=False`` keeps the
    headline, the table and the next step only (for size limits)."""
    lines = [headline(plan), ""]
    meta = [_md(header)] if (header := header_line(plan)) else []
    meta += [f"[CI run]({run_url})"] if run_url else []
    if meta:
        lines += [" · ".join(meta), ""]
    if (line := metrics_line(plan)) is not None:
        lines += [f"_{_md(line)}_", ""]
    if plan.selection:
        lines += [f"_{_md(Selection.from_dict(plan.selection).summary())}_", ""]
    lines += [f"**error:** {_md(e)}" for e in plan.errors]
    shown = [p for p in plan.pipelines if p.action != NOOP or p.proposals or p.escalations or p.policy_errors]
    unchanged = [p.pipeline_id for p in plan.pipelines if p not in shown]
    if not plan.pipelines:
        lines += ["No pipelines in scope: nothing to plan.", ""]
    if shown:
        lines += ["| | pipeline | what | why | cost |", "|---|---|---|---|---|"]
        lines += [f"| {_md_code('?' if p.action == NOOP else SYMBOLS[p.action])} | {_md(p.pipeline_id)} | "
                  f"{_md_what(p)} | {_md_why(p)} | {_md_cost(p)} |" for p in shown]
        lines.append("")
    if unchanged:
        names = ", ".join(unchanged[:LIST_UNCHANGED]) + (" …" if len(unchanged) > LIST_UNCHANGED else "")
        lines += [f"{len(unchanged)} unchanged: {_md(names)}", ""]
    if details:
        for p in shown:
            lines += _md_section(p)
        for p in shown:
            body = _md_evidence(p)
            if body:
                lines += _details(f"{_md(p.pipeline_id)}: fields, lifecycle, sizing and queries", body)
        notes = said_once(plan.pipelines)
        if notes:
            total = len(plan.pipelines)
            lines += _details(f"Policy notes ({len(notes)})",
                              [f"- {_md(note)} — {_md(on_pipelines(ids, total))}" for note, ids in notes])
        if metric_notes := (plan.metrics or {}).get("notes"):
            lines += _details("Metrics", [f"- {_md(n)}" for n in metric_notes])
    for warning in plan.warnings:
        lines.append(f"> warning: {_md(warning)}")
    if plan.unmanaged:
        lines.append(f"> {len(plan.unmanaged)} live pipeline(s) not in git and not created by gftune are left alone.")
    lines += ["", f"**Next:** {next_step(plan)}"]
    return masker.mask("\n".join(lines) + "\n")
