"""Apply a plan safely: lock → capture → the plan's lifecycle → settle → observe → judge → keep or revert.

The design (docs/apply.md):

* **Exactly the saved plan.** The plan is refused as a whole before anything is touched when its
  git commit is not the repository's, it is older than ``max_plan_age``, or a live pipeline no
  longer matches the fingerprint the plan recorded (:mod:`gftune.plan.staleness`). The check is
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

The pure core (step building, deciding, matching, exit codes) is :mod:`gftune.apply.lifecycle`, and
the verdict's consequences are :mod:`gftune.apply.judging`'s. The :class:`Executor` here runs the
step loop and the undo; it does its I/O through the parts it is made of — :mod:`~gftune.apply.actuation`
(the API steps), :mod:`~gftune.apply.observation` (status and signals), :mod:`~gftune.apply.locking` —
with the API client, the metric source and the journal store passed in (:mod:`~gftune.apply.context`).
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from gftune import exitcodes
from gftune.apply import judging, losses
from gftune.apply.actuation import Actuation
from gftune.apply.context import ApplyContext, Refused, StepFailed
from gftune.apply.journal import failpoint, new_run_id, still_running, this_process
from gftune.apply.lifecycle import (
    API_ACTIONS,
    build_steps,
    config_matches,
    cycle_steps,
    exit_code,
    insert_before_finish,
    rescue_steps,
    resources_match,
    restore_core,
    running_timeout,
    skip_finish,
    touched,
    verify_plan,
)
from gftune.apply.locking import Locking
from gftune.apply.observation import Observer
from gftune.apply.state import DONE, FAILED, PENDING, SKIPPED, STARTED, PipelineRun, RunJournal, Step, redact
from gftune.desired import secrets
from gftune.live import read_live, read_one
from gftune.plan import model as planmod
from gftune.plan.evidence import VerifySpec
from gftune.plan.staleness import entry_stale_reasons, plan_stale_reasons


class Executor:
    """Runs (or resumes) the pipelines of one journal."""

    def __init__(self, ctx: ApplyContext, journal: RunJournal) -> None:
        self.ctx = ctx
        self.journal = journal
        journal.process = this_process()
        self.actuation = Actuation(ctx, self.say)
        self.observer = Observer(ctx, self.say)
        self.locking = Locking(ctx, journal, self.say)

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
        if run.outcome != (outcome := losses.outcome_with_losses(run.outcome, run.records)):
            run.outcome = outcome
            run.notes += [f"records lost from the pipeline: {line}" for line in losses.describe(run.records)]
        self.save()

    async def _step(self, run: PipelineRun, step: Step) -> None:
        if step.params.get("when") == planmod.JOIN_RESET and not step.params.get("join_reset_needed"):
            # Decided once, at the group's first step: once its PUT has landed the join resources
            # match, and asking again would skip the wait for Running and leave the pipeline stopped.
            needed = await self.actuation.join_reset_needed(run)
            for s in run.steps:
                if s.state == PENDING and s.phase == step.phase and s.params.get("when") == planmod.JOIN_RESET:
                    if needed:
                        s.params["join_reset_needed"] = True
                    else:
                        s.state, s.detail = SKIPPED, "join resources already as planned"
            self.save()
            if not needed:
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
                await self.locking.check(run)  # heartbeat: the lock never expires under a run that is alive
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
            skip_finish(run)
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

    # -- dispatch ---------------------------------------------------------------------------------
    async def _handle(self, run: PipelineRun, step: Step) -> None:
        if step.action in API_ACTIONS:
            await self.actuation.api_step(run, step)
            return
        if step.action == "provenance":
            await self.actuation.provenance(run, step, self.journal.git_commit)
            return
        handler = {
            "lock": self.locking.take, "capture": self._capture, "settle": self.observer.settle,
            "observe": self.observer.observe, "judge": self._judge, "unlock": self.locking.release,
            "plan": self._plan_undo, "record_revert": self.actuation.record_revert,
        }.get(step.action)
        if handler is None:
            raise StepFailed(f"unknown step {step.action!r}")
        await handler(run, step)

    # -- capture and judge ------------------------------------------------------------------------------
    async def _capture(self, run: PipelineRun, step: Step) -> None:
        pid = run.pipeline_id
        live = await read_one(self.ctx.client, pid)
        reasons = entry_stale_reasons(run.entry, live)
        if reasons:
            raise Refused("stale plan: " + "; ".join(reasons))
        assert live.pipeline is not None
        self.actuation.remember_before(pid, live.pipeline)
        run.before = {"status": live.status, "config": redact(live.pipeline),
                      "resources": copy.deepcopy(live.resources), "tags": live.tags}
        judge = next((s for s in run.steps if s.action == "judge"), None)
        if judge is not None and self.ctx.metrics is not None:
            await self.observer.baseline(run, live, self.ctx.scaled(VerifySpec.from_dict(judge.params).window_s))
        step.detail = f"status {live.status}"

    async def _judge(self, run: PipelineRun, step: Step) -> None:
        live = await self.ctx.read(run.pipeline_id, docs=False)
        for message in judging.judge(run, step, live.status, config=self.ctx.config,
                                     metrics=self.ctx.metrics is not None, now=self.ctx.clock()):
            self.say(run.pipeline_id, message)

    # -- undo: restore after a failure, revert after a failed verdict ---------------------------------
    async def _plan_undo(self, run: PipelineRun, step: Step) -> None:
        """Lay out the restore/revert steps from what the live pipeline looks like now."""
        if any(s.phase == step.phase and s.action != "plan" for s in run.steps):
            return  # already laid out before a restart
        live = await self.ctx.read(run.pipeline_id, docs=True)
        if not live.exists:
            raise StepFailed("the pipeline no longer exists: nothing to restore")
        before_resources = (run.before or {}).get("resources")
        same_resources = resources_match(before_resources, live.resources)
        same_config = True
        if "edit" in {s.action for s in run.steps if s.phase == "apply"}:
            same_config = config_matches(self.actuation.before_doc(run, live), live.pipeline, live.resources)
        config = self.ctx.config
        if same_config and same_resources:
            steps = [Step(step.phase, "wait_status", {"status": "Running", "timeout_s": running_timeout(config)})]
            step.detail = "the previous configuration is still in effect: only bringing it back to Running"
        else:
            steps = cycle_steps(step.phase, restore_core(run), config)
            step.detail = "putting the previous configuration back"
        if step.phase == "revert":
            vplan = VerifySpec.from_dict(step.params["verify"])
            steps += [Step("revert", "settle", {"seconds": vplan.settle_s}),
                      Step("revert", "observe", {"seconds": vplan.window_s}),
                      Step("revert", "judge", {**vplan.to_dict(), "expect": []})]
        index = run.steps.index(step) + 1
        run.steps[index:index] = steps


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


async def refusal_reasons(plan: planmod.Plan, ctx: ApplyContext, *, current_commit: str | None = None,
                          check_age: bool = True, current_sources: Mapping[str, str | None] | None = None
                          ) -> list[str]:
    """Why ``plan`` must not be applied now (empty: it may): too old, made from other files or
    another commit, plan errors, or a live pipeline that moved since it was planned."""
    now = datetime.fromtimestamp(ctx.clock(), UTC)
    reasons = plan_stale_reasons(plan, now=now, max_age_s=ctx.config.max_plan_age if check_age else math.inf,
                                 current_commit=current_commit, current_sources=current_sources)
    if plan.errors:
        reasons += [f"the plan has errors: {e}" for e in plan.errors]
    todo = [e for e in plan.pipelines if e.action in (planmod.UPDATE, planmod.CREATE, planmod.DELETE)]
    if todo and not reasons:
        live = await read_live(ctx.client, [e.pipeline_id for e in todo])
        for entry in todo:
            reasons += entry_stale_reasons(entry, live[entry.pipeline_id])
    return reasons


async def apply_plan(plan: planmod.Plan, ctx: ApplyContext, *, plan_path: str | None = None,
                     current_commit: str | None = None, check_age: bool = True,
                     current_sources: Mapping[str, str | None] | None = None) -> ApplyResult:
    """Refuse a stale plan (nothing touched, exit 1), else run it to the end."""
    reasons = await refusal_reasons(plan, ctx, current_commit=current_commit, check_age=check_age,
                                    current_sources=current_sources)
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

