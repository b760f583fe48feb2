"""Building the plan, pure: :func:`build_plan` takes the desired pipelines (from git), the live state
(already read) and the policy outcomes (already evaluated) and returns a :class:`~gftune.plan.model.Plan`;
for each pipeline, :func:`plan_pipeline` classifies the change and lays out its lifecycle (the stop →
update → resume cycle, :func:`cycle`, with :class:`Timeouts`), its cost and the fingerprint of the live
state it was planned against.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gftune.desired import secrets
from gftune.glassflow import resources as res
from gftune.glassflow import rules
from gftune.glassflow.durations import DurationError, parse_duration
from gftune.glassflow.statuses import Status
from gftune.plan import canonical, tags
from gftune.plan import cost as costs
from gftune.plan.assessment import Cost
from gftune.plan.canonical import Json
from gftune.plan.diff import CONFIG, METADATA, NAME, RESOURCES, FieldDiff, diff_config, diff_resources
from gftune.plan.evidence import FieldChange, Proposal
from gftune.plan.integrity import seal
from gftune.plan.model import (
    BLOCKED,
    CREATE,
    DELETE,
    ERROR,
    JOIN_RESET,
    KIND_BOTH,
    KIND_CONFIG,
    KIND_RESOURCES,
    NOOP,
    SETTLED,
    UPDATE,
    Blocker,
    Change,
    DesiredLike,
    LiveLike,
    OutcomeLike,
    PipelinePlan,
    Plan,
    Scope,
)


def _no_references(ref: str) -> str:
    raise secrets.SecretError(f"no secret resolver was given to resolve {ref}")


@dataclass(frozen=True)
class Timeouts:
    """How long a lifecycle step waits for the API's operator, in wall seconds (already time-scaled)."""

    stop_s: float = 360.0  # the operator forces a stop after its stop timeout (5 min); a minute more to land
    running_s: float = 900.0  # the operator fails an operation after 15 min
    gone_s: float = 300.0

    @classmethod
    def of(cls, config: Any) -> Timeouts:
        """From gftune.yaml's settings (a :class:`gftune.desired.config.Config`)."""
        return cls(stop_s=config.scaled(config.stop_timeout + 60.0), running_s=config.scaled(config.running_timeout),
                   gone_s=config.scaled(config.stop_timeout))


def wait_status(status: str, timeout_s: float) -> Json:
    return {"action": "wait_status", "status": status, "timeout_s": timeout_s}


def cycle(core: list[Json], timeouts: Timeouts) -> list[Json]:
    """The stop → update → resume cycle around ``core`` (the update steps): stop, wait for Stopped,
    ``core``, wait for Running (the operator resumes by itself after an update). ``stop`` is a no-op
    on a pipeline that is already Stopped or Failed. The plan's lifecycles and apply's restore and
    revert are all built with it."""
    return [{"action": "stop"}, wait_status(Status.STOPPED, timeouts.stop_s), *core,
            wait_status(Status.RUNNING, timeouts.running_s)]


@dataclass(frozen=True)
class PlanOptions:
    allow_delete: bool = False
    # what a ${env:}/${file:} reference stands for: the command's secrets.Resolver (the edge that
    # reads the environment and files), passed in so that planning itself reads nothing
    resolver: Callable[[str], str] = _no_references
    restart_estimate_s: float = 60.0  # downtime of one stop -> update -> running cycle
    timeouts: Timeouts = field(default_factory=Timeouts)


def fingerprint_live(live: LiveLike, config: Json | None = None) -> Json:
    """What ``apply`` compares to refuse a stale plan: canonical config, raw resources, status.

    ``config``: the live pipeline's canonical config when the caller has it already.
    """
    if config is None:
        config = canonical.canonical_config(live.pipeline or {})
    return {
        "config": canonical.digest(config),
        "resources": canonical.digest(live.resources),
        "status": live.status,
    }


def without_join_resources(doc: Json) -> Json:
    """A copy of a v3 document without gftune's ``resources.join``: the API's own document cannot carry
    it (join resources go through ``PUT /resources``)."""
    out = copy.deepcopy(doc)
    if isinstance(out.get("resources"), dict):
        out["resources"].pop("join", None)
    return out


