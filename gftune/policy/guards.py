"""Always-on guards: bounds no tuning proposal may cross, whatever a policy asks for.

Pure functions over plain data. :func:`apply_guards` takes the field changes a policy (or
``scale_to_fit``) wants and returns the changes that are allowed, clamped where a bound was hit
(with a note saying so), plus the changes that are *blocked* with the reason and the next step a
human has to take. The guards, from the scaling guide and the API reference:

* ingestor replicas <= the Kafka partitions of the topic (``tuning.constraints.partitions``, else
  the partition count measured from kafka_exporter): extra replicas sit idle;
* join stays at 1 replica (the API rejects anything else);
* transform replicas are frozen when dedup is on (immutable after creation);
* immutable fields of an existing pipeline (``nats.stream.maxAge/maxBytes/maxMsgs``, transform
  ``storage.size``) are never changed in place: that needs a new pipeline;
* a sink fetch (``max_batch_size x workers``) must fit twice in the stream's ``maxMsgs``;
* the sink's batch buffers must fit its memory limit: ``base + max_batch_size x workers x row
  bytes x factor <= 80% of limits.memory``; the limit is raised with the batch (within
  ``memory_ceiling``), else the batch is clamped;
* memory within ``memory_ceiling``, storage within ``storage_ceiling``, replicas within
  ``max_replicas`` (default 10) and at least 1.

The module also holds the arithmetic of field values (integers, CPU and memory quantities, Go
durations, NATS byte sizes) that policies and guards share.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

from gftune.desired import paths
from gftune.glassflow import resources as res
from gftune.glassflow.durations import DurationError, format_duration, parse_duration
from gftune.glassflow.quantities import QuantityError, format_cpu, format_memory, parse_nats_bytes, parse_quantity
from gftune.plan.evidence import FieldChange

DEFAULT_MAX_REPLICAS = 10
DEFAULT_CPU_CEILING = 8.0  # cores per replica; the scaling guide's largest sink used 5
SINK_BASE_MEMORY = 128 * 2**20  # what a sink pod holds besides its batches
ROW_MEMORY_FACTOR = 2.0  # a record held in a batch costs ~2x its wire size (decoded + encoded)
MEMORY_HEADROOM = 0.8  # use at most 80% of a limit (Flink autotuning's 20% overhead)
DEFAULT_ROW_BYTES = 1536.0  # the scaling guide's average record when nothing is measured

# --- field values --------------------------------------------------------------------------------

INT = "int"
NUMBER = "number"
CPU = "cpu"
MEMORY = "memory"
DURATION = "duration"
NATS_BYTES = "nats_bytes"


def field_kind(path: str, current: Any = None) -> str:
    """What kind of value a field holds, from its path (and current value)."""
    last = path.rsplit(".", 1)[-1]
    if last == "cpu":
        return CPU
    if last in ("memory", "size"):
        return MEMORY
    if last == "maxBytes":
        return NATS_BYTES
    if last in ("max_delay_time", "time_window", "maxAge"):
        return DURATION
    if last in ("replicas", "max_batch_size", "maxMsgs"):
        return INT
    if isinstance(current, int) and not isinstance(current, bool):
        return INT
    return NUMBER


def to_number(kind: str, value: Any) -> float | None:
    """A field value as a number: cores, bytes, seconds, or the number itself; None if unreadable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if kind == CPU:
            return float(parse_quantity(str(value)))
        if kind == MEMORY:
            return float(parse_quantity(str(value)))
        if kind == NATS_BYTES:
            return float(parse_nats_bytes(str(value)))
        if kind == DURATION:
            if isinstance(value, int | float):
                return float(value)
            return parse_duration(str(value), allow_days=True) / 1e9
        return float(value)
    except (QuantityError, DurationError, ValueError, TypeError):
        return None


def growth(change: FieldChange) -> float | None:
    """How much a change raises its field's number (negative: lowers it); None when either side is
    not a number."""
    kind = field_kind(change.path, change.new)
    old, new = to_number(kind, change.old), to_number(kind, change.new)
    if old is None or new is None:
        return None
    return new - old


