"""gftune's own tags on live pipelines (``metadata.tags`` entries starting with ``gftune:``): the lock,
the provenance of the last applied commit, that gftune created the pipeline, and the policies whose
change apply reverted. The diff ignores them, every update keeps them; this module reads and writes
them. The lock's own protocol is :mod:`gftune.apply.lock`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gftune.glassflow.timestamps import parse_timestamp

Json = dict[str, Any]

GFTUNE_TAG_PREFIX = "gftune:"
MANAGED_TAG = "gftune:managed"  # apply adds it on create; only such pipelines may be deleted
COMMIT_TAG_PREFIX = "gftune:commit="  # provenance: the git commit of the last apply
# anti-flapping: apply reverted a change this policy proposed, at this time (one per policy, latest wins)
REVERTED_TAG_PREFIX = "gftune:reverted="
LOCK_TAG_PREFIX = "gftune:lock="  # gftune:lock=<owner>|<run_id>|<expiry> (gftune.apply.lock)
# the last change apply kept: the policies whose proposals motivated it, and when apply finished watching
# it (settle and window); one tag, replaced by every kept change
APPLIED_TAG_PREFIX = "gftune:applied="


def is_gftune_tag(tag: Any) -> bool:
    return isinstance(tag, str) and tag.startswith(GFTUNE_TAG_PREFIX)


def tags_of(doc: Json | None) -> list[str]:
    """``metadata.tags`` with ``null``, ``[]`` and a missing ``metadata`` all meaning no tags."""
    tags = ((doc or {}).get("metadata") or {}).get("tags") or []
    return [t for t in tags if isinstance(t, str)]


def user_tags(doc: Json | None) -> list[str]:
    return [t for t in tags_of(doc) if not is_gftune_tag(t)]


def gftune_tags(doc: Json | None) -> list[str]:
    return [t for t in tags_of(doc) if is_gftune_tag(t)]


def is_managed(tags: Iterable[str]) -> bool:
    return MANAGED_TAG in tags


def provenance_commit(tags: Iterable[str]) -> str | None:
    """The commit recorded by the last apply (``gftune:commit=<sha>``), or None."""
    for tag in tags:
        if isinstance(tag, str) and tag.startswith(COMMIT_TAG_PREFIX):
            return tag[len(COMMIT_TAG_PREFIX):] or None
    return None


def _reverted_entry(tag: Any) -> tuple[str, str] | None:
    """``(policy, time text)`` of a ``gftune:reverted=<policy>@<time>`` tag, else None."""
    if not isinstance(tag, str) or not tag.startswith(REVERTED_TAG_PREFIX):
        return None
    policy, _, when = tag[len(REVERTED_TAG_PREFIX):].rpartition("@")
    return policy, when


def reverted_policies(tags: Iterable[str]) -> dict[str, datetime]:
    """When apply last reverted a change each policy proposed: ``gftune:reverted=<policy>@<iso time>``.
    Unreadable tags are ignored; with several for one policy, the latest wins."""
    out: dict[str, datetime] = {}
    for tag in tags:
        entry = _reverted_entry(tag)
        moment = parse_timestamp(entry[1]) if entry else None
        if entry is None or moment is None:
            continue
        policy = entry[0]
        if policy and (policy not in out or moment > out[policy]):
            out[policy] = moment
    return out


def reverted_tag(policy: str, at: datetime) -> str:
    return f"{REVERTED_TAG_PREFIX}{policy}@{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def with_reverted(tags: Sequence[str], policies: Iterable[str], at: datetime) -> list[str]:
    """``tags`` with a revert of each of ``policies`` recorded at ``at``, replacing their older records
    (the tag set stays bounded: one per policy)."""
    names = list(dict.fromkeys(policies))
    kept = [t for t in tags if (entry := _reverted_entry(t)) is None or entry[0] not in names]
    return [*kept, *(reverted_tag(name, at) for name in names)]


def with_live_gftune_tags(doc: Json, live_doc: Json | None) -> Json:
    """``doc`` with its own user tags plus the live pipeline's ``gftune:`` tags (our lock included):
    an update must never drop the lock or the provenance."""
    out = copy.deepcopy(doc)
    tags = user_tags(doc) + gftune_tags(live_doc)
    if MANAGED_TAG in tags_of(doc):
        tags.append(MANAGED_TAG)
    out["metadata"] = {**(out.get("metadata") or {}), "tags": list(dict.fromkeys(tags))}
    return out


def provenance_tags(tags: Sequence[str], commit: str | None) -> list[str]:
    kept = [t for t in tags if not t.startswith(COMMIT_TAG_PREFIX) and t != MANAGED_TAG]
    return [*kept, MANAGED_TAG, *([COMMIT_TAG_PREFIX + commit] if commit else [])]


def applied_tag(policies: Iterable[str], at: datetime) -> str:
    names = ",".join(sorted(set(policies)))
    return f"{APPLIED_TAG_PREFIX}{names}@{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def last_applied(tags: Iterable[str]) -> tuple[datetime, frozenset[str]] | None:
    """When apply last kept a change and the policies that motivated it (``gftune:applied=``), or None.
    With several such tags (not written by gftune), the latest wins; unreadable ones are ignored."""
    found: tuple[datetime, frozenset[str]] | None = None
    for tag in tags:
        if not isinstance(tag, str) or not tag.startswith(APPLIED_TAG_PREFIX):
            continue
        names, _, when = tag[len(APPLIED_TAG_PREFIX):].rpartition("@")
        moment = parse_timestamp(when)
        if moment is not None and (found is None or moment > found[0]):
            found = (moment, frozenset(n for n in names.split(",") if n))
    return found


def with_applied(tags: Sequence[str], policies: Iterable[str], at: datetime) -> list[str]:
    """``tags`` with the kept change recorded (replacing the previous record)."""
    kept = [t for t in tags if not t.startswith(APPLIED_TAG_PREFIX)]
    return [*kept, applied_tag(policies, at)]