def _with_tags(doc: Json, wanted: list[str]) -> Json:
    out = copy.deepcopy(doc)
    out["metadata"] = {**(out.get("metadata") or {}), "tags": wanted}
    return out


def _merged_tags(desired: Json, live: Json | None, *extra: str) -> list[str]:
    merged = tags.user_tags(desired) + tags.gftune_tags(live)
    return list(dict.fromkeys([*merged, *extra]))


def _invalid(doc: Json) -> list[Blocker]:
    return [Blocker("invalid", f"{v.dotted}: {v.message}",
                    "fix the pipeline file (`gftune validate` points at the line); the API would reject it")
            for v in rules.validate_document(doc)]


def _comparable(path: str, value: Any) -> Any:
    """A value of ``path`` that orders correctly: quantities, durations and counts as numbers."""
    if path.startswith("resources."):
        return canonical.resource_value((path.rsplit(".", 1)[-1],), value)
    if path.endswith(("max_delay_time", "time_window")) and isinstance(value, str):
        try:
            return parse_duration(value, allow_days=True)
        except DurationError:
            return value
    return value


def _direction(path: str, old: Any, new: Any) -> int | None:
    """+1 / -1 when ``new`` is above / below ``old``; 0 when equal; None when they do not order."""
    a, b = _comparable(path, old), _comparable(path, new)
    if a == b:
        return 0
    try:
        return 1 if b > a else -1
    except TypeError:
        return None


def _adopts(change: Change, wanted: FieldChange) -> bool:
    """Git's change carries out what the policy wants: the same value, or the same direction.

    A policy re-evaluated after ``tune --write`` often wants a slightly different value (the
    backlog kept growing); the reviewed git value still answers the same symptom, so the
    proposal's evidence and predictions go with it and the plan notes the difference.
    """
    if change.path != wanted.path or change.sensitive:
        return False
    if _direction(change.path, change.new, wanted.new) == 0:
        return True
    moved = _direction(change.path, change.old, change.new)
    return moved not in (None, 0) and moved == _direction(change.path, wanted.old, wanted.new)


def _attach_policy(plan: PipelinePlan, outcome: OutcomeLike | None) -> None:
    """Policy proposals already in git ride on the git change; the others are listed as pending."""
    if outcome is None:
        return
    for proposal in outcome.proposals:
        matched = [(wanted, next((c for c in plan.changes if _adopts(c, wanted)), None))
                   for wanted in proposal.changes]
        if matched and all(change is not None for _, change in matched):
            for wanted, change in matched:
                change.proposal = proposal
                if _direction(change.path, change.new, wanted.new) != 0:
                    plan.notes.append(f"{change.path}: policy {proposal.policy} now suggests {wanted.new} "
                                      f"(git has {change.new}); verifying git's value against its predictions")
        else:
            plan.proposals.append(proposal)
    plan.escalations.extend(outcome.escalations)
    plan.policy_notes.extend(outcome.notes)
    plan.policy_errors.extend(getattr(outcome, "errors", ()))


def _kind(changes: list[Change]) -> str | None:
    areas = {c.area for c in changes}
    config = bool(areas & {CONFIG, METADATA, NAME})
    resources_ = RESOURCES in areas
    if config and resources_:
        return KIND_BOTH
    if resources_:
        return KIND_RESOURCES
    return KIND_CONFIG if config else None


def update_steps(status: str, *, config_changed: bool, join: bool, options: PlanOptions) -> list[Json]:
    """The lifecycle of a disruptive update by live status (reference §4.5): one ``/edit`` (any
    config change) or ``PUT /resources`` (resources only); inside a stop → running cycle when
    Running, directly when Stopped or Failed (the operator resumes by itself). A join pipeline's
    edit is followed by the conditional join-restore cycle (``/edit`` resets join resources); a
    Stopped pipeline is stopped again afterwards."""
    o = options
    core: list[Json] = [{"action": "edit"}] if config_changed else [{"action": "put_resources",
                                                                     "payload": "resources"}]
    if status == Status.RUNNING:
        steps = cycle(core, o.timeouts)
    else:
        steps = [*core, wait_status(Status.RUNNING, o.timeouts.running_s)]
    if config_changed and join:
        steps += _join_restore_steps(o)
    if status == Status.STOPPED:
        steps += _restop(o)
    return steps


