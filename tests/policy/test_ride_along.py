"""ride_along: a scale-down waits, bounded, for another policy that is about to be established, so
that both land in one change (one restart). Recorded values only (no servers)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from gftune.plan.evidence import FieldChange
from gftune.policy.arbitrate import evaluate_pipeline
from gftune.policy.evaluate import evaluate
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import PolicyError, parse_policy
from gftune.policy.ridealong import gives_back_only
from gftune.policy.testing import TEST_PIPELINE
from gftune.policy.views import FixtureView, held_since

MIN = 60.0


def doc(name: str, when: list, then: list, **spec) -> dict:
    return {"apiVersion": "gftune/v1", "kind": "TuningPolicy", "metadata": {"name": name},
            "spec": {"when": when, "then": then, **spec}}


def facts(**kw) -> PipelineFacts:
    return PipelineFacts("p1", copy.deepcopy(TEST_PIPELINE), **kw)


# the ingestors' slack (two replicas -> one), established when the ingestor was idle for 30m
INGESTORS = parse_policy(doc("ingestor-slack", [{"signal": "ingestor_utilization", "op": "<", "value": 0.5, "for": "30m"}],
                             [{"set": "resources.sources[orders].replicas", "value": 1}], ride_along="10m"))
# the sink's slack: a scale-up of its batch would not ride along; this one gives a CPU back
SINK = parse_policy(doc("sink-slack", [{"signal": "sink_utilization", "op": "<", "value": 0.5, "for": "30m"},
                                       {"signal": "error_rate", "op": "<=", "value": 0}],
                        [{"set": "resources.sink.limits.cpu", "value": "1"}], ride_along="10m"))


def series(low_since_s: float, *, until_s: float = 60 * MIN, step_s: float = 60.0, low: float = 0.3,
           high: float = 0.8) -> list[list[float]]:
    """A utilization that was ``high`` and is ``low`` from ``low_since_s`` on, sampled every ``step_s``."""
    points, t = [], 0.0
    while t <= until_s + 1e-9:
        points.append([t, low if t >= low_since_s else high])
        t += step_s
    return points


def view(ingestor_low_since: float, sink_low_since: float, **signals) -> FixtureView:
    return FixtureView({"error_rate": 0, **signals},
                       {"ingestor_utilization": series(ingestor_low_since),
                        "sink_utilization": series(sink_low_since)})


def test_held_since_is_the_start_of_the_trailing_run():
    def below(v: float) -> bool:
        return v < 0.5

    assert held_since([[(0, 0.9), (60, 0.2), (120, 0.3)]], below) == 60
    assert held_since([[(0, 0.2), (60, 0.9), (120, 0.3)]], below) == 120
    assert held_since([[(0, 0.2), (60, 0.2), (120, 0.9)]], below) is None  # not holding now
    assert held_since([[(0, 0.2), (60, 0.2)], [(0, 0.9), (60, 0.3)]], below) == 60  # every series
    assert held_since([[(0, 0.2), (60, float("nan"))]], below) == 0  # a missing sample is not a break
    assert held_since([], below) is None


def test_a_condition_holding_for_part_of_its_for_makes_the_policy_pending():
    # the sink's slack has held for 25 of its 30 minutes: established in 5 more
    evaluation = evaluate(SINK, facts(), view(0, 35 * MIN))
    assert evaluation.proposal is None and not evaluation.incomplete
    assert evaluation.pending_s == pytest.approx(5 * MIN)
    assert evaluation.holding == [("sink_utilization", pytest.approx(5 * MIN))]
    # another condition that does not hold: not pending
    assert evaluate(SINK, facts(), view(0, 35 * MIN, error_rate=1)).pending_s is None
    # a cooldown would keep it from proposing once established: not pending either
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert evaluate(SINK, facts(last_change=now - timedelta(minutes=5)), view(0, 35 * MIN),
                    now=now).pending_s is None


def test_a_scale_down_waits_for_a_policy_about_to_be_established():
    outcome = evaluate_pipeline([INGESTORS, SINK], facts(), view(27 * MIN, 35 * MIN))
    assert outcome.proposals == []
    wait = [n for n in outcome.notes if "ride along" in n]
    assert len(wait) == 1 and wait[0].startswith("ingestor-slack:") and "sink-slack" in wait[0]
    assert "established in 5m" in wait[0]


def test_both_land_in_one_plan_once_the_other_is_established():
    outcome = evaluate_pipeline([INGESTORS, SINK], facts(), view(22 * MIN, 30 * MIN))
    assert sorted(p.policy for p in outcome.proposals) == ["ingestor-slack", "sink-slack"]
    assert not [n for n in outcome.notes if "ride along" in n]


def test_the_wait_is_bounded_by_ride_along():
    # the other policy is 15 minutes away: longer than ride_along, the scale-down goes alone
    outcome = evaluate_pipeline([INGESTORS, SINK], facts(), view(27 * MIN, 45 * MIN))
    assert [p.policy for p in outcome.proposals] == ["ingestor-slack"]
    # established 8 minutes ago: only 2 of its 10 minutes are left, fewer than the 5 needed
    outcome = evaluate_pipeline([INGESTORS, SINK], facts(), view(22 * MIN, 35 * MIN))
    assert [p.policy for p in outcome.proposals] == ["ingestor-slack"]


def test_no_pending_policy_no_wait_and_no_ride_along_no_wait():
    # the sink was never idle: nothing to wait for
    outcome = evaluate_pipeline([INGESTORS, SINK], facts(), view(27 * MIN, 61 * MIN))
    assert [p.policy for p in outcome.proposals] == ["ingestor-slack"]
    # without ride_along the scale-down goes at once
    alone = parse_policy(doc("ingestor-slack", [{"signal": "ingestor_utilization", "op": "<", "value": 0.5,
                                                 "for": "30m"}],
                             [{"set": "resources.sources[orders].replicas", "value": 1}]))
    outcome = evaluate_pipeline([alone, SINK], facts(), view(27 * MIN, 35 * MIN))
    assert [p.policy for p in outcome.proposals] == ["ingestor-slack"]


def test_a_scale_up_never_waits():
    grow = parse_policy(doc("ingestor-grow", [{"signal": "ingestor_utilization", "op": "<", "value": 0.5, "for": "30m"}],
                            [{"set": "resources.sources[orders].replicas", "value": 3}], ride_along="10m"))
    outcome = evaluate_pipeline([grow, SINK], facts(), view(27 * MIN, 35 * MIN))
    assert [p.policy for p in outcome.proposals] == ["ingestor-grow"]


def test_gives_back_only_is_capacity_lowered_and_nothing_else():
    assert gives_back_only([FieldChange("resources.sink.replicas", 2, 1),
                            FieldChange("resources.sink.limits.cpu", "1500m", "1")])
    assert not gives_back_only([FieldChange("resources.sink.replicas", 2, 3)])
    assert not gives_back_only([FieldChange("resources.sink.replicas", 2, 1),
                                FieldChange("sink.max_batch_size", 2000, 1000)])  # a tuning knob, not capacity
    assert not gives_back_only([])


def test_ride_along_on_an_escalating_policy_is_refused():
    with pytest.raises(PolicyError, match="ride_along"):
        parse_policy({"apiVersion": "gftune/v1", "kind": "TuningPolicy", "metadata": {"name": "e"},
                      "spec": {"when": [{"signal": "sink_rate", "op": "<", "value": 1}],
                               "escalate": {"reason": "r", "next_step": "n"}, "ride_along": "10m"}})
