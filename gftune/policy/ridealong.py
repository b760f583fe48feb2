"""Ride-along: a scale-down that waits, bounded, to land in the same change as another policy's.

Every change of a GlassFlow pipeline is a restart (stop, edit, resume: the lifecycle of
docs/lifecycles.md), and the default cooldown after one keeps every other policy from acting for a
while. Two policies that fire minutes apart (the ingestors' slack and the sink's, after the input
halved) would cost two restarts and an hour between them. A policy with ``ride_along: 10m`` whose
proposal only gives capacity back therefore waits while another policy selecting the same pipeline is
*pending* (every condition holds now, some not yet for their whole ``for:``, nothing such as a
cooldown keeps it from proposing) and will be established within what is left of the ride-along; its
proposal then lands with the other's in one plan. The wait never exceeds ``ride_along`` after the
scale-down was itself established, and a scale-up never waits: capacity that is missing is added
at once (the Flink autoscaler's and the HPA's asymmetry).

Pure: it reads :class:`~gftune.policy.evaluate.Evaluation` results only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gftune.formatting import duration
from gftune.plan.evidence import FieldChange
from gftune.policy import guards
from gftune.policy.evaluate import Evaluation
from gftune.policy.language import Policy

# Only these fields are capacity: lowering them gives resources back.
CAPACITY_FIELDS = ("replicas", "cpu", "memory")


def gives_back_only(changes: Sequence[FieldChange]) -> bool:
    """Every change lowers a capacity field (replicas, CPU, memory): nothing is fixed by it."""
    if not changes:
        return False
    for change in changes:
        if change.path.rsplit(".", 1)[-1] not in CAPACITY_FIELDS:
            return False
        lowers = guards.growth(change)
        if lowers is None or lowers >= 0:
            return False
    return True


@dataclass(frozen=True)
class Wait:
    """A scale-down held back for another policy that will be established soon."""

    policy: str
    for_policy: str
    pending_s: float  # model seconds until the other policy is established
    budget_s: float  # model seconds the scale-down may still wait

    @property
    def note(self) -> str:
        return (f"{self.policy}: its scale-down waits to ride along with {self.for_policy}, whose conditions "
                f"hold and are established in {duration(self.pending_s)} (ride_along: at most "
                f"{duration(self.budget_s)} more), so that both land in one restart")


def ride_along_wait(policy: Policy, evaluation: Evaluation, others: Iterable[Evaluation]) -> Wait | None:
    """The wait of ``policy``'s proposal for another pending policy, or None when it proposes now."""
    proposal = evaluation.proposal
    if proposal is None or policy.ride_along_s <= 0 or not gives_back_only(proposal.changes):
        return None
    established = evaluation.established_s if evaluation.established_s is not None else policy.ride_along_s
    budget = policy.ride_along_s - established
    pending = [(other.pending_s, other.policy) for other in others
               if other.policy != policy.name and other.pending_s is not None and other.pending_s <= budget]
    if not pending:
        return None
    pending_s, other = min(pending)
    return Wait(policy.name, other, pending_s, budget)
