"""What a change costs: restarts and downtime (from the lifecycle) and the resource delta (pods, CPU
and memory, requested and limits) between the live resources and the resources after the change.

Pure functions over the internal resource shape of ``GET /resources`` (the full body, defaults
filled in by the API), so that a change of replicas counts every per-replica request and limit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gftune.glassflow import resources as res
from gftune.glassflow.quantities import QuantityError, parse_quantity
from gftune.glassflow.statuses import Status
from gftune.plan import canonical
from gftune.plan.assessment import Cost, ResourceDelta
from gftune.plan.evidence import FieldChange

Json = dict[str, Any]


def stage_of(block_name: str) -> str:
    """``ingestor/base`` and ``ingestor/left`` are the ingestor stage; ``sink``, ``transform``, ``join``."""
    return block_name.split("/", 1)[0]


@dataclass
class _StageTotal:
    pods: int = 0
    amounts: dict[str, float] = field(default_factory=dict)  # "requests.cpu" -> cores x replicas, ...
    unknown: bool = False


AMOUNTS = (("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory"))


def _quantity(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(parse_quantity(str(value))) if value not in (None, "") else None
    except QuantityError:
        return None


def stage_totals(internal: Json | None) -> dict[str, _StageTotal]:
    """Pods and replicas x requests/limits per stage of an internal resources body."""
    totals: dict[str, _StageTotal] = {}
    for name, block in res.component_blocks(internal or {}):
        total = totals.setdefault(stage_of(name), _StageTotal())
        replicas = block.get("replicas", 1)
        replicas = replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else 1
        total.pods += replicas
        for kind, resource in AMOUNTS:
            amount = _quantity((block.get(kind) or {}).get(resource))
            key = f"{kind}.{resource}"
            if amount is None:
                total.unknown = True
                continue
            total.amounts[key] = total.amounts.get(key, 0.0) + replicas * amount
    return totals


def resource_delta(before: Json | None, after: Json | None) -> ResourceDelta:
    """What ``after`` adds to ``before`` (negative: frees); stages whose amounts are unknown on a
    side that changed are listed in ``unknown`` rather than counted as zero."""
    old, new = stage_totals(before), stage_totals(after)
    pods: dict[str, int] = {}
    sums = dict.fromkeys((f"{k}.{r}" for k, r in AMOUNTS), 0.0)
    unknown: list[str] = []
    for stage in dict.fromkeys([*old, *new]):
        a, b = old.get(stage, _StageTotal()), new.get(stage, _StageTotal())
        if b.pods != a.pods:
            pods[stage] = b.pods - a.pods
        for key in sums:
            sums[key] += b.amounts.get(key, 0.0) - a.amounts.get(key, 0.0)
        if (a.unknown or b.unknown) and (a.pods != b.pods or a.amounts != b.amounts):
            unknown.append(stage)
    return ResourceDelta(pods, sums["requests.cpu"], sums["requests.memory"], sums["limits.cpu"],
                         sums["limits.memory"], tuple(unknown))


def restarts(lifecycle: Iterable[Mapping[str, Any]], status: str | None) -> int:
    """Stop → update → running cycles of a Running pipeline in a lifecycle (a conditional cycle
    counts: the downtime estimate is an upper bound too). A delete is not a restart, and a Stopped
    or Failed pipeline is not serving, so restarting it interrupts nothing."""
    steps = list(lifecycle)
    if status != Status.RUNNING or any(step.get("action") == "delete" for step in steps):
        return 0
    return sum(1 for step in steps if step.get("action") == "stop")


def with_changes(internal: Json | None, doc: Json, changes: Iterable[FieldChange]) -> Json:
    """The internal resources after the resource changes among ``changes`` (v3 paths)."""
    after = copy.deepcopy(internal or {})
    for change in changes:
        where = canonical.path_internal(doc, change.path)
        if where is not None:
            canonical.internal_set(after, where, change.new)
    return after


def created_resources(spec: Json) -> Json:
    """What a create brings up: the document's resources with the API's code defaults filled in."""
    return res.merge_with_defaults(res.v3_to_internal(spec), spec)


def delete_cost(pipeline_id: str, internal: Json | None) -> Cost:
    return Cost(resources=resource_delta(internal, {}), irreversible=(
        f"deleting {pipeline_id} loses the messages buffered in its NATS streams and its dedup state",))
