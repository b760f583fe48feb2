"""The plan's data: what would change in each pipeline, through which lifecycle, at what cost, and
which pipelines a plan covers (scope, shards). The plan serialises to a versioned JSON document
(``format_version`` "1", docs/plan.md) that ``apply`` executes exactly, after
:mod:`gftune.plan.staleness` confirms that the live pipelines are still what the plan saw. It is
built by :mod:`gftune.plan.build` and sealed by :mod:`gftune.plan.integrity`.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gftune import __version__, exitcodes
from gftune.glassflow.statuses import Status
from gftune.plan import tags
from gftune.plan.assessment import Cost
from gftune.plan.canonical import Json
from gftune.plan.diff import CONFIG, RESOURCES
from gftune.plan.evidence import Escalation, Proposal

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
