"""The plan: what would change in each pipeline, through which lifecycle, at what cost.

Pure data and a pure builder. :func:`build_plan` takes the desired pipelines (from git), the live
state (already read) and the policy outcomes (already evaluated) and returns a :class:`Plan`; it
does no I/O. The plan serialises to a versioned JSON document (``format_version`` "1",
docs/plan.md) that ``apply`` executes exactly, after :mod:`gftune.plan.staleness` confirms that
the live pipelines are still what the plan saw.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from gftune import __version__, exitcodes
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
from gftune.plan.evidence import Escalation, FieldChange, Proposal

FORMAT_VERSION = "1"

# Pipeline actions and change kinds (docs/plan.md).
CREATE, UPDATE, DELETE, NOOP, BLOCKED, ERROR = "create", "update", "delete", "noop", "blocked", "error"
KIND_CONFIG, KIND_RESOURCES, KIND_BOTH = "config", "resources", "both"

# Statuses a disruptive update or a delete can start from; any other (Created, Resuming, Stopping,
# Terminating, or one this gftune does not know) must settle first.
SETTLED = frozenset({Status.RUNNING, Status.STOPPED, Status.FAILED})

JOIN_RESET = "join_reset"  # condition on the follow-up steps that restore join resources after /edit


class LiveLike(Protocol):
    """What the builder needs from :class:`gftune.live.LiveState`."""

    pipeline_id: str
    exists: bool
    pipeline: Json | None
    resources: Json | None
    immutable: list[str]
    status: str | None
    error: str | None


class DesiredLike(Protocol):
    pipeline_id: str
    path: Any
    spec: Json


class OutcomeLike(Protocol):
    proposals: list[Proposal]
    escalations: list[Escalation]
    notes: list[str]


# --- data model -----------------------------------------------------------------------------

# Where a change comes from (Why.kind): the words of drift's attribution, one per case.
WHY_GIT = "git"  # git changed the field since the last apply
WHY_LIVE_EDIT = "live_edit"  # git did not change it, live was changed outside gftune: the change reverts that
WHY_BOTH = "git_and_live_edit"  # git changed it and live was changed outside gftune too
WHY_NEVER_APPLIED = "never_applied"  # the live pipeline carries no provenance tag of gftune
WHY_UNKNOWN = "unknown"  # the last applied commit is not in this clone: git and live moves cannot be told apart


@dataclass(frozen=True)
class Why:
    """Where one change comes from, filled at the edge (git history, live provenance and health):
    the commit that set git's value and who made it, and for a change that undoes an edit made
    outside gftune, when the live pipeline last changed (``GET .../health`` ``updated_at``)."""

    kind: str
    commit: str | None = None  # the commit that set git's current value
    author: str | None = None
    committed_at: str | None = None
    subject: str | None = None
    applied_commit: str | None = None  # the last apply's commit (``gftune:commit=`` tag)
    live_changed_at: str | None = None  # the live pipeline's last change

    def to_dict(self) -> Json:
        return {"kind": self.kind, "commit": self.commit, "author": self.author, "committed_at": self.committed_at,
                "subject": self.subject, "applied_commit": self.applied_commit,
                "live_changed_at": self.live_changed_at}

    @classmethod
    def from_dict(cls, data: Json | None) -> Why | None:
        if not data:
            return None
        return cls(kind=data.get("kind", WHY_UNKNOWN), commit=data.get("commit"), author=data.get("author"),
                   committed_at=data.get("committed_at"), subject=data.get("subject"),
                   applied_commit=data.get("applied_commit"), live_changed_at=data.get("live_changed_at"))


@dataclass
class Change:
    path: str
    old: Any
    new: Any
    area: str  # config | resources | metadata | name
    source: str = "git"  # git | policy
    sensitive: bool = False
    proposal: Proposal | None = None
    why: Why | None = None

    def to_dict(self) -> Json:
        return {"path": self.path, "old": self.old, "new": self.new, "area": self.area, "source": self.source,
                "sensitive": self.sensitive, "proposal": self.proposal.to_dict() if self.proposal else None,
                "why": self.why.to_dict() if self.why else None}

    @classmethod
    def from_dict(cls, data: Json) -> Change:
        return cls(path=data["path"], old=data.get("old"), new=data.get("new"), area=data.get("area", CONFIG),
                   source=data.get("source", "git"), sensitive=bool(data.get("sensitive")),
                   proposal=Proposal.from_dict(data["proposal"]) if data.get("proposal") else None,
                   why=Why.from_dict(data.get("why")))

    @property
    def disruptive(self) -> bool:
        return self.area in (CONFIG, RESOURCES)


@dataclass
class Blocker:
    code: str  # immutable | transitional | invalid | escalation
    message: str
    remedy: str

    def to_dict(self) -> Json:
        return {"code": self.code, "message": self.message, "remedy": self.remedy}

    @classmethod
    def from_dict(cls, data: Json) -> Blocker:
        return cls(code=data["code"], message=data["message"], remedy=data.get("remedy", ""))


@dataclass
class PipelinePlan:
    pipeline_id: str
    action: str
    kind: str | None = None
    status: str | None = None  # live status when planned
    path: str | None = None  # the desired file, relative to the repository
    changes: list[Change] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)  # policy proposals not yet in git
    escalations: list[Escalation] = field(default_factory=list)
    blocked: list[Blocker] = field(default_factory=list)
    lifecycle: list[Json] = field(default_factory=list)
    downtime_s: float = 0.0
    fingerprint: Json | None = None  # {config, resources, status} of the live pipeline
    payload: Json = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)  # restarts, downtime, resource delta, irreversible steps
    policy_notes: list[str] = field(default_factory=list)  # how the policies were evaluated (the trace)
    policy_errors: list[str] = field(default_factory=list)  # policies that could not be evaluated (fail closed)

    def to_dict(self) -> Json:
        return {
            "pipeline_id": self.pipeline_id, "action": self.action, "kind": self.kind, "status": self.status,
            "path": self.path, "changes": [c.to_dict() for c in self.changes],
            "proposals": [p.to_dict() for p in self.proposals],
            "escalations": [e.to_dict() for e in self.escalations],
            "blocked": [b.to_dict() for b in self.blocked], "lifecycle": copy.deepcopy(self.lifecycle),
            "downtime_s": self.downtime_s, "fingerprint": copy.deepcopy(self.fingerprint),
            "payload": copy.deepcopy(self.payload), "notes": list(self.notes), "errors": list(self.errors),
            "cost": self.cost.to_dict(), "policy_notes": list(self.policy_notes),
            "policy_errors": list(self.policy_errors),
        }

    @classmethod
    def from_dict(cls, data: Json) -> PipelinePlan:
        return cls(
            pipeline_id=data["pipeline_id"], action=data["action"], kind=data.get("kind"),
            status=data.get("status"), path=data.get("path"),
            changes=[Change.from_dict(c) for c in data.get("changes", ())],
            proposals=[Proposal.from_dict(p) for p in data.get("proposals", ())],
            escalations=[Escalation.from_dict(e) for e in data.get("escalations", ())],
            blocked=[Blocker.from_dict(b) for b in data.get("blocked", ())],
            lifecycle=list(data.get("lifecycle", ())), downtime_s=float(data.get("downtime_s", 0.0)),
            fingerprint=data.get("fingerprint"), payload=data.get("payload") or {},
            notes=list(data.get("notes", ())), errors=list(data.get("errors", ())),
            cost=Cost.from_dict(data.get("cost")) or Cost(), policy_notes=list(data.get("policy_notes", ())),
            policy_errors=list(data.get("policy_errors", ())),
        )


SUMMARY_KEYS = ("create", "update", "delete", "blocked", "unchanged", "errors", "proposals", "escalations",
                "policy_errors")


@dataclass
class Plan:
    pipelines: list[PipelinePlan]
    id: str  # chosen at the edge (a random UUID): the core draws no random numbers
    created_at: str  # ISO-8601, from the clock the edge passes in
    gftune_version: str = __version__
    git: Json | None = None  # {commit, branch, dirty}
    api_url: str | None = None
    metrics: Json | None = None  # {source, naming}; None = policies not evaluated
    targets: list[str] = field(default_factory=list)
    shard: str | None = None  # "I/N"
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # plan-wide (e.g. the pipeline list could not be read)
    unmanaged: list[str] = field(default_factory=list)  # live pipelines not in git, not created by gftune
    policies_evaluated: bool = False
    # {"desired": {pipeline_id: digest of the git document}, "payloads": digest of what apply would
    # send, bound to those}: see seal() and integrity_problems()
    digest: Json | None = None
    # --changed-since: what was selected and why, what was left alone (gftune.plan.changes.Selection)
    selection: Json | None = None
    # sha256 of every file the plan was made from (pipeline files in scope, policies, gftune.yaml;
    # None = the file was absent): apply refuses the plan when one of them differs
    sources: dict[str, str | None] = field(default_factory=dict)

    @property
    def summary(self) -> Json:
        counts = dict.fromkeys(SUMMARY_KEYS, 0)
        for p in self.pipelines:
            key = {CREATE: "create", UPDATE: "update", DELETE: "delete", BLOCKED: "blocked",
                   NOOP: "unchanged", ERROR: "errors"}[p.action]
            counts[key] += 1
            counts["proposals"] += len(p.proposals)
            counts["escalations"] += len(p.escalations)
            counts["policy_errors"] += len(p.policy_errors)
        counts["errors"] += len(self.errors)
        counts["downtime_s"] = round(sum(p.downtime_s for p in self.pipelines), 3)
        counts["cost"] = self.cost.to_dict()
        return counts

    @property
    def cost(self) -> Cost:
        """What applying this plan costs: every pipeline's restarts, downtime and resources, added up."""
        total = Cost()
        for p in self.pipelines:
            total = total + p.cost
        return total

    @property
    def pending_cost(self) -> Cost:
        """What adopting the policy proposals not yet in git would cost on top."""
        total = Cost()
        for p in self.pipelines:
            for proposal in p.proposals:
                total = total + (proposal.cost or Cost())
        return total

    @property
    def exit_code(self) -> int:
        """design.md §3: 1 error wins, then 3 blocked (or escalated, or a policy that could not be
        evaluated: a human must look, never "no changes"), then 2 changes/proposals, else 0."""
        return self.exit_code_for(strict=False)

    def exit_code_for(self, *, strict: bool) -> int:
        """``strict`` (``plan --strict``): a policy that could not be evaluated is an error (1)."""
        s = self.summary
        if s["errors"] or (strict and s["policy_errors"]):
            return exitcodes.ERROR
        if s["blocked"] or s["escalations"] or s["policy_errors"]:
            return exitcodes.BLOCKED
        if s["create"] or s["update"] or s["delete"] or s["proposals"]:
            return exitcodes.CHANGES
        return exitcodes.OK

    def pipeline(self, pipeline_id: str) -> PipelinePlan | None:
        return next((p for p in self.pipelines if p.pipeline_id == pipeline_id), None)

    def to_dict(self) -> Json:
        return {
            "format_version": FORMAT_VERSION, "id": self.id, "created_at": self.created_at,
            "gftune_version": self.gftune_version, "git": copy.deepcopy(self.git), "api_url": self.api_url,
            "metrics": copy.deepcopy(self.metrics), "policies_evaluated": self.policies_evaluated,
            "targets": list(self.targets), "shard": self.shard,
            "pipelines": [p.to_dict() for p in self.pipelines], "summary": self.summary,
            "unmanaged": list(self.unmanaged), "warnings": list(self.warnings), "errors": list(self.errors),
            "digest": copy.deepcopy(self.digest), "selection": copy.deepcopy(self.selection),
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: Json) -> Plan:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PlanFormatError(f"unsupported plan format_version {version!r} (this gftune reads "
                                  f"{FORMAT_VERSION!r}); re-run `gftune plan --out` with this version")
        return cls(
            pipelines=[PipelinePlan.from_dict(p) for p in data.get("pipelines", ())], id=data["id"],
            created_at=data["created_at"], gftune_version=data.get("gftune_version", ""), git=data.get("git"),
            api_url=data.get("api_url"), metrics=data.get("metrics"), targets=list(data.get("targets", ())),
            shard=data.get("shard"), warnings=list(data.get("warnings", ())), errors=list(data.get("errors", ())),
            unmanaged=list(data.get("unmanaged", ())), policies_evaluated=bool(data.get("policies_evaluated")),
            digest=data.get("digest"),
            selection=data.get("selection"), sources=dict(data.get("sources") or {}),
        )