def _join_restore_steps(o: PlanOptions) -> list[Json]:
    return [{**step, "when": JOIN_RESET}
            for step in cycle([{"action": "put_resources", "payload": "join_restore"}], o.timeouts)]


def _restop(o: PlanOptions) -> list[Json]:
    return [{"action": "stop"}, wait_status(Status.STOPPED, o.timeouts.stop_s)]


def _plan_create(plan: PipelinePlan, spec: Json, o: PlanOptions, resolver: Callable[[str], str]) -> None:
    plan.action = CREATE
    document = _with_tags(without_join_resources(spec), _merged_tags(spec, None, tags.MANAGED_TAG))
    plan.payload = {"document": document}
    plan.lifecycle = [{"action": "create"}, wait_status(Status.RUNNING, o.timeouts.running_s)]
    join = ((spec.get("resources") or {}).get("join"))
    if isinstance(join, dict) and join:
        # Create cannot carry join resources (not in the v3 document): set them afterwards by PUT.
        plan.payload["join_restore"] = {"join": copy.deepcopy(join)}
        plan.lifecycle += _join_restore_steps(o)
        plan.notes.append("join resources cannot be sent with create; they are set by a PUT /resources "
                          "cycle after the pipeline is Running (a second restart, only if they differ)")
    plan.cost = Cost(resources=costs.resource_delta(None, costs.created_resources(spec)))
    _resolve_check(plan, spec, resolver)


def _resolve_check(plan: PipelinePlan, spec: Json, resolver: Callable[[str], str]) -> None:
    """Apply will need every reference: fail at plan time, naming the reference, not the value."""
    for _, value in secrets.iter_secret_fields(spec):
        if secrets.is_reference(value):
            try:
                resolver(value)
            except secrets.SecretError as exc:
                plan.errors.append(str(exc))


def _plan_delete(plan: PipelinePlan, live: LiveLike, o: PlanOptions) -> None:
    plan.action = DELETE
    plan.fingerprint = fingerprint_live(live)
    status = live.status or "unknown"
    if status not in SETTLED:
        plan.action = BLOCKED
        plan.blocked.append(_unsettled(plan.pipeline_id, status, "deleted"))
        return
    steps: list[Json] = []
    if status == Status.RUNNING:
        steps += _restop(o)
    plan.lifecycle = [*steps, {"action": "delete"}, {"action": "wait_gone", "timeout_s": o.timeouts.gone_s}]
    plan.cost = costs.delete_cost(plan.pipeline_id, live.resources)


def _unsettled(pipeline_id: str, status: str, verb: str) -> Blocker:
    return Blocker(
        "transitional", f"live status is {status}: the pipeline cannot be {verb} until it settles",
        f"re-run the plan when it is Running, Stopped or Failed (`gftune plan --target {pipeline_id}`)")


