"""A plan as text (rich, Terraform-like) and JSON (the plan document); Markdown (PR comments) is
:mod:`gftune.plan.markdown`, built from the pieces here.

Pure functions from :class:`gftune.plan.model.Plan` to strings. A reviewer reads the why first and
the evidence on demand: each change says where it comes from (a commit and its author, a live
edit it reverts, a policy's verdict in one paragraph), the readings behind a proposal are a small
table of values and thresholds, and the sizing inputs, queries and policy notes appear with
``verbose`` (text), inside ``<details>`` (Markdown) and always in JSON. Notes that say the same
thing for many pipelines are said once. Every string returned has been through the secret masker;
the plan itself never holds a secret value (secret fields are ``(sensitive)`` and references), so
masking is the second line of defence.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from gftune import exitcodes
from gftune.desired.secrets import masker
from gftune.formatting import number
from gftune.plan.assessment import Cost
from gftune.plan.canonical import SECRET_MASK
from gftune.plan.changes import Selection
from gftune.plan.evidence import SIZING_INPUT, Escalation, Evidence, Proposal
from gftune.plan.model import (
    BLOCKED,
    CREATE,
    DELETE,
    ERROR,
    JOIN_RESET,
    NOOP,
    UPDATE,
    WHY_BOTH,
    WHY_GIT,
    WHY_LIVE_EDIT,
    WHY_NEVER_APPLIED,
    Change,
    PipelinePlan,
    Plan,
    Why,
)
from gftune.plan.verdict import cost_phrase, escalation_verdict, proposal_verdict, resources_phrase, restarts_phrase

SYMBOLS = {CREATE: "+", UPDATE: "~", DELETE: "-", BLOCKED: "!", ERROR: "x", NOOP: "="}
STYLES = {CREATE: "green", UPDATE: "yellow", DELETE: "red", BLOCKED: "magenta", ERROR: "bold red", NOOP: "dim"}
VERBS = {CREATE: "create", UPDATE: "update", DELETE: "delete", BLOCKED: "blocked", ERROR: "error",
         NOOP: "no changes"}
STEP_NAMES = {"stop": "stop", "edit": "POST /edit", "put_resources": "PUT /resources", "create": "POST /pipeline",
              "delete": "DELETE", "wait_gone": "wait until gone", "rename": "PATCH name (no restart)",
              "patch_metadata": "PATCH metadata (no restart)", "terminate": "terminate"}
NO_METRICS = "policies not evaluated: no --prometheus/--scrape configured"
ADOPT = "adopt with `gftune tune --write`"
MAX_VALUE = 160
LIST_UNCHANGED = 12
MD_FIELDS_SHOWN = 6  # changed fields per pipeline in the Markdown summary table; the rest are counted


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


# --- why each change ------------------------------------------------------------------------------

def _when(stamp: str | None) -> str:
    """``2026-12-02 14:02 UTC`` from an RFC 3339 time."""
    if not stamp:
        return ""
    text = stamp.replace("T", " ")
    return text[:16] + " UTC" if len(text) >= 16 else text


def _commit(why: Why) -> str:
    """``git a1b2c3d by Ada, 2026-12-02: “subject”``, or that the value is not committed yet."""
    if not why.commit:
        return "an uncommitted change in the working tree"
    text = "git " + why.commit[:7]
    if why.author:
        text += f" by {why.author}"
    if why.committed_at:
        text += f", {_when(why.committed_at)[:10]}"
    if why.subject:
        text += f": “{why.subject}”"
    return text


def why_text(change: Change) -> str:
    """Where a change comes from, in words (Terraform's "changed outside of Terraform" for live edits)."""
    why = change.why
    if why is None:
        return ""
    when = f" (the live pipeline last changed at {_when(why.live_changed_at)})" if why.live_changed_at else ""
    live, wanted = value(change.old), value(change.new)
    if change.sensitive:
        live, wanted = "the live value", "git's value"
    if why.kind == WHY_LIVE_EDIT:
        return (f"reverts a live edit: live value {live} was set outside gftune{when}; this sets it back to "
                f"{wanted}")
    if why.kind == WHY_BOTH:
        return f"{_commit(why)}; it also overrides live value {live}, set outside gftune{when}"
    if why.kind == WHY_GIT:
        return _commit(why)
    if why.kind == WHY_NEVER_APPLIED:
        return f"never applied by gftune; {_commit(why)}"
    return f"{_commit(why)}; the last applied commit is not in this clone, so a live edit cannot be told apart"


def short_why(why: Why) -> str:
    """A table cell's why: ``reverts a live edit``, ``git a1b2c3d (Ada Reviewer)``, ``uncommitted``."""
    if why.kind == WHY_LIVE_EDIT:
        return "reverts a live edit"
    source = (f"git {why.commit[:7]}" + (f" ({why.author})" if why.author else "")) if why.commit else "uncommitted"
    return source + (", overriding a live edit" if why.kind == WHY_BOTH else "")


def adopted(p: PipelinePlan) -> list[Proposal]:
    """The policy proposals git's changes carry out, each once (one rides on every change it made;
    a plan read back from JSON holds a copy per change, so they are told apart by content)."""
    found: dict[str, Proposal] = {}
    for change in p.changes:
        if change.proposal is not None:
            found.setdefault(json.dumps(change.proposal.to_dict(), sort_keys=True, default=str), change.proposal)
    return list(found.values())


def why_lines(changes: Sequence[Change]) -> list[tuple[Change | None, str]]:
    """One ``why`` for all changes when they share it (one commit), else one per change."""
    texts = [(c, why_text(c)) for c in changes if c.why is not None and c.proposal is None]
    shared = {c.why for c, _ in texts}
    if len(texts) > 1 and len(shared) == 1 and next(iter(shared)).kind == WHY_GIT:  # type: ignore[union-attr]
        return [(None, texts[0][1])]
    return [(c, t) for c, t in texts]


# --- evidence -------------------------------------------------------------------------------------

def is_reading(e: Evidence) -> bool:
    """A condition that fired, or context the policy asked for (not an input of the sizing)."""
    return not e.threshold.startswith(SIZING_INPUT)


def readings_rows(evidence: Iterable[Evidence]) -> list[tuple[str, str, str]]:
    """``(signal, value, threshold)`` of the readings behind a proposal or escalation."""
    return [(e.signal, number(e.measured, e.unit), e.threshold) for e in evidence if is_reading(e)]


def readings_table(evidence: Iterable[Evidence]) -> list[str]:
    rows = readings_rows(evidence)
    if not rows:
        return []
    window = next((e.window for e in evidence if e.window), "")
    header = ("reading" + (f" ({window})" if window else ""), "value", "threshold")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    return [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}".rstrip() for r in [header, *rows]]


def proposal_lines(p: Proposal) -> list[str]:
    """Everything behind a proposal (``--verbose``, Markdown ``<details>``): the sizing, every
    evidence with its query, the predictions and the policy's notes."""
    # A rationale is "why | sizing"; the sizing names one stage per "; "-separated part.
    why, _, sizing = p.rationale.partition(" | ")
    lines = [f"policy {p.policy}" + (f": {why}" if why else "")]
    lines += [f"  sizing: {part}" for part in sizing.split("; ") if part]
    lines += _evidence_lines(p.evidence)
    lines += [f"  predicted: {x.describe()}" for x in p.predictions]
    lines += [f"  note: {n}" for n in p.notes]
    return lines


def _evidence_lines(evidence: Iterable[Evidence]) -> list[str]:
    lines = []
    for e in evidence:
        lines += [f"  evidence: {e.describe()}", f"    query: {e.query}"]
    return lines


def escalation_lines(e: Escalation) -> list[str]:
    lines = [f"escalation from policy {e.policy}: {e.reason}"]
    lines += _evidence_lines(e.evidence)
    lines.append(f"  next step: {e.next_step}")
    return lines


def said_once(pipelines: Iterable[PipelinePlan]) -> list[tuple[str, list[str]]]:
    """Policy notes grouped by their text, each with the pipelines it applies to (first seen first)."""
    grouped: dict[str, list[str]] = {}
    for p in pipelines:
        for note in dict.fromkeys(p.policy_notes):
            grouped.setdefault(note, []).append(p.pipeline_id)
    return list(grouped.items())


def on_pipelines(ids: Sequence[str], total: int) -> str:
    if len(ids) == total and total > 1:
        return f"all {total} pipelines"
    shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    return shown


# --- summary --------------------------------------------------------------------------------------

def summary_line(plan: Plan) -> str:
    s = plan.summary
    text = (f"Plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
            f"{s['blocked']} blocked, {s['unchanged']} unchanged")
    extras = []
    if s["errors"]:
        extras.append(f"{s['errors']} error{'s' if s['errors'] != 1 else ''}")
    if s["proposals"]:
        extras.append(f"{s['proposals']} policy proposal{'s' if s['proposals'] != 1 else ''} not in git")
    if s["escalations"]:
        extras.append(f"{s['escalations']} escalation{'s' if s['escalations'] != 1 else ''}")
    if s.get("policy_errors"):
        extras.append(f"{s['policy_errors']} polic{'ies' if s['policy_errors'] != 1 else 'y'} could not be evaluated")
    return text + (f"; {', '.join(extras)}." if extras else ".")


def risk(cost: Cost) -> str:
    """``nothing irreversible``, or what cannot be undone (one named, several counted)."""
    if not cost.irreversible:
        return "nothing irreversible"
    if len(cost.irreversible) == 1:
        return f"irreversible: {cost.irreversible[0]}"
    return f"irreversible: {len(cost.irreversible)} changes ({'; '.join(cost.irreversible)})"


def cost_line(plan: Plan) -> str:
    """Cost and risk at a glance: restarts, downtime, resources, anything irreversible; and what
    adopting the proposals not yet in git would add."""
    cost = plan.cost
    text = f"Cost: {restarts_phrase(cost)}; {resources_phrase(cost.resources)}; {risk(cost)}"
    if plan.summary["proposals"]:
        pending = plan.pending_cost
        text += f". Adopting the proposal{'s' if plan.summary['proposals'] != 1 else ''}: {cost_phrase(pending)}"
    return text + "."


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


def next_step(plan: Plan) -> str:
    """What to do with this plan."""
    code = plan.exit_code
    if code == exitcodes.ERROR:
        return "fix the errors above and plan again."
    if code == exitcodes.BLOCKED:
        return "resolve what is blocked or escalated above; this plan cannot be applied as it is."
    s = plan.summary
    if s["create"] or s["update"] or s["delete"]:
        return ("merge to apply it (the apply workflow carries out this plan, verifies it and reports here), "
                "or comment `/gftune apply` to apply it before merging.")
    if s["proposals"]:
        return f"{ADOPT} (or wait for the scheduled tune pull request), then review its plan."
    return "nothing to apply: the live pipelines match git."


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
    resources = doc.get("resources") or {}
    replicas = [f"{s.get('source_id')} ingestor x{s['replicas']}" for s in resources.get("sources") or []
                if isinstance(s, dict) and s.get("replicas")]
    replicas += [f"transform x{t['replicas']}" for t in (resources.get("transform") or [])[:1]
                 if isinstance(t, dict) and t.get("replicas")]
    if isinstance(resources.get("sink"), dict) and resources["sink"].get("replicas"):
        replicas.append(f"sink x{resources['sink']['replicas']}")
    if replicas:
        lines.append("replicas: " + ", ".join(replicas))
    return lines


# --- text -----------------------------------------------------------------------------------------

def _wrapped(text: str, indent: str, width: int) -> list[str]:
    return textwrap.wrap(text, max(40, width - len(indent)), break_on_hyphens=False, break_long_words=False) or [""]


def pipeline_lines(p: PipelinePlan, *, verbose: bool = False, width: int = 120) -> list[tuple[str, str]]:
    """(style, line) pairs for one pipeline; the first is its title."""
    out: list[tuple[str, str]] = [(STYLES[p.action], _title(p))]
    if p.action == CREATE:
        out += [("green", f"    + {line}") for line in created_lines(p.payload.get("document") or {})]
    whys = dict((id(c), t) for c, t in why_lines(p.changes) if c is not None)
    for change in p.changes:
        out.append(("", f"    ~ {change_line(change)}"))
        if id(change) in whys:
            out.append(("cyan", f"        why: {whys[id(change)]}"))
    out += [("cyan", f"      why: {t}") for c, t in why_lines(p.changes) if c is None]
    for proposal in adopted(p):
        out += _proposal_block(proposal, f"why: policy {proposal.policy}:", verbose, width)
    for blocker in p.blocked:
        out.append(("magenta", f"    ! {blocker.code}: {blocker.message}"))
        out.append(("", f"      remedy: {blocker.remedy}"))
    for error in p.errors:
        out.append(("red", f"    x {error}"))
    for error in p.policy_errors:
        out.append(("red", f"    x policy error: {error}"))
    if p.lifecycle:
        downtime = f"   ({restarts_phrase(p.cost)})"
        out.append(("", f"    lifecycle: {lifecycle_line(p.lifecycle)}{downtime}"))
    out += [("red", f"    irreversible: {why}") for why in p.cost.irreversible]
    for proposal in p.proposals:
        out.append(("cyan", f"    ? {proposal.policy} proposes ({ADOPT}):"))
        out += [("cyan", f"      ~ {c.path}: {value(c.old)} → {value(c.new)}") for c in proposal.changes]
        out += _proposal_block(proposal, "", verbose, width)
    for escalation in p.escalations:
        out.append(("magenta", f"    ! escalation from policy {escalation.policy}:"))
        out += [("magenta", f"      {line}") for line in _wrapped(escalation_verdict(escalation), "      ", width)]
        out += [("", f"      {line}") for line in readings_table(escalation.evidence)]
        if verbose:
            out += [("dim", f"      {line}") for line in _evidence_lines(escalation.evidence)]
    out += [("dim", f"    note: {note}") for note in p.notes]
    return out


def _proposal_block(proposal: Proposal, lead: str, verbose: bool, width: int) -> list[tuple[str, str]]:
    indent = "      "
    text = (lead + " " if lead else "") + proposal_verdict(proposal, name_changes=False)
    out = [("cyan", indent + line) for line in _wrapped(text, indent, width)]
    out += [("", indent + line) for line in readings_table(proposal.evidence)]
    if verbose:
        out += [("dim", indent + line) for line in proposal_lines(proposal)[1:]]
    return out


def render_text(plan: Plan, *, color: bool = False, width: int = 120, verbose: bool = False) -> str:
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
    if plan.selection:
        console.print(escape(Selection.from_dict(plan.selection).summary()))
    for error in plan.errors:
        console.print(escape(f"error: {error}"), style="bold red")
    shown = [p for p in plan.pipelines if p.action != NOOP or p.proposals or p.escalations or p.policy_errors]
    unchanged = [p.pipeline_id for p in plan.pipelines if p not in shown]
    if not plan.pipelines:
        console.print("No pipelines in scope: nothing to plan (check --target / --shard and pipelines/).",
                      style="yellow")
    for p in shown:
        console.print()
        for style, line in pipeline_lines(p, verbose=verbose, width=width):
            console.print(escape(line), style=style or None)
    if unchanged:
        console.print()
        names = ", ".join(unchanged[:LIST_UNCHANGED]) + (" …" if len(unchanged) > LIST_UNCHANGED else "")
        console.print(escape(f"= {len(unchanged)} unchanged: {names}"), style="dim")
    notes = said_once(plan.pipelines)
    if notes:
        console.print()
        console.print(escape(f"{len(notes)} policy note{'s' if len(notes) != 1 else ''} (how the policies were "
                             f"evaluated){':' if verbose else ': --verbose shows them'}"), style="dim")
    for note, ids in notes if verbose else ():
        console.print(escape(f"  {note} — {on_pipelines(ids, len(plan.pipelines))}"), style="dim")
    if plan.unmanaged:
        console.print(escape(f"{len(plan.unmanaged)} live pipeline(s) not in git and not created by gftune are "
                             "left alone (see `gftune drift`)"), style="dim")
    for warning in plan.warnings:
        console.print(escape(f"warning: {warning}"), style="yellow")
    console.print()
    console.print(escape(summary_line(plan)), style="bold")
    if plan.pipelines:
        console.print(escape(cost_line(plan)), style="bold")
    if plan.exit_code == 0 and plan.pipelines:
        console.print("No changes. Live pipelines match git.", style="green")
    return masker.mask(buffer.getvalue())


# --- JSON -----------------------------------------------------------------------------------------

def render_json(plan: Plan) -> str:
    """The plan as JSON, its strings masked (print it as is: it is already masked)."""
    return masker.dumps(plan.to_dict(), indent=2, ensure_ascii=False)


def plan_file_text(plan: Plan) -> str:
    """The ``--out`` file: the plan document. Messages are masked; payloads are left intact (they
    hold references, never values; masking them could corrupt a field that shares a secret's text)."""
    data = plan.to_dict()
    payloads = [p.pop("payload") for p in data["pipelines"]]
    masked = masker.mask_data(data)
    for entry, payload in zip(masked["pipelines"], payloads, strict=True):
        entry["payload"] = payload
    return json.dumps(masked, indent=2, ensure_ascii=False) + "\n"
