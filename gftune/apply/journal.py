"""The run journal: ``.gftune/runs/<run-id>.json``, written before and after every step.

A journal is what makes ``gftune apply`` survive being killed. It holds the run's record
(:mod:`gftune.apply.state`): the run's metadata, and per pipeline the plan entry being applied, the
ordered steps (``pending`` → ``started`` → ``done`` | ``failed`` | ``skipped``) with timestamps,
attempts and observed statuses, the snapshot needed to restore the previous configuration, the
baseline and observed signal readings, and the verdict. Secrets never reach it (the record is redacted).

Writes are atomic: a temp file in the same directory, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import json
import os
import secrets as _random
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gftune.apply.state import JournalError, RunJournal, Step
from gftune.desired import secrets

RUNS_DIR = Path(".gftune") / "runs"
FAILPOINT_ENV = "GFTUNE_FAILPOINT"


def new_run_id(now: float | None = None) -> str:
    """Sortable and unique: ``20250101T120000Z-a1b2c3``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{_random.token_hex(3)}"


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
