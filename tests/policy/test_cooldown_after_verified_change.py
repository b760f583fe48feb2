"""The cooldown after a change gftune made for other policies and apply verified (issue 13: time to
mitigate): a scale-up it uncovered goes ahead, a scale-down or the policy's own change waits."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from gftune.plan import tags
from gftune.policy.evaluate import evaluate
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import parse_policy
from gftune.policy.testing import TEST_PIPELINE
from gftune.policy.views import FixtureView


def policy(name: str, then: list[dict]) -> dict:
    return {"apiVersion": "gftune/v1", "kind": "TuningPolicy", "metadata": {"name": name},
            "spec": {"when": [{"signal": "sink_input_ratio", "op": "<", "value": 0.9}], "then": then,
                     "cooldown": "15m"}}


def facts(**kw) -> PipelineFacts:
    return PipelineFacts("p1", copy.deepcopy(TEST_PIPELINE), **kw)


VIEW = FixtureView({"sink_input_ratio": 0.5})
CHANGED = VIEW.at - timedelta(minutes=12)  # within the 15m cooldown
UP = parse_policy(policy("ingestor-up", [{"add": "resources.sources[*].replicas", "value": 1}]))
DOWN = parse_policy(policy("ingestor-down", [{"add": "resources.sources[*].replicas", "value": -1}]))


def test_a_scale_up_goes_ahead_after_another_policys_verified_change():
    verified = tags.last_applied(tags.with_applied(["gftune:managed"], ["sink-fix"], CHANGED + timedelta(minutes=6)))
    result = evaluate(UP, facts(last_change=CHANGED, applied=verified), VIEW)
    assert result.proposal is not None
    # apply releases its lock (a metadata update) seconds after writing the tag: still that change
    unlocked = evaluate(UP, facts(last_change=verified[0] + timedelta(seconds=3), applied=verified), VIEW)
    assert unlocked.proposal is not None
    assert any("cooldown 15m not applied: the last change (sink-fix) was verified by apply" in n
               for n in result.proposal.notes)


def test_a_scale_down_its_own_change_or_an_unverified_change_keep_the_cooldown():
    verified = (CHANGED + timedelta(minutes=6), frozenset({"sink-fix"}))
    down = evaluate(DOWN, facts(last_change=CHANGED, applied=verified), VIEW)
    assert down.proposal is None and "not only a scale-up" in down.notes[0] and "cooldown 15m active" in down.notes[0]
    own = evaluate(UP, facts(last_change=CHANGED, applied=(verified[0], frozenset({"ingestor-up"}))), VIEW)
    assert own.proposal is None and "cooldown 15m active" in own.notes[0]
    # a change after the one gftune verified (by hand, or not yet verified): nothing is known about it
    later = evaluate(UP, facts(last_change=verified[0] + timedelta(minutes=2), applied=verified), VIEW)
    assert later.proposal is None and "cooldown 15m active" in later.notes[0]
    assert evaluate(UP, facts(last_change=CHANGED), VIEW).proposal is None  # no gftune:applied tag


def test_while_the_verified_change_still_drains_its_backlog_the_cooldown_stands():
    # step-up-x2: the sink's fix (1 -> 2 replicas, sized to drain the backlog within 30 minutes) is
    # verified while the backlog drains; the sink stays saturated meanwhile, which is that catch-up
    verified = (CHANGED + timedelta(minutes=6), frozenset({"sink-fix"}))
    draining = evaluate(UP, facts(last_change=CHANGED, applied=verified),
                        FixtureView({"sink_input_ratio": 0.5, "consumer_lag_growth": -1900}))
    assert draining.proposal is None
    assert "cooldown 15m active" in draining.notes[0] and "the Kafka lag shrinks (-1,900 records/s)" in draining.notes[0]
    # the lag growing again is a bottleneck the change uncovered: the scale-up goes ahead
    growing = evaluate(UP, facts(last_change=CHANGED, applied=verified),
                       FixtureView({"sink_input_ratio": 0.5, "consumer_lag_growth": 2000}))
    assert growing.proposal is not None


def test_the_applied_tag_is_one_replaced_record_and_unreadable_ones_are_ignored():
    early, late = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    written = tags.with_applied(["user", tags.applied_tag(["a"], early)], ["c", "b", "b"], late)
    assert written == ["user", "gftune:applied=b,c@2025-01-02T03:04:05Z"]
    assert tags.last_applied(written) == (late, frozenset({"b", "c"}))
    assert tags.last_applied(["gftune:applied=@2025-01-01T00:00:00Z"]) == (early, frozenset())  # a git change
    assert tags.last_applied(["gftune:applied=a@soon", "user"]) is None
