"""When a policy must not propose even though its conditions hold: within its cooldown after the
pipeline's last change, and for a few cooldowns after apply reverted a change it proposed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gftune.desired.config import Config
from gftune.formatting import duration
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
