"""Apply a plan safely: lock → capture → the plan's lifecycle → settle → observe → judge → keep or revert.

The design (docs/apply.md):

* **Exactly the saved plan.** The plan is refused as a whole before anything is touched when its
  git commit is not the repository's, it is older than ``max_plan_age``, or a live pipeline no
  longer matches the fingerprint the plan recorded (:func:`gftune.plan.check_stale`). The check is
  repeated per pipeline once its lock is held.
* **A journal step before and after every action** (:mod:`gftune.journal`), so a killed run can be
  resumed from any point: every action step is *observe → decide → act*, and :func:`decide` is a
  pure function that recognises an action whose effect is already visible (an edit already in the
  live config is not sent again).
* **Never left stopped.** Any failure after the pipeline was touched appends a *restore* phase that
  puts back the previous configuration and resources and brings the pipeline back to Running; if
  that fails too, a *rescue* phase resumes it whatever its configuration, and the run says so loudly.
* **Proof by metrics.** Baseline signals are read before the stop, the same signals after the
  settle and observation window, and :func:`gftune.verify.judge` decides. A failed verdict reverts
  through the same lifecycle and verifies the revert.

The pure core (step building, :func:`decide`, matching, exit codes) is at the top; the
:class:`Executor` at the bottom does the I/O through the API client, the metric source and the
journal store that are passed in.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gftune import canonical, exitcodes, lock, report, secrets, signals, verify
from gftune import plan as planmod
from gftune.client import ApiError, GlassFlowClient
from gftune.config import Config
from gftune.evidence import Expectation, VerifySpec
from gftune.glassflow.statuses import DELETABLE, EDITABLE, TRANSITIONAL, Status
from gftune.journal import (
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
from gftune.live import read_live, read_one
from gftune.metrics.expr import ScrapePair
from gftune.metrics.sources import MetricsError, ScrapeSnapshot

Json = dict[str, Any]

# Signals read before and after every verified change (the report's table and verify's guards).
REPORT_SIGNALS = ("source_rate", "sink_rate", "sink_source_ratio", "stream_depth_ratio", "ingestor_backpressure",
                  "sink_batch_p95", "sink_retry_rate", "sink_exhausted_rate", "sink_terminal_error_rate", "dlq_rate",
                  "consumer_lag", "consumer_lag_growth")
# A restarted pipeline first drains what queued in Kafka while it was stopped (and any older
# backlog): while the lag shrinks, a missed expectation is judged again after another window,
# at most this many times.
MAX_CATCH_UP_WINDOWS = 6

# 400/409 answers that mean "the status moved under us": observe again and decide again.
STATE_RACE_CODES = frozenset({"PIPELINE_IN_TRANSITION", "PIPELINE_NOT_STOPPED_FOR_EDIT", "PIPELINE_ALREADY_IN_STATE",
                              "INVALID_STATUS_TRANSITION"})
# Actions that change the pipeline: once one of them may have been sent, a failure needs a restore.
TOUCHING = frozenset({"stop", "edit", "put_resources", "delete", "resume"})
API_ACTIONS = frozenset({"stop", "wait_status", "edit", "put_resources", "create", "delete", "wait_gone", "rename",
                         "patch_metadata", "resume"})

# outcome -> exit code (design.md §3); the worst outcome of a run wins, in this order.
OUTCOME_EXIT = {"failed": exitcodes.ERROR, "restored": exitcodes.ERROR, "refused": exitcodes.ERROR,
                "reverted": exitcodes.VERIFY_FAILED, "inconclusive": exitcodes.INCONCLUSIVE,
                "blocked": exitcodes.BLOCKED, "verified": exitcodes.OK, "applied": exitcodes.OK,
                "unchanged": exitcodes.OK}
EXIT_ORDER = (exitcodes.ERROR, exitcodes.VERIFY_FAILED, exitcodes.INCONCLUSIVE, exitcodes.BLOCKED, exitcodes.OK)


class StepFailed(Exception):
    """A step cannot complete; ``permanent`` errors are not retried."""


class Refused(StepFailed):
    """The pipeline must not be touched (stale, locked by someone else)."""


# --- pure core: which steps ----------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyPlan:
    settle_s: float
    window_s: float
    tolerance: float
    expectations: tuple[Expectation, ...]

    def to_params(self) -> Json:
        return {"settle_s": self.settle_s, "window_s": self.window_s, "tolerance": self.tolerance,
                "expect": [e.to_dict() for e in self.expectations]}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VerifyPlan:
        return cls(params["settle_s"], params["window_s"], params["tolerance"],
                   tuple(Expectation.from_dict(e) for e in params.get("expect", ())))


def verify_plan(entry: Mapping[str, Any], config: Config) -> VerifyPlan:
    """Settle, window and tolerance (unscaled seconds) and the expectations of one pipeline's change.

    Predictions come from every policy proposal attached to the entry's changes; a policy's own
    ``verify`` block can ask for a longer settle or window and a tighter tolerance than gftune.yaml.
    A git change that no proposal matches exactly, while a policy still proposes changes to the
    same fields (say the backlog grew since ``tune`` wrote its values), is judged by that policy's
    ``verify.expect`` (the symptom must go away), not by its value-specific predictions.
    """
    settle, window, tolerance = config.verify_settle, config.verify_window, config.verify_tolerance
    expectations: list[Expectation] = []
    for proposal, use_predictions in report.motivating_proposals(entry):
        spec = VerifySpec.from_dict(proposal["verify"]) if proposal.get("verify") else None
        predicted = [Expectation.from_dict(p) for p in proposal.get("predictions", ())] if use_predictions else []
        if spec is not None:
            settle, window = max(settle, spec.settle_s), max(window, spec.window_s)
            tolerance = min(tolerance, spec.tolerance)
            predicted += [e for e in spec.expect if e not in predicted]
        expectations += [e for e in predicted if e not in expectations]
    return VerifyPlan(settle, window, tolerance, tuple(expectations))


def _ends_stopped(lifecycle: Sequence[Json]) -> bool:
    waits = [s for s in lifecycle if s.get("action") == "wait_status"]
    return bool(waits) and waits[-1].get("status") == Status.STOPPED


def build_steps(entry: Mapping[str, Any], vplan: VerifyPlan) -> list[Step]:
    """Every step of one pipeline's run, in order, from its plan entry."""
    action = entry["action"]
    lifecycle = [dict(s) for s in entry.get("lifecycle", ())]
    core = [Step("apply", s.pop("action"), s) for s in (dict(x) for x in lifecycle)]
    disruptive = any(s.action in ("edit", "put_resources", "create") for s in core)
    verify_steps = [Step("verify", "settle", {"seconds": vplan.settle_s}),
                    Step("verify", "observe", {"seconds": vplan.window_s}),
                    Step("verify", "judge", vplan.to_params())]
    if not disruptive or _ends_stopped(lifecycle):
        verify_steps = []
    if action == planmod.CREATE:
        return [*core, *verify_steps, Step("finish", "provenance")]
    if action == planmod.DELETE:
        return [Step("apply", "lock"), Step("apply", "capture"), *core]
    return [Step("apply", "lock"), Step("apply", "capture"), *core, *verify_steps,
            Step("finish", "provenance"), Step("finish", "unlock")]


