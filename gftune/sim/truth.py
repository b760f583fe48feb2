"""Ground truth for benchmarks: true capacities, losses, and the minimum sufficient configuration.

Served at ``/_sim/truth/<id>``. gftune's tuner must never read it; benchmarks compare what the
tuner did with it.

The minimum sufficient configuration for the current (noise-free) load is found by searching a
bounded space per stage for the cheapest configuration in which every stage runs at utilisation
<= ``U_CAP``, the sink respects the ClickHouse insert budget and the stream limit, and the sink's
batches fit in 80% of its memory limit. Cost = sum over components of replicas x (CPU limit +
``MEMORY_WEIGHT`` x memory limit in GiB).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gftune.glassflow import sink_errors
from gftune.glassflow.quantities import QuantityError, format_cpu, format_memory, parse_quantity
from gftune.glassflow.topology import NAK_DELAY
from gftune.sim.capacity import sink_workers
from gftune.sim.model import PipelineModel

if TYPE_CHECKING:
    from gftune.sim.rows import Row

Json = dict[str, Any]

U_CAP = 0.85
MEMORY_WEIGHT = 0.25  # cost of 1 GiB relative to one CPU
MAX_REPLICAS = 10
INGESTOR_CPUS = (0.25, 0.5, 1.0, 1.5, 2.0)
SINK_CPUS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
BATCHES = (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
_MI = 2**20


def _quantity(block: Json, kind: str, resource: str) -> float | None:
    value = (block.get(kind) or {}).get(resource)
    try:
        return float(parse_quantity(value)) if value else None
    except QuantityError:
        return None


def _round_memory(num_bytes: float) -> float:
    step = 256 * _MI
    return math.ceil(num_bytes / step) * step


def stage_loads(model: PipelineModel) -> Json:
    """Noise-free records/s arriving at each stage at the model's current time."""
    tp = model.params["transform"]
    source_rates = {s.source_id: s.rate_now for s in model.sources}
    after_ingest = sum(s.rate_now * (1.0 - float(s.params.get("parse_error_fraction") or 0.0)) for s in model.sources)
    join_out = after_ingest * float(model.params["join"]["output_ratio"]) if model.join else after_ingest
    keep = 1.0
    if model.filter:
        keep *= float(tp["filter_pass"])
    unique = join_out * keep * ((1.0 - float(tp["duplicate_fraction"])) if model.dedup else 1.0)
    return {"sources": source_rates, "source_total": sum(source_rates.values()), "join": after_ingest,
            "transform": join_out, "sink": unique if model.has_transform else join_out, "unique_keys": unique}


def compute(row: Row, configured: Json | None = None) -> Json:
    model = row.model
    loads = stage_loads(model)
    ch = model.params["clickhouse"]
    capacity: Json = {}
    utilisation: Json = {}
    for source in model.sources:
        if model.kafka:
            cap = model.ingestor_capacity(source)
            capacity[f"ingestor[{source.source_id}]"] = cap
            utilisation[f"ingestor[{source.source_id}]"] = source.rate_now / cap if cap > 0 else math.inf
    if model.join:
        capacity["join"] = model.join_capacity()
        utilisation["join"] = loads["join"] / capacity["join"]
    if model.has_transform:
        capacity["transform"] = model.transform_capacity()
        utilisation["transform"] = loads["transform"] / capacity["transform"]
    sink_replica = model.sink_replica_capacity(model.batch, _retryable_rate(model))
    # round-robin shares: the stream with the largest share saturates first (e.g. 3 -> 2: 2/3, 1/3)
    capacity["sink"] = sink_replica / max(model.sink_shares())
    utilisation["sink"] = loads["sink"] / capacity["sink"] if capacity["sink"] > 0 else math.inf
    bottleneck = max(utilisation, key=lambda k: utilisation[k]) if utilisation else None
    per_replica_load = loads["sink"] * max(model.sink_shares())
    dlq = {f"{component}/{reason}": value for (component, reason), value in model.dlq.written.items()}
    return {
        "pipeline_id": row.pipeline_id,
        "sim_seconds": model.t,
        "status": row.status,
        "load": loads,
        "capacity": capacity,
        "utilisation": utilisation,
        "bottleneck": bottleneck,
        "details": {
            "partitions": {s.source_id: s.partitions for s in model.sources},
            "ingestor_active_replicas": {s.source_id: min(s.replicas, s.partitions) for s in model.sources},
            "ingestor_replica_rate": {s.source_id: model.ingestor_replica_rate(s) for s in model.sources},
            "sink_workers": model.workers,
            "sink_replica_rate_full_batch": sink_replica,
            "sink_effective_batch": model.effective_batch(per_replica_load, fail_prob=_retryable_rate(model)),
            "sink_batch_now": model.sink_batch,
            "sink_busy_replicas": model.sink_busy,
            "insert_rate": model.insert_rate,
            "insert_budget": float(ch["insert_budget"]),
            "insert_failure_probability": model.fail_prob,
            "sink_memory_bytes": model.sink_memory,
            "sink_memory_limit_bytes": model.sink_memory_limit,
            "dedup_fill": model.dedup_fill(),
            "dedup_storage_needed_bytes": loads["unique_keys"] * model.dedup_window * float(
                model.params["transform"]["key_bytes"]) if model.dedup else 0.0,
            "stream_max_msgs": model.max_msgs if math.isfinite(model.max_msgs) else -1,
        },
        "records": {
            "kafka_input": sum(s.arrived for s in model.sources),
            "kafka_lag": sum(s.lag for s in model.sources),
            **{k: v for k, v in model.totals.items()},
            "lost": model.lost,
            "expired": model.expired,
            "purged": model.purged,
            "swept": model.swept,
            "stream_depth": {s.name: s.depth for s in model.all_streams()},
            "stream_shares": {s.name: s.share for s in model.graph.streams},
            "dlq": dlq,
        },
        "configured": configured or {},
        "min_config": min_config(model, loads),
    }


