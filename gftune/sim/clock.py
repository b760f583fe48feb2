"""Simulated time.

The simulator runs ``time_scale`` times faster than the wall clock: one wall second is
``time_scale`` sim seconds. Everything inside the simulator (transition delays, the fluid model,
``created_at``) is in sim time; only the HTTP exposition converts back (see ``metrics``).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Sim seconds since the simulator started, plus the wall-clock instant that sim time 0 maps to."""

    def __init__(self, time_scale: float = 1.0, *, epoch: datetime | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = float(time_scale)
        self.epoch = epoch or datetime.now(UTC)

    def now(self) -> float:
        raise NotImplementedError

    def timestamp(self, sim_seconds: float) -> str:
        """The RFC 3339 time the API prints (Go ``time.Time`` JSON, UTC, trailing zeros cut)."""
        return format_time(self.epoch + timedelta(seconds=sim_seconds))


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
        super().__init__(time_scale, epoch=epoch or datetime(2026, 1, 1, tzinfo=UTC))
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
