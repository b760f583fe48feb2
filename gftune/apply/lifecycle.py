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
from datetime import UTC, datetime
from typing import Any

from gftune import exitcodes
from gftune.apply.state import DONE, FAILED, PENDING, SKIPPED, STARTED, PipelineRun, Step
from gftune.desired.config import Config
from gftune.glassflow.statuses import DELETABLE, EDITABLE, TRANSITIONAL, Status
from gftune.plan import canonical
from gftune.plan import model as planmod
from gftune.plan.evidence import Expectation, VerifySpec

Json = dict[str, Any]

# Signals read before and after every verified change (the report's table and verify's guards).
REPORT_SIGNALS = ("source_rate", "sink_rate", "sink_source_ratio", "stream_depth_ratio", "ingestor_backpressure",
                  "sink_batch_p95", "sink_retry_rate", "sink_exhausted_rate", "sink_terminal_error_rate", "dlq_rate",
                  "consumer_lag", "consumer_lag_growth")
# A restarted pipeline first drains what queued in Kafka while it was stopped (and any older
# backlog): while the lag shrinks, a missed expectation is judged again after another window,
# at most this many times.
MAX_CATCH_UP_WINDOWS = 6

# Actions that change the pipeline: once one of them may have been sent, a failure needs a restore.
TOUCHING = frozenset({"stop", "edit", "put_resources", "delete", "resume"})
API_ACTIONS = frozenset({"stop", "wait_status", "edit", "put_resources", "create", "delete", "wait_gone", "rename",
                         "patch_metadata", "resume"})

# outcome -> exit code (design.md §3); the worst outcome of a run wins, in this order.
OUTCOME_EXIT = {"failed": exitcodes.ERROR, "restored": exitcodes.ERROR, "refused": exitcodes.ERROR,
                "reverted": exitcodes.VERIFY_FAILED, "inconclusive": exitcodes.INCONCLUSIVE,
                # the change runs, but records went to the DLQ during a stop: never a plain success
                "applied with losses": exitcodes.INCONCLUSIVE,
                "blocked": exitcodes.BLOCKED, "verified": exitcodes.OK, "applied": exitcodes.OK,
                "unchanged": exitcodes.OK}
EXIT_ORDER = (exitcodes.ERROR, exitcodes.VERIFY_FAILED, exitcodes.INCONCLUSIVE, exitcodes.BLOCKED, exitcodes.OK)


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
    for proposal, use_predictions in motivating_proposals(entry):
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


def skip_finish(run: PipelineRun) -> None:
    """No provenance for a change that was not kept; the lock is still released."""
    for s in run.steps:
        if s.phase == "finish" and s.state == PENDING and s.action != "unlock":
            s.state, s.detail = SKIPPED, "the change was not kept"


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
                       current_commit: str | None,
                       current_sources: Mapping[str, str | None] | None = None) -> list[str]:
    """Plan-wide reasons to refuse: too old, or made from other files.

    A plan that recorded the digests of the files it was made from (``plan.sources``) is compared
    file by file with ``current_sources``: a commit that touched nothing it read (a merge, a docs
    change) does not make it stale. An older plan without them must be applied at its own commit.
    """
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
    if plan.sources and current_sources is not None:
        at = f" (the plan was made at commit {planned[:12]})" if planned else ""
        for path in sorted(set(plan.sources) | set(current_sources)):
            before, after = plan.sources.get(path), current_sources.get(path)
            if path not in plan.sources:
                if after is not None:
                    reasons.append(f"{path} was added since the plan was made{at}")
            elif before != after:
                what = "was deleted" if after is None else "was added" if before is None else "changed"
                reasons.append(f"{path} {what} since the plan was made{at}")
    elif planned and current_commit and planned != current_commit:
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
