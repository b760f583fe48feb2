"""The lock tag format and the pure decisions of the lock protocol."""

from __future__ import annotations

from gftune.apply import lock

NOW = 1_700_000_000


def test_tag_round_trip_with_pipes_in_owner_replaced():
    owner = lock.default_owner({"GITHUB_ACTOR": "octo|cat", "GITHUB_RUN_ID": "42"})
    assert owner == "octo_cat@42"
    mine = lock.Lock(owner, "run-1", NOW + 60)
    assert lock.parse(mine.tag) == mine
    assert lock.parse("gftune:lock=garbage") is None
    assert lock.parse("team:payments") is None


def test_free_pipeline_keeps_other_tags():
    mine = lock.Lock("me@host", "r1", NOW + 600)
    d = lock.decide_acquire(["team:payments", "gftune:commit=abc"], mine, NOW)
    assert d.ok and d.tags == ["team:payments", "gftune:commit=abc", mine.tag]


def test_unexpired_foreign_lock_blocks_and_names_holder():
    theirs = lock.Lock("alice@ci", "r0", NOW + 300)
    d = lock.decide_acquire(["x", theirs.tag], lock.Lock("me@host", "r1", NOW + 600), NOW)
    assert not d.ok and d.holder == theirs
    assert "alice@ci" in theirs.describe(NOW) and "expires in" in theirs.describe(NOW)


def test_expired_lock_is_taken_over():
    old = lock.Lock("bob@ci", "r0", NOW - 5)
    mine = lock.Lock("me@host", "r1", NOW + 600)
    d = lock.decide_acquire([old.tag, "x"], mine, NOW)
    assert d.ok and d.taken_over == (old,) and d.tags == ["x", mine.tag]


def test_confirm_detects_rival_and_overwritten_lock():
    mine = lock.Lock("me@host", "r1", NOW + 600)
    rival = lock.Lock("alice@ci", "r2", NOW + 600)
    assert lock.confirm([mine.tag], mine, NOW) is None
    assert lock.confirm([mine.tag, rival.tag], mine, NOW) == rival
    assert lock.confirm([rival.tag], mine, NOW) == rival
    assert lock.confirm([], mine, NOW) is not None


def test_release_and_refresh_touch_only_our_lock():
    mine = lock.Lock("me@host", "r1", NOW + 600)
    other = lock.Lock("alice@ci", "r2", NOW + 600)
    tags = ["a", mine.tag, other.tag]
    assert lock.without_lock(tags, "r1") == ["a", other.tag]
    assert lock.without_lock(tags) == ["a"]
    later = lock.Lock("me@host", "r1", NOW + 900)
    assert lock.with_refreshed(tags, later) == ["a", other.tag, later.tag]
