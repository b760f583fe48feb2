"""One sink replica: the flush flow of ``clickhouse-etl:glassflow-api/internal/sink/clickhouse.go``.

* **Trigger**: a flush starts when the buffer reaches ``max_batch_size`` B (synchronously, in the
  consume callback) or on a fixed ticker every ``max_delay_time`` (60 s when 0) that size-triggered
  flushes do not reset (lines 113-116, 162-186, 209-218). While a flush runs, ticks are dropped
  (Go's ticker keeps one) and find the buffer empty under saturation.
* **Recorded for every flush**, redeliveries included: ``bytes_processed{sink,in}`` and both
  ``sink_batch_size_*`` (lines 414-424).
* **Preparation** (mapping on the worker pool, Append, PrepareBatch) is what
  ``processing_duration_seconds{sink,total_preparation}`` measures, with ``schema_mapping`` (the
  pool's part) and ``per_message`` (total ÷ messages): one observation each per flush (lines
  540-690). The INSERT (``batch.Send``) is measured nowhere.
* **Send**: success acks everything and counts rows written; a retryable error NAKs the batch
  (redelivered after 5 s: ``sink_nack_messages``, ``processor_messages{retry}``,
  ``sink_retries{retry}`` += rows); a permanent or unknown one sends every message to the DLQ as
  ``sink_rejection_<error_name>`` (``processor_messages{error}``, ``sink_retries{exhausted}`` +=
  rows); either failure adds 1 to ``sink_errors_by_classification_total`` (lines 426-480). There is
  no retry inside the process; MaxDeliver (10) is reached silently.

The model is a fluid: flushes of the same size in one step are recorded together (histograms take
fractional counts, counters fractional increments), and outcomes are split by their probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gftune.glassflow import instruments as ins
from gftune.glassflow import sink_errors
from gftune.glassflow.topology import MAX_DELIVER, NAK_DELAY
from gftune.sim.streams import JetStream
from gftune.sim.telemetry import Meter

_EPS = 1e-9


@dataclass
class SinkConfig:
    """What every replica of one pipeline's sink shares in a step."""

    pipeline_id: str
    batch: float  # B, max_batch_size
    delay: float  # max_delay_time in seconds (0 -> 60)
    workers: int  # the mapping pool: max(1, GOMAXPROCS - 2)
    prepare_per_row: float  # p: seconds of mapping per row, split over the workers
    insert_overhead: float  # a: seconds per INSERT (Send, plus the post-insert PrepareBatch)
    insert_per_row: float  # b: seconds per row inserted
    record_bytes: float
    fail: dict[str, float]  # error_name -> probability that a Send fails with it
    permanent_rows: float  # fraction of rows whose Append fails (DLQ one by one)
    permanent_name: str
    dlq: Callable[[Meter | None, str, str, float], None]  # (writer's meter, component, reason, records)
    # the ClickHouse server's ProfileEvents: (INSERTs, failed, rows written, bytes per row, server seconds)
    clickhouse: Callable[[float, float, float, float, float], None] | None = None

    def prepare(self, messages: float) -> float:
        return self.prepare_per_row * messages / self.workers

    def send(self, messages: float) -> float:
        return self.insert_overhead + self.insert_per_row * messages

    def cycle(self, messages: float) -> float:
        return self.prepare(messages) + self.send(messages)


