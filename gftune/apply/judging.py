"""Judging: the verdict on a change from what was observed, and what follows from it — keep the change,
observe another window while a backlog is still draining, or lay out the revert.

Pure: it works on the run's journal entry, the status just read and the clock's reading, all passed
in; the verdict itself is :func:`gftune.apply.verify.judge`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gftune.apply import losses, verify
from gftune.apply.lifecycle import (
    IMPROVED,
    MAX_CATCH_UP_WINDOWS,
    insert_before_finish,
    motivating_proposals,
    skip_finish,
)
from gftune.apply.state import PipelineRun, Step
from gftune.desired.config import Config
from gftune.glassflow.statuses import Status
from gftune.plan.evidence import VerifySpec
from gftune.policy import signals


def readings_of(data: Mapping[str, Any]) -> dict[str, signals.SignalReading]:
    """Signal readings back from their journal form."""
    out = {}
    for name, r in data.items():
        out[name] = signals.SignalReading(name, r.get("value"), r.get("unit", ""), r.get("query", ""),
                                          r.get("window_s", 0.0), datetime.fromisoformat(r["at"]),
                                          r.get("status", "unknown"), r.get("detail", ""))
    return out


def judge(run: PipelineRun, step: Step, status: str | None, *, config: Config, metrics: bool,
          now: float) -> list[str]:
    """Judge the change (or, in the revert phase, the revert) of ``run``; returns what to tell the user."""
    vplan = VerifySpec.from_dict(step.params)
    readings_before = readings_of(run.baseline)
    if step.phase == "revert":
        verdict = verify.judge(status=status or "missing", before=readings_before,
                               after=readings_of(run.revert_after), tolerance=vplan.tolerance,
                               metrics=metrics, guards=())
        run.revert_verdict = {**verdict.to_dict(), "window_s": config.scaled(vplan.window_s)}
        run.outcome = "reverted" if verdict.outcome == verify.PASS else "failed"
        if verdict.outcome != verify.PASS:
            run.error = (run.error or "") + "; the revert did not come back healthy: " + "; ".join(verdict.reasons)
        step.detail = verdict.label
        return []
    if run.kind == "create":
        return _judge_created(run, step, status, vplan, config=config, metrics=metrics)
    verdict = verify.judge(status=status or "missing", before=readings_before, after=readings_of(run.after),
                           expectations=vplan.expect, tolerance=vplan.tolerance, metrics=metrics,
                           gaps=run.gaps)
    run.verdict = {**verdict.to_dict(), "window_s": config.scaled(vplan.window_s),
                   "settle_s": config.scaled(vplan.settle_s)}
    step.detail = verdict.label
    extension = int(step.params.get("extension", 0))
    backlog = verify.backlog_draining(readings_before, readings_of(run.after), vplan.tolerance) \
        if verdict.outcome != verify.PASS and status == Status.RUNNING else None
    if backlog and extension < MAX_CATCH_UP_WINDOWS:
        return [_observe_again(run, step, vplan, f"{verdict.label} while still catching up ({backlog})")]
    if backlog:
        run.notes.append(f"judged while still catching up ({backlog}) after {MAX_CATCH_UP_WINDOWS} extra windows")
    over = verify.catch_up_over(verdict, readings_of(run.after)) \
        if verdict.outcome == verify.FAIL and status == Status.RUNNING and not backlog else None
    if over and extension < MAX_CATCH_UP_WINDOWS and not step.params.get("after_catch_up"):
        # one window after the catch-up, once: a share that stays above target there is the change's
        return [_observe_again(run, step, vplan, f"{verdict.label}, but {over}", after_catch_up=True)]
    run.notes += [n for n in verdict.notes if n.startswith(verify.CATCHING_UP) and n not in run.notes]
    if verdict.outcome == verify.PASS:
        run.outcome = losses.outcome_with_losses("verified", run.records)
        return [] if run.outcome == "verified" else _losses_message(run)
    if verdict.outcome == verify.NEXT_BOTTLENECK:
        # Kept, and provenance tags it ``gftune:applied=``: the next stage's policies may scale it up
        # at once instead of waiting out this change's cooldown (docs/policies.md).
        run.outcome = losses.outcome_with_losses(IMPROVED, run.records)
        said = [f"kept: {verdict.label}: {verdict.reasons[0]}"]
        return said if run.outcome == IMPROVED else [*said, *_losses_message(run)]
    if verdict.outcome == verify.INCONCLUSIVE:
        run.outcome = "inconclusive"
        return []
    skip_finish(run)
    insert_before_finish(run, [Step("revert", "plan", {"verify": step.params})])
    _record_revert_step(run, now)
    return ["verification failed: " + "; ".join(verdict.reasons) + "; reverting"]


def _losses_message(run: PipelineRun) -> list[str]:
    lines = losses.describe(run.records)
    run.notes += [f"records lost from the pipeline: {line}" for line in lines if line not in run.notes]
    return [f"applied with losses: {int(losses.losses(run.records))} record(s) went to the DLQ during the stop"]


def _observe_again(run: PipelineRun, step: Step, vplan: VerifySpec, why: str, **flags: Any) -> str:
    """Insert one more observe + judge window after ``step`` (at most MAX_CATCH_UP_WINDOWS in all);
    ``flags`` are kept in the judge step's parameters."""
    again = int(step.params.get("extension", 0)) + 1
    step.detail = f"{why}: observing another window ({again}/{MAX_CATCH_UP_WINDOWS})"
    index = run.steps.index(step) + 1
    run.steps[index:index] = [Step("verify", "observe", {"seconds": vplan.window_s, "extension": again}),
                              Step("verify", "judge", {**step.params, **flags, "extension": again})]
    return step.detail


