"""Locking during a run: take a pipeline's lock before touching it, check it is still ours before every
change (and refresh it when half its time is gone, so that it never expires under a live run), and
release it at the end. The lock itself (tags on the pipeline) is :mod:`gftune.apply.lock`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gftune.apply import lock
from gftune.apply.context import ApplyContext, Refused, StepFailed, is_transient
from gftune.apply.state import PipelineRun, RunJournal, Step
from gftune.client import ApiError
from gftune.plan import tags


class Locking:
    """The locks of the pipelines of one run."""

    def __init__(self, ctx: ApplyContext, journal: RunJournal, say: Callable[[str, str], None]) -> None:
        self.ctx = ctx
        self.journal = journal
        self.say = say
        self._locks: dict[str, lock.Lock] = {}

    async def take(self, run: PipelineRun, step: Step) -> None:
        pid = run.pipeline_id
        try:
            held = await lock.acquire(self.ctx.client, pid, owner=self.journal.owner, run_id=self.journal.run_id,
                                      ttl_s=self.ctx.config.lock_ttl, settle_s=self.ctx.lock_settle_s,
                                      clock=self.ctx.clock, say=lambda m: self.say(pid, m))
        except lock.LockError as exc:
            raise Refused(str(exc)) from None
        except ApiError as exc:
            raise StepFailed(f"cannot take the lock: {exc}") from None
        self._locks[pid] = held
        run.lock = {"owner": held.owner, "run_id": held.run_id, "expires": held.expires}
        step.detail = f"held by {held.owner} until {time.strftime('%H:%M:%SZ', time.gmtime(held.expires))}"

    async def check(self, run: PipelineRun) -> None:
        """Before a change: the lock must still be ours; refresh it when half its time is gone."""
        pid = run.pipeline_id
        mine = self._locks.get(pid)
        if mine is None and run.lock:
            mine = lock.Lock(run.lock["owner"], run.lock["run_id"], int(run.lock["expires"]))
        if mine is None:
            return
        now = self.ctx.clock()
        try:
            if mine.expires - now < self.ctx.config.lock_ttl / 2:
                mine = await lock.refresh(self.ctx.client, pid, mine, ttl_s=self.ctx.config.lock_ttl,
                                          clock=self.ctx.clock)
                run.lock = {"owner": mine.owner, "run_id": mine.run_id, "expires": mine.expires}
            else:
                pipeline = await self.ctx.client.get(pid)
                rival = lock.confirm(tags.tags_of(pipeline), mine, now)
                if rival is not None:
                    raise lock.LockError(pid, f"our lock on {pid} is gone; held by {rival.describe(now)}", rival)
        except lock.LockError as exc:
            raise StepFailed(str(exc)) from None
        except ApiError as exc:
            if exc.not_found:
                return  # deleted (by this run's delete step): the lock went with the pipeline
            if not is_transient(exc):
                raise StepFailed(f"cannot check the lock: {exc}") from None
        self._locks[pid] = mine

    async def release(self, run: PipelineRun, step: Step) -> None:
        if not run.lock:
            step.detail = "no lock held"
            return
        removed = await self.ctx.retrying("release the lock",
                                          lambda: lock.release(self.ctx.client, run.pipeline_id, self.journal.run_id))
        step.detail = "released" if removed else "was not there any more"
