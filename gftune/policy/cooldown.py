"""When a policy must not propose even though its conditions hold: within its cooldown after the
pipeline's last change, and for a few cooldowns after apply reverted a change it proposed.

A cooldown keeps a policy from acting on metrics the last change has not settled yet, and from
undoing it. When that change was gftune's own, motivated by *other* policies, and apply kept it after
watching it for its settle and window, the metrics already show the new configuration: a bottleneck
it uncovered (the ingestor once the sink keeps up) is acted on at once if the fix only adds capacity
(:func:`scale_up_allowed`), as the HPA and the Flink autoscaler scale up without a stabilisation wait
and scale down only after one. Scale-downs and the policy's own last change keep the whole cooldown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gftune.desired.config import Config
from gftune.formatting import duration
from gftune.plan.evidence import FieldChange
from gftune.policy import guards
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import DEFAULT_COOLDOWN_S, Policy

# A policy whose change apply verified as regressed and reverted proposes nothing for this many of its
# cooldowns after the revert (anti-flapping: the same change would most likely be reverted again).
REVERT_BACKOFF_COOLDOWNS = 4


def cooldown(policy: Policy, facts: PipelineFacts, now: datetime, settings: Config) -> tuple[bool, str | None]:
    """(active, note): no proposal within the cooldown after the pipeline's last change."""
    if facts.last_change is None or policy.cooldown_s <= 0:
        return False, None
    elapsed = (now - facts.last_change).total_seconds()
    wait = policy.cooldown_s / settings.time_scale
    last = facts.last_change.isoformat(timespec="seconds")
    if elapsed < -1:
        # The API's clock is ahead of ours (a time-scaled simulator stamps model time): say so
        # rather than wait for a moment that will not come.
        return False, f"{policy.name}: the pipeline's last change ({last}) is ahead of this machine's clock; " \
                      "cooldown not applied"
    if elapsed < wait:
        until = datetime.fromtimestamp(facts.last_change.timestamp() + wait, UTC).isoformat(timespec="seconds")
        return True, (f"{policy.name}: cooldown {duration(policy.cooldown_s)} active until {until} "
                      f"(last change {last}); no change proposed")
    return False, None


def revert_backoff(policy: Policy, facts: PipelineFacts, now: datetime, settings: Config) -> tuple[bool, str | None]:
    """(active, note): no proposal for ``REVERT_BACKOFF_COOLDOWNS`` cooldowns (the default cooldown when
    the policy has none) after apply reverted a change this policy proposed."""
    when = facts.reverted.get(policy.name)
    if when is None:
        return False, None
    period = policy.cooldown_s if policy.cooldown_s > 0 else DEFAULT_COOLDOWN_S
    wait = REVERT_BACKOFF_COOLDOWNS * period / settings.time_scale
    if (now - when).total_seconds() >= wait:
        return False, None
    until = datetime.fromtimestamp(when.timestamp() + wait, UTC).isoformat(timespec="seconds")
    return True, (f"{policy.name}: its change was reverted at {when.isoformat(timespec='seconds')} (regressed); "
                  f"backing off until {until}: cooldown {REVERT_BACKOFF_COOLDOWNS} x {duration(period)} "
                  "active after a revert; no change proposed")


# apply's last step after writing ``gftune:applied=`` (releasing its lock: a metadata update) moves
# the pipeline's updated_at a few seconds later, and the tag's time is in whole seconds
APPLIED_SLACK_S = 30.0


def last_verified_change(facts: PipelineFacts) -> tuple[datetime, frozenset[str]] | None:
    """The pipeline's last change when it is one apply kept after watching it (``gftune:applied=`` no
    older than the last change, within ``APPLIED_SLACK_S``): when apply finished watching it, and the
    policies that motivated it. None for a change made by hand, or after the tag."""
    if facts.applied is None or facts.last_change is None:
        return None
    at, _ = facts.applied
    if at + timedelta(seconds=APPLIED_SLACK_S) < facts.last_change:
        return None
    return facts.applied


def verified_change_by_others(policy: Policy, facts: PipelineFacts) -> str | None:
    """Why the cooldown may let a scale-up through (None: it may not): the pipeline's last change was
    one apply kept after watching it, and this policy did not motivate it."""
    verified = last_verified_change(facts)
    if verified is None:
        return None
    at, policies = verified
    if policy.name in policies:
        return None
    by = ", ".join(sorted(policies)) or "a git change"
    return f"the last change ({by}) was verified by apply at {at.isoformat(timespec='seconds')}"


def still_draining(lag_growth: float | None) -> str | None:
    """Why a verified change's waiver does not apply (None: it may): the Kafka lag shrinks, so the
    change is still draining the backlog it was sized to drain, and a stage saturated meanwhile is
    that catch-up, not a bottleneck it uncovered (which shows as the lag growing again). Unknown lag
    leaves the waiver as it is."""
    if lag_growth is None or lag_growth >= 0:
        return None
    return (f"the Kafka lag shrinks ({lag_growth:,.0f} records/s): the verified change is still draining its "
            "backlog, and a stage saturated meanwhile is that catch-up, not a new bottleneck")


def scale_up_allowed(changes: Sequence[FieldChange]) -> bool:
    """Every change adds capacity: a number (replicas, CPU, memory, batch) that only grows."""
    if not changes:
        return False
    for change in changes:
        grows = guards.growth(change)
        if grows is None or grows <= 0:
            return False
    return True