def touched(run: PipelineRun) -> bool:
    """Whether an action that changes the pipeline may have been sent in this run."""
    return any(s.action in TOUCHING and s.state in (STARTED, DONE, FAILED) for s in run.steps)


def insert_before_finish(run: PipelineRun, steps: Iterable[Step]) -> None:
    index = next((i for i, s in enumerate(run.steps) if s.phase == "finish"), len(run.steps))
    run.steps[index:index] = list(steps)


def stop_timeout(config: Config) -> float:
    """Wall seconds to wait for Stopped: the operator forces a stop after its own timeout (like plan)."""
    return config.scaled(config.stop_timeout + 60.0)


def running_timeout(config: Config) -> float:
    return config.scaled(config.running_timeout)


def cycle_steps(phase: str, core: Sequence[Step], config: Config) -> list[Step]:
    """stop → wait Stopped → ``core`` → wait Running (``stop`` is a no-op when already Stopped/Failed).

    Step timeouts are wall seconds (already time-scaled), as in the plan's lifecycle."""
    return [Step(phase, "stop"), Step(phase, "wait_status", {"status": "Stopped", "timeout_s": stop_timeout(config)}),
            *core, Step(phase, "wait_status", {"status": "Running", "timeout_s": running_timeout(config)})]


def restore_core(run: PipelineRun, phase: str) -> list[Step]:
    """Which update puts the captured "before" back: the same endpoint the change used."""
    sent = {s.action for s in run.steps if s.phase == "apply"}
    steps = []
    if "edit" in sent:
        steps.append(Step(phase, "edit", {"payload": "before"}))
    if "put_resources" in sent or not steps:
        steps.append(Step(phase, "put_resources", {"payload": "before"}))
    return steps


def rescue_steps(config: Config) -> list[Step]:
    return [Step("rescue", "resume"),
            Step("rescue", "wait_status", {"status": "Running", "timeout_s": running_timeout(config)})]


# --- pure core: deciding one step -----------------------------------------------------------------

SEND, WAIT, DONE_, FAIL = "send", "wait", "done", "fail"


@dataclass(frozen=True)
class Observation:
    exists: bool
    status: str | None
    matches: bool | None = None  # the step's target is already in effect (None = not compared)
    waited_s: float = 0.0  # how long this process has been on the step
    stopped_for_s: float = 0.0  # how long the status has been Stopped without interruption
    changed: bool = True  # the status moved (or we acted) since this process began the step


