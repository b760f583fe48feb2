"""Pipeline locks kept as a metadata tag on the live pipeline: ``gftune:lock=<owner>|<run_id>|<expiry>``.

The GlassFlow API has no compare-and-swap, so the protocol is *write, settle, re-read*:

1. read the tags; an unexpired lock held by another run → fail closed, naming the holder;
2. write the tags with our lock (every other tag kept, an expired lock replaced);
3. wait a short settle, read again: if ours is not the only lock, remove ours and fail closed.

Two runs that both pass step 1 within the same settle window can overwrite each other's write
(PATCH replaces the whole tag list); the re-read then shows each run only one lock, and the run
whose write was lost sees someone else's lock and backs off. What remains is the case where both
writes land and the later one wipes the earlier one *after* the earlier run's re-read: the settle
makes that window small, not zero. docs/apply.md states this guarantee. The functions that decide
are pure; :func:`acquire` and :func:`release` do the I/O through the API client.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gftune.formatting import duration
from gftune.plan.tags import LOCK_TAG_PREFIX, tags_of


class TagClient(Protocol):
    async def get(self, pipeline_id: str) -> dict[str, Any]: ...

    async def patch_metadata(self, pipeline_id: str, tags: list[str]) -> Any: ...


@dataclass(frozen=True)
class Lock:
    owner: str
    run_id: str
    expires: int  # unix seconds

    @property
    def tag(self) -> str:
        return f"{LOCK_TAG_PREFIX}{self.owner}|{self.run_id}|{self.expires}"

    def expired(self, now: float) -> bool:
        return now >= self.expires

    def describe(self, now: float) -> str:
        left = self.expires - now
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires))
        state = f"expires in {duration(left)}" if left > 0 else f"expired {duration(-left)} ago"
        return f"{self.owner} (run {self.run_id}, {state}, at {when})"


class LockError(Exception):
    """The pipeline is locked by someone else (or the lock could not be confirmed)."""

    def __init__(self, pipeline_id: str, message: str, holder: Lock | None = None) -> None:
        super().__init__(message)
        self.pipeline_id = pipeline_id
        self.holder = holder


def default_owner(environ: dict[str, str] | None = None) -> str:
    """``$GITHUB_ACTOR@$GITHUB_RUN_ID`` in GitHub Actions, else ``user@host``."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTOR") and env.get("GITHUB_RUN_ID"):
        owner = f"{env['GITHUB_ACTOR']}@{env['GITHUB_RUN_ID']}"
    else:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        owner = f"{user}@{socket.gethostname()}"
    return owner.replace("|", "_").replace(",", "_")


def parse(tag: str) -> Lock | None:
    """The lock in a tag, or None when the tag is not a (well-formed) lock tag."""
    if not tag.startswith(LOCK_TAG_PREFIX):
        return None
    parts = tag[len(LOCK_TAG_PREFIX):].rsplit("|", 2)
    if len(parts) != 3:
        return None
    owner, run_id, expires = parts
    try:
        return Lock(owner, run_id, int(expires))
    except ValueError:
        return None


def locks_in(tags: Sequence[str] | None) -> list[Lock]:
    return [lock for lock in (parse(t) for t in tags or ()) if lock is not None]


def is_lock_tag(tag: str) -> bool:
    return tag.startswith(LOCK_TAG_PREFIX)


@dataclass(frozen=True)
class Claim:
    """Whether we may take the lock (step 1) and the tags that take it (step 2)."""

    ok: bool
    tags: list[str]  # the tags to write when ok
    taken_over: tuple[Lock, ...] = ()  # expired locks we replace
    holder: Lock | None = None  # the live lock that blocks us


def decide_acquire(tags: Sequence[str] | None, mine: Lock, now: float) -> Claim:
    """Step 1 + 2: may we take the lock, and which tags do we write?"""
    others = [lk for lk in locks_in(tags) if lk.run_id != mine.run_id]
    live = [lk for lk in others if not lk.expired(now)]
    if live:
        return Claim(False, list(tags or ()), holder=min(live, key=lambda lk: lk.expires))
    kept = [t for t in tags or () if not is_lock_tag(t)]
    return Claim(True, [*kept, mine.tag], taken_over=tuple(others))