def plan_pipeline(desired: DesiredLike | None, live: LiveLike, options: PlanOptions, *,
                  outcome: OutcomeLike | None = None) -> PipelinePlan:
    """Classify one pipeline and lay out its lifecycle (no I/O; references resolved by options.resolver)."""
    o = options
    pid = live.pipeline_id
    plan = PipelinePlan(pipeline_id=pid, action=NOOP, status=live.status if live.exists else None)
    if desired is not None:
        shown = getattr(desired, "file", "") or desired.path  # DesiredPipeline.file: relative to the repo
        plan.path = str(shown) if shown is not None else None
    if live.error:
        plan.action = ERROR
        plan.errors.append(live.error)
        return plan
    if desired is None:
        if live.exists:
            _plan_delete(plan, live, o)
        return plan

    spec = desired.spec
    resolver = o.resolver

    # DesiredPipeline.valid: the loader already ran the same API rules (gftune.desired.validate).
    blockers = [] if getattr(desired, "valid", False) is True else _invalid(spec)
    if not live.exists:
        _plan_create(plan, spec, o, resolver)
        if blockers:
            plan.action, plan.blocked, plan.lifecycle = BLOCKED, blockers, []
        _finish(plan, outcome, live, o)
        return plan

    live_doc = live.pipeline or {}
    current = canonical.canonical_config(live_doc)
    plan.fingerprint = fingerprint_live(live, current)
    try:
        wanted = canonical.canonical_config(spec, resolver=resolver)
    except secrets.SecretError as exc:
        plan.action = ERROR
        plan.errors.append(f"cannot compare secrets: {exc}")
        return plan
    diffs: list[FieldDiff] = []
    if wanted != current:  # the common case (no change) skips the display copies and deepdiff
        diffs = diff_config(wanted, current, desired_display=canonical.masked(spec),
                            live_display=canonical.masked(live_doc), sensitive=canonical.secret_paths(spec, live_doc))
    leaves, warnings = canonical.desired_resource_leaves(spec)
    plan.notes.extend(warnings)
    diffs += diff_resources(leaves, live.resources)
    plan.changes = [Change(d.path, d.old, d.new, d.area, sensitive=d.sensitive) for d in diffs]
    plan.kind = _kind(plan.changes)

    immutable = set(live.immutable) | set(res.immutable_paths(spec))
    for d in diffs:
        if d.internal is not None and "/".join(d.internal) in immutable and d.old is not None:
            blockers.append(Blocker(
                "immutable", f"{d.path} is immutable once the pipeline exists ({d.old} → {d.new})",
                f"keep {d.path}: {d.old} in git, or recreate the pipeline (delete + create: this loses the "
                "messages buffered in its NATS streams and its dedup state)"))

    if plan.changes:
        _plan_update(plan, spec, live, diffs, o, blockers)
    if blockers:
        plan.action, plan.blocked, plan.lifecycle, plan.payload, plan.downtime_s = BLOCKED, blockers, [], {}, 0.0
    _finish(plan, outcome, live, o)
    return plan


def _plan_update(plan: PipelinePlan, spec: Json, live: LiveLike, diffs: list[FieldDiff], o: PlanOptions,
                 blockers: list[Blocker]) -> None:
    plan.action = UPDATE
    live_doc = live.pipeline or {}
    status = live.status or "unknown"
    disruptive = [d for d in diffs if d.disruptive]
    if not disruptive:
        # Name and tags change in place, in any status, without a restart.
        if any(d.area == NAME for d in diffs):
            plan.payload["name"] = spec.get("name") or ""
            plan.lifecycle.append({"action": "rename"})
        if any(d.area == METADATA for d in diffs):
            plan.payload["metadata"] = {"tags": _merged_tags(spec, live_doc)}
            plan.lifecycle.append({"action": "patch_metadata"})
        return
    if status not in SETTLED:
        blockers.append(_unsettled(plan.pipeline_id, status, "stopped and updated"))
        return

    # Target resources: the full live row with only the changed desired fields overlaid, so that
    # every other field (immutable ones included) is echoed back exactly as GET returned it.
    target = copy.deepcopy(live.resources or {})
    for d in diffs:
        if d.internal is not None:
            canonical.internal_set(target, d.internal, d.new)
    problems = res.validate_internal(target)
    blockers += [Blocker("invalid", f"{path}: {message}", "fix the resource value in the pipeline file")
                 for path, message in problems]

    config_changed = any(d.area != RESOURCES for d in disruptive)
    join = isinstance(target.get("join"), dict)
    if config_changed:
        document = without_join_resources(spec)
        document["resources"] = canonical.edit_resources(target, spec)
        document = _with_tags(document, _merged_tags(spec, live_doc, tags.MANAGED_TAG))
        blockers += _invalid(document)
        plan.payload["document"] = document
        if join:
            # /edit resets join resources to the server defaults (the v3 document cannot carry
            # them): restore them with a PUT cycle if, after the edit, they differ.
            plan.payload["join_restore"] = {"join": copy.deepcopy(target["join"])}
            plan.notes.append("join pipeline: /edit resets join resources to the server defaults; if they differ "
                              "afterwards, a second stop → PUT /resources → running cycle restores them")
    else:
        plan.payload["resources"] = {"pipeline_resources": target}
    if status == Status.STOPPED:
        plan.notes.append("the pipeline is Stopped: the update restarts it (the operator resumes after "
                          "edit/PUT), so it is stopped again afterwards")
    plan.lifecycle = update_steps(status, config_changed=config_changed, join=join, options=o)
    plan.cost = Cost(resources=costs.resource_delta(live.resources, target))


