"""What a pipeline's stages can do (records per sim second, noise-free): the formulas the model runs
on, and what the truth (``gftune.sim.truth``) sizes configurations with.

* **Ingestor** replica: ``per_replica_rate`` throttled below ``cpu_need`` (``limits.cpu: 250m`` with
  ``cpu_need: 1`` reads 25%); replicas beyond the partition count idle.
* **Dedup pod**: a fixed per-replica rate split over its stages; lookups slow down as the key store
  fills (``1 + lookup_slowdown x fill^2``).
* **Sink** replica: a flush of n messages takes ``p x n / workers`` of preparation (the mapping pool,
  ``workers = max(1, GOMAXPROCS - 2)``) plus ``a + b x n`` of INSERT; a batch NAKed after a retryable
  error is flushed again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gftune.glassflow import sink_errors
from gftune.glassflow import topology as topo
from gftune.sim.sink import SinkConfig

if TYPE_CHECKING:
    from gftune.sim.stages import DlqSink, SourceState

Json = dict[str, Any]

# Relative cost of the dedup pod's stages (their share of one record's processing time).
_TRANSFORM_WEIGHTS = {"dedup_lookup": 0.4, "dedup_commit": 0.3, "filter": 0.15, "stateless": 0.15}


def sink_workers(cpu_limit: float | None) -> int:
    """``GOMAXPROCS - 2`` (min 1); GOMAXPROCS follows the CPU limit rounded up (Go 1.25). No limit: 1."""
    return topo.sink_workers(cpu_limit) if cpu_limit is not None else 1


def retryable(error_name: str) -> bool:
    return sink_errors.classify(error_name) == sink_errors.RETRYABLE


class Capacities:
    """Mixed into :class:`gftune.sim.model.PipelineModel`, whose configuration it reads."""

    pipeline_id: str
    params: Json
    kafka: bool
    dedup: bool
    filter: bool
    stateless: bool
    transform_replicas: int
    dedup_stored: float
    dedup_capacity_keys: float
    sink_replicas: int
    workers: int
    batch: float
    delay: float
    record_bytes: float
    fail_prob: float
    graph: topo.Topology
    dlq: DlqSink
    _budget_fail: float

    def ingestor_replica_rate(self, source: SourceState, cpu: float | None = None) -> float:
        ip = self.params["ingestor"]
        cpu = source.cpu if cpu is None else cpu
        need = float(ip["cpu_need"])
        throttle = 1.0 if cpu is None or need <= 0 else min(1.0, cpu / need)
        return float(ip["per_replica_rate"]) * throttle

    def ingestor_capacity(self, source: SourceState) -> float:
        if not self.kafka:
            return math.inf
        return min(source.replicas, source.partitions) * self.ingestor_replica_rate(source)

    def transform_record_cost(self, fill: float | None = None) -> tuple[float, dict[str, float]]:
        """Seconds of one replica per record, and its split by stage."""
        tp = self.params["transform"]
        base = 1.0 / float(tp["per_replica_rate"])
        present = {k: w for k, w in _TRANSFORM_WEIGHTS.items()
                   if (k.startswith("dedup") and self.dedup) or (k == "filter" and self.filter)
                   or (k == "stateless" and self.stateless)}
        scale = sum(present.values()) or 1.0
        costs = {k: base * w / scale for k, w in present.items()}
        if "dedup_lookup" in costs:
            fill = self.dedup_fill() if fill is None else fill
            costs["dedup_lookup"] *= 1.0 + float(tp["lookup_slowdown"]) * min(1.0, fill) ** 2
        return sum(costs.values()), costs

    def transform_capacity(self, fill: float | None = None) -> float:
        cost, _ = self.transform_record_cost(fill)
        return self.transform_replicas / cost

    def join_capacity(self) -> float:
        return float(self.params["join"]["rate"])

    def sink_config(self, workers: int | None = None, batch: float | None = None) -> SinkConfig:
        sp, ch = self.params["sink"], self.params["clickhouse"]
        server = getattr(self, "clickhouse", None)  # the ClickHouse server's ProfileEvents, where there is one
        err = float(ch["error_rate"])
        fail = {str(ch["error_name"]): err} if err > 0 else {}
        if self._budget_fail > 0:
            name = str(ch["budget_error_name"])
            fail[name] = fail.get(name, 0.0) + (1.0 - err) * self._budget_fail
        return SinkConfig(self.pipeline_id, self.batch if batch is None else batch, self.delay,
                          workers or self.workers, float(sp["prepare_per_row"]), float(sp["insert_overhead"]),
                          float(sp["insert_per_row"]), self.record_bytes, fail,
                          float(ch["permanent_error_fraction"]), str(ch["permanent_error_name"]), self.dlq.write,
                          server.inserts if server is not None else None)

    def sink_cycle(self, batch: float, fail_prob: float | None = None,
                   workers: int | None = None) -> tuple[float, float]:
        """(seconds of flushing per batch written, flushes per batch written): a batch NAKed after a
        retryable error (probability ``fail_prob``) comes back and is flushed again."""
        f = min(0.999, self.fail_prob if fail_prob is None else fail_prob)
        attempts = 1.0 / (1.0 - f)
        return attempts * self.sink_config(workers, batch).cycle(batch), attempts

    def sink_replica_capacity(self, batch: float | None = None, fail_prob: float | None = None,
                              workers: int | None = None) -> float:
        batch = self.batch if batch is None else batch
        cycle, _ = self.sink_cycle(batch, fail_prob, workers)
        return batch / cycle

    def effective_batch(self, per_replica_rate: float, batch: float | None = None, delay: float | None = None,
                        fail_prob: float | None = None, workers: int | None = None) -> float:
        """The mean flush size when not backlogged: what arrives between two ticks, or more when a
        flush takes longer than that (ticks are dropped while it runs); never above ``max_batch_size``."""
        batch = self.batch if batch is None else batch
        delay = self.delay if delay is None else delay
        if per_replica_rate <= 0:
            return 0.0
        cycle0, _ = self.sink_cycle(0.0, fail_prob, workers)
        cycle1, _ = self.sink_cycle(1.0, fail_prob, workers)
        per_row = cycle1 - cycle0
        if per_replica_rate * per_row >= 1.0:
            return batch
        keep_up = per_replica_rate * cycle0 / (1.0 - per_replica_rate * per_row)
        return min(batch, max(per_replica_rate * delay, keep_up, 1.0))

    def sink_shares(self, producer_replicas: int | None = None, sink_replicas: int | None = None) -> list[float]:
        """The share of the sink's input each replica's stream carries (round-robin over subjects)."""
        producer = self.graph.streams and next(s for s in self.graph.inputs("sink")).producer
        if producer_replicas is None:
            producer_replicas = self.graph.node(producer).replicas if producer else 1
        return topo.stream_shares(producer_replicas, sink_replicas or self.sink_replicas)

    def dedup_fill(self) -> float:
        if not self.dedup or not math.isfinite(self.dedup_capacity_keys) or self.dedup_capacity_keys <= 0:
            return 0.0
        return self.dedup_stored / self.dedup_capacity_keys

