"""Simulated time.

The simulator runs ``time_scale`` times faster than the wall clock: one wall second is
``time_scale`` sim seconds. Everything inside the simulator (transition delays, the fluid model,
a row's ``created_at``) is in sim time; only what it shows converts back: counters on ``/metrics``
are divided by ``time_scale`` (see ``metrics``) and the API's timestamps are wall-clock instants,
``wall_start + (t - model_start) / time_scale``, so that none lies in the future and a client's
"time since the last status change" on its own clock, times ``time_scale``, is the model time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Sim seconds, plus the wall-clock instant (``epoch``) that the sim time ``model_start`` maps to."""

    def __init__(self, time_scale: float = 1.0, *, epoch: datetime | None = None, model_start: float = 0.0) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = float(time_scale)
        self.epoch = epoch or datetime.now(UTC)
        self.model_start = float(model_start)

    def now(self) -> float:
        raise NotImplementedError

    def wall_time(self, sim_seconds: float) -> datetime:
        """The wall-clock instant of a sim time: model seconds elapsed shrink by ``time_scale``."""
        return self.epoch + timedelta(seconds=(sim_seconds - self.model_start) / self.time_scale)

    def timestamp(self, sim_seconds: float) -> str:
        """The RFC 3339 time the API prints (Go ``time.Time`` JSON, UTC, trailing zeros cut) for a sim time."""
        return format_time(self.wall_time(sim_seconds))


class ScaledClock(Clock):
    """Sim time advances ``time_scale`` x faster than ``time.monotonic()``."""

    def __init__(self, time_scale: float = 1.0, *, epoch: datetime | None = None) -> None:
        super().__init__(time_scale, epoch=epoch)
        self._start = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.time_scale


class ManualClock(Clock):
    """A clock that only moves when told to: for deterministic unit tests of the model."""

    def __init__(self, start: float = 0.0, *, time_scale: float = 1.0, epoch: datetime | None = None) -> None:
        super().__init__(time_scale, epoch=epoch or datetime(2026, 1, 1, tzinfo=UTC), model_start=start)
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


def format_time(moment: datetime) -> str:
    """Go's ``time.RFC3339Nano`` for a UTC instant: ``2026-05-01T10:00:00.5Z``."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"