def _judge_created(run: PipelineRun, step: Step, status: str | None, vplan: VerifySpec, *, config: Config,
                   metrics: bool) -> list[str]:
    """A new pipeline has no before to compare with: Running and records reaching the sink decide
    (:func:`gftune.apply.verify.judge_created`). Its series may not exist yet right after the create,
    so an unknown reading gets more windows. A failure is reported, not reverted: deleting what the
    team just asked for helps nobody."""
    verdict = verify.judge_created(status=status or "missing", after=readings_of(run.after), metrics=metrics,
                                   gaps=run.gaps)
    run.verdict = {**verdict.to_dict(), "window_s": config.scaled(vplan.window_s),
                   "settle_s": config.scaled(vplan.settle_s)}
    step.detail = verdict.label
    extension = int(step.params.get("extension", 0))
    if verdict.outcome == verify.INCONCLUSIVE and status == Status.RUNNING and extension < MAX_CATCH_UP_WINDOWS:
        return [_observe_again(run, step, vplan, verdict.label)]
    if verdict.outcome == verify.PASS:
        run.outcome = "verified"
        return []
    if verdict.outcome == verify.INCONCLUSIVE:
        run.outcome = "inconclusive"
        return []
    run.outcome = "failed"
    run.error = "created, but " + "; ".join(verdict.reasons) + " (the pipeline was left in place)"
    return [run.error]


def _record_revert_step(run: PipelineRun, now: float) -> None:
    """After a revert, remember on the pipeline which policies' change it was (anti-flapping:
    ``gftune plan`` backs those policies off), just before the lock is released."""
    policies = [p["policy"] for p, _ in motivating_proposals(run.entry) if p.get("policy")]
    if not policies or any(s.action == "record_revert" for s in run.steps):
        return  # a change from git alone: nothing to back off (or already laid out before a restart)
    at = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    index = next((i for i, s in enumerate(run.steps) if s.phase == "finish" and s.action == "unlock"),
                 len(run.steps))
    run.steps.insert(index, Step("finish", "record_revert", {"policies": policies, "at": at}))