def priced(lifecycle: list[Json], status: str | None, options: PlanOptions, base: Cost | None = None) -> Cost:
    """``base`` (its resource delta and irreversible steps) with the restarts the lifecycle makes
    and their downtime: ``restart_estimate`` per stop → running cycle of a Running pipeline."""
    restarts = costs.restarts(lifecycle, status)
    return replace(base or Cost(), restarts=restarts, downtime_s=restarts * options.restart_estimate_s)


def proposal_cost(proposal: Proposal, live: LiveLike, options: PlanOptions) -> Cost:
    """What adopting a policy proposal would cost: the update it would be, on its own."""
    status = live.status or ""
    config_changed = any(not c.path.startswith("resources.") for c in proposal.changes)
    join = isinstance((live.resources or {}).get("join"), dict)
    steps = update_steps(status, config_changed=config_changed, join=join, options=options)
    after = costs.with_changes(live.resources, live.pipeline or {}, proposal.changes)
    return priced(steps, status, options, Cost(resources=costs.resource_delta(live.resources, after)))


def _finish(plan: PipelinePlan, outcome: OutcomeLike | None, live: LiveLike, options: PlanOptions) -> None:
    _attach_policy(plan, outcome)
    if plan.errors:
        plan.action = ERROR
        plan.lifecycle, plan.payload = [], {}
    if plan.action in (ERROR, BLOCKED, NOOP):
        plan.cost = Cost()
    plan.cost = priced(plan.lifecycle, plan.status, options, plan.cost)
    plan.downtime_s = plan.cost.downtime_s
    priced_once: dict[int, Proposal] = {}
    for change in plan.changes:
        if change.proposal is not None:
            # An adopted proposal costs what its pipeline's update costs: apply carries out that update.
            key = id(change.proposal)
            priced_once.setdefault(key, replace(change.proposal, cost=plan.cost))
            change.proposal = priced_once[key]
    if live.exists and not live.error:
        plan.proposals = [replace(p, cost=proposal_cost(p, live, options)) for p in plan.proposals]


def build_plan(desired: Mapping[str, DesiredLike], live: Mapping[str, LiveLike], options: PlanOptions, *,
               scope: Scope, plan_id: str, now: datetime, outcomes: Mapping[str, OutcomeLike] | None = None,
               **header: Any) -> Plan:
    """The whole plan: every pipeline of ``scope``, in id order. ``plan_id`` and ``now`` (when it was made)
    come from the edge; ``header`` sets the rest of Plan's metadata."""
    pipelines: list[PipelinePlan] = []
    warnings: list[str] = list(header.pop("warnings", []))
    for pid in scope.desired:
        state = live.get(pid)
        if state is None:
            pipelines.append(PipelinePlan(pipeline_id=pid, action=ERROR, errors=["live state was not read"]))
            continue
        pipelines.append(plan_pipeline(desired[pid], state, options, outcome=(outcomes or {}).get(pid)))
    for pid in scope.orphans:
        if not options.allow_delete:
            warnings.append(f"{pid} was created by gftune but is no longer in git; re-run with --allow-delete "
                            "to delete it")
            continue
        state = live.get(pid)
        if state is None:
            pipelines.append(PipelinePlan(pipeline_id=pid, action=ERROR, errors=["live state was not read"]))
            continue
        pipelines.append(plan_pipeline(None, state, options))
    for target in scope.unknown_targets:
        warnings.append(f"--target {target}: no such pipeline in git or live")
    pipelines.sort(key=lambda p: p.pipeline_id)
    plan = Plan(pipelines=pipelines, id=plan_id, created_at=now.astimezone(UTC).isoformat(timespec="seconds"),
                warnings=warnings, unmanaged=list(scope.unmanaged), **header)
    seal(plan, {pid: desired[pid].spec for pid in scope.desired})
    return plan
