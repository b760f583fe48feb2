"""Observation: what apply measures around a change — the baseline signals before the stop, the
pipeline's status while the change settles, and the same signals (plus a source/sink chart) over the
observation window after it. The verdict on them is :mod:`gftune.apply.judging`'s.

With Prometheus, one snapshot over the window gives the signals and a range query the chart; with
a direct scrape, a few sub-window scrapes give the chart and their ends one snapshot over the whole
window. A metric source that cannot be read leaves a gap in the run, never a guessed value.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from gftune.apply import verify
from gftune.apply.context import ApplyContext, Json
from gftune.apply.lifecycle import REPORT_SIGNALS, motivating_proposals
from gftune.apply.state import PipelineRun, Step
from gftune.glassflow.statuses import Status
from gftune.live import LiveState, read_one
from gftune.metrics.expr import ScrapePair
from gftune.metrics.snapshots import MetricsError
from gftune.metrics.sources import ScrapeSnapshot
from gftune.policy import signals


class Observer:
    """Reads the signals and the status of the pipelines of one run."""

    def __init__(self, ctx: ApplyContext, say: Callable[[str, str], None]) -> None:
        self.ctx = ctx
        self.say = say

    def _signal_context(self, pipeline_id: str, live: Any) -> signals.SignalContext:
        # Against a time-scaled simulator, gauge slopes (Kafka lag growth) per wall second are
        # time_scale times too big; the context corrects them, as plan and tune do.
        return signals.context_for(pipeline_id, live, time_scale=self.ctx.config.time_scale)

    @staticmethod
    def _signal_names(run: PipelineRun) -> list[str]:
        judge = next((s for s in run.steps if s.action == "judge"), None)
        expected = [e["signal"] for e in (judge.params.get("expect", ()) if judge else ())]
        evidence = [e.get("signal") for p, _ in motivating_proposals(run.entry)
                    for e in p.get("evidence", ())]
        names = [*expected, *(n for n in evidence if n in signals.SIGNALS), *REPORT_SIGNALS,
                 *verify.SATURATION_SIGNALS, verify.INPUT_RATE]
        return [n for n in dict.fromkeys(names) if n in signals.SIGNALS]

    async def snapshot_readings(self, run: PipelineRun, live: Any, window: float,
                                snapshot: Any = None) -> tuple[dict[str, signals.SignalReading], Any]:
        names = self._signal_names(run)

        def read() -> tuple[dict[str, signals.SignalReading], Any]:
            snap = snapshot or self.ctx.metrics.snapshot(window_s=window)
            return signals.read_with(snap, self._signal_context(run.pipeline_id, live), names), snap

        try:
            return await asyncio.to_thread(read)
        except MetricsError as exc:
            self.say(run.pipeline_id, f"metrics unavailable: {exc}")
            run.gaps.append(f"metrics unavailable: {exc}")
            return {}, None

    async def baseline(self, run: PipelineRun, live: LiveState, window: float) -> None:
        """The signals before the change, over one verification window."""
        self.say(run.pipeline_id, f"reading baseline signals over {window:.1f}s")
        readings, _snapshot = await self.snapshot_readings(run, live, window)
        run.baseline = {name: r.to_dict() for name, r in readings.items()}

    async def settle(self, run: PipelineRun, step: Step) -> None:
        seconds = self.ctx.scaled(float(step.params.get("seconds", 0.0)))
        status = await self._hold(run, step.name, seconds)
        step.observed = status

    async def _hold(self, run: PipelineRun, what: str, seconds: float) -> str | None:
        """Wait ``seconds`` while watching the status; stops early if the pipeline leaves Running."""
        start = self.ctx.clock()
        status = None
        while True:
            live = await self.ctx.read(run.pipeline_id, docs=False)
            status = live.status
            elapsed = self.ctx.clock() - start
            if status != Status.RUNNING or elapsed >= seconds:
                return status
            self.ctx.reporter.waiting(run.pipeline_id, what, elapsed, seconds, status)
            await self.ctx.sleep(min(self.ctx.poll_s, max(0.0, seconds - elapsed)))

    async def observe(self, run: PipelineRun, step: Step) -> None:
        pid = run.pipeline_id
        window = self.ctx.scaled(float(step.params.get("seconds", 0.0)))
        target = run.revert_after if step.phase == "revert" else run.after
        if step.phase != "revert":
            run.gaps = []
        metrics = self.ctx.metrics
        start = self.ctx.clock()
        if metrics is None:
            step.observed = await self._hold(run, step.name, window)
            return
        if getattr(metrics, "kind", "") == "scrape":
            readings, series = await self._observe_scrape(run, window)
        else:
            step.observed = await self._hold(run, step.name, window)
            live = await read_one(self.ctx.client, pid)
            readings, snapshot = await self.snapshot_readings(run, live, window)
            charted = snapshot is not None and step.phase != "revert"  # the report charts the change's window
            series = await self._prometheus_series(run, live, window, start) if charted else {}
        target.clear()
        target.update({name: r.to_dict() for name, r in readings.items()})
        if step.phase != "revert":
            run.series = series
        step.detail = f"{len(readings)} signals over {window:.1f}s" + (f"; gaps: {len(run.gaps)}" if run.gaps else "")

    async def _prometheus_series(self, run: PipelineRun, live: Any, window: float, start: float) -> Json:
        metrics = self.ctx.metrics
        ctx = self._signal_context(run.pipeline_id, live)

        def read() -> Json:
            snap = metrics.snapshot(window_s=max(window / 5, 2.0))
            out: Json = {}
            for name, key in (("source_rate", "source"), ("sink_rate", "sink")):
                result = snap.over(signals.signal_expr(name, ctx), window)
                if not result.complete:
                    run.gaps.append(f"{name}: {result.detail or 'incomplete data'} in the observation window")
                totals: dict[float, float] = {}
                for points in result.series.values():
                    for t, v in points:
                        if math.isfinite(v):
                            totals[round(t, 3)] = totals.get(round(t, 3), 0.0) + v
                out[key] = totals
            times = sorted(set(out.get("source", {})) & set(out.get("sink", {})))
            return {"t": [round(t - start, 2) for t in times], "source": [out["source"][t] for t in times],
                    "sink": [out["sink"][t] for t in times]}

        try:
            return await asyncio.to_thread(read)
        except MetricsError as exc:
            run.gaps.append(f"metrics unavailable for the chart: {exc}")
            return {}

    async def _observe_scrape(self, run: PipelineRun, window: float) -> tuple[dict[str, signals.SignalReading], Json]:
        """Direct scrape: a few sub-windows for the chart, and one snapshot over the whole window."""
        pid = run.pipeline_id
        metrics = self.ctx.metrics
        parts = 5
        start = self.ctx.clock()
        series: Json = {"t": [], "source": [], "sink": []}
        first = last = None
        live = await read_one(self.ctx.client, pid)
        for index in range(parts):
            try:
                snap = await asyncio.to_thread(metrics.snapshot, window_s=window / parts)
            except MetricsError as exc:
                run.gaps.append(f"scrape {index + 1}/{parts} failed: {exc}")
                continue
            first = first or snap
            last = snap
            rates = signals.read_with(snap, self._signal_context(pid, live), ["source_rate", "sink_rate"])
            if rates["source_rate"].known and rates["sink_rate"].known:
                series["t"].append(round(snap.at.timestamp() - start, 2))
                series["source"].append(rates["source_rate"].value)
                series["sink"].append(rates["sink_rate"].value)
            self.ctx.reporter.waiting(pid, "verify.observe", self.ctx.clock() - start, window, live.status)
        if first is None or last is None:
            return {}, series
        whole = ScrapeSnapshot(ScrapePair(first.pair.before, last.pair.after), last.naming, last.at,
                               last.pair.after.at - first.pair.before.at)
        live = await read_one(self.ctx.client, pid)
        readings, _ = await self.snapshot_readings(run, live, whole.window_s, snapshot=whole)
        return readings, series
