"""The sink's capacity from what GlassFlow measures of it, and only while it is saturated.

GlassFlow records no INSERT time: ``processing_duration_seconds{sink,total_preparation}`` ends before
``batch.Send`` (glassflow/clickhouse-etl ``internal/sink/clickhouse.go``). What it does record is
one ``sink_batch_size_records`` observation per flush and the preparation of each. While a backlog
keeps a replica flushing back to back, its flush rate F gives the cycle ``T = 1/F``, and the part
of it that is not preparation, ``T - T_prep``, is the insert (with the acks and the refill). Without
a backlog the replica idles between flushes, T includes the idle time, and nothing splits it.

Nothing in GlassFlow, that is. With the ClickHouse server's own metrics (optional,
``metrics.clickhouse``) the insert is measured: ``InsertQueryTimeMicroseconds / InsertQuery`` is the
server's mean INSERT time. A replica that flushes *full* batches without a backlog (the buffer fills
before the ticker fires) then has a known busy cycle at that batch, ``T_prep + t_insert``, and the same
model follows from it: its capacity when loaded, not only a lower bound. Less sure than a saturated
cycle: the server's time has neither the network round trip nor the NATS acks, which 1/F counts.

Pure arithmetic, no I/O; :mod:`gftune.policy.sizing` chooses batch, replicas and CPU with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gftune.glassflow import topology
from gftune.policy import guards

MAX_BATCH = 100_000  # ClickHouse's recommended range tops out here
# Assumed per-row ClickHouse insert time (~500k narrow rows/s into one insert): one reading cannot
# separate it from the per-insert cost, and it is small next to that and the preparation.
INSERT_ROW_S = 2e-6
# A flush this full (mean messages / max_batch_size) is size-triggered: the buffer filled before
# the ticker fired. Saturated replicas flush full batches back to back.
FULL_FLUSH = 0.9
# The ClickHouse server's INSERT counters are server-wide: its mean INSERT time is the sink's own only
# while the sink's flushes are (nearly) all the server's INSERTs.
MIN_INSERT_SHARE = 0.9


@dataclass(frozen=True)
class SinkReplica:
    """One sink pod's readings over the window (all per second)."""

    pod: str
    flush_rate: float  # F_k: sink_batch_size_records _count
    rows: float  # sink_batch_size_records _sum: messages flushed, redeliveries included
    written: float | None = None  # clickhouse_records_written: rows inserted and acked
    prepare_busy: float | None = None  # total_preparation _sum: F_k x T_prep
    mapping_busy: float | None = None  # schema_mapping _sum: the worker pool's share of it

    @property
    def batch(self) -> float:
        return self.rows / self.flush_rate if self.flush_rate > 0 else 0.0


@dataclass(frozen=True)
class SinkState:
    cpu: float | None  # limits.cpu in cores
    batch: int | None = None  # sink.max_batch_size
    may_change_cpu: bool = True
    may_change_batch: bool = True
    max_msgs: int | None = None  # the stream's maxMsgs (immutable; <= 0: unlimited)
    row_bytes: float | None = None  # mean record size in sink batches (memory guard)
    memory_ceiling: float | None = None  # bytes a sink pod may be given (tuning.constraints)
    insert_row_s: float = INSERT_ROW_S
    saturated: bool = False  # a backlog keeps the sink flushing back to back (gftune.policy.saturation)
    insert_seconds: float | None = None  # the ClickHouse server's mean INSERT time (metrics.clickhouse)
    insert_share: float | None = None  # the sink's flushes / the server's INSERTs
    evidence: str = ""  # why it is (or is not) taken as saturated
    replicas: tuple[SinkReplica, ...] = ()  # per pod
    producer_replicas: int = 1  # replicas of the node that publishes to the sink's streams
    producer: str = ""  # that node's stage when the sizing may change it ("ingestor", "transform"); "" for join

    def shares(self, sink_replicas: int, producer_replicas: int | None = None) -> list[float]:
        """Each sink replica's share of the input (topology: subject s to stream s mod R_sink)."""
        return topology.stream_shares(producer_replicas or self.producer_replicas, sink_replicas)


