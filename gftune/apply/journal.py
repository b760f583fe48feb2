"""The run journal: ``.gftune/runs/<run-id>.json``, written before and after every step.

A journal is what makes ``gftune apply`` survive being killed. It holds the run's metadata, and per
pipeline the plan entry being applied, the ordered steps (``pending`` → ``started`` → ``done`` |
``failed`` | ``skipped``) with timestamps, attempts and observed statuses, the snapshot needed to
restore the previous configuration, the baseline and observed signal readings, and the verdict.

Secrets: the live ``GET /pipeline`` document carries secrets in plain text. The journal stores it
with every secret field replaced by :data:`REDACTED`; a restore fills those fields back from the
live pipeline at restore time (see docs/apply.md). ``GET /resources`` holds no secrets and is
stored as is. The plan entry stores secret *references*, never values.

Writes are atomic: a temp file in the same directory, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import copy
import json
import os
import secrets as _random
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gftune.desired import secrets
from gftune.plan import canonical

FORMAT_VERSION = 1
RUNS_DIR = Path(".gftune") / "runs"
REDACTED = canonical.SECRET_MASK  # "(sensitive)"
FAILPOINT_ENV = "GFTUNE_FAILPOINT"

PENDING, STARTED, DONE, FAILED, SKIPPED = "pending", "started", "done", "failed", "skipped"
FINISHED_STATES = frozenset({DONE, FAILED, SKIPPED})


class JournalError(Exception):
    pass


def new_run_id(now: float | None = None) -> str:
    """Sortable and unique: ``20250101T120000Z-a1b2c3``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{_random.token_hex(3)}"


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
    outcome: str | None = None  # verified | inconclusive | reverted | restored | failed | refused | unchanged
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


class JournalStore:
    """The journals of one repository: ``<repo>/.gftune/runs``."""

    def __init__(self, repo: str | os.PathLike[str]) -> None:
        self.directory = Path(repo) / RUNS_DIR

    def path(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise JournalError(f"invalid run id {run_id!r}")
        return self.directory / f"{run_id}.json"

    def save(self, journal: RunJournal) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(journal.run_id)
        text = secrets.masker.dumps(journal.to_dict(), indent=2, sort_keys=False)
        fd, tmp = tempfile.mkstemp(prefix=f".{journal.run_id}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return target

    def load(self, run_id: str) -> RunJournal:
        path = self.path(run_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            known = ", ".join(self.run_ids()[-5:]) or "none"
            raise JournalError(f"no journal for run {run_id} in {self.directory} (recent runs: {known})") from None
        except ValueError as exc:
            raise JournalError(f"{path}: not a valid journal: {exc}") from None
        return RunJournal.from_dict(data)

    def run_ids(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def unfinished(self) -> Iterator[RunJournal]:
        for run_id in self.run_ids():
            try:
                journal = self.load(run_id)
            except JournalError:
                continue
            if journal.state != "finished":
                yield journal


def this_process() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def still_running(journal: RunJournal) -> int | None:
    """The pid of a live process on this host that is running ``journal`` (resume must not race it)."""
    process = journal.process or {}
    pid = process.get("pid")
    if journal.state == "finished" or not isinstance(pid, int) or process.get("host") != socket.gethostname():
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def failpoint(step: Step, when: str) -> None:
    """Test hook: ``GFTUNE_FAILPOINT=<action|phase.action>:<before|after>`` kills this process with
    SIGKILL when the step is reached (``before``: journalled as started, not yet sent; ``after``:
    sent, not yet journalled as done). Used to prove that ``--resume`` recovers from any point."""
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec:
        return
    target, _, moment = spec.rpartition(":")
    if moment == when and target in (step.action, f"{step.phase}.{step.action}", step.name):
        os.kill(os.getpid(), signal.SIGKILL)