def min_config(model: PipelineModel, loads: Json | None = None) -> Json:
    loads = loads or stage_loads(model)
    values: Json = {}
    current: Json = {}
    notes: list[str] = []
    feasible = True
    cost = 0.0
    current_cost = 0.0
    resources = model.resources

    # ingestors
    ingestor = resources.get("ingestor") or {}
    for source in model.sources if model.kafka else []:
        side = "base"
        if model.join:
            join = model.doc.get("join") or {}
            side = "left" if (join.get("left_source") or {}).get("source_id") == source.source_id else "right"
        block = ingestor.get(side) or {}
        mem = _quantity(block, "limits", "memory") or 0.0
        cpu_now = source.cpu if source.cpu is not None else 1.0
        current_cost += source.replicas * (cpu_now + MEMORY_WEIGHT * mem / 2**30)
        path = f"resources.sources[{source.source_id}]"
        current[f"{path}.replicas"] = source.replicas
        current[f"{path}.limits.cpu"] = format_cpu(cpu_now)
        best = None
        for replicas in range(1, min(source.partitions, MAX_REPLICAS) + 1):
            for cpu in INGESTOR_CPUS:
                cap = replicas * model.ingestor_replica_rate(source, cpu)
                if source.rate_now <= U_CAP * cap:
                    c = replicas * (cpu + MEMORY_WEIGHT * mem / 2**30)
                    if best is None or c < best[0] - 1e-9:
                        best = (c, replicas, cpu)
        if best is None:
            feasible = False
            per_replica = model.ingestor_replica_rate(source, float(model.params["ingestor"]["cpu_need"]))
            wanted = math.ceil(source.rate_now / (U_CAP * per_replica)) if per_replica > 0 else math.inf
            notes.append(f"source {source.source_id}: {source.partitions} partitions cap the ingestor; "
                         f"the load needs {wanted} replicas, so the topic needs at least {wanted} partitions")
            best = (min(source.partitions, MAX_REPLICAS) * 1.0, min(source.partitions, MAX_REPLICAS),
                    float(model.params["ingestor"]["cpu_need"]))
        cost += best[0]
        values[f"{path}.replicas"] = best[1]
        values[f"{path}.limits.cpu"] = format_cpu(best[2])

    # join
    if model.join and loads["join"] > U_CAP * model.join_capacity():
        feasible = False
        notes.append("join runs one replica and cannot keep up; split the workload across pipelines")

    # transform
    if model.has_transform:
        block = resources.get("transform") or {}
        cpu = _quantity(block, "limits", "cpu") or 1.0
        mem = _quantity(block, "limits", "memory") or 0.0
        per_replica_cost = cpu + MEMORY_WEIGHT * mem / 2**30
        current_cost += model.transform_replicas * per_replica_cost
        sid = next((t.get("source_id") for t in model.doc.get("transforms") or []), "transform")
        path = f"resources.transform[{sid}]"
        current[f"{path}.replicas"] = model.transform_replicas
        fill = 0.0
        if model.dedup:
            key_bytes = float(model.params["transform"]["key_bytes"])
            needed = loads["unique_keys"] * model.dedup_window * key_bytes
            fill = min(1.0, needed / model.dedup_storage_bytes) if math.isfinite(model.dedup_storage_bytes) else 0.0
            if needed > 0.8 * model.dedup_storage_bytes:
                max_window = 0.8 * model.dedup_storage_bytes / (loads["unique_keys"] * key_bytes)
                notes.append(f"dedup store: the window needs {format_memory(needed)} but storage is "
                             f"{format_memory(model.dedup_storage_bytes)} (immutable); shrink time_window to "
                             f"<= {int(max_window)}s or recreate with storage >= {format_memory(needed / 0.8)}")
                window_path = f"transforms[dedup:{sid}].config.time_window"
                current[window_path] = f"{int(model.dedup_window)}s"
                values[window_path] = f"{int(max_window)}s"
                fill = 0.8
        per_replica = model.transform_capacity(fill) / model.transform_replicas
        replicas = max(1, math.ceil(loads["transform"] / (U_CAP * per_replica))) if per_replica > 0 else 1
        if replicas > MAX_REPLICAS:
            feasible = False
            notes.append(f"transform needs {replicas} replicas, above the search bound {MAX_REPLICAS}")
        if model.dedup and replicas != model.transform_replicas:
            notes.append("transform replicas are immutable with dedup: recreate the pipeline to change them")
        values[f"{path}.replicas"] = replicas
        cost += replicas * per_replica_cost

    # sink
    sink_block = resources.get("sink") or {}
    sink_mem_now = model.sink_memory_limit if math.isfinite(model.sink_memory_limit) else 0.0
    sink_cpu_now = model.sink_cpu if model.sink_cpu is not None else 1.0
    current_cost += model.sink_replicas * (sink_cpu_now + MEMORY_WEIGHT * sink_mem_now / 2**30)
    current["resources.sink.replicas"] = model.sink_replicas
    current["resources.sink.limits.cpu"] = format_cpu(sink_cpu_now)
    current["resources.sink.limits.memory"] = (sink_block.get("limits") or {}).get("memory")
    current["sink.max_batch_size"] = int(model.batch)
    best_sink = _best_sink(model, loads["sink"], sink_mem_now, sink_cpu_now)
    if best_sink is None and math.isfinite(model.max_msgs) \
            and _best_sink(model, loads["sink"], sink_mem_now, sink_cpu_now, ignore_stream=True) is not None:
        feasible = False
        notes.append(f"the stream's maxMsgs {int(model.max_msgs)} (immutable) caps the sink's batches below what the "
                     "insert budget needs; recreate the pipeline with a larger nats.stream.maxMsgs")
    elif best_sink is None:
        feasible = False
        notes.append("no sink configuration within the bounds keeps up within the insert budget")
    else:
        c, replicas, cpu, batch, memory = best_sink
        cost += c
        values["resources.sink.replicas"] = replicas
        values["resources.sink.limits.cpu"] = format_cpu(cpu)
        values["resources.sink.limits.memory"] = format_memory(memory)
        values["sink.max_batch_size"] = batch
    changes = {path: {"from": current.get(path), "to": value} for path, value in values.items()
               if _differs(current.get(path), value)}
    return {"feasible": feasible, "utilisation_cap": U_CAP, "cost": round(cost, 4),
            "current_cost": round(current_cost, 4), "values": values, "changes": changes, "notes": notes}


