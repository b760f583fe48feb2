"""Apply a plan safely: lock → capture → the plan's lifecycle → settle → observe → judge → keep or revert.

The design (docs/apply.md):

* **Exactly the saved plan.** The plan is refused as a whole before anything is touched when its
  git commit is not the repository's, it is older than ``max_plan_age``, or a live pipeline no
  longer matches the fingerprint the plan recorded (:func:`gftune.plan.model.check_stale`). The check is
  repeated per pipeline once its lock is held.
* **A journal step before and after every action** (:mod:`gftune.apply.journal`), so a killed run can be
  resumed from any point: every action step is *observe → decide → act*, and
  :func:`gftune.apply.lifecycle.decide` is a pure function that recognises an action whose effect is
  already visible (an edit already in the live config is not sent again).
* **Never left stopped.** Any failure after the pipeline was touched appends a *restore* phase that
  puts back the previous configuration and resources and brings the pipeline back to Running; if
  that fails too, a *rescue* phase resumes it whatever its configuration, and the run says so loudly.
* **Proof by metrics.** Baseline signals are read before the stop, the same signals after the
  settle and observation window, and :func:`gftune.apply.verify.judge` decides. A failed verdict reverts
  through the same lifecycle and verifies the revert.

The pure core (step building, deciding, matching, exit codes) is :mod:`gftune.apply.lifecycle`; the
:class:`Executor` here does the I/O through the API client, the metric source and the journal
store that are passed in.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gftune import exitcodes
from gftune.apply import lock, report, verify
from gftune.apply.journal import (
    DONE,
    FAILED,
    PENDING,
    SKIPPED,
    STARTED,
    JournalStore,
    PipelineRun,
    RunJournal,
    Step,
    failpoint,
    new_run_id,
    redact,
    still_running,
    this_process,
    unredact,
)
from gftune.apply.lifecycle import (
    API_ACTIONS,
    DONE_,
    FAIL,
    MAX_CATCH_UP_WINDOWS,
    REPORT_SIGNALS,
    WAIT,
    Observation,
    VerifyPlan,
    build_steps,
    config_matches,
    cycle_steps,
    decide,
    exit_code,
    insert_before_finish,
    is_transient,
    plan_stale_reasons,
    provenance_tags,
    rescue_steps,
    resources_match,
    restore_core,
    running_timeout,
    touched,
    verify_plan,
    with_live_gftune_tags,
    with_live_immutables,
)
from gftune.client import ApiError, GlassFlowClient
from gftune.desired import secrets
from gftune.desired.config import Config
from gftune.glassflow import resources as res
from gftune.glassflow.statuses import Status
from gftune.live import read_live, read_one
from gftune.metrics.expr import ScrapePair
from gftune.metrics.sources import MetricsError, ScrapeSnapshot
from gftune.plan import canonical
from gftune.plan import model as planmod
from gftune.policy import signals

Json = dict[str, Any]

class StepFailed(Exception):
    """A step cannot complete; ``permanent`` errors are not retried."""


class Refused(StepFailed):
    """The pipeline must not be touched (stale, locked by someone else)."""


# --- I/O: the executor -------------------------------------------------------------------------------

class Reporter(Protocol):
    def event(self, pipeline_id: str, message: str) -> None: ...

    def waiting(self, pipeline_id: str, what: str, elapsed: float, timeout: float | None,
                status: str | None) -> None: ...


class QuietReporter:
    def event(self, pipeline_id: str, message: str) -> None:
        pass

    def waiting(self, pipeline_id: str, what: str, elapsed: float, timeout: float | None,
                status: str | None) -> None:
        pass


@dataclass
class ApplyContext:
    client: GlassFlowClient
    config: Config
    store: JournalStore
    metrics: Any = None  # a gftune.metrics MetricSource, or None (health-only verification)
    owner: str = field(default_factory=lock.default_owner)
    # what ${env:}/${file:} references stand for (secrets.Resolver): the edge that reads them
    resolver: Callable[[str], str] = field(default_factory=lambda: secrets.Resolver({}, base_dir=Path(".")))
    reporter: Reporter = field(default_factory=QuietReporter)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    lock_settle_s: float = 0.5  # an HTTP race window, not a simulated duration: never time-scaled
    max_attempts: int = 6

    def scaled(self, seconds: float) -> float:
        return self.config.scaled(seconds)

    @property
    def poll_s(self) -> float:
        return min(2.0, max(0.05, self.scaled(2.0)))


@dataclass
class _Live:
    exists: bool
    status: str | None
    pipeline: Json | None = None
    resources: Json | None = None


class Executor:
    """Runs (or resumes) the pipelines of one journal."""

    def __init__(self, ctx: ApplyContext, journal: RunJournal) -> None:
        self.ctx = ctx
        self.journal = journal
        journal.process = this_process()
        self._before_docs: dict[str, Json] = {}  # full "before" documents, in memory only (secrets)
        self._locks: dict[str, lock.Lock] = {}

    # -- bookkeeping ----------------------------------------------------------------------------
    def save(self) -> None:
        self.ctx.store.save(self.journal)

    def say(self, pid: str, message: str) -> None:
        self.ctx.reporter.event(pid, secrets.masker.mask(message))

    async def run(self) -> RunJournal:
        runs = [r for r in self.journal.pipelines.values() if r.outcome is None or r.current() is not None]
        await asyncio.gather(*(self._pipeline(r) for r in runs))
        self.journal.finished_at = self.ctx.clock()
        self.journal.state = "finished"
        self.journal.exit_code = exit_code(r.outcome or "failed" for r in self.journal.pipelines.values())
        self.save()
        return self.journal

    async def _pipeline(self, run: PipelineRun) -> None:
        while (step := run.current()) is not None:
            await self._step(run, step)
        if run.outcome is None:
            if run.has_phase("rescue"):
                run.outcome = "failed"
            elif run.has_phase("restore"):
                run.outcome = "restored"
            else:
                run.outcome = "applied"
        self.save()

    async def _step(self, run: PipelineRun, step: Step) -> None:
        if step.params.get("when") == planmod.JOIN_RESET and not await self._join_reset_needed(run):
            for s in run.steps:
                if s.state == PENDING and s.phase == step.phase and s.params.get("when") == planmod.JOIN_RESET:
                    s.state, s.detail = SKIPPED, "join resources already as planned"
            self.save()
            return
        resumed = step.state == STARTED
        step.state = STARTED
        step.started_at = step.started_at or self.ctx.clock()
        step.attempts += 1
        self.save()
        failpoint(step, "before")
        if resumed:
            self.say(run.pipeline_id, f"resuming at {step.name} (interrupted before it was recorded as done)")
        try:
            if run.lock and step.action not in ("lock", "unlock"):
                await self._check_lock(run)  # heartbeat: the lock never expires under a run that is alive
            try:
                await self._handle(run, step)
            except (StepFailed, asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # a bug must still restore the pipeline, not leave it stopped
                raise StepFailed(f"internal error in {step.name}: {type(exc).__name__}: {exc}") from exc
        except StepFailed as exc:
            step.state, step.detail, step.finished_at = FAILED, secrets.masker.mask(str(exc)), self.ctx.clock()
            self.say(run.pipeline_id, f"{step.name} failed: {exc}")
            self._after_failure(run, step, exc)
            self.save()
            return
        failpoint(step, "after")
        step.state, step.finished_at = DONE, self.ctx.clock()
        self.save()

    def _after_failure(self, run: PipelineRun, step: Step, exc: StepFailed) -> None:
        message = secrets.masker.mask(str(exc))
        if step.phase == "finish":
            run.notes.append(f"{step.name} failed: {message}")
            return
        if step.phase in ("apply", "verify"):
            run.error = run.error or message
            run.skip_pending("apply", "not run: an earlier step failed")
            run.skip_pending("verify", "not run: an earlier step failed")
            self._skip_finish(run)
            if isinstance(exc, Refused):
                run.outcome = "refused"
            elif run.kind == planmod.CREATE or not touched(run):
                run.outcome = "failed"
            else:
                insert_before_finish(run, [Step("restore", "plan")])
            return
        if step.phase in ("restore", "revert"):
            run.error = run.error or message
            run.skip_pending(step.phase, "not run: an earlier restore step failed")
            run.notes.append(f"{step.phase} failed ({message}); resuming the pipeline as it is")
            insert_before_finish(run, rescue_steps(self.ctx.config))
            return
        # rescue failed: nothing more to try automatically
        run.error = f"{run.error or message}; could not bring the pipeline back to Running: {message}"
        run.skip_pending("rescue", "not run")
        run.outcome = "failed"

    @staticmethod
    def _skip_finish(run: PipelineRun) -> None:
        """No provenance for a change that was not kept; the lock is still released."""
        for s in run.steps:
            if s.phase == "finish" and s.state == PENDING and s.action != "unlock":
                s.state, s.detail = SKIPPED, "the change was not kept"

    # -- dispatch ---------------------------------------------------------------------------------
    async def _handle(self, run: PipelineRun, step: Step) -> None:
        if step.action in API_ACTIONS:
            await self._api_step(run, step)
            return
        handler = {
            "lock": self._lock, "capture": self._capture, "settle": self._settle, "observe": self._observe,
            "judge": self._judge, "provenance": self._provenance, "unlock": self._unlock, "plan": self._plan_undo,
            "record_revert": self._record_revert,
        }.get(step.action)
        if handler is None:
            raise StepFailed(f"unknown step {step.action!r}")
        await handler(run, step)

    # -- reading -----------------------------------------------------------------------------------
    async def _retrying(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        delay = self.ctx.scaled(1.0)
        for attempt in range(self.ctx.max_attempts):
            try:
                return await call()
            except ApiError as exc:
                if not is_transient(exc) or attempt == self.ctx.max_attempts - 1:
                    raise StepFailed(f"{what}: {exc}") from None
            await self.ctx.sleep(max(0.05, delay))
            delay = min(delay * 2, self.ctx.scaled(16.0))
        raise AssertionError("unreachable")

    async def _read(self, pid: str, *, docs: bool) -> _Live:
        async def health() -> Json | None:
            try:
                return await self.ctx.client.get_health(pid)
            except ApiError as exc:
                if exc.not_found:
                    return None
                raise

        answer = await self._retrying(f"GET {pid} health", health)
        if answer is None:
            return _Live(False, None)
        live = _Live(True, str(answer.get("overall_status") or "") or None)
        if docs:
            live.pipeline = await self._retrying(f"GET {pid}", lambda: self.ctx.client.get(pid))
            secrets_in = live.pipeline or {}
            for _, value in secrets.iter_secret_fields(secrets_in):
                if isinstance(value, str):
                    secrets.masker.add(value)
            body = await self._retrying(f"GET {pid} resources", lambda: self.ctx.client.get_resources(pid))
            live.resources = (body or {}).get("pipeline_resources") or {}
        return live

    # -- targets -----------------------------------------------------------------------------------
    def _resolve(self, doc: Json) -> Json:
        try:
            return secrets.resolve_document(doc, self.ctx.resolver, secret_fields=self.ctx.config.secret_fields)
        except secrets.SecretError as exc:
            raise StepFailed(f"cannot resolve a secret reference: {exc}") from None

    def _before_doc(self, run: PipelineRun, live: _Live) -> Json:
        if run.pipeline_id in self._before_docs:
            doc = copy.deepcopy(self._before_docs[run.pipeline_id])
        else:
            # resumed in a new process: secrets were never written down; take them from the live pipeline
            doc, missing = unredact((run.before or {}).get("config") or {}, live.pipeline or {})
            if missing:
                raise StepFailed(f"cannot rebuild the previous configuration: secret field(s) {', '.join(missing)} "
                                 "are not in the live pipeline")
            run.notes.append("previous configuration rebuilt after a restart: secret values are the live ones")
        doc = planmod._strip_join_resources(doc)
        doc["resources"] = canonical.edit_resources(self._before_resources(run, live), doc)
        return doc

    @staticmethod
    def _before_resources(run: PipelineRun, live: _Live) -> Json:
        before = run.before or {}
        return with_live_immutables(before.get("resources") or {}, live.resources,
                                    res.immutable_paths(before.get("config") or {}))

    def _target(self, run: PipelineRun, step: Step, live: _Live) -> Json | None:
        """What the step sends: a document (edit, create), internal resources (put), tags, or a name."""
        payload = run.entry.get("payload") or {}
        source = step.params.get("payload")
        if step.action in ("edit", "create"):
            doc = self._before_doc(run, live) if source == "before" else self._resolve(payload.get("document") or {})
            return with_live_gftune_tags(doc, live.pipeline) if step.action == "edit" else doc
        if step.action == "put_resources":
            if source == "before":
                return self._before_resources(run, live)
            if source == "join_restore":
                target = copy.deepcopy(live.resources or {})
                target["join"] = copy.deepcopy((payload.get("join_restore") or {}).get("join"))
                return target
            return copy.deepcopy((payload.get("resources") or {}).get("pipeline_resources") or {})
        if step.action == "patch_metadata":
            wanted = (payload.get("metadata") or {}).get("tags") or []
            return {"tags": list(dict.fromkeys([*(t for t in wanted if not canonical.is_gftune_tag(t)),
                                                *canonical.gftune_tags(live.pipeline)]))}
        if step.action == "rename":
            return {"name": payload.get("name", "")}
        return None

    def _matches(self, step: Step, target: Json | None, live: _Live) -> bool | None:
        if target is None or not live.exists:
            return None
        if step.action in ("edit", "create"):
            return config_matches(target, live.pipeline, live.resources)
        if step.action == "put_resources":
            return resources_match(target, live.resources)
        if step.action == "patch_metadata":
            return sorted(canonical.tags_of(live.pipeline)) == sorted(target["tags"])
        if step.action == "rename":
            return (live.pipeline or {}).get("name") == target["name"]
        return None

    async def _send(self, pid: str, call: str, target: Json | None) -> None:
        client = self.ctx.client
        if call == "stop":
            await client.stop(pid)
        elif call == "resume":
            await client.resume(pid)
        elif call == "edit":
            await client.edit(pid, target or {})
        elif call == "put_resources":
            await client.put_resources(pid, target or {})
        elif call == "create":
            await client.create(target or {})
        elif call == "delete":
            await client.delete(pid)
        elif call == "patch_metadata":
            await client.patch_metadata(pid, (target or {}).get("tags"))
        elif call == "rename":
            await client.rename(pid, (target or {}).get("name", ""))
        else:
            raise StepFailed(f"unknown call {call!r}")

    # -- one API step: observe → decide → act, until done ------------------------------------------
    async def _api_step(self, run: PipelineRun, step: Step) -> None:
        pid = run.pipeline_id
        needs_docs = step.action in ("edit", "put_resources", "create", "rename", "patch_metadata")
        timeout = float(step.params.get("timeout_s") or running_timeout(self.ctx.config))
        grace = self.ctx.scaled(30.0)
        started = self.ctx.clock()
        stopped_since: float | None = None
        first_status: str | None = None
        changed = False
        failures = 0
        sends = 0
        while True:
            live = await self._read(pid, docs=needs_docs)
            now = self.ctx.clock()
            stopped_since = (stopped_since or now) if live.status == Status.STOPPED else None
            first_status = first_status or live.status
            changed = changed or live.status != first_status
            target = self._target(run, step, live) if needs_docs else None
            obs = Observation(live.exists, live.status, self._matches(step, target, live), now - started,
                              now - stopped_since if stopped_since is not None else 0.0, changed)
            step.observed = live.status
            decision = decide(step.action, step.params, obs, timeout_s=timeout, resume_grace_s=grace)
            if decision.kind == DONE_:
                step.detail = decision.reason if sends == 0 or step.action == "wait_status" else step.detail
                return
            if decision.kind == FAIL:
                raise StepFailed(decision.reason)
            if decision.kind == WAIT:
                self.ctx.reporter.waiting(pid, step.name, now - started, timeout, live.status)
                await self.ctx.sleep(self.ctx.poll_s)
                continue
            try:
                await self._send(pid, decision.call or step.action, target)
            except ApiError as exc:
                failures += 1
                if not is_transient(exc) or failures >= self.ctx.max_attempts:
                    raise StepFailed(f"{decision.call or step.action}: {exc}") from None
                self.say(pid, f"{step.name}: {exc}; retrying ({failures}/{self.ctx.max_attempts - 1})")
                await self.ctx.sleep(max(0.05, self.ctx.scaled(0.5 * 2 ** failures)))
                continue
            sends += 1
            changed = True  # after our own resume, a Failed status is an answer, not a leftover
            step.detail = decision.reason or f"sent {decision.call or step.action}"
            self.say(pid, f"{step.name}: {step.detail}")
            if decision.call == step.action and step.action not in ("wait_status",):
                return  # sent; the next step waits for the effect
            await self.ctx.sleep(self.ctx.poll_s)

    async def _join_reset_needed(self, run: PipelineRun) -> bool:
        join = ((run.entry.get("payload") or {}).get("join_restore") or {}).get("join")
        if not join:
            return False
        live = await self._read(run.pipeline_id, docs=True)
        return not resources_match({"join": join}, live.resources)

    # -- locking ---------------------------------------------------------------------------------------
    async def _lock(self, run: PipelineRun, step: Step) -> None:
        pid = run.pipeline_id
        try:
            held = await lock.acquire(self.ctx.client, pid, owner=self.journal.owner, run_id=self.journal.run_id,
                                      ttl_s=self.ctx.config.lock_ttl, settle_s=self.ctx.lock_settle_s,
                                      clock=self.ctx.clock, say=lambda m: self.say(pid, m))
        except lock.LockError as exc:
            raise Refused(str(exc)) from None
        except ApiError as exc:
            raise StepFailed(f"cannot take the lock: {exc}") from None
        self._locks[pid] = held
        run.lock = {"owner": held.owner, "run_id": held.run_id, "expires": held.expires}
        step.detail = f"held by {held.owner} until {time.strftime('%H:%M:%SZ', time.gmtime(held.expires))}"

    async def _check_lock(self, run: PipelineRun) -> None:
        """Before a change: the lock must still be ours; refresh it when half its time is gone."""
        pid = run.pipeline_id
        mine = self._locks.get(pid)
        if mine is None and run.lock:
            mine = lock.Lock(run.lock["owner"], run.lock["run_id"], int(run.lock["expires"]))
        if mine is None:
            return
        now = self.ctx.clock()
        try:
            if mine.expires - now < self.ctx.config.lock_ttl / 2:
                mine = await lock.refresh(self.ctx.client, pid, mine, ttl_s=self.ctx.config.lock_ttl,
                                          clock=self.ctx.clock)
                run.lock = {"owner": mine.owner, "run_id": mine.run_id, "expires": mine.expires}
            else:
                pipeline = await self.ctx.client.get(pid)
                rival = lock.confirm(lock.tags_of(pipeline), mine, now)
                if rival is not None:
                    raise lock.LockError(pid, f"our lock on {pid} is gone; held by {rival.describe(now)}", rival)
        except lock.LockError as exc:
            raise StepFailed(str(exc)) from None
        except ApiError as exc:
            if not is_transient(exc):
                raise StepFailed(f"cannot check the lock: {exc}") from None
        self._locks[pid] = mine

    async def _unlock(self, run: PipelineRun, step: Step) -> None:
        if not run.lock:
            step.detail = "no lock held"
            return
        removed = await self._retrying("release the lock",
                                       lambda: lock.release(self.ctx.client, run.pipeline_id, self.journal.run_id))
        step.detail = "released" if removed else "was not there any more"

    # -- capture, settle, observe, judge -----------------------------------------------------------------
    async def _capture(self, run: PipelineRun, step: Step) -> None:
        pid = run.pipeline_id
        live = await read_one(self.ctx.client, pid)
        reasons = planmod.check_stale(run.entry, live)
        if reasons:
            raise Refused("stale plan: " + "; ".join(reasons))
        assert live.pipeline is not None
        self._before_docs[pid] = copy.deepcopy(live.pipeline)
        run.before = {"status": live.status, "config": redact(live.pipeline),
                      "resources": copy.deepcopy(live.resources), "tags": live.tags}
        judge = next((s for s in run.steps if s.action == "judge"), None)
        if judge is not None and self.ctx.metrics is not None:
            window = self.ctx.scaled(VerifyPlan.from_params(judge.params).window_s)
            self.say(pid, f"reading baseline signals over {window:.1f}s")
            readings, _snapshot = await self._snapshot_readings(run, live, window)
            run.baseline = {name: r.to_dict() for name, r in readings.items()}
        step.detail = f"status {live.status}"

    def _signal_context(self, pipeline_id: str, live: Any) -> signals.SignalContext:
        # Against a time-scaled simulator, gauge slopes (Kafka lag growth) per wall second are
        # time_scale times too big; the context corrects them, as plan and tune do.
        return signals.context_for(pipeline_id, live, time_scale=self.ctx.config.time_scale)

    def _signal_names(self, run: PipelineRun) -> list[str]:
        judge = next((s for s in run.steps if s.action == "judge"), None)
        expected = [e["signal"] for e in (judge.params.get("expect", ()) if judge else ())]
        evidence = [e.get("signal") for p, _ in report.motivating_proposals(run.entry)
                    for e in p.get("evidence", ())]
        names = [*expected, *(n for n in evidence if n in signals.SIGNALS), *REPORT_SIGNALS]
        return [n for n in dict.fromkeys(names) if n in signals.SIGNALS]

    async def _snapshot_readings(self, run: PipelineRun, live: Any, window: float,
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

    async def _settle(self, run: PipelineRun, step: Step) -> None:
        seconds = self.ctx.scaled(float(step.params.get("seconds", 0.0)))
        status = await self._hold(run, step.name, seconds)
        step.observed = status

    async def _hold(self, run: PipelineRun, what: str, seconds: float) -> str | None:
        """Wait ``seconds`` while watching the status; stops early if the pipeline leaves Running."""
        start = self.ctx.clock()
        status = None
        while True:
            live = await self._read(run.pipeline_id, docs=False)
            status = live.status
            elapsed = self.ctx.clock() - start
            if status != Status.RUNNING or elapsed >= seconds:
                return status
            self.ctx.reporter.waiting(run.pipeline_id, what, elapsed, seconds, status)
            await self.ctx.sleep(min(self.ctx.poll_s, max(0.0, seconds - elapsed)))

    async def _observe(self, run: PipelineRun, step: Step) -> None:
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
            readings, snapshot = await self._snapshot_readings(run, live, window)
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
        readings, _ = await self._snapshot_readings(run, live, whole.window_s, snapshot=whole)
        return readings, series

    async def _judge(self, run: PipelineRun, step: Step) -> None:
        live = await self._read(run.pipeline_id, docs=False)
        vplan = VerifyPlan.from_params(step.params)
        metrics = self.ctx.metrics is not None
        readings_before = _readings(run.baseline)
        if step.phase == "revert":
            verdict = verify.judge(status=live.status or "missing", before=readings_before,
                                   after=_readings(run.revert_after), tolerance=vplan.tolerance,
                                   metrics=metrics, guards=())
            run.revert_verdict = {**verdict.to_dict(), "window_s": self.ctx.scaled(vplan.window_s)}
            run.outcome = "reverted" if verdict.outcome == verify.PASS else "failed"
            if verdict.outcome != verify.PASS:
                run.error = (run.error or "") + "; the revert did not come back healthy: " + "; ".join(verdict.reasons)
            step.detail = verdict.label
            return
        verdict = verify.judge(status=live.status or "missing", before=readings_before, after=_readings(run.after),
                               expectations=vplan.expectations, tolerance=vplan.tolerance, metrics=metrics,
                               gaps=run.gaps)
        run.verdict = {**verdict.to_dict(), "window_s": self.ctx.scaled(vplan.window_s),
                       "settle_s": self.ctx.scaled(vplan.settle_s)}
        step.detail = verdict.label
        extension = int(step.params.get("extension", 0))
        backlog = verify.backlog_draining(readings_before, _readings(run.after), vplan.tolerance) \
            if verdict.outcome != verify.PASS and live.status == Status.RUNNING else None
        if backlog and extension < MAX_CATCH_UP_WINDOWS:
            step.detail = (f"{verdict.label} while still catching up ({backlog}): observing another window "
                           f"({extension + 1}/{MAX_CATCH_UP_WINDOWS})")
            self.say(run.pipeline_id, step.detail)
            index = run.steps.index(step) + 1
            again = extension + 1
            run.steps[index:index] = [Step("verify", "observe", {"seconds": vplan.window_s, "extension": again}),
                                      Step("verify", "judge", {**step.params, "extension": again})]
            return
        if backlog:
            run.notes.append(f"judged while still catching up ({backlog}) after {MAX_CATCH_UP_WINDOWS} extra windows")
        run.notes += [n for n in verdict.notes if n.startswith(verify.CATCHING_UP) and n not in run.notes]
        if verdict.outcome == verify.PASS:
            run.outcome = "verified"
        elif verdict.outcome == verify.INCONCLUSIVE:
            run.outcome = "inconclusive"
        else:
            self.say(run.pipeline_id, "verification failed: " + "; ".join(verdict.reasons) + "; reverting")
            self._skip_finish(run)
            insert_before_finish(run, [Step("revert", "plan", {"verify": step.params})])
            self._record_revert_step(run)

    def _record_revert_step(self, run: PipelineRun) -> None:
        """After a revert, remember on the pipeline which policies' change it was (anti-flapping:
        ``gftune plan`` backs those policies off), just before the lock is released."""
        policies = [p["policy"] for p, _ in report.motivating_proposals(run.entry) if p.get("policy")]
        if not policies or any(s.action == "record_revert" for s in run.steps):
            return  # a change from git alone: nothing to back off (or already laid out before a restart)
        at = datetime.fromtimestamp(self.ctx.clock(), UTC).isoformat(timespec="seconds")
        index = next((i for i, s in enumerate(run.steps) if s.phase == "finish" and s.action == "unlock"),
                     len(run.steps))
        run.steps.insert(index, Step("finish", "record_revert", {"policies": policies, "at": at}))

    # -- undo: restore after a failure, revert after a failed verdict ---------------------------------
    async def _plan_undo(self, run: PipelineRun, step: Step) -> None:
        """Lay out the restore/revert steps from what the live pipeline looks like now."""
        if any(s.phase == step.phase and s.action != "plan" for s in run.steps):
            return  # already laid out before a restart
        live = await self._read(run.pipeline_id, docs=True)
        if not live.exists:
            raise StepFailed("the pipeline no longer exists: nothing to restore")
        before_resources = (run.before or {}).get("resources")
        same_resources = resources_match(before_resources, live.resources)
        same_config = True
        if "edit" in {s.action for s in run.steps if s.phase == "apply"}:
            same_config = config_matches(self._before_doc(run, live), live.pipeline, live.resources)
        config = self.ctx.config
        if same_config and same_resources:
            steps = [Step(step.phase, "wait_status", {"status": "Running", "timeout_s": running_timeout(config)})]
            step.detail = "the previous configuration is still in effect: only bringing it back to Running"
        else:
            steps = cycle_steps(step.phase, restore_core(run, step.phase), config)
            step.detail = "putting the previous configuration back"
        if step.phase == "revert":
            vplan = VerifyPlan.from_params(step.params["verify"])
            steps += [Step("revert", "settle", {"seconds": vplan.settle_s}),
                      Step("revert", "observe", {"seconds": vplan.window_s}),
                      Step("revert", "judge", {**vplan.to_params(), "expect": []})]
        index = run.steps.index(step) + 1
        run.steps[index:index] = steps

    async def _record_revert(self, run: PipelineRun, step: Step) -> None:
        policies = list(step.params.get("policies", ()))
        at = datetime.fromisoformat(step.params["at"])
        pid = run.pipeline_id

        async def patch() -> list[str]:
            tags = canonical.with_reverted(lock.tags_of(await self.ctx.client.get(pid)), policies, at)
            await self.ctx.client.patch_metadata(pid, tags)
            return tags

        await self._retrying("record the revert", patch)
        step.detail = ", ".join(canonical.reverted_tag(p, at) for p in policies)

    async def _provenance(self, run: PipelineRun, step: Step) -> None:
        commit = self.journal.git_commit
        pid = run.pipeline_id

        async def patch() -> list[str]:
            tags = provenance_tags(lock.tags_of(await self.ctx.client.get(pid)), commit)
            await self.ctx.client.patch_metadata(pid, tags)
            return tags

        await self._retrying("record provenance", patch)
        step.detail = f"gftune:commit={commit[:12]}" if commit else "no git commit to record"


def _readings(data: Mapping[str, Any]) -> dict[str, signals.SignalReading]:
    out = {}
    for name, r in data.items():
        out[name] = signals.SignalReading(name, r.get("value"), r.get("unit", ""), r.get("query", ""),
                                          r.get("window_s", 0.0), datetime.fromisoformat(r["at"]),
                                          r.get("status", "unknown"), r.get("detail", ""))
    return out


# --- entry points -------------------------------------------------------------------------------------

@dataclass
class ApplyResult:
    journal: RunJournal | None
    exit_code: int
    messages: list[str]


def new_journal(plan: planmod.Plan, ctx: ApplyContext, *, plan_path: str | None) -> tuple[RunJournal, list[str]]:
    """The journal of a new run: every plan entry that has something to do, with its steps."""
    journal = RunJournal(run_id=new_run_id(ctx.clock()), plan_id=plan.id, git_commit=(plan.git or {}).get("commit"),
                         owner=ctx.owner, started_at=ctx.clock(), plan_path=plan_path)
    messages = []
    for entry in plan.pipelines:
        data = entry.to_dict()
        if entry.action == planmod.NOOP:
            continue
        run = PipelineRun(entry.pipeline_id, entry.action, data)
        if entry.action == planmod.BLOCKED:
            run.outcome = "blocked"
            run.error = "; ".join(f"{b.message} ({b.remedy})" for b in entry.blocked)
        elif entry.action == planmod.ERROR:
            run.outcome = "failed"
            run.error = "; ".join(entry.errors) or "the plan could not be made for this pipeline"
        else:
            run.steps = build_steps(data, verify_plan(data, ctx.config))
        journal.pipelines[entry.pipeline_id] = run
    pending = sum(len(e.proposals) for e in plan.pipelines)
    if pending:
        messages.append(f"{pending} policy proposal(s) are not in git and were not applied: run `gftune tune --write`"
                        " and open a pull request")
    return journal, messages


async def apply_plan(plan: planmod.Plan, ctx: ApplyContext, *, plan_path: str | None = None,
                     current_commit: str | None = None, check_age: bool = True) -> ApplyResult:
    """Refuse a stale plan (nothing touched, exit 1), else run it to the end."""
    now = datetime.fromtimestamp(ctx.clock(), UTC)
    reasons = plan_stale_reasons(plan, now=now, max_age_s=ctx.config.max_plan_age if check_age else math.inf,
                                 current_commit=current_commit)
    if plan.errors:
        reasons += [f"the plan has errors: {e}" for e in plan.errors]
    todo = [e for e in plan.pipelines if e.action in (planmod.UPDATE, planmod.CREATE, planmod.DELETE)]
    if todo and not reasons:
        live = await read_live(ctx.client, [e.pipeline_id for e in todo])
        for entry in todo:
            reasons += planmod.check_stale(entry, live[entry.pipeline_id])
    if reasons:
        return ApplyResult(None, exitcodes.ERROR, ["stale plan refused, nothing was changed:", *reasons,
                                                   "re-run `gftune plan --out plan.json` and apply the new plan"])
    journal, messages = new_journal(plan, ctx, plan_path=plan_path)
    ctx.store.save(journal)
    journal = await Executor(ctx, journal).run()
    return ApplyResult(journal, journal.exit_code if journal.exit_code is not None else exitcodes.ERROR, messages)


async def resume_run(run_id: str, ctx: ApplyContext) -> ApplyResult:
    """Continue a run that was interrupted, from its journal."""
    journal = ctx.store.load(run_id)
    messages = []
    if journal.state == "finished":
        messages.append(f"run {run_id} had already finished; nothing to resume")
        return ApplyResult(journal, journal.exit_code if journal.exit_code is not None else exitcodes.OK, messages)
    alive = still_running(journal)
    if alive is not None:
        return ApplyResult(None, exitcodes.ERROR, [f"run {run_id} is still in progress (pid {alive} on this host): "
                                                   "wait for it, or stop it first"])
    journal.owner = journal.owner or ctx.owner
    started = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(journal.started_at))
    messages.append(f"resuming run {run_id} (started {started})")
    journal = await Executor(ctx, journal).run()
    return ApplyResult(journal, journal.exit_code if journal.exit_code is not None else exitcodes.ERROR, messages)

