"""Backpressure episodes as a GlassFlow component records them (reference: the ingestor's
``clickhouse-etl:glassflow-api/internal/ingestor/processor.go:246-281,382-442,591`` and the dedup pod's
``internal/processor/streaming_component.go:183-286``).

An episode starts at the first backpressure error of a batch (a full output stream refusing a
publish, JetStream error 10077) and ends when that batch is done: only the throttled messages are
re-published, with a 50 ms -> 5 s backoff, and nothing new is read meanwhile. So under sustained
saturation every batch is one episode. At the start the component records ``…_active`` = 1 and
``…_events_total`` +1; at the end ``…_active`` = 0 and the episode's length in
``…_duration_seconds``. Nothing is recorded before the first episode, so the series are absent
until then. The ingestor records both its own instruments and ``component_backpressure_*`` with
``component="ingestor"``; the dedup pod only the latter with ``component="dedup"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gftune.glassflow import instruments as ins
from gftune.sim.telemetry import Meter

_EPS = 1e-9


@dataclass
class Episodes:
    """The backpressure state of one replica and its recording."""

    component: str  # "ingestor" | "dedup"
    pipeline_id: str
    active: bool = False
    since: float = 0.0  # start of the current episode
    progress: float = 0.0  # records of the current batch already published

    def step(self, meter: Meter | None, t: float, dt: float, blocked: bool, moved: float, batch: float) -> None:
        """One model step: ``blocked`` when an output stream refused part of this step's publishes;
        ``moved`` records went through (fluid), in batches of ``batch``."""
        if not blocked:
            if self.active:
                self._end(meter, t)
            return
        if not self.active:
            self._start(meter, t)
            self.progress = 0.0
        if moved <= _EPS or batch <= 0:
            return
        need = max(0.0, batch - self.progress)
        if moved + _EPS < need:
            self.progress += moved
            return
        # the current batch completes, then each following batch is an episode of its own (it hits the
        # full stream again right away); the last one is still going at the end of the step
        done_at = t + dt * need / moved
        self._end(meter, done_at)
        rest = moved - need
        whole = int(rest // batch)
        if whole > 0 and meter is not None:
            length = dt * batch / moved
            if self._ingestor:
                meter.add(ins.INGESTOR_BACKPRESSURE_EVENTS, self._labels(), whole)
                meter.observe(ins.INGESTOR_BACKPRESSURE_DURATION, self._labels(), length, whole)
            meter.add(ins.COMPONENT_BACKPRESSURE_EVENTS, self._component_labels(), whole)
            meter.observe(ins.COMPONENT_BACKPRESSURE_DURATION, self._component_labels(), length, whole)
        self._start(meter, t + dt * (need + whole * batch) / moved)
        self.progress = rest - whole * batch

    def stop(self, meter: Meter | None, t: float) -> None:
        """Cleanup at shutdown ends an open episode."""
        if self.active:
            self._end(meter, t)

    # --- recording ----------------------------------------------------------------------------------

    @property
    def _ingestor(self) -> bool:
        return self.component == "ingestor"

    def _labels(self) -> tuple[str, ...]:
        return (self.pipeline_id,)

    def _component_labels(self) -> tuple[str, ...]:
        return (self.component, self.pipeline_id)

    def _start(self, meter: Meter | None, t: float) -> None:
        self.active, self.since = True, t
        if meter is None:
            return
        if self._ingestor:
            meter.set(ins.INGESTOR_BACKPRESSURE_ACTIVE, self._labels(), 1.0)
            meter.add(ins.INGESTOR_BACKPRESSURE_EVENTS, self._labels(), 1.0)
        meter.set(ins.COMPONENT_BACKPRESSURE_ACTIVE, self._component_labels(), 1.0)
        meter.add(ins.COMPONENT_BACKPRESSURE_EVENTS, self._component_labels(), 1.0)

    def _end(self, meter: Meter | None, t: float) -> None:
        self.active = False
        if meter is None:
            return
        length = max(0.0, t - self.since)
        if self._ingestor:
            meter.set(ins.INGESTOR_BACKPRESSURE_ACTIVE, self._labels(), 0.0)
            meter.observe(ins.INGESTOR_BACKPRESSURE_DURATION, self._labels(), length)
        meter.set(ins.COMPONENT_BACKPRESSURE_ACTIVE, self._component_labels(), 0.0)
        meter.observe(ins.COMPONENT_BACKPRESSURE_DURATION, self._component_labels(), length)
