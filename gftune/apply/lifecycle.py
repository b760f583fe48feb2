"""The functional core of apply: which steps a plan entry takes, what to do at each step given what
is observed, whether the live pipeline already matches, and the run's exit code.

No I/O here: :class:`gftune.apply.executor.Executor` observes the API and the metrics, asks :func:`decide`
what to do, and does it. That is what makes a killed run resumable: an action whose effect is
already visible is recognised and not sent again (docs/apply.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gftune import exitcodes
from gftune.apply.state import DONE, FAILED, PENDING, SKIPPED, STARTED, PipelineRun, Step
from gftune.desired.config import Config
from gftune.glassflow.statuses import DELETABLE, EDITABLE, TRANSITIONAL, Status
from gftune.plan import build as planbuild
from gftune.plan import canonical
from gftune.plan import model as planmod
from gftune.plan.evidence import Expectation, VerifySpec

Json = dict[str, Any]

# Signals read before and after every verified change (the report's table and verify's guards).
REPORT_SIGNALS = ("source_rate", "sink_rate", "sink_source_ratio", "stream_depth_ratio", "ingestor_backpressure",
                  "backpressure_share", "sink_batch_p95", "sink_retry_rate", "sink_exhausted_rate",
                  "sink_terminal_error_rate", "dlq_rate", "consumer_lag", "consumer_lag_growth")
# A restarted pipeline first drains what queued in Kafka while it was stopped (and any older
# backlog): while the lag shrinks, a missed expectation is judged again after another window,
# at most this many times.
MAX_CATCH_UP_WINDOWS = 6

# Actions that change the pipeline: once one of them may have been sent, a failure needs a restore.
TOUCHING = frozenset({"stop", "edit", "put_resources", "delete", "resume"})
API_ACTIONS = frozenset({"stop", "wait_status", "edit", "put_resources", "create", "delete", "wait_gone", "rename",
                         "patch_metadata", "resume"})

# A kept change that moved its signal well toward the target while the next stage became the limit
# (gftune.apply.verify.NEXT_BOTTLENECK): verified as an improvement, so a success.
IMPROVED = "improved"
# outcome -> exit code (design.md §3); the worst outcome of a run wins, in this order.
OUTCOME_EXIT = {"failed": exitcodes.ERROR, "restored": exitcodes.ERROR, "refused": exitcodes.ERROR,
                "reverted": exitcodes.VERIFY_FAILED, "inconclusive": exitcodes.INCONCLUSIVE,
                # the change runs, but records went to the DLQ during a stop: never a plain success
                "applied with losses": exitcodes.INCONCLUSIVE,
                "blocked": exitcodes.BLOCKED, "verified": exitcodes.OK, IMPROVED: exitcodes.OK, "applied": exitcodes.OK,
                "unchanged": exitcodes.OK}
EXIT_ORDER = (exitcodes.ERROR, exitcodes.VERIFY_FAILED, exitcodes.INCONCLUSIVE, exitcodes.BLOCKED, exitcodes.OK)


# --- pure core: which steps ----------------------------------------------------------------------

def motivating_proposals(entry: Mapping[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """The policy proposals behind a plan entry's changes, each with ``exact``: True when the plan
    attached it to the git changes (same values), False for a proposal still pending in the plan
    that touches the same fields with other values (the git change came from an earlier tune)."""
    out: list[tuple[dict[str, Any], bool]] = []
    seen: set[str] = set()
    for change in entry.get("changes", ()):
        proposal = change.get("proposal")
        if proposal and proposal.get("policy") not in seen:
            seen.add(proposal["policy"])
            out.append((proposal, True))
    if out:
        return out
    changed = {c.get("path") for c in entry.get("changes", ())}
    for proposal in entry.get("proposals", ()):
        if proposal.get("policy") not in seen and changed & {c.get("path") for c in proposal.get("changes", ())}:
            seen.add(proposal["policy"])
            out.append((proposal, False))
    return out


def verify_plan(entry: Mapping[str, Any], config: Config) -> VerifySpec:
    """Settle, window and tolerance (unscaled seconds) and the expectations of one pipeline's change.

    Predictions come from every policy proposal attached to the entry's changes; a policy's own
    ``verify`` block can ask for a longer settle or window and a tighter tolerance than gftune.yaml.
    A git change that no proposal matches exactly, while a policy still proposes changes to the
    same fields (say the backlog grew since ``tune`` wrote its values), is judged by that policy's
    ``verify.expect`` (the symptom must go away), not by its value-specific predictions.
    """
    settle, window, tolerance = config.verify_settle, config.verify_window, config.verify_tolerance
    expectations: list[Expectation] = []
    for proposal, use_predictions in motivating_proposals(entry):
        spec = VerifySpec.from_dict(proposal["verify"]) if proposal.get("verify") else None
        predicted = [Expectation.from_dict(p) for p in proposal.get("predictions", ())] if use_predictions else []
        if spec is not None:
            settle, window = max(settle, spec.settle_s), max(window, spec.window_s)
            tolerance = min(tolerance, spec.tolerance)
            predicted += [e for e in spec.expect if e not in predicted]
        expectations += [e for e in predicted if e not in expectations]
    return VerifySpec(tuple(expectations), settle, window, tolerance)


def _ends_stopped(lifecycle: Sequence[Json]) -> bool:
    waits = [s for s in lifecycle if s.get("action") == "wait_status"]
    return bool(waits) and waits[-1].get("status") == Status.STOPPED


def build_steps(entry: Mapping[str, Any], vplan: VerifySpec) -> list[Step]:
    """Every step of one pipeline's run, in order, from its plan entry."""
    action = entry["action"]
    lifecycle = [dict(s) for s in entry.get("lifecycle", ())]
    core = steps_of("apply", lifecycle)
    disruptive = any(s.action in ("edit", "put_resources", "create") for s in core)
    verify_steps = [Step("verify", "settle", {"seconds": vplan.settle_s}),
                    Step("verify", "observe", {"seconds": vplan.window_s}),
                    Step("verify", "judge", vplan.to_dict())]
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


