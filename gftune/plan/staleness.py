"""Is a saved plan still what ``apply`` may carry out? Plan-wide (too old, made from other files or
another commit) and per pipeline (the live pipeline no longer matches the fingerprint the plan
recorded). Apply refuses a stale plan as a whole before touching anything, and checks each pipeline
again once its lock is held.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gftune.formatting import duration
from gftune.plan.build import fingerprint_live
from gftune.plan.model import CREATE, LiveLike, PipelinePlan, Plan

Json = dict[str, Any]


def plan_stale_reasons(plan: Plan, *, now: datetime, max_age_s: float,
                       current_commit: str | None,
                       current_sources: Mapping[str, str | None] | None = None) -> list[str]:
    """Plan-wide reasons to refuse: too old, or made from other files.

    A plan that recorded the digests of the files it was made from (``plan.sources``) is compared
    file by file with ``current_sources``: a commit that touched nothing it read (a merge, a docs
    change) does not make it stale. An older plan without them must be applied at its own commit.
    """
    reasons = []
    try:
        created = datetime.fromisoformat(plan.created_at)
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        age = (now - created).total_seconds()
        if age > max_age_s:
            reasons.append(f"the plan is {duration(age)} old, older than --max-plan-age {duration(max_age_s)}")
    except ValueError:
        reasons.append(f"the plan's created_at {plan.created_at!r} is not a timestamp")
    planned = (plan.git or {}).get("commit")
    if plan.sources and current_sources is not None:
        at = f" (the plan was made at commit {planned[:12]})" if planned else ""
        for path in sorted(set(plan.sources) | set(current_sources)):
            before, after = plan.sources.get(path), current_sources.get(path)
            if path not in plan.sources:
                if after is not None:
                    reasons.append(f"{path} was added since the plan was made{at}")
            elif before != after:
                what = "was deleted" if after is None else "was added" if before is None else "changed"
                reasons.append(f"{path} {what} since the plan was made{at}")
    elif planned and current_commit and planned != current_commit:
        reasons.append(f"the plan was made at commit {planned[:12]}, the repository is now at {current_commit[:12]}")
    return reasons


def entry_stale_reasons(entry: PipelinePlan | Json, live: LiveLike) -> list[str]:
    """Why a planned pipeline no longer matches the live one (empty = safe to apply)."""
    entry = PipelinePlan.from_dict(entry) if isinstance(entry, dict) else entry
    pid = entry.pipeline_id
    if live.error:
        return [f"{pid}: cannot read the live pipeline: {live.error}"]
    if entry.action == CREATE:
        return [f"{pid}: was planned as a create but now exists"] if live.exists else []
    if not live.exists:
        return [f"{pid}: no longer exists (it was planned as {entry.action})"]
    if entry.fingerprint is None:
        return []
    now = fingerprint_live(live)
    reasons = []
    if now["config"] != entry.fingerprint.get("config"):
        reasons.append(f"{pid}: live configuration changed since the plan was made")
    if now["resources"] != entry.fingerprint.get("resources"):
        reasons.append(f"{pid}: live resources changed since the plan was made")
    if now["status"] != entry.fingerprint.get("status"):
        reasons.append(f"{pid}: status changed from {entry.fingerprint.get('status')} to {now['status']} "
                       "since the plan was made")
    return reasons