@dataclass
class SinkReplica:
    index: int
    stream: JetStream
    next_tick: float
    meter: Meter | None = None
    buffer: float = 0.0  # messages fetched into the batch being built (delivered, unacked)
    busy_until: float = 0.0  # the flush in progress ends then
    sends: float = 0.0  # INSERTs this step (for the ClickHouse insert budget)
    busy: float = 0.0  # seconds spent flushing this step
    tick_pending: bool = False  # a tick came while a flush ran

    def step(self, cfg: SinkConfig, t: float, dt: float, flush_partial: bool) -> float:
        """Flush what the stream holds for this replica during [t, t + dt); returns rows written.

        What the producer published in the previous step (``stream.arrived``) reaches the buffer
        evenly over this step, so a ticker shorter than the step still sees a stream, not a lump.
        ``flush_partial`` (while the pipeline is Stopping) flushes the buffer without waiting for the
        ticker, as the sink does when it shuts down.
        """
        self.sends = self.busy = 0.0
        self.stream.release(t)
        end = t + dt
        tau = max(t, self.busy_until)
        written = 0.0
        b = max(1.0, cfg.batch)
        partial = flush_partial

        def available(at: float) -> float:
            pending = self.stream.arrived * max(0.0, 1.0 - (at - t) / dt)
            return max(0.0, self.stream.ready_count - self.buffer - pending)

        for _ in range(100_000):  # bounded: each turn flushes, or moves to the next event
            if tau >= end - _EPS:
                break
            if self.buffer + available(tau) >= b - _EPS:
                # size-triggered flushes back to back, as many as the step has time for; a tick that
                # comes meanwhile finds an empty buffer (the consume callback holds the flush)
                cycle = cfg.cycle(b)
                whole = math.floor((self.buffer + available(tau)) / b + _EPS)
                count = max(1, min(whole, math.ceil((end - tau) / cycle - _EPS)))
                self.buffer = 0.0
                written += self._flush(cfg, b, count, tau)
                tau += count * cycle
                self.busy += count * cycle
                self._advance_ticks(cfg, tau)
                self.tick_pending = False
                continue
            self.buffer += available(tau)
            # the next event: the buffer reaches B from the arrivals, or the ticker fires
            # the buffer holds what has arrived, ready - arrived x (1 - (tau - t) / dt): it reaches B at
            full_at = t + dt * (1.0 - (self.stream.ready_count - b) / self.stream.arrived) \
                if self.stream.arrived > _EPS else math.inf
            full_at = max(full_at, tau + 1e-3)  # never a step back, nor a loop without progress
            # stopping, the buffer is flushed once a step without waiting for the ticker
            tick = tau if (partial or self.tick_pending) else self.next_tick
            if min(full_at, tick) >= end - _EPS:
                break
            if full_at < tick:
                tau = full_at
                continue
            tau = max(tau, tick)
            self.tick_pending = partial = False
            self._advance_ticks(cfg, tau + _EPS)
            self.buffer += available(tau)
            if self.buffer > _EPS:
                n, self.buffer = self.buffer, 0.0
                written += self._flush(cfg, n, 1, tau)
                cycle = cfg.cycle(n)
                tau += cycle
                self.busy += cycle
                # Go's ticker keeps one tick while the flush runs: it fires as soon as the flush is done
                self.tick_pending = self._advance_ticks(cfg, tau)
        self.busy_until = tau
        return written

    def stop(self) -> None:
        """The pod is gone: what it held unacked is redelivered to the next one."""
        self.buffer = 0.0
        self.busy_until = 0.0
        self.tick_pending = False
        self.stream.redeliver_all()

    def _advance_ticks(self, cfg: SinkConfig, tau: float) -> bool:
        """Move the ticker past ``tau``; True when a tick fell due on the way."""
        delay = cfg.delay if cfg.delay > 0 else 60.0
        if self.next_tick > tau:
            return False
        self.next_tick += math.ceil((tau - self.next_tick) / delay + _EPS) * delay
        return True

    def _flush(self, cfg: SinkConfig, n: float, count: float, t: float) -> float:
        """``count`` flushes of ``n`` messages starting at ``t``: the recording and the outcome."""
        meter, pid, rb = self.meter, cfg.pipeline_id, cfg.record_bytes
        total = n * count
        self.sends += count
        if meter is not None:
            meter.add(ins.BYTES_PROCESSED, ("sink", "in", pid), total * rb)
            meter.observe(ins.SINK_BATCH_SIZE_RECORDS, (pid,), n, count)
            meter.observe(ins.SINK_BATCH_SIZE_BYTES, (pid,), n * rb, count)
        # Append failures: those rows go to the DLQ one by one and the batch is rebuilt without them
        rejected = total * cfg.permanent_rows
        if rejected > _EPS:
            self.stream.remove(rejected)
            cfg.dlq(meter, "sink", sink_errors.dlq_reason(cfg.permanent_name), rejected)
        rows = n * (1.0 - cfg.permanent_rows)
        prepare = cfg.prepare(n)
        if meter is not None:
            meter.observe(ins.PROCESSING_DURATION, ("sink", "schema_mapping", pid), cfg.prepare(n), count)
            meter.observe(ins.PROCESSING_DURATION, ("sink", "total_preparation", pid), prepare, count)
            meter.observe(ins.PROCESSING_DURATION, ("sink", "per_message", pid), prepare / max(n, 1.0), count)
        failed = 0.0
        retry_rate = sum(p for name, p in cfg.fail.items() if sink_errors.classify(name) == sink_errors.RETRYABLE)
        for name, p in cfg.fail.items():
            batches = count * p
            if batches <= _EPS:
                continue
            failed += p
            klass = sink_errors.classify(name)
            lost_rows = rows * batches
            if meter is not None:
                meter.add(ins.SINK_ERRORS_BY_CLASSIFICATION, (klass, name, pid), batches)
            if klass == sink_errors.RETRYABLE:
                if meter is not None:
                    meter.add(ins.SINK_NACK_MESSAGES, (pid,), lost_rows)
                    meter.add(ins.PROCESSOR_MESSAGES, ("sink", "retry", pid), lost_rows)
                    meter.add(ins.SINK_RETRIES, ("retry", pid), lost_rows)
                self.stream.nak(t, lost_rows, NAK_DELAY, lost_rows * _max_deliver_share(retry_rate))
            else:
                if meter is not None:
                    meter.add(ins.PROCESSOR_MESSAGES, ("sink", "error", pid), lost_rows)
                    meter.add(ins.SINK_RETRIES, ("exhausted", pid), lost_rows)
                self.stream.remove(lost_rows)
                cfg.dlq(meter, "sink", sink_errors.dlq_reason(name), lost_rows)
        ok = rows * count * max(0.0, 1.0 - failed)
        if cfg.clickhouse is not None:
            cfg.clickhouse(count, count * min(1.0, failed), ok, rb, count * cfg.send(n))
        self.stream.remove(ok)
        if meter is not None and ok > _EPS:
            meter.add(ins.CLICKHOUSE_RECORDS_WRITTEN, ("sink", pid), ok)
            meter.add(ins.PROCESSOR_MESSAGES, ("sink", "success", pid), ok)
            # bytes out: the whole flush's bytes for each schema batch sent successfully
            meter.add(ins.BYTES_PROCESSED, ("sink", "out", pid), n * rb * count * max(0.0, 1.0 - failed))
        return ok


def _max_deliver_share(retryable: float) -> float:
    """Of the messages NAKed after a retryable error, the share on their last allowed delivery: a
    message fails its d-th delivery with probability f^d, and the 10th failure is final (the
    consumer's MaxDeliver; nothing records it)."""
    if retryable <= 0:
        return 0.0
    failures = sum(retryable ** d for d in range(1, MAX_DELIVER + 1))
    return retryable ** MAX_DELIVER / failures
