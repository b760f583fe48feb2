"""A proposal's or escalation's verdict in one paragraph, and the cost of a change in one phrase.

Pure text from the data (:class:`~gftune.plan.assessment.Assessment`, :class:`~gftune.plan.assessment.Cost`,
the proposal's changes and expectations); every surface that shows a verdict (text plan, Markdown
PR comment, tune's PR body) calls these, so they all say the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gftune.formatting import number
from gftune.plan.assessment import NO_BACKLOG, Assessment, Cost, ResourceDelta
from gftune.plan.evidence import Escalation, Evidence, FieldChange, Proposal


def rate(value: float | None) -> str:
    return number(value, "records/s")


def records(value: float) -> str:
    """``2.79 M``, ``105,000``, ``850``."""
    return f"{value / 1e6:.3g} M" if abs(value) >= 1e6 else f"{value:,.0f}"


def about(seconds: float) -> str:
    """A rough duration for prose: ``~45 s``, ``~7 min``, ``~2.5 h``."""
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.2g} h"


def _signed(value: float, text: str) -> str:
    return ("+" if value > 0 else "-") + text


def cpu(cores: float) -> str:
    return _signed(cores, f"{abs(cores):.3g} CPU")


def memory(num_bytes: float) -> str:
    size = abs(num_bytes)
    gib = size / 2**30
    # Whole or simple fractions of GiB read as GiB (4.5 GiB); others as the MiB they were given in.
    text = f"{gib:g} GiB" if gib >= 1 and abs(gib * 100 - round(gib * 100)) < 1e-6 else f"{size / 2**20:,.0f} MiB"
    return _signed(num_bytes, text)


def resources_phrase(delta: ResourceDelta, *, full: bool = False) -> str:
    """``+3 sink pods; requests +1.5 CPU, +1,500 MiB`` or ``no resource change``. Requests are what the
    cluster reserves (the cost); limits are shown when the requests do not change (a limit raised in
    place), or with ``full``."""
    if delta.zero:
        return "no resource change" + (f" known ({', '.join(delta.unknown)}: requests/limits not set)"
                                       if delta.unknown else "")
    parts = []
    if delta.pods:
        pods = ", ".join(f"{count:+d} {stage}" for stage, count in delta.pods.items())
        parts.append(f"{pods} pod{'s' if sum(abs(c) for c in delta.pods.values()) != 1 else ''}")
    for label, cores, size in (("requests", delta.cpu_requests, delta.memory_requests),
                               ("limits", delta.cpu_limits, delta.memory_limits)):
        amounts = [text for value, text in ((cores, cpu(cores)), (size, memory(size))) if abs(value) > 1e-9]
        if amounts and (full or label == "requests" or not any("requests" in part for part in parts)):
            parts.append(f"{label} {', '.join(amounts)}")
    if delta.unknown:
        parts.append(f"not counted: {', '.join(delta.unknown)} (requests/limits not set)")
    return "; ".join(parts)


def restarts_phrase(cost: Cost) -> str:
    if not cost.restarts:
        return "no restart"
    count = f"{cost.restarts} restart{'s' if cost.restarts != 1 else ''}"
    return f"{count} (~{_seconds(cost.downtime_s)} of downtime)" if cost.downtime_s else count


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else about(seconds)[1:]


def cost_phrase(cost: Cost, *, full: bool = False) -> str:
    """``1 restart (~60 s of downtime); +2 sink pods; requests +1 CPU, +1000 MiB`` (+ what is irreversible)."""
    text = f"{restarts_phrase(cost)}; {resources_phrase(cost.resources, full=full)}"
    if cost.irreversible:
        text += "; irreversible: " + "; ".join(cost.irreversible)
    return text


_FIELD_NAMES = {"replicas": "replicas", "limits.cpu": "CPU limit", "limits.memory": "memory limit",
                "requests.cpu": "CPU request", "requests.memory": "memory request", "storage.size": "storage"}


def change_phrase(change: FieldChange) -> str:
    """``sink replicas 1 → 4``, ``sink.max_batch_size 1,000 → 2,000``."""
    head, _, rest = change.path.partition(".")
    label = change.path
    if head == "resources" and rest:
        component, _, field = rest.partition(".")
        stage = {"sources": "ingestor", "transform": "transform"}.get(component.split("[", 1)[0],
                                                                     component.split("[", 1)[0])
        label = f"{stage} {_FIELD_NAMES.get(field, field)}"
    return f"{label} {_shown(change.old)} → {_shown(change.new)}"


def _shown(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"
    return "unset" if value is None else str(value)


def _joined(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _load_sentence(a: Assessment, evidence: Sequence[Evidence] = ()) -> str:
    stage = a.stage or "pipeline"
    load = a.load
    if load is not None:
        if load >= 1:
            text = (f"The {stage} is the bottleneck at {load:.0%} of capacity: {rate(a.capacity.value)} for "
                    f"{rate(a.arriving.value)} arriving")
        else:
            text = f"The {stage} runs at {load:.0%} of capacity: {rate(a.arriving.value)} of {rate(a.capacity.value)}"
    else:
        text = f"The {stage}'s capacity is not established ({a.capacity.missing or 'unknown'})"
        if a.arriving.known:
            text += f"; {rate(a.arriving.value)} arriving"
        if fired := trigger(evidence):
            text += f"; the trigger: {fired}"
    if a.backlog.known and a.backlog.value:
        text += f"; {records(float(a.backlog.value))} records queued"
    return text + "."


def _predicted_sentence(p: Proposal, a: Assessment, name_changes: bool) -> str:
    """``With <changes>: 16,000/s predicted (then the ingestor limits it), backlog drained in ~4 min.``
    (``Predicted: …`` when the changes are listed right above)."""
    named = p.changes and name_changes
    lead = f"With {_joined([change_phrase(c) for c in p.changes])}: " if named else "Predicted: "
    if a.predicted.known:
        text = lead + rate(a.predicted.value) + (" predicted" if named else "")
        if a.limited_by and a.limited_by != a.stage:
            text += f" (then the {a.limited_by} limits it)"
        if a.drain.known:
            text += f", backlog drained in {about(float(a.drain.value))}"  # type: ignore[arg-type]
        elif a.backlog.value and a.drain.missing != NO_BACKLOG:
            text += f"; backlog drain not established ({a.drain.missing})"
    else:
        text = (f"{lead}predicted" if named else "Predicted") + f" capacity not established ({a.predicted.missing})"
    if p.predictions and not a.predicted.known:
        text += "; apply verifies " + ", ".join(x.describe() for x in p.predictions)
    return text + "."


def trigger(evidence: Sequence[Evidence]) -> str:
    """The first measured condition that fired, e.g. ``sink_exhausted_rate 0.26/s (> 0.001 for 1m)``."""
    fired = [e for e in evidence if e.measured is not None and not e.threshold.startswith(("sizing input", "context"))]
    if not fired:
        return ""
    e = fired[0]
    return f"{e.signal} {number(e.measured, e.unit)} ({e.threshold})"


def proposal_verdict(p: Proposal, cost: Cost | None = None, *, name_changes: bool = True) -> str:
    """Bottleneck and load, the change and what it should give, and what it costs. ``name_changes``
    False says "the change" where the changed fields are listed right above the paragraph."""
    cost = cost if cost is not None else p.cost
    a = p.assessment
    if a is None:  # a plan saved by a gftune without assessments
        sentences = [f"Policy {p.policy} proposes {_joined([change_phrase(c) for c in p.changes])}."]
    elif a.stage is None:
        why = trigger(p.evidence)
        sentences = [f"Policy {p.policy}" + (f" fired on {why}" if why else "") + ".",
                     _predicted_sentence(p, a, name_changes)]
    else:
        sentences = [_load_sentence(a, p.evidence), _predicted_sentence(p, a, name_changes)]
    if cost is not None:
        sentences.append(f"Cost: {cost_phrase(cost)}.")
    return " ".join(sentences)


def escalation_verdict(e: Escalation) -> str:
    """What would help, why gftune cannot do it, and the next step."""
    a = e.assessment
    if a is not None and a.needs:
        text = f"Needs {a.needs}: " + _load_sentence(a)[0].lower() + _load_sentence(a)[1:-1]
        replica = "no replica change" if any(w in a.blocked_by for w in ("partitions", "frozen", "max_replicas")) \
            else "no allowed change"
        text += f"; {replica} can help ({a.blocked_by})."
    else:
        why = trigger(e.evidence)
        text = f"Not a capacity problem: {e.reason.rstrip('.')}" + (f" ({why})" if why else "") + "."
        text += " No change is proposed."
    return f"{text} Next: {e.next_step}"