def sink_workers(cpu: float | None) -> int:
    """``GOMAXPROCS - 2`` (min 1); GOMAXPROCS follows the CPU limit rounded up."""
    if cpu is None:
        return 1
    return max(1, math.ceil(cpu - 1e-9) - 2)


@dataclass(frozen=True)
class SinkModel:
    """A saturated replica's seconds per flush of B rows: ``fixed + (insert_row + prepare_row +
    mapping_row x w_now / w) x B``; ``net`` rows inserted per row flushed."""

    fixed: float  # per flush, whatever its size (the insert's round trip, the new part, the acks)
    insert_row: float  # sequential seconds per row inserted (assumed: INSERT_ROW_S)
    prepare_row: float  # seconds per row preparing outside the worker pool
    mapping_row: float  # seconds per row mapping, at the current workers
    workers_now: int
    net: float  # rows inserted / rows flushed (redeliveries are flushed again)
    measured_on: str  # the pod the model was measured on
    cycle: float  # T of that pod
    prepare: float  # T_prep of that pod
    batch_measured: float
    # "saturated": T = 1/F of a replica flushing back to back; "busy": T = T_prep + the ClickHouse
    # server's mean INSERT time, of a replica flushing full batches without a backlog
    cycle_from: str = "saturated"

    def per_replica(self, batch: float, cpu: float | None) -> float:
        """Net rows/s of one saturated replica at ``batch`` and ``cpu``."""
        seconds = self.fixed + (self.insert_row + self.prepare_row
                                + self.mapping_row * self.workers_now / sink_workers(cpu)) * batch
        return self.net * batch / seconds if seconds > 0 else math.inf

    def describe(self) -> str:
        insert = self.cycle - self.prepare
        if self.cycle_from == "busy":
            head = (f"busy flush cycle of {self.measured_on} (full batches, not saturated): T = preparation "
                    f"{self.prepare:.3g} s + the ClickHouse server's mean INSERT {insert:.3g} s = "
                    f"{self.cycle:.3g} s for {self.batch_measured:,.0f} rows")
        else:
            head = (f"saturated flush cycle of {self.measured_on}: T = 1/F = {self.cycle:.3g} s for "
                    f"{self.batch_measured:,.0f} rows, preparation {self.prepare:.3g} s, insert + ack {insert:.3g} s")
        return (f"{head} -> {self.fixed:.3g} s per flush + "
                f"{(self.insert_row + self.prepare_row + self.mapping_row) * 1e6:.3g} us per row "
                f"(assumed {self.insert_row * 1e6:.3g} us of it inserting)")


def fit_sink_model(sink: SinkState) -> tuple[SinkModel | None, str]:
    """The model from the saturated replica's cycle, else from the busy cycle of one flushing full
    batches (:func:`fit_busy_model`); or None and why neither is established."""
    if not sink.saturated:
        model, why = fit_busy_model(sink)
        if model is None:
            return None, f"not saturated ({sink.evidence or 'no backlog evidence'}); {why}"
        return model, ""
    full = _full_flushers(sink)
    if not full:
        return None, "no replica flushes full batches with its preparation time known"
    # The busiest stream saturates first; of the full flushers, the one writing most is saturated
    # (an unsaturated one writes what arrives, less).
    pod = _writing_most(full)
    return _model(sink, pod, cycle=1.0 / pod.flush_rate, cycle_from="saturated"), ""


