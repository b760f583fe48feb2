"""A pipeline's dead-letter queue (the ``gfm-<h8>-DLQ`` stream) and the API's DLQ routes.

What the components and the operator send there is queued per (component, reason) in arrival
order; ``GET .../dlq/consume`` renders messages from the head (reference §1.5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gftune.sim.clock import Clock

Json = dict[str, Any]


@dataclass
class DlqState:
    exists: bool = True
    total: float = 0.0
    unconsumed: float = 0.0
    last_received: float | None = None
    last_consumed: float | None = None
    queue: list[list[Any]] = field(default_factory=list)  # [component, reason, records] FIFO
    seq: int = 0

    def receive(self, entries: list[tuple[str, str, float]], t: float) -> None:
        """Messages published to the DLQ at sim time ``t`` (dropped when the stream does not exist)."""
        if not entries or not self.exists:
            return
        for component, reason, records in entries:
            if self.queue and self.queue[-1][0] == component and self.queue[-1][1] == reason:
                self.queue[-1][2] += records
            else:
                self.queue.append([component, reason, records])
            self.total += records
            self.unconsumed += records
        self.last_received = t

    def view(self, clock: Clock) -> Json:
        """``GET .../dlq/state``."""
        return {
            "last_received_at": clock.timestamp(self.last_received) if self.last_received is not None else None,
            "last_consumed_at": clock.timestamp(self.last_consumed) if self.last_consumed is not None else None,
            "total_messages": int(self.total),
            "unconsumed_messages": int(self.unconsumed),
        }

    def consume(self, batch_size: int, doc: Json, now: float) -> list[Json]:
        """``GET .../dlq/consume``: destructive, from the head."""
        count = min(batch_size, int(self.unconsumed))
        out: list[Json] = []
        while len(out) < count and self.queue:
            head = self.queue[0]
            take = min(count - len(out), int(head[2]) if head[2] >= 1 else 1)
            for _ in range(take):
                self.seq += 1
                out.append(render_message(doc, head[0], head[1], self.seq))
            head[2] -= take
            if head[2] < 1:
                self.queue.pop(0)
        self.unconsumed = max(0.0, self.unconsumed - len(out))
        if out:
            self.last_consumed = now
        return out

    def purged(self) -> DlqState:
        """``POST .../dlq/purge``: empty, keeping the timestamps."""
        return DlqState(last_received=self.last_received, last_consumed=self.last_consumed)


_DLQ_ERRORS = {
    "retry_exhausted": "failed to insert batch after {retries} retries: code: 252, message: Too many parts. "
                       "Merges are processing significantly slower than inserts",
    "dedup_overflow": "dedup store is full: cannot store key for deduplication",
    "schema_mismatch": "message does not match the source schema",
    "unrecoverable": "failed to publish to NATS",
}


def render_message(doc: Json, component: str, reason: str, seq: int, retries: int = 3) -> Json:
    sources = doc.get("sources") or [{}]
    fields_ = sources[0].get("schema_fields") or [{"name": "id", "type": "string"}]
    sample = {f.get("name"): _sample_value(f.get("type"), seq) for f in fields_}
    if reason.startswith("sink_rejection_"):
        error = f"clickhouse rejected the row: {reason.removeprefix('sink_rejection_')}"
    else:
        error = _DLQ_ERRORS.get(reason, reason).format(retries=retries)
    return {"component": component, "error": error, "original_message": json.dumps(sample, separators=(",", ":"))}


def _sample_value(field_type: Any, seq: int) -> Any:
    if field_type in ("int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64"):
        return seq
    if field_type in ("float", "float32", "float64"):
        return seq + 0.5
    if field_type == "bool":
        return seq % 2 == 0
    if field_type == "array":
        return [f"item-{seq}"]
    if field_type == "map":
        return {"k": f"v{seq}"}
    return f"value-{seq}"