def _retryable_rate(model: PipelineModel) -> float:
    """The share of INSERTs that fail with a retryable error by configuration (the insert budget aside)."""
    ch = model.params["clickhouse"]
    return float(ch["error_rate"]) if sink_errors.classify(str(ch["error_name"])) == sink_errors.RETRYABLE else 0.0


def _differs(old: Any, new: Any) -> bool:
    if old is None:
        return True
    if isinstance(old, str) and old.endswith("s") and isinstance(new, str):
        return old != new
    try:
        return parse_quantity(str(old)) != parse_quantity(str(new))
    except QuantityError:
        return str(old) != str(new)


def _best_sink(model: PipelineModel, load: float, mem_now: float, cpu_now: float, *,
               ignore_stream: bool = False) -> tuple | None:
    ch = model.params["clickhouse"]
    err = _retryable_rate(model)
    budget = float(ch["insert_budget"])
    attempts = 1.0 / (1.0 - min(err, 0.999))  # a NAKed batch is flushed again
    batches = sorted({*BATCHES, int(model.batch)})
    best = None
    for replicas in range(1, MAX_REPLICAS + 1):
        per_replica = load * max(model.sink_shares(sink_replicas=replicas))
        for cpu in SINK_CPUS:
            workers = sink_workers(cpu)
            for batch in batches:
                cycle, _ = model.sink_cycle(batch, err, workers)
                if per_replica > U_CAP * batch / cycle:
                    continue
                effective = model.effective_batch(per_replica, batch, None, err, workers)
                if effective > 0 and load / effective * attempts > budget:
                    continue
                # each replica's own stream must hold a batch being built while one is flushed, and the
                # NAKed messages waiting out their 5 s redelivery delay
                naked = per_replica * err / (1.0 - min(err, 0.999)) * NAK_DELAY
                if not ignore_stream and math.isfinite(model.max_msgs) and 2 * effective + naked > model.max_msgs:
                    continue
                memory_needed = model.base_memory + batch * workers * model.row_memory
                memory = max(mem_now, _round_memory(memory_needed / 0.8))
                c = replicas * (cpu + MEMORY_WEIGHT * memory / 2**30)
                # ties: keep the current cpu and batch (fewer changes), then the smaller batch
                key = (round(c, 6), cpu != cpu_now, batch != int(model.batch), batch)
                if best is None or key < best[0]:
                    best = (key, (c, replicas, cpu, batch, memory))
    return best[1] if best else None