@dataclass(frozen=True)
class Decision:
    kind: str  # send | wait | done | fail
    reason: str = ""
    call: str | None = None  # which API call to send (the step's action, or "resume")


def decide(action: str, params: Mapping[str, Any], obs: Observation, *, timeout_s: float,
           resume_grace_s: float) -> Decision:
    """What to do next for one step, given what the live pipeline looks like now. Pure."""
    status = obs.status or ""

    def waiting(what: str) -> Decision:
        if obs.waited_s > timeout_s:
            return Decision(FAIL, f"timed out after {obs.waited_s:.0f}s waiting for {what} (status {status or '?'})")
        return Decision(WAIT, f"waiting for {what} (status {status or '?'})")

    if action in ("create",):
        if not obs.exists:
            return Decision(SEND, call="create")
        if obs.matches:
            return Decision(DONE_, "already exists with the planned configuration")
        return Decision(FAIL, "a pipeline with this id already exists with a different configuration")
    if action == "wait_gone":
        return Decision(DONE_, "gone") if not obs.exists else waiting("the pipeline to disappear")
    if not obs.exists:
        if action == "delete":
            return Decision(DONE_, "already gone")
        return Decision(FAIL, "the pipeline no longer exists")

    if action == "stop":
        if status in (Status.STOPPED, Status.STOPPING, Status.TERMINATING):
            return Decision(DONE_, f"already {status}")
        if status == Status.FAILED:
            return Decision(DONE_, "Failed: no stop needed (a Failed pipeline accepts updates)")
        if status == Status.RUNNING:
            return Decision(SEND, call="stop")
        return waiting("a status that can be stopped")
    if action == "wait_status":
        target = params.get("status", Status.RUNNING)
        if status == target:
            return Decision(DONE_, f"{status}")
        if target == Status.STOPPED and status == Status.FAILED:
            return Decision(DONE_, "Failed (accepts updates like Stopped)")
        if target == Status.RUNNING and status == Status.FAILED:
            if obs.changed:
                return Decision(FAIL, "the pipeline went Failed instead of Running")
            # Failed before the update was sent: the operator has not picked the update up yet
            if obs.waited_s > resume_grace_s:
                return Decision(SEND, f"still Failed after {obs.waited_s:.0f}s: resuming it", call="resume")
            return waiting("the operator to pick up the update (status Failed)")
        if target == Status.RUNNING and status == Status.STOPPED and obs.stopped_for_s > resume_grace_s:
            return Decision(SEND, f"still Stopped after {obs.stopped_for_s:.0f}s: resuming it", call="resume")
        return waiting(target)
    if action == "resume":
        if status in (Status.RUNNING, Status.RESUMING):
            return Decision(DONE_, f"already {status}")
        if status in (Status.STOPPED, Status.FAILED):
            return Decision(SEND, call="resume")
        return waiting("a status that can be resumed")
    if action in ("edit", "put_resources"):
        if obs.matches:
            return Decision(DONE_, "already in effect: not sent again")
        if status in EDITABLE:
            return Decision(SEND, call=action)
        if status in TRANSITIONAL or status == Status.CREATED:
            return waiting("Stopped")
        return Decision(FAIL, f"the pipeline is {status}: it must be Stopped before an update")
    if action == "delete":
        if status in DELETABLE:
            return Decision(SEND, call="delete")
        if status in TRANSITIONAL:
            return waiting("Stopped")
        return Decision(FAIL, f"the pipeline is {status}: it must be Stopped before delete")
    if action in ("rename", "patch_metadata"):
        return Decision(DONE_, "already in effect") if obs.matches else Decision(SEND, call=action)
    return Decision(FAIL, f"unknown lifecycle action {action!r}")


def catching_up(after: Mapping[str, Any]) -> str | None:
    """A description of the catch-up in progress when the Kafka lag is shrinking, else None."""
    growth = (after.get("consumer_lag_growth") or {})
    rate = growth.get("value") if growth.get("status") == "ok" else None
    if not isinstance(rate, int | float) or not math.isfinite(rate):
        return None
    source = (after.get("source_rate") or {}).get("value")
    noise = max(1.0, 0.02 * source) if isinstance(source, int | float) and math.isfinite(source) else 1.0
    if rate >= -noise:
        return None
    lag = (after.get("consumer_lag") or {}).get("value")
    backlog = f"{lag:,.0f} records in Kafka, " if isinstance(lag, int | float) and math.isfinite(lag) else ""
    return f"{backlog}lag shrinking {-rate:,.0f}/s"


