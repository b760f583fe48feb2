"""The state of one apply run: its pipelines, their steps and states, what was captured before the
change, the readings and the verdicts. Plain data with a JSON round trip; :mod:`gftune.apply.journal`
writes it to disk before and after every step.

Secrets: the live ``GET /pipeline`` document carries secrets in plain text. The record keeps it
with every secret field replaced by :data:`REDACTED` (:func:`redact`); a restore fills those fields
back from the live pipeline at restore time (:func:`unredact`, see docs/apply.md). ``GET /resources``
holds no secrets and is kept as is. The plan entry keeps secret *references*, never values.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from gftune.desired import secrets
from gftune.plan import canonical

FORMAT_VERSION = 1
REDACTED = canonical.SECRET_MASK  # "(sensitive)"

PENDING, STARTED, DONE, FAILED, SKIPPED = "pending", "started", "done", "failed", "skipped"
FINISHED_STATES = frozenset({DONE, FAILED, SKIPPED})


class JournalError(Exception):
    pass


@dataclass
class Step:
    phase: str  # "apply" | "verify" | "revert" | "restore" | "finish"
    action: str  # stop, wait_status, edit, put_resources, create, delete, wait_gone, capture, settle, ...
    params: dict[str, Any] = field(default_factory=dict)
    state: str = PENDING
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    observed: str | None = None  # the last status seen
    detail: str = ""

    @property
    def name(self) -> str:
        target = self.params.get("status")
        return f"{self.phase}.{self.action}" + (f"({target})" if target else "")

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(**data)


@dataclass
class PipelineRun:
    pipeline_id: str
    kind: str  # "update" | "create" | "delete"
    entry: dict[str, Any]  # the plan entry (secret references only)
    steps: list[Step] = field(default_factory=list)
    before: dict[str, Any] | None = None  # {"status", "config" (redacted), "resources", "tags"}
    baseline: dict[str, Any] = field(default_factory=dict)  # signal name -> reading dict
    after: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)  # {"t": [...], "source": [...], "sink": [...]}
    gaps: list[str] = field(default_factory=list)  # data gaps seen in the observation window
    revert_after: dict[str, Any] = field(default_factory=dict)  # readings after a revert
    verdict: dict[str, Any] | None = None
    revert_verdict: dict[str, Any] | None = None
    outcome: str | None = None  # verified | improved | inconclusive | reverted | restored | failed | refused
    # | unchanged
    error: str | None = None
    lock: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    # records around every stop (gftune.apply.records): the DLQ's total before and after, and the
    # operator's sweep counter when Prometheus is configured
    records: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [s.to_dict() for s in self.steps]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineRun:
        data = dict(data)
        data["steps"] = [Step.from_dict(s) for s in data.get("steps", [])]
        return cls(**data)

    def current(self) -> Step | None:
        """The first step that has not finished (a ``started`` one is where a killed run stopped)."""
        return next((s for s in self.steps if s.state not in FINISHED_STATES), None)

    def has_phase(self, phase: str) -> bool:
        return any(s.phase == phase for s in self.steps)

    def skip_pending(self, phase: str | None = None, reason: str = "") -> None:
        for step in self.steps:
            if step.state == PENDING and (phase is None or step.phase == phase):
                step.state, step.detail = SKIPPED, reason


@dataclass
class RunJournal:
    run_id: str
    plan_id: str
    git_commit: str | None
    owner: str
    started_at: float
    pipelines: dict[str, PipelineRun] = field(default_factory=dict)
    plan_path: str | None = None
    finished_at: float | None = None
    state: str = "running"  # running | finished
    exit_code: int | None = None
    process: dict[str, Any] | None = None  # {"pid", "host"} of the process running it now
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pipelines"] = {pid: run.to_dict() for pid, run in self.pipelines.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunJournal:
        if data.get("format_version") != FORMAT_VERSION:
            raise JournalError(f"journal format_version {data.get('format_version')!r} is not supported "
                               f"(this gftune writes {FORMAT_VERSION})")
        data = dict(data)
        data["pipelines"] = {pid: PipelineRun.from_dict(run) for pid, run in data.get("pipelines", {}).items()}
        return cls(**data)


def redact(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a live pipeline document with every secret value replaced by :data:`REDACTED`."""
    return canonical.masked(document, keep_references=False)


def unredact(document: dict[str, Any], live: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Fill :data:`REDACTED` fields from ``live`` (same field paths). Returns the document and the
    paths that could not be filled; those keep :data:`REDACTED` and the caller must not send it."""
    out = copy.deepcopy(document)
    live_values = {dotted: value for _, dotted, value in secrets.iter_secret_locations(live)}
    missing: list[str] = []
    for positional, dotted, value in list(secrets.iter_secret_locations(out)):
        if value != REDACTED:
            continue
        node: Any = out
        for step in positional[:-1]:
            node = node[step]
        if dotted in live_values and live_values[dotted] not in (None, REDACTED):
            node[positional[-1]] = live_values[dotted]
        else:
            missing.append(dotted)
    return out, missing