def confirm(tags: Sequence[str] | None, mine: Lock, now: float) -> Lock | None:
    """Step 3: None when ours is the only unexpired lock, else a competing lock."""
    locks = locks_in(tags)
    if not any(lk.run_id == mine.run_id for lk in locks):
        others = [lk for lk in locks if not lk.expired(now)]
        return others[0] if others else Lock("unknown (our lock tag was overwritten)", "?", int(now))
    for lk in locks:
        if lk.run_id != mine.run_id and not lk.expired(now):
            return lk
    return None


def without_lock(tags: Sequence[str] | None, run_id: str | None = None) -> list[str]:
    """The tags with our lock removed (``run_id``), or every lock tag (``run_id=None``)."""
    out = []
    for tag in tags or ():
        lock = parse(tag)
        if lock is not None and (run_id is None or lock.run_id == run_id):
            continue
        out.append(tag)
    return out


def with_refreshed(tags: Sequence[str] | None, mine: Lock) -> list[str]:
    """The tags with our lock replaced by ``mine`` (a later expiry): the heartbeat."""
    return [*without_lock(tags, mine.run_id), mine.tag]


async def acquire(client: TagClient, pipeline_id: str, *, owner: str, run_id: str, ttl_s: float,
                  settle_s: float = 1.0, clock: Callable[[], float] = time.time,
                  say: Callable[[str], None] = lambda _m: None) -> Lock:
    """Take the lock or raise :class:`LockError` naming the holder. Never removes another run's lock."""
    now = clock()
    mine = Lock(owner, run_id, int(now + ttl_s))
    pipeline = await client.get(pipeline_id)
    claim = decide_acquire(tags_of(pipeline), mine, now)
    if not claim.ok:
        assert claim.holder is not None
        raise LockError(pipeline_id, f"pipeline {pipeline_id} is locked by {claim.holder.describe(now)}; "
                        f"wait for it, or `gftune unlock {pipeline_id}` if that run is gone", claim.holder)
    for old in claim.taken_over:
        say(f"{pipeline_id}: taking over an expired lock of {old.describe(now)}")
    await client.patch_metadata(pipeline_id, claim.tags)
    await asyncio.sleep(settle_s)
    pipeline = await client.get(pipeline_id)
    rival = confirm(tags_of(pipeline), mine, clock())
    if rival is not None:
        await release(client, pipeline_id, run_id)
        raise LockError(pipeline_id, f"pipeline {pipeline_id} is locked by {rival.describe(clock())}, which took "
                        "the lock at the same time as this run; retry later", rival)
    return mine


async def refresh(client: TagClient, pipeline_id: str, mine: Lock, *, ttl_s: float,
                  clock: Callable[[], float] = time.time) -> Lock:
    """Extend our lock's expiry (keeps every other tag); raises LockError if it is no longer ours."""
    pipeline = await client.get(pipeline_id)
    tags = tags_of(pipeline)
    now = clock()
    rival = confirm(tags, mine, now)
    if rival is not None:
        raise LockError(pipeline_id, f"pipeline {pipeline_id}: our lock is gone; held by {rival.describe(now)}",
                        rival)
    longer = Lock(mine.owner, mine.run_id, int(now + ttl_s))
    await client.patch_metadata(pipeline_id, with_refreshed(tags, longer))
    return longer


async def release(client: TagClient, pipeline_id: str, run_id: str) -> bool:
    """Remove our lock tag if it is there; True when a tag was removed."""
    tags = tags_of(await client.get(pipeline_id))
    kept = without_lock(tags, run_id)
    if kept == tags:
        return False
    await client.patch_metadata(pipeline_id, kept)
    return True


async def unlock(client: TagClient, pipeline_id: str, *, force: bool, me: str,
                 clock: Callable[[], float] = time.time) -> list[Lock]:
    """``gftune unlock``: remove every lock tag. Someone else's unexpired lock needs ``force``."""
    tags = tags_of(await client.get(pipeline_id))
    locks = locks_in(tags)
    now = clock()
    blocking = [lk for lk in locks if not lk.expired(now) and lk.owner != me]
    if blocking and not force:
        raise LockError(pipeline_id, f"pipeline {pipeline_id} is locked by {blocking[0].describe(now)}, "
                        "not by you; pass --force if that run is really gone", blocking[0])
    if locks:
        await client.patch_metadata(pipeline_id, without_lock(tags))
    return locks
