"""A JetStream stream as GlassFlow's operator configures it: limits, DiscardNew, WorkQueue, MaxAge.

Messages are a fluid kept in publish-time cohorts, oldest first, so that ``maxAge`` can expire a
backlog as NATS does (``glassflow-etl-k8s-operator:internal/controller/nats_resource_plan.go``
gives every internal stream the pipeline's MaxAge/MaxBytes/MaxMsgs and DiscardNew;
``internal/nats/client.go`` WorkQueue retention):

* **DiscardNew**: a publish that would pass MaxMsgs or MaxBytes is refused (JetStream error 10077);
  nothing already stored is ever discarded to make room.
* **WorkQueue**: a message leaves the stream when its consumer acks it, so the stored count
  (JetStream ``State.Msgs``, what ``gfm_stream_depth`` samples) includes messages delivered and not
  yet acked.
* **NAK with delay**: a NAKed message stays stored and is redelivered after the delay.
* **MaxDeliver**: a message delivered that many times is never delivered again; under WorkQueue it
  stays stored until MaxAge removes it (inferred from NATS semantics).
* **MaxAge**: stored messages older than it disappear, whatever their delivery state: the only way
  records leave a stream without being consumed (the model's truth counts them ``expired``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

_EPS = 1e-9


@dataclass
class JetStream:
    name: str
    sampled: bool  # behind an ingestor: reported by its gfm_stream_depth sampler
    max_msgs: float = math.inf  # a limit of -1 (or 0 after the operator's defaults) is inf
    max_bytes: float = math.inf
    max_age: float = math.inf  # seconds
    record_bytes: float = 512.0
    ready: deque[list[float]] = field(default_factory=deque)  # [publish time, messages], oldest first
    delayed: list[list[float]] = field(default_factory=list)  # NAKed: [redelivery due, publish time, messages]
    stuck: deque[list[float]] = field(default_factory=deque)  # past MaxDeliver: [publish time, messages]
    expired: float = 0.0  # messages MaxAge removed, ever
    stored_total: float = 0.0  # messages ever stored: the stream's last sequence number
    arrived: float = 0.0  # published during the last step (its consumer sees them arrive over the next)
    _publishing: float = 0.0
    _refused: bool = False
    refused: bool = False  # the last step refused a publish: the stream was full
    before_publish: float = 0.0  # the depth once its consumer had its turn, before the producer's
    # running totals of the three queues (summing them on every look was most of the model's time)
    _n_ready: float = 0.0
    _n_delayed: float = 0.0
    _n_stuck: float = 0.0

    # --- size -------------------------------------------------------------------------------------

    @property
    def depth(self) -> float:
        """JetStream ``State.Msgs``: everything stored, delivered or not."""
        return self._n_ready + self._n_delayed + self._n_stuck

    @property
    def ready_count(self) -> float:
        return self._n_ready

    @property
    def sampled_depth(self) -> float:
        """What the depth sampler reads at the end of a step. A full stream is full whenever it is
        looked at. Otherwise its consumer takes messages as they arrive, so the moment after its turn
        (the unflushed buffer and any real backlog) stands for a continuous stream better than the
        moment after the producer published a whole step at once."""
        return self.depth if self.refused else min(self.depth, self.before_publish)

    def limit(self) -> float:
        """Messages the stream may hold: MaxMsgs, or MaxBytes in messages of the stream's record size."""
        by_bytes = self.max_bytes / self.record_bytes if self.record_bytes > 0 else math.inf
        return min(self.max_msgs, by_bytes)

    def room(self) -> float:
        """What a publish may still add before the stream refuses it (DiscardNew)."""
        return max(0.0, self.limit() - self.depth)

    # --- flows ------------------------------------------------------------------------------------

    def publish(self, t: float, messages: float) -> float:
        """Store up to ``messages`` at time ``t``; the rest is refused. Returns what was stored."""
        accepted = min(messages, self.room())
        self._publishing += max(0.0, accepted)
        self.stored_total += max(0.0, accepted)
        if accepted > _EPS:
            grain = _grain(self.max_age)
            if self.ready and self.ready[-1][0] > t - grain:
                self.ready[-1][1] += accepted
            else:
                self.ready.append([t, accepted])
            self._n_ready += accepted
        # refused, or filled to the limit by a producer that asked only for the room left (it holds back)
        self._refused = self._refused or accepted < messages - 1e-6 or self.room() <= 1e-6
        return max(0.0, accepted)

    def remove(self, messages: float) -> float:
        """Ack (or DLQ and ack) the oldest ``messages`` delivered ones; returns the oldest publish time."""
        oldest = self.ready[0][0] if self.ready else 0.0
        left = messages
        while left > _EPS and self.ready:
            head = self.ready[0]
            if head[1] <= left + _EPS:
                left -= head[1]
                self.ready.popleft()
            else:
                head[1] -= left
                left = 0.0
        self._n_ready = max(0.0, self._n_ready - (messages - max(0.0, left))) if self.ready else 0.0
        return oldest

    def nak(self, t: float, messages: float, delay: float, stuck: float = 0.0) -> None:
        """The oldest ``messages`` are NAKed: redelivered after ``delay``, except ``stuck`` of them
        that reached MaxDeliver and stay stored, undelivered, until MaxAge."""
        published = self.remove(messages)
        if messages - stuck > 1e-6:
            self.delayed.append([t + delay, published, messages - stuck])
            self._n_delayed += messages - stuck
        if stuck > 1e-6:  # below that, a rounding of MaxDeliver's share, not a message
            if self.stuck and self.stuck[-1][0] > published - _grain(self.max_age):
                self.stuck[-1][1] += stuck
            else:
                self.stuck.append([published, stuck])
            self._n_stuck += stuck

    def end_step(self) -> None:
        """The step's publishes become what the consumer sees arriving during the next one. A stream
        that refused publishes has a producer waiting to refill whatever is freed: for its consumer,
        everything stored is there already."""
        self.arrived = 0.0 if self._refused else self._publishing
        self.refused = self._refused
        self._publishing, self._refused = 0.0, False

    def release(self, t: float) -> None:
        """NAKed messages whose delay is over are ready again, ahead of newer ones."""
        due = [d for d in self.delayed if d[0] <= t + _EPS]
        if due:
            self.delayed = [d for d in self.delayed if d[0] > t + _EPS]
            for _, published, messages in sorted(due, key=lambda d: d[1], reverse=True):
                self.ready.appendleft([published, messages])
                self._n_ready += messages
                self._n_delayed -= messages
            if not self.delayed:
                self._n_delayed = 0.0

    def expire(self, t: float) -> float:
        """MaxAge: remove what was published before ``t - max_age``; returns how much."""
        if math.isinf(self.max_age):
            return 0.0
        horizon = t - self.max_age
        gone = {"ready": 0.0, "stuck": 0.0, "delayed": 0.0}
        while self.ready and self.ready[0][0] < horizon:
            gone["ready"] += self.ready.popleft()[1]
        while self.stuck and self.stuck[0][0] < horizon:
            gone["stuck"] += self.stuck.popleft()[1]
        keep = []
        for d in self.delayed:
            if d[1] < horizon:
                gone["delayed"] += d[2]
            else:
                keep.append(d)
        self.delayed = keep
        self._n_ready = max(0.0, self._n_ready - gone["ready"]) if self.ready else 0.0
        self._n_stuck = max(0.0, self._n_stuck - gone["stuck"]) if self.stuck else 0.0
        self._n_delayed = max(0.0, self._n_delayed - gone["delayed"]) if self.delayed else 0.0
        total = sum(gone.values())
        self.expired += total
        return total

    def redeliver_all(self) -> None:
        """The consumer is gone: NAK delays no longer matter, what it held is ready for the next one."""
        self.release(math.inf)

    def clear(self) -> float:
        """Remove everything (terminate's purge, the stop-time sweep); returns how much."""
        held = self.depth
        self.ready.clear()
        self.delayed.clear()
        self.stuck.clear()
        self._n_ready = self._n_delayed = self._n_stuck = 0.0
        return held


def _grain(max_age: float) -> float:
    """Cohort width: fine enough to expire a backlog within ~1% of MaxAge, coarse enough to stay small."""
    if math.isinf(max_age):
        return 60.0
    return min(60.0, max(1.0, max_age / 100.0))