class PlanFormatError(ValueError):
    pass


# --- scope ------------------------------------------------------------------------------------

class ShardError(ValueError):
    pass


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` with 1 <= I <= N (CI matrix jobs ``1/4`` .. ``4/4``)."""
    try:
        index_text, total_text = text.split("/")
        index, total = int(index_text), int(total_text)
    except ValueError:
        raise ShardError(f"--shard must look like I/N (e.g. 2/4), got {text!r}") from None
    if total < 1 or not 1 <= index <= total:
        raise ShardError(f"--shard {text}: I must be between 1 and N")
    return index, total


def in_shard(pipeline_id: str, shard: tuple[int, int] | None) -> bool:
    """A stable split: the same pipeline always lands in the same shard, whatever else exists."""
    if shard is None:
        return True
    index, total = shard
    bucket = int.from_bytes(hashlib.sha256(pipeline_id.encode()).digest()[:8], "big") % total
    return bucket == index - 1


@dataclass
class Scope:
    desired: list[str]  # in git, in scope
    orphans: list[str]  # live, not in git, carrying gftune:managed (delete candidates)
    unmanaged: list[str]  # live, not in git, not created by gftune (reported only)
    unknown_targets: list[str]  # --target ids found neither in git nor live


def select_scope(desired_ids: Iterable[str], listed: Iterable[Json] | None, *, targets: Iterable[str] = (),
                 shard: tuple[int, int] | None = None) -> Scope:
    """Which pipelines this plan covers: ``--target`` then ``--shard`` over git and live."""
    targets = list(dict.fromkeys(targets))
    desired = list(desired_ids)
    desired_set = set(desired)
    live_rows = {row["pipeline_id"]: row for row in listed or () if isinstance(row, dict) and "pipeline_id" in row}

    def wanted(pid: str) -> bool:
        return (not targets or pid in targets) and in_shard(pid, shard)

    orphans, unmanaged = [], []
    for pid, row in sorted(live_rows.items()):
        if pid in desired_set or not wanted(pid):
            continue
        (orphans if tags.is_managed(tags.tags_of(row)) else unmanaged).append(pid)
    unknown = [t for t in targets if t not in desired_set and t not in live_rows]
    return Scope(desired=sorted(p for p in desired if wanted(p)), orphans=orphans, unmanaged=unmanaged,
                 unknown_targets=unknown)


# --- building -------------------------------------------------------------------------------

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


# --- integrity of a saved plan ------------------------------------------------------------------------
# A saved plan travels (a CI artifact from the pull request's job to the apply job): whoever can write
# it must not be able to make apply send anything but what git says. The plan records a digest of each
# desired document it was made from and of its own payloads; apply refuses a plan whose payloads do
# not match that digest, whose desired files changed since, or whose payloads say something else than
# the files (an edited payload with a recomputed digest).

def payloads_digest(plan: Plan, desired: Json) -> str:
    """The digest of what apply would send for ``plan``, bound to the desired documents' digests."""
    return canonical.digest({"desired": desired, "pipelines": [
        {"pipeline_id": p.pipeline_id, "action": p.action, "payload": p.payload, "lifecycle": p.lifecycle}
        for p in plan.pipelines]})


def seal(plan: Plan, desired_specs: Mapping[str, Json]) -> None:
    """Record the digests of the desired documents (as in git: references, not values) and payloads."""
    desired = {pid: canonical.digest(spec) for pid, spec in sorted(desired_specs.items())}
    plan.digest = {"desired": desired, "payloads": payloads_digest(plan, desired)}


def _payload_disagreements(entry: PipelinePlan, spec: Json) -> list[str]:
    """Where ``entry``'s payload says something else than the desired document ``spec``."""
    found = []
    document = entry.payload.get("document")
    if isinstance(document, dict) and canonical.canonical_config(document) != canonical.canonical_config(spec):
        found.append("its document differs from the pipeline file")
    if isinstance(document, dict):
        internal = res.v3_to_internal(document)
    else:
        internal = (entry.payload.get("resources") or {}).get("pipeline_resources")
    if internal is not None:
        leaves, _ = canonical.desired_resource_leaves(spec)
        found += [f"{d.path} is {d.old} in the plan, {d.new} in the pipeline file"
                  for d in diff_resources(leaves, internal)]
    return found


def integrity_problems(plan: Plan, current_specs: Mapping[str, Json]) -> list[str]:
    """Why a saved plan must not be applied against the repository as it is now (``current_specs``:
    the pipeline documents in git, by id); empty when it may."""
    digest = plan.digest if isinstance(plan.digest, dict) else None
    if digest is None or not isinstance(digest.get("desired"), dict):
        return ["the plan carries no digest (made by hand or by an older gftune): re-run `gftune plan --out`"]
    desired = digest["desired"]
    if digest.get("payloads") != payloads_digest(plan, desired):
        return ["the plan's payloads do not match its digest: the file was edited after `gftune plan` wrote it"]
    problems = []
    for entry in plan.pipelines:
        if entry.action not in (CREATE, UPDATE):
            continue
        pid = entry.pipeline_id
        spec = current_specs.get(pid)
        if spec is None:
            problems.append(f"{pid}: its pipeline file is gone since the plan was made")
        elif canonical.digest(spec) != desired.get(pid):
            problems.append(f"{pid}: its pipeline file changed since the plan was made")
        else:
            problems += [f"{pid}: {text}" for text in _payload_disagreements(entry, spec)]
    return problems