def is_transient(error: ApiError) -> bool:
    """Transport errors, 5xx, and state races (the status moved between our read and our call)."""
    if error.status == 0 or error.status >= 500:
        return True
    return error.status in (400, 409) and error.code in STATE_RACE_CODES


# --- pure core: matching --------------------------------------------------------------------------

def _leaves(node: Any, prefix: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*prefix, key))
    elif node is not None:
        yield prefix, node


def resources_match(target: Json | None, live: Json | None) -> bool:
    """Every field of ``target`` (internal shape) has the same value in ``live`` (units normalised)."""
    return all(canonical.resource_values_equal(where, value, canonical.internal_get(live, where))
               for where, value in _leaves(target or {}))


def config_matches(target_doc: Json, live_doc: Json | None, live_resources: Json | None) -> bool:
    """The live pipeline already has ``target_doc``'s configuration and the resources it sets."""
    if live_doc is None:
        return False
    if canonical.digest(canonical.canonical_config(target_doc)) != \
            canonical.digest(canonical.canonical_config(live_doc)):
        return False
    leaves, _ = canonical.desired_resource_leaves(target_doc)
    return all(canonical.resource_values_equal(leaf.internal, leaf.value,
                                               canonical.internal_get(live_resources, leaf.internal))
               for leaf in leaves)


def with_live_gftune_tags(doc: Json, live_doc: Json | None) -> Json:
    """``doc`` with its own user tags plus the live pipeline's ``gftune:`` tags (our lock included):
    an update must never drop the lock or the provenance."""
    out = copy.deepcopy(doc)
    tags = canonical.user_tags(doc) + canonical.gftune_tags(live_doc)
    if canonical.MANAGED_TAG in canonical.tags_of(doc):
        tags.append(canonical.MANAGED_TAG)
    out["metadata"] = {**(out.get("metadata") or {}), "tags": list(dict.fromkeys(tags))}
    return out


def provenance_tags(tags: Sequence[str], commit: str | None) -> list[str]:
    kept = [t for t in tags if not t.startswith(canonical.COMMIT_TAG_PREFIX) and t != canonical.MANAGED_TAG]
    return [*kept, canonical.MANAGED_TAG, *([canonical.COMMIT_TAG_PREFIX + commit] if commit else [])]


# --- pure core: staleness and exit codes -----------------------------------------------------------

def plan_stale_reasons(plan: planmod.Plan, *, now: datetime, max_age_s: float,
                       current_commit: str | None) -> list[str]:
    """Plan-wide reasons to refuse: too old, or made from another commit."""
    reasons = []
    try:
        created = datetime.fromisoformat(plan.created_at)
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        age = (now - created).total_seconds()
        if age > max_age_s:
            reasons.append(f"the plan is {_human(age)} old, older than --max-plan-age {_human(max_age_s)}")
    except ValueError:
        reasons.append(f"the plan's created_at {plan.created_at!r} is not a timestamp")
    planned = (plan.git or {}).get("commit")
    if planned and current_commit and planned != current_commit:
        reasons.append(f"the plan was made at commit {planned[:12]}, the repository is now at {current_commit[:12]}")
    return reasons


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def exit_code(outcomes: Iterable[str]) -> int:
    codes = {OUTCOME_EXIT.get(o, exitcodes.ERROR) for o in outcomes}
    return next((c for c in EXIT_ORDER if c in codes), exitcodes.OK)


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
    env: Mapping[str, str] = field(default_factory=dict)
    base_dir: Path = Path(".")
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
            return secrets.resolve_document(doc, env=self.ctx.env, base_dir=self.ctx.base_dir)
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
        doc["resources"] = canonical.edit_resources((run.before or {}).get("resources") or {}, doc)
        return doc

    def _target(self, run: PipelineRun, step: Step, live: _Live) -> Json | None:
        """What the step sends: a document (edit, create), internal resources (put), tags, or a name."""
        payload = run.entry.get("payload") or {}
        source = step.params.get("payload")
        if step.action in ("edit", "create"):
            doc = self._before_doc(run, live) if source == "before" else self._resolve(payload.get("document") or {})
            return with_live_gftune_tags(doc, live.pipeline) if step.action == "edit" else doc
        if step.action == "put_resources":
            if source == "before":
                return copy.deepcopy((run.before or {}).get("resources") or {})
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
        backlog = catching_up(run.after) if verdict.outcome != verify.PASS and live.status == Status.RUNNING \
            else None
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
        if verdict.outcome == verify.PASS:
            run.outcome = "verified"
        elif verdict.outcome == verify.INCONCLUSIVE:
            run.outcome = "inconclusive"
        else:
            self.say(run.pipeline_id, "verification failed: " + "; ".join(verdict.reasons) + "; reverting")
            self._skip_finish(run)
            insert_before_finish(run, [Step("revert", "plan", {"verify": step.params})])

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