def skip_finish(run: PipelineRun) -> None:
    """No provenance for a change that was not kept; the lock is still released."""
    for s in run.steps:
        if s.phase == "finish" and s.state == PENDING and s.action != "unlock":
            s.state, s.detail = SKIPPED, "the change was not kept"


def running_timeout(config: Config) -> float:
    return planbuild.Timeouts.of(config).running_s


def steps_of(phase: str, lifecycle: Iterable[Json]) -> list[Step]:
    """Journal steps of a lifecycle as the plan writes it (``{"action": ..., **params}`` items)."""
    return [Step(phase, s.pop("action"), s) for s in (dict(x) for x in lifecycle)]


def cycle_steps(phase: str, core: list[Json], config: Config) -> list[Step]:
    """The plan's stop → update → resume cycle (:func:`gftune.plan.model.cycle`) around ``core``."""
    return steps_of(phase, planbuild.cycle(core, planbuild.Timeouts.of(config)))


def restore_core(run: PipelineRun) -> list[Json]:
    """Which update puts the captured "before" back: the same endpoint the change used."""
    sent = {s.action for s in run.steps if s.phase == "apply"}
    steps = []
    if "edit" in sent:
        steps.append({"action": "edit", "payload": "before"})
    if "put_resources" in sent or not steps:
        steps.append({"action": "put_resources", "payload": "before"})
    return steps


def rescue_steps(config: Config) -> list[Step]:
    return [Step("rescue", "resume"),
            *steps_of("rescue", [planbuild.wait_status(Status.RUNNING, running_timeout(config))])]


# --- pure core: deciding one step -----------------------------------------------------------------

# What decide() answers; "done" is the step state DONE of gftune.apply.state (the same word).
SEND, WAIT, FAIL = "send", "wait", "fail"


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
            return Decision(DONE, "already exists with the planned configuration")
        return Decision(FAIL, "a pipeline with this id already exists with a different configuration")
    if action == "wait_gone":
        return Decision(DONE, "gone") if not obs.exists else waiting("the pipeline to disappear")
    if not obs.exists:
        if action == "delete":
            return Decision(DONE, "already gone")
        return Decision(FAIL, "the pipeline no longer exists")

    if action == "stop":
        if status in (Status.STOPPED, Status.STOPPING, Status.TERMINATING):
            return Decision(DONE, f"already {status}")
        if status == Status.FAILED:
            return Decision(DONE, "Failed: no stop needed (a Failed pipeline accepts updates)")
        if status == Status.RUNNING:
            return Decision(SEND, call="stop")
        return waiting("a status that can be stopped")
    if action == "wait_status":
        target = params.get("status", Status.RUNNING)
        if status == target:
            return Decision(DONE, f"{status}")
        if target == Status.STOPPED and status == Status.FAILED:
            return Decision(DONE, "Failed (accepts updates like Stopped)")
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
            return Decision(DONE, f"already {status}")
        if status in (Status.STOPPED, Status.FAILED):
            return Decision(SEND, call="resume")
        return waiting("a status that can be resumed")
    if action in ("edit", "put_resources"):
        if obs.matches:
            return Decision(DONE, "already in effect: not sent again")
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
        return Decision(DONE, "already in effect") if obs.matches else Decision(SEND, call=action)
    return Decision(FAIL, f"unknown lifecycle action {action!r}")


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


def with_live_immutables(before: Json, live: Json | None, immutable: Sequence[str]) -> Json:
    """The captured resources (internal shape) to put back, with every immutable field as the live
    pipeline has it now. They cannot have been changed by us, but the server may have rewritten
    one (k8s turns a stored ``maxBytes: "0"`` into ``"-1"`` on PUT, reference §3.5), and echoing
    the captured text then is refused as a change to an immutable field: the revert would fail
    and leave the bad change running."""
    out = copy.deepcopy(before)
    for path in immutable:
        where = tuple(path.split("/"))
        now = canonical.internal_get(live, where)
        if now is not None and canonical.internal_get(out, where) is not None:
            canonical.internal_set(out, where, copy.deepcopy(now))
    return out


# --- pure core: exit codes -----------------------------------------------------------

def exit_code(outcomes: Iterable[str]) -> int:
    codes = {OUTCOME_EXIT.get(o, exitcodes.ERROR) for o in outcomes}
    return next((c for c in EXIT_ORDER if c in codes), exitcodes.OK)
