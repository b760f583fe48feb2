"""The apply report: what changed, how the lifecycle went, what the metrics say, what to do next.

:func:`build` turns a run journal into a plain JSON-able document (``format_version`` "1"); the
renderers are pure functions of that document:

* :func:`render_text`: the terminal report (the seed's format: symptom before → after, source and
  sink rate, stream depth ratio, backpressure, verdict, next move);
* :func:`render_markdown`: the PR comment and the job summary, at three levels of detail (``full``
  with the timeline, evidence and a Mermaid chart of source vs sink rate; ``compact``;
  ``summary``), so that :func:`gftune.comment.fit` can stay within GitHub's size limits.

Every string leaves through :data:`gftune.desired.secrets.masker`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gftune.apply import losses
from gftune.apply.lifecycle import motivating_proposals
from gftune.apply.state import RunJournal
from gftune.apply.verify import Verdict
from gftune.desired.secrets import masker
from gftune.formatting import duration, number

FORMAT_VERSION = "1"
DETAIL_LEVELS = ("full", "compact", "summary")

# The before/after table, in the seed report's order (symptom first, added per pipeline).
TABLE_SIGNALS = ("source_rate", "sink_rate", "sink_source_ratio", "stream_depth_ratio", "ingestor_backpressure",
                 "sink_batch_p95", "sink_retry_rate", "sink_exhausted_rate", "dlq_rate", "consumer_lag",
                 "consumer_lag_growth")
LABELS = {
    "source_rate": "source rate", "sink_rate": "sink rate", "sink_source_ratio": "sink/source ratio",
    "stream_depth_ratio": "stream depth ratio", "ingestor_backpressure": "ingestor backpressure",
    "sink_batch_p95": "sink batch p95", "sink_retry_rate": "sink rows retried",
    "sink_exhausted_rate": "sink rows rejected", "backpressure_share": "time in backpressure",
    "dlq_rate": "DLQ writes", "consumer_lag": "Kafka lag", "consumer_lag_growth": "Kafka lag growth",
}
OUTCOME_ICON = {"verified": "✅", "improved": "⏭️", "applied with losses": "⚠️", "inconclusive": "⚠️", "reverted": "↩️",
                "restored": "🛑", "failed": "❌", "refused": "⛔", "unchanged": "➖", "blocked": "⛔", "pending": "⏳"}


# --- building --------------------------------------------------------------------------------------

def build(journal: RunJournal, *, now: float, exit_code: int | None = None, messages: Sequence[str] = ()
          ) -> dict[str, Any]:
    """The report document of a run (also what ``--format json`` prints); ``now`` (the caller's clock)
    ends the duration of a run that has not finished."""
    pipelines = [_pipeline(run, journal.started_at) for run in journal.pipelines.values()]
    counts: dict[str, int] = {}
    for p in pipelines:
        counts[p["outcome"]] = counts.get(p["outcome"], 0) + 1
    finished = journal.finished_at or now
    return {
        "format_version": FORMAT_VERSION,
        "run_id": journal.run_id, "plan_id": journal.plan_id, "git_commit": journal.git_commit,
        "owner": journal.owner, "started_at": _iso(journal.started_at),
        "finished_at": _iso(journal.finished_at) if journal.finished_at else None,
        "duration_s": round(finished - journal.started_at, 3),
        "exit_code": journal.exit_code if exit_code is None else exit_code,
        "summary": counts, "messages": list(messages), "pipelines": pipelines,
    }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _pipeline(run: Any, t0: float) -> dict[str, Any]:
    entry = run.entry or {}
    changes = []
    evidence: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    policies: list[str] = []
    for change in entry.get("changes", []):
        proposal = change.get("proposal") or {}
        changes.append({"path": change["path"], "old": change.get("old"), "new": change.get("new"),
                        "source": "policy " + proposal["policy"] if proposal else change.get("source", "git"),
                        "sensitive": bool(change.get("sensitive"))})
    for proposal, exact in motivating_proposals(entry):
        policies.append(proposal["policy"])
        evidence.extend(proposal.get("evidence", []))
        if exact:
            predictions.extend(proposal.get("predictions", []))
    symptom = next((e["signal"] for e in evidence if e.get("signal") and e["signal"] != "promql"), None)
    names = list(dict.fromkeys([*([symptom] if symptom else []), *(p["signal"] for p in predictions),
                                *TABLE_SIGNALS]))
    signals = []
    for name in names:
        b, a = run.baseline.get(name), run.after.get(name)
        if b is None and a is None:
            continue
        signals.append({"name": name, "label": LABELS.get(name, name), "symptom": name == symptom,
                        "unit": (a or b or {}).get("unit", ""),
                        "before": _value(b), "after": _value(a),
                        "before_status": (b or {}).get("status", "unknown"),
                        "after_status": (a or {}).get("status", "unknown"),
                        "query": (a or b or {}).get("query", "")})
    timeline = [{"step": s.name, "phase": s.phase, "state": s.state,
                 "start_s": round(s.started_at - t0, 3) if s.started_at else None,
                 "duration_s": round(s.duration, 3) if s.duration is not None else None,
                 "observed": s.observed, "attempts": s.attempts, "detail": s.detail}
                for s in run.steps if s.state != "pending" or s.phase != "finish"]
    verdict = run.verdict
    return {
        "pipeline_id": run.pipeline_id, "kind": run.kind, "outcome": run.outcome or "pending",
        "verdict": verdict, "revert_verdict": run.revert_verdict,
        "next_move": _next_move(run),
        "changes": changes, "policies": policies, "evidence": evidence, "predictions": predictions,
        "signals": signals, "timeline": timeline, "chart": run.series or {},
        "error": run.error, "notes": list(run.notes),
        "records": {"stops": list(run.records), "lost": losses.losses(run.records),
                    "lines": losses.describe(run.records)},
    }


def _value(reading: Mapping[str, Any] | None) -> float | None:
    if not reading or reading.get("status") != "ok":
        return None
    value = reading.get("value")
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def _next_move(run: Any) -> str:
    return {
        "verified": "accept",
        "improved": f"keep it: it helped, and {(run.verdict or {}).get('bottleneck') or 'the next stage'} limits now; "
                    "the change is tagged verified (`gftune:applied=`), so that stage's policies may scale it up at "
                    "once: run `gftune plan`",
        losses.WITH_LOSSES: "the change runs, but records went to the DLQ during the stop: inspect the DLQ "
                             "(GET /api/v1/pipeline/{id}/dlq/consume) and replay or accept them",
        "reverted": "reverted to the previous configuration: try a different tunable",
        "inconclusive": "investigate: the change is kept; look again when more data is in, or revert by hand",
        "restored": "the update failed and the previous configuration was restored: fix the cause and re-plan",
        "failed": "needs attention: see the error",
        "refused": "re-plan (`gftune plan --out plan.json`) and apply the new plan",
        "unchanged": "nothing to do",
        "blocked": "not applied: resolve the blocker shown by `gftune plan`",
    }.get(run.outcome or "", "resume with `gftune apply --resume`")


# --- formatting helpers ----------------------------------------------------------------------------

def _measured(value: float | None, unit: str = "") -> str:
    """A reading in a report: the one number format, and ``n/a`` for a reading that was not taken."""
    return "n/a" if value is None else number(value, unit)


def _change_value(change: Mapping[str, Any], key: str) -> str:
    if change.get("sensitive"):
        return "(sensitive)"
    value = change.get(key)
    if value is None:
        return "(unset)"
    return value if isinstance(value, str) else json.dumps(value)


def _verdict_line(p: Mapping[str, Any]) -> str:
    verdict = p.get("verdict") or {}
    # a journal written before verdicts carried their label: the one wording is Verdict.label's
    label = verdict.get("label") or (Verdict.from_dict(verdict).label if verdict.get("outcome") else "not judged")
    return f"{label}" + (f" ({'; '.join(verdict.get('reasons', []))})" if verdict.get("reasons") else "")


def _closing(p: Mapping[str, Any]) -> list[tuple[str, str]]:
    """How both renderers end a pipeline, as (label, text): the records a stop cost, the verdict (and the
    revert's), the next move."""
    rows = [("Records", line) for line in (p.get("records") or {}).get("lines", [])]
    rows.append(("Verdict", _verdict_line(p)))
    if p.get("revert_verdict"):
        rows.append(("Revert verified", _verdict_line({"verdict": p["revert_verdict"]})))
    rows.append(("Next move", p["next_move"]))
    return rows


# --- text --------------------------------------------------------------------------------------

def render_text(report: Mapping[str, Any]) -> str:
    lines = [f"gftune apply — run {report['run_id']} (plan {report['plan_id']}, commit "
             f"{(report.get('git_commit') or 'unknown')[:12]}) in {duration(report['duration_s'])}"]
    for message in report.get("messages", []):
        lines.append(f"  ! {message}")
    for p in report["pipelines"]:
        lines.append("")
        lines.append(f"{p['pipeline_id']}: {p['outcome'].upper()}")
        if p["changes"]:
            lines.append("Change applied:")
            for c in p["changes"]:
                lines.append(f"  {c['path']}: {_change_value(c, 'old')} -> {_change_value(c, 'new')}  [{c['source']}]")
        if p["timeline"]:
            lines.append("Lifecycle:")
            for s in p["timeline"]:
                start = _offset(s["start_s"])
                observed = f" [{s['observed']}]" if s["observed"] else ""
                detail = f"  {s['detail']}" if s["detail"] else ""
                lines.append(f"  {start:>8} {s['step']:<32} {s['state']:<8} {duration(s['duration_s']):>8}"
                             f"{observed}{detail}")
        if p["signals"]:
            window = (p.get("verdict") or {}).get("window_s")
            lines.append("Observation window: " + (duration(window) if window else "n/a"))
            symptom = next((s for s in p["signals"] if s["symptom"]), None)
            if symptom:
                lines.append(f"Symptom metric: {symptom['label']}")
                lines.append(f"  Before: {_measured(symptom['before'], symptom['unit'])}")
                lines.append(f"  After:  {_measured(symptom['after'], symptom['unit'])}")
            lines.append("Other signals:")
            for s in p["signals"]:
                if s is symptom:
                    continue
                lines.append(f"  {s['label'] + ':':<24} {_measured(s['before'], s['unit'])} -> "
                             f"{_measured(s['after'], s['unit'])}")
        lines += [f"{label}: {text}" for label, text in _closing(p)]
        if p.get("error"):
            lines.append(f"Error: {p['error']}")
        for note in p.get("notes", []):
            lines.append(f"Note: {note}")
    return masker.mask("\n".join(lines) + "\n")


# --- markdown -----------------------------------------------------------------------------------

def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _summary_table(report: Mapping[str, Any]) -> list[str]:
    rows = ["| pipeline | outcome | verdict | next move |", "|---|---|---|---|"]
    for p in report["pipelines"]:
        icon = OUTCOME_ICON.get(p["outcome"], "")
        rows.append(f"| `{p['pipeline_id']}` | {icon} {p['outcome']} | {_md_escape(_verdict_line(p))} | "
                    f"{_md_escape(p['next_move'])} |")
    return rows


def _signals_table(p: Mapping[str, Any]) -> list[str]:
    rows = ["| signal | before | after |", "|---|---:|---:|"]
    for s in p["signals"]:
        name = f"**{s['label']}** (symptom)" if s["symptom"] else s["label"]
        rows.append(f"| {name} | {_measured(s['before'], s['unit'])} | {_measured(s['after'], s['unit'])} |")
    return rows


def mermaid_chart(p: Mapping[str, Any]) -> list[str]:
    """A Mermaid ``xychart-beta`` of source vs sink rate over the observation window."""
    chart = p.get("chart") or {}
    t, source, sink = chart.get("t") or [], chart.get("source") or [], chart.get("sink") or []
    points = [(x, a, b) for x, a, b in zip(t, source, sink, strict=False)
              if _finite(a) and _finite(b)]
    if len(points) < 2:
        return []
    top = max(max(a, b) for _, a, b in points)
    return [
        '```mermaid',
        '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "#2563eb, #dc2626"}}}}%%',
        "xychart-beta",
        f'  title "{p["pipeline_id"]}: source (blue) vs sink (red) rate"',
        '  x-axis "seconds after Running" [' + ", ".join(f"{x:.0f}" for x, _, _ in points) + "]",
        f'  y-axis "records/s" 0 --> {_nice_ceiling(top)}',
        "  line [" + ", ".join(f"{a:.0f}" for _, a, _ in points) + "]",
        "  line [" + ", ".join(f"{b:.0f}" for _, _, b in points) + "]",
        "```",
    ]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _nice_ceiling(value: float) -> int:
    if value <= 0:
        return 1
    magnitude = 10 ** max(math.floor(math.log10(value)), 0)
    return int(math.ceil(value * 1.1 / magnitude) * magnitude)


def render_markdown(report: Mapping[str, Any], detail: str = "full") -> str:
    if detail not in DETAIL_LEVELS:
        raise ValueError(f"detail must be one of {', '.join(DETAIL_LEVELS)}")
    out = [f"### gftune apply: {_headline(report)}", "",
           f"Run `{report['run_id']}` · plan `{report['plan_id']}` · commit "
           f"`{(report.get('git_commit') or 'unknown')[:12]}` · {duration(report['duration_s'])}", ""]
    out += [f"> {m}" for m in report.get("messages", [])]
    out += _summary_table(report)
    if detail == "summary":
        out += ["", "_Per-pipeline detail left out to fit GitHub's size limit; see the job summary or "
                "`gftune apply --format json`._"]
        return masker.mask("\n".join(out) + "\n")
    for p in report["pipelines"]:
        out += ["", f"#### `{p['pipeline_id']}`: {OUTCOME_ICON.get(p['outcome'], '')} {p['outcome']}", ""]
        if p["changes"]:
            out += ["| field | before | after | source |", "|---|---|---|---|"]
            out += [f"| `{c['path']}` | {_md_escape(_change_value(c, 'old'))} | {_md_escape(_change_value(c, 'new'))} "
                    f"| {_md_escape(c['source'])} |" for c in p["changes"]]
            out.append("")
        if p["signals"]:
            out += [*_signals_table(p), ""]
        closing = [f"**{label}:** {_md_escape(text)}  " for label, text in _closing(p)]
        out += [*closing[:-1], closing[-1].rstrip()]  # the last line ends the paragraph: no line break
        if p.get("error"):
            out += ["", f"**Error:** {_md_escape(p['error'])}"]
        if detail == "full":
            out += _full_detail(p)
    return masker.mask("\n".join(out) + "\n")


def _full_detail(p: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    chart = mermaid_chart(p)
    if chart:
        out += ["", *chart]
    checks = (p.get("verdict") or {}).get("checks", [])
    if checks:
        out += ["", "<details><summary>Checks</summary>", "", "| check | outcome | detail |", "|---|---|---|"]
        out += [f"| {_md_escape(c['text'])} | {c['outcome']} | {_md_escape(c['reason'])} |" for c in checks]
        out += ["", "</details>"]
    if p["evidence"]:
        out += ["", "<details><summary>Evidence</summary>", "", "| policy | signal | measured | threshold | query |",
                "|---|---|---:|---|---|"]
        out += [f"| {_md_escape(e.get('policy', ''))} | {_md_escape(e.get('signal', ''))} | "
                f"{_measured(e.get('measured'), e.get('unit', ''))} | {_md_escape(e.get('threshold', ''))} | "
                f"`{_md_escape(e.get('query', ''))}` |" for e in p["evidence"]]
        out += ["", "</details>"]
    if p["timeline"]:
        out += ["", "<details><summary>Lifecycle timeline</summary>", "",
                "| start | step | state | duration | status |", "|---:|---|---|---:|---|"]
        out += [f"| {_offset(s['start_s'])} | {_md_escape(s['step'])} | "
                f"{s['state']} | {duration(s['duration_s'])} | {s['observed'] or ''} |" for s in p["timeline"]]
        out += ["", "</details>"]
    if p.get("notes"):
        out += [""] + [f"- {_md_escape(n)}" for n in p["notes"]]
    return out


def _offset(start_s: float | None) -> str:
    return f"+{start_s:.1f}s" if start_s is not None else ""


def _headline(report: Mapping[str, Any]) -> str:
    outcomes = [p["outcome"] for p in report["pipelines"]]
    if not outcomes:
        return "nothing to apply"
    parts = []
    for outcome in ("verified", "improved", losses.WITH_LOSSES, "reverted", "inconclusive", "restored", "failed",
                    "refused", "blocked", "unchanged", "pending"):
        n = outcomes.count(outcome)
        if n:
            parts.append(f"{n} {outcome}")
    return ", ".join(parts)


def markdown_renderings(report: Mapping[str, Any]) -> list[str]:
    """Most detailed first: what :func:`gftune.comment.fit` chooses from."""
    return [render_markdown(report, level) for level in DETAIL_LEVELS]


def render_json(report: Mapping[str, Any]) -> str:
    return masker.dumps(report, indent=2)


def pipeline_ids(report: Mapping[str, Any]) -> Iterable[str]:
    return (p["pipeline_id"] for p in report["pipelines"])