def fit_busy_model(sink: SinkState) -> tuple[SinkModel | None, str]:
    """The model of a sink that keeps up, from the busy cycle of the replica writing most among those
    flushing full batches: its preparation per flush + the ClickHouse server's mean INSERT time. (None,
    why) without the server's metrics, with other writers in them, or with partial flushes (the
    per-INSERT cost spread over fewer rows than a loaded replica's: only a lower bound)."""
    if sink.insert_seconds is None or sink.insert_seconds <= 0:
        return None, "no INSERT time measured (the ClickHouse server's metrics are optional: metrics.clickhouse)"
    if sink.insert_share is None or sink.insert_share < MIN_INSERT_SHARE:
        share = "unknown" if sink.insert_share is None else f"{sink.insert_share:.0%}"
        return None, (f"the sink's flushes are {share} of the ClickHouse server's INSERTs (at least "
                      f"{MIN_INSERT_SHARE:.0%} needed for its mean INSERT time to be the sink's)")
    full = _full_flushers(sink)
    if not full:
        return None, "no replica flushes full batches with its preparation time known (its busy time is a lower bound)"
    pod = _writing_most(full)
    prepare = float(pod.prepare_busy or 0.0) / pod.flush_rate
    return _model(sink, pod, cycle=prepare + sink.insert_seconds, cycle_from="busy"), ""


def _full_flushers(sink: SinkState) -> list[SinkReplica]:
    return [r for r in sink.replicas if r.flush_rate > 0 and r.prepare_busy is not None
            and (not sink.batch or r.batch >= FULL_FLUSH * sink.batch)]


def _writing_most(replicas: list[SinkReplica]) -> SinkReplica:
    return max(replicas, key=lambda r: r.written if r.written is not None else r.rows)


def _model(sink: SinkState, pod: SinkReplica, *, cycle: float, cycle_from: str) -> SinkModel:
    """Split one replica's flush cycle at its batch into the per-flush and per-row costs."""
    prepare = min(float(pod.prepare_busy or 0.0) / pod.flush_rate, cycle)
    mapping = min(float(pod.mapping_busy or 0.0) / pod.flush_rate, prepare)
    batch = pod.batch
    insert = cycle - prepare
    insert_row = min(max(sink.insert_row_s, 0.0), insert / batch)
    net = min(1.0, pod.written / pod.rows) if pod.written is not None and pod.rows > 0 else 1.0
    return SinkModel(fixed=insert - insert_row * batch, insert_row=insert_row,
                     prepare_row=(prepare - mapping) / batch, mapping_row=mapping / batch,
                     workers_now=sink_workers(sink.cpu), net=net, measured_on=pod.pod or "the sink",
                     cycle=cycle, prepare=prepare, batch_measured=batch, cycle_from=cycle_from)


def capacity(model: SinkModel, sink: SinkState, replicas: int, cpu: float | None, batch: float,
             producer_replicas: int | None = None) -> float:
    """The pipeline's sink capacity: one replica's rate over the largest share a replica gets."""
    per_replica = model.per_replica(min(batch, fill_limit(sink.max_msgs)), cpu)
    return per_replica / max(sink.shares(replicas, producer_replicas))


def fill_limit(max_msgs: int | None) -> float:
    """The largest batch a sink replica can fill back to back: its stream (one per sink replica, of
    ``maxMsgs``, DiscardNew) must hold the batch being inserted, still unacked, and the next one."""
    if not max_msgs or max_msgs <= 0:
        return math.inf
    return max(1.0, max_msgs / 2)


def batch_ceiling(sink: SinkState, cpu: float | None) -> int:
    """The largest ``max_batch_size`` the guards let through at ``cpu``: two fetches of
    batch x workers in maxMsgs, and the batches within ``memory_ceiling``."""
    workers = sink_workers(cpu)
    ceiling = MAX_BATCH
    if sink.max_msgs and sink.max_msgs > 0:
        ceiling = min(ceiling, sink.max_msgs // (2 * workers))
    if sink.memory_ceiling:
        ceiling = min(ceiling, guards.largest_fitting_batch(sink.memory_ceiling, workers,
                                                            sink.row_bytes or guards.DEFAULT_ROW_BYTES))
    return max(1, ceiling)


def fixed_share(model: SinkModel, batch: float, cpu: float | None) -> float:
    """The share of a flush's time that is the per-flush cost at ``batch``."""
    per_replica = model.per_replica(batch, cpu)
    return model.fixed * per_replica / (model.net * batch) if per_replica > 0 and math.isfinite(per_replica) else 0.0