def from_number(kind: str, number: float, *, rounding: str = "nearest") -> Any:
    """A number back in the field's own form (``3`` cores -> ``"3"``, 2.5 s -> ``"2.5s"``)."""
    if kind == INT:
        if rounding == "up":
            return math.ceil(number - 1e-9)
        if rounding == "down":
            return math.floor(number + 1e-9)
        return round(number)
    if kind == CPU:
        millis = number * 1000
        millis = math.ceil(millis - 1e-6) if rounding == "up" else math.floor(millis + 1e-6) \
            if rounding == "down" else round(millis)
        return format_cpu(millis / 1000)
    if kind in (MEMORY, NATS_BYTES):
        if rounding == "down":
            mib = math.floor(number / 2**20 + 1e-9)
            return f"{mib // 1024}Gi" if mib % 1024 == 0 and mib else f"{max(mib, 1)}Mi"
        return format_memory(number)
    if kind == DURATION:
        # Readable in git: whole minutes from 10 minutes up, whole seconds from 10 seconds up.
        unit = 60.0 if number >= 600 else 1.0 if number >= 10 else 0.001
        steps = number / unit
        steps = math.ceil(steps - 1e-9) if rounding == "up" else math.floor(steps + 1e-9) \
            if rounding == "down" else round(steps)
        millis = round(steps * unit * 1000)
        return format_duration(millis * 1_000_000).replace("m0s", "m").replace("h0m", "h")
    return round(number, 6)


_PERCENT = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*%\s*$")


