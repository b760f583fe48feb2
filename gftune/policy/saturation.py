"""Is the sink saturated? The one question its capacity depends on, decided from what is visible.

A sink's capacity is observable only while a backlog keeps it flushing back to back. Two things
must both be seen (reference: glassflow/clickhouse-etl at c13349c4, §4 and §6 of docs/signals.md):

1. **full flushes**: the mean flush is about ``max_batch_size`` (a flush that fills before the ticker
   fires); an unsaturated sink flushes mostly on its ticker, partial batches;
2. **a backlog in front of it**, seen where GlassFlow shows one for this shape:

   * sink right behind the ingestor: its stream fills (``stream_depth_ratio`` well above the ~0.5 a
     busy healthy sink shows: MaxAckPending 4·B of MaxMsgs 8·B; without MaxMsgs, more than 6
     batches in it), then the ingestor backpressures (DiscardNew; without MaxMsgs never);
   * sink behind a dedup pod: only the dedup pod's backpressure shows it (``dedup-out`` is not
     sampled; ingestor backpressure there may as well be the dedup pod's own slowness);
   * sink behind the join: nothing until the join's inputs fill, then the ingestors backpressure
     (the join itself records nothing, so a slow join reads the same: the full flushes decide);
   * the ingestor's backpressure alone is no evidence: it also starts on a full publish window
     (PubAcks slower than 1 s), with the stream nowhere near full;
   * with the NATS exporter: messages waiting for the sink's consumer beyond a batch per replica.

Full flushes alone are no evidence (a busy sink that keeps up flushes full batches too), and a
backlog alone is none (the bottleneck may be upstream of the sink, which then flushes partly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gftune.policy.signal_types import SignalReading
from gftune.policy.sink_model import FULL_FLUSH

# The sampled stream of a sink behind the ingestor this full is a backlog, not a busy sink's
# in-flight batches (those alone fill ~half of MaxMsgs).
DEPTH_BACKLOG = 0.75
# The same in batches, for streams without MaxMsgs (or with a large one): a consumer holds at most
# 4 batches in flight (MaxAckPending 4·B); 6 is a default 8·B stream 75% full.
DEPTH_BACKLOG_BATCHES = 6.0
# This share of time in finished backpressure episodes is sustained backpressure, not a blip.
BACKPRESSURE_SUSTAINED = 0.1


class Readings(Protocol):
    def reading(self, name: str) -> SignalReading: ...


@dataclass(frozen=True)
class Saturation:
    saturated: bool
    evidence: str  # what was seen, or what is missing


def _value(view: Readings, name: str) -> float | None:
    reading = view.reading(name)
    return reading.value if reading.known else None


def backlog_evidence(view: Readings, producer: str, *, batch: float | None, sink_replicas: int) -> list[str]:
    """What shows a backlog in front of a sink fed by ``producer`` (ingestor, dedup or join; "" when
    the shape is not known: any of them). Empty: no backlog is shown."""
    seen: list[str] = []
    pending = _value(view, "nats_sink_pending")
    if pending is not None and batch and pending > batch * sink_replicas:
        seen.append(f"{pending:,.0f} messages wait for the sink's consumers (NATS exporter)")
    if producer in ("dedup", ""):
        active, share = _value(view, "dedup_backpressure"), _value(view, "dedup_backpressure_share")
        if share is not None and share >= BACKPRESSURE_SUSTAINED:
            seen.append(f"the dedup pod spent {share:.0%} of the time in backpressure (its output is full)")
        elif active is not None and active >= 1:
            seen.append("the dedup pod is in backpressure (its output is full)")
    if producer == "dedup":
        return seen
    # Behind the ingestor (or the join, whose inputs fill once its output is full) the sampled
    # stream must show it: the ingestor also backpressures on a full publish window (slow PubAcks),
    # with its stream nowhere near full, which says nothing about the sink.
    ratio, batches = _value(view, "stream_depth_ratio"), _value(view, "stream_depth_batches")
    if ratio is not None and ratio >= DEPTH_BACKLOG:
        seen.append(f"its {'input' if producer == 'join' else ''} stream is {ratio:.0%} full".replace("  ", " "))
    elif batches is not None and batches >= DEPTH_BACKLOG_BATCHES:
        seen.append(f"the sampled stream holds {batches:,.0f} batches (a consumer keeps at most 4 in flight)")
    else:
        return seen
    active, share = _value(view, "ingestor_backpressure"), _value(view, "backpressure_share")
    if share is not None and share >= BACKPRESSURE_SUSTAINED:
        seen.append(f"the ingestors spent {share:.0%} of the time in backpressure")
    elif active is not None and active >= 1:
        seen.append("the ingestors are in backpressure")
    return seen


def sink_saturation(view: Readings, producer: str, *, batch: float | None, sink_replicas: int) -> Saturation:
    """Whether the sink flushes back to back because a backlog keeps it busy (see the module)."""
    fill = _value(view, "sink_batch_fill")
    seen = backlog_evidence(view, producer, batch=batch, sink_replicas=sink_replicas)
    if fill is None:
        return Saturation(False, "the mean flush size (or max_batch_size) is unknown")
    if fill < FULL_FLUSH:
        return Saturation(False, f"its flushes are {fill:.0%} full: it flushes what arrives, on its ticker")
    if not seen:
        where = {"dedup": "no dedup backpressure", "join": "the join's input streams not filling"}.get(
            producer, "its stream not filling")
        return Saturation(False, f"no backlog in front of it ({where})")
    return Saturation(True, f"full flushes ({fill:.0%} of max_batch_size) and {'; '.join(seen)}")