def parse_amount(kind: str, raw: Any, current: float | None = None) -> float | None:
    """A bound or step in the field's unit: a number, a quantity/duration string, or ``"50%"``
    of the current value."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        match = _PERCENT.match(raw)
        if match:
            return None if current is None else abs(current) * float(match.group(1)) / 100.0
    if isinstance(raw, int | float):
        return float(raw)
    return to_number(kind, raw)


# --- guard context and results -------------------------------------------------------------------

@dataclass(frozen=True)
class Blocked:
    """A change a guard refuses: why, and what a human can do instead."""

    path: str
    reason: str
    next_step: str


@dataclass
class GuardContext:
    doc: dict[str, Any]  # the v3 document in effect before the change (live, else git)
    constraints: dict[str, Any] = field(default_factory=dict)
    exists: bool = True  # the pipeline exists live (immutability applies)
    immutable: tuple[str, ...] = ()  # fields_policy.immutable of the live pipeline (internal paths)
    measured_partitions: int | None = None  # from kafka_exporter, when the constraint is absent
    row_bytes: float | None = None  # measured mean record size in sink batches

    @property
    def max_replicas(self) -> int:
        value = self.constraints.get("max_replicas")
        return int(value) if isinstance(value, int) and value >= 1 else DEFAULT_MAX_REPLICAS

    def ceiling(self, name: str) -> float | None:
        value = self.constraints.get(name)
        return to_number(MEMORY, value) if value is not None else None

    def partitions(self, source_id: str | None = None) -> int | None:
        value = self.constraints.get("partitions")
        if isinstance(value, dict) and source_id in value:
            return int(value[source_id])
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return self.measured_partitions


@dataclass
class GuardOutcome:
    changes: list[FieldChange]
    notes: list[str] = field(default_factory=list)
    blocked: list[Blocked] = field(default_factory=list)


def _internal_path(path: str, doc: dict[str, Any]) -> str | None:
    """The fields_policy name of a v3 resources path (``resources.nats.stream.maxAge`` ->
    ``nats/stream/maxAge``), for the immutability check."""
    steps = paths.parse(path)
    keys = [s.name for s in steps if isinstance(s, paths.Key)]
    if keys[:3] == ["resources", "nats", "stream"] and len(keys) == 4:
        return f"nats/stream/{keys[3]}"
    if keys[:2] == ["resources", "transform"]:
        rest = "/".join(keys[2:])
        return f"transform/{rest}" if rest else None
    return None


def _immutable(ctx: GuardContext) -> set[str]:
    names = set(ctx.immutable) or set(res.immutable_paths(ctx.doc))
    if res.dedup_enabled(ctx.doc):
        names.add("transform/replicas")
    return names


def _source_id(path: str) -> str | None:
    for step in paths.parse(path):
        if isinstance(step, paths.Select) and step.source_id is not None:
            return step.source_id
    return None


def _sink_workers(cpu: float | None) -> int:
    """``GOMAXPROCS - 2`` (min 1); GOMAXPROCS follows the CPU limit rounded up."""
    if cpu is None:
        return 1
    return max(1, math.ceil(cpu - 1e-9) - 2)


def sink_workers(cpu: float | None) -> int:
    return _sink_workers(cpu)


def sink_memory_needed(batch: float, workers: int, row_bytes: float) -> float:
    """Bytes a sink pod needs for ``workers`` batches of ``batch`` rows in flight."""
    return SINK_BASE_MEMORY + batch * workers * row_bytes * ROW_MEMORY_FACTOR


def largest_fitting_batch(limit_bytes: float, workers: int, row_bytes: float) -> int:
    usable = limit_bytes * MEMORY_HEADROOM - SINK_BASE_MEMORY
    return max(1, int(usable / (workers * row_bytes * ROW_MEMORY_FACTOR))) if usable > 0 else 1


def _nice_down(value: int) -> int:
    """Round a batch size down to 2 significant digits (1000s stay readable in git)."""
    if value < 100:
        return max(1, value)
    magnitude = 10 ** (len(str(value)) - 2)
    return value // magnitude * magnitude


# --- the guards ----------------------------------------------------------------------------------

def apply_guards(changes: list[FieldChange], ctx: GuardContext) -> GuardOutcome:
    """Clamp or block ``changes`` so that the result respects every guard."""
    outcome = GuardOutcome(changes=[])
    immutable = _immutable(ctx)
    dedup = res.dedup_enabled(ctx.doc)
    for change in changes:
        guarded = _guard_one(change, ctx, immutable, dedup, outcome)
        if guarded is not None and guarded.new != guarded.old:
            outcome.changes.append(guarded)
    _guard_stream_fit(ctx, outcome)
    _guard_sink_memory(ctx, outcome)
    return outcome


def _clamp_note(path: str, wanted: Any, got: Any, why: str) -> str:
    return f"{path}: {wanted} clamped to {got} ({why})"


def _guard_one(change: FieldChange, ctx: GuardContext, immutable: set[str], dedup: bool,
               outcome: GuardOutcome) -> FieldChange | None:
    path, new = change.path, change.new
    internal = _internal_path(path, ctx.doc)
    if ctx.exists and internal in immutable:
        if internal == "transform/replicas":
            outcome.blocked.append(Blocked(
                path, "transform replicas are frozen while deduplication is on",
                "decide the transform replica count before enabling dedup; changing it needs a new pipeline "
                "(delete and recreate), which gftune does not do in place"))
        else:
            outcome.blocked.append(Blocked(
                path, f"{internal} is immutable after the pipeline is created",
                f"create a new pipeline with {path} = {new} and move traffic to it; gftune never changes "
                "immutable stream or storage fields in place"))
        return None
    keys = [s.name for s in paths.parse(path) if isinstance(s, paths.Key)]
    last = keys[-1] if keys else ""
    if last == "replicas" and isinstance(new, int | float):
        wanted = int(new)
        if keys[:2] == ["resources", "join"]:
            if wanted != 1:
                outcome.blocked.append(Blocked(path, "the join component supports exactly 1 replica",
                                               "scale the left and right ingestors and the sink instead, or "
                                               "split the workload across several join pipelines"))
            return None
        if keys[:2] == ["resources", "transform"] and dedup and ctx.exists:
            outcome.blocked.append(Blocked(path, "transform replicas are frozen while deduplication is on",
                                           "changing them needs a new pipeline (delete and recreate)"))
            return None
        value = max(1, wanted)
        if value > ctx.max_replicas:
            outcome.notes.append(_clamp_note(path, wanted, ctx.max_replicas, f"max_replicas {ctx.max_replicas}"))
            value = ctx.max_replicas
        if keys[:2] == ["resources", "sources"]:
            partitions = ctx.partitions(_source_id(path))
            if partitions is not None and value > partitions:
                outcome.notes.append(_clamp_note(path, value, partitions,
                                                 f"the topic has {partitions} partitions; more replicas would idle"))
                value = partitions
            if partitions is not None and isinstance(change.old, int) and value <= change.old < wanted:
                outcome.blocked.append(Blocked(
                    path, f"ingestor replicas already equal the topic's {partitions} partitions",
                    f"increase the Kafka topic's partitions (outside GlassFlow), set tuning.constraints.partitions, "
                    f"then raise {path}"))
                return None
        return FieldChange(path, change.old, value)
    if last in ("memory",) and keys[:1] == ["resources"]:
        ceiling = ctx.ceiling("memory_ceiling")
        wanted_bytes = to_number(MEMORY, new)
        if ceiling is not None and wanted_bytes is not None and wanted_bytes > ceiling:
            capped = from_number(MEMORY, ceiling, rounding="down")
            outcome.notes.append(_clamp_note(path, new, capped, f"memory_ceiling {ctx.constraints['memory_ceiling']}"))
            return FieldChange(path, change.old, capped)
    if last == "cpu" and keys[:1] == ["resources"]:
        cores = to_number(CPU, new)
        if cores is not None and cores > DEFAULT_CPU_CEILING:
            capped = from_number(CPU, DEFAULT_CPU_CEILING)
            outcome.notes.append(_clamp_note(path, new, capped, f"at most {DEFAULT_CPU_CEILING:g} cores per replica"))
            return FieldChange(path, change.old, capped)
    if (last == "size" and keys[:2] == ["resources", "transform"]) or last == "maxBytes":
        ceiling = ctx.ceiling("storage_ceiling")
        kind = NATS_BYTES if last == "maxBytes" else MEMORY
        wanted_bytes = to_number(kind, new)
        if ceiling is not None and wanted_bytes is not None and wanted_bytes > ceiling:
            capped = from_number(MEMORY, ceiling, rounding="down")
            why = f"storage_ceiling {ctx.constraints['storage_ceiling']}"
            outcome.notes.append(_clamp_note(path, new, capped, why))
            return FieldChange(path, change.old, capped)
    return change


def _value_after(path: str, ctx: GuardContext, outcome: GuardOutcome) -> Any:
    for change in outcome.changes:
        if change.path == path:
            return change.new
    return paths.get(ctx.doc, path)


def _guard_stream_fit(ctx: GuardContext, outcome: GuardOutcome) -> None:
    """A sink fetches ``max_batch_size x workers`` messages at once: the stream (maxMsgs, immutable)
    must hold at least two such fetches, or batches never fill and the sink waits out its delay."""
    change = next((c for c in outcome.changes if c.path == "sink.max_batch_size"), None)
    max_msgs = paths.get(ctx.doc, "resources.nats.stream.maxMsgs")
    if change is None or not isinstance(change.new, int) or not isinstance(max_msgs, int) or max_msgs <= 0:
        return
    workers = _sink_workers(to_number(CPU, _value_after("resources.sink.limits.cpu", ctx, outcome)))
    fitting = _nice_down(max_msgs // (2 * workers))
    if change.new <= fitting:
        return
    why = (f"the stream holds {max_msgs} messages (maxMsgs, immutable): room for two fetches of "
           f"batch x {workers} worker(s)")
    if isinstance(change.old, int) and fitting <= change.old:
        outcome.changes = [c for c in outcome.changes if c.path != change.path]
        outcome.notes.append(f"sink.max_batch_size not raised: {why}")
    else:
        _replace(outcome, FieldChange(change.path, change.old, fitting))
        outcome.notes.append(_clamp_note(change.path, change.new, fitting, why))


def _guard_sink_memory(ctx: GuardContext, outcome: GuardOutcome) -> None:
    """Batch x workers x row size must fit the sink's memory limit: raise the limit, else clamp."""
    watched = {"sink.max_batch_size", "resources.sink.limits.cpu", "resources.sink.limits.memory"}
    if not any(c.path in watched for c in outcome.changes):
        return
    batch = _value_after("sink.max_batch_size", ctx, outcome)
    cpu = to_number(CPU, _value_after("resources.sink.limits.cpu", ctx, outcome))
    limit_raw = _value_after("resources.sink.limits.memory", ctx, outcome)
    limit = to_number(MEMORY, limit_raw)
    if not isinstance(batch, int) or limit is None:
        return
    workers = _sink_workers(cpu)
    row = ctx.row_bytes or DEFAULT_ROW_BYTES
    needed = sink_memory_needed(batch, workers, row)
    if needed <= limit * MEMORY_HEADROOM:
        return
    wanted_limit = needed / MEMORY_HEADROOM
    ceiling = ctx.ceiling("memory_ceiling")
    explanation = (f"{batch} rows x {workers} worker(s) x {row:.0f} B/row x {ROW_MEMORY_FACTOR:g} "
                   f"+ {SINK_BASE_MEMORY // 2**20}Mi base needs {needed / 2**20:.0f}Mi")
    old_limit = paths.get(ctx.doc, "resources.sink.limits.memory")
    if ceiling is None or wanted_limit <= ceiling:
        new_limit = from_number(MEMORY, wanted_limit, rounding="up")
        _replace(outcome, FieldChange("resources.sink.limits.memory", old_limit, new_limit))
        outcome.notes.append(f"resources.sink.limits.memory raised to {new_limit} with the batch: {explanation} "
                             f"at {MEMORY_HEADROOM:.0%} of the limit")
        _raise_request_to_fit(ctx, outcome)
        return
    # Even the ceiling is too small: use all of it and clamp the batch to what fits.
    ceiling_text = from_number(MEMORY, ceiling, rounding="down")
    fitting = _nice_down(largest_fitting_batch(ceiling, workers, row))
    if to_number(MEMORY, ceiling_text) != limit:
        _replace(outcome, FieldChange("resources.sink.limits.memory", old_limit, ceiling_text))
    old_batch = paths.get(ctx.doc, "sink.max_batch_size")
    if isinstance(old_batch, int) and fitting <= old_batch:
        outcome.changes = [c for c in outcome.changes if c.path != "sink.max_batch_size"]
        outcome.blocked.append(Blocked("sink.max_batch_size", f"a larger batch does not fit: {explanation}, "
                                       f"above memory_ceiling {ctx.constraints.get('memory_ceiling')}",
                                       "raise tuning.constraints.memory_ceiling or scale sink replicas instead"))
    else:
        _replace(outcome, FieldChange("sink.max_batch_size", old_batch, fitting))
        outcome.notes.append(_clamp_note("sink.max_batch_size", batch, fitting,
                                         f"{explanation}; memory_ceiling {ctx.constraints.get('memory_ceiling')}"))
    _raise_request_to_fit(ctx, outcome)


def _replace(outcome: GuardOutcome, change: FieldChange) -> None:
    outcome.changes = [c for c in outcome.changes if c.path != change.path]
    if change.new != change.old:
        outcome.changes.append(change)


def _raise_request_to_fit(ctx: GuardContext, outcome: GuardOutcome) -> None:
    """A memory request above the (new) limit is invalid in Kubernetes: it never happens here,
    but a limit lowered below the request brings the request down with it."""
    limit = to_number(MEMORY, _value_after("resources.sink.limits.memory", ctx, outcome))
    request_raw = _value_after("resources.sink.requests.memory", ctx, outcome)
    request = to_number(MEMORY, request_raw)
    if limit is not None and request is not None and request > limit:
        _replace(outcome, FieldChange("resources.sink.requests.memory", request_raw, from_number(MEMORY, limit)))


def effective_doc(doc: dict[str, Any], changes: list[FieldChange]) -> dict[str, Any]:
    """The document with the changes applied (for predictions and the next guard)."""
    out = copy.deepcopy(doc)
    for change in changes:
        paths.set_value(out, change.path, change.new)
    return out
