"""Judging: expectations, guards, unknown data, health-only mode."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from gftune.apply import verify
from gftune.plan.evidence import Expectation


@dataclass(frozen=True)
class R:
    value: float | None
    status: str = "ok"
    detail: str = ""


def _judge(before, after, expectations=(), status="Running", **kw):
    return verify.judge(status=status, before={k: R(v) if not isinstance(v, R) else v for k, v in before.items()},
                        after={k: R(v) if not isinstance(v, R) else v for k, v in after.items()},
                        expectations=expectations, **kw)


SINK_GE = Expectation("sink_rate", ">=", 14000, "sink rate >= 14,000/s")


def test_expectation_met_passes_and_says_improved():
    v = _judge({"sink_rate": 5200, "sink_source_ratio": 0.35}, {"sink_rate": 14500, "sink_source_ratio": 0.98},
               [SINK_GE])
    assert v.outcome == verify.PASS
    assert v.label == "improved"
    assert [(c.kind, c.name, c.outcome) for c in v.checks] == [
        ("health", "status", "pass"), ("expectation", "sink_rate", "pass"), ("guard", "sink_rate", "pass"),
        ("guard", "sink_source_ratio", "pass")]


def test_expectation_within_tolerance_passes_and_outside_fails():
    assert _judge({"sink_rate": 5200}, {"sink_rate": 12700}, [SINK_GE]).outcome == verify.PASS  # >= 12600
    v = _judge({"sink_rate": 5200}, {"sink_rate": 5300}, [SINK_GE])
    assert v.outcome == verify.FAIL
    assert "did not improve" in v.reasons[0]


def test_partial_improvement_is_inconclusive():
    v = _judge({"sink_rate": 5200}, {"sink_rate": 9000}, [SINK_GE])
    assert v.outcome == verify.INCONCLUSIVE
    assert "fell short" in v.reasons[0]


def test_regression_of_expected_signal_fails():
    v = _judge({"sink_rate": 5200}, {"sink_rate": 2000}, [SINK_GE])
    assert v.outcome == verify.FAIL and "regressed" in v.reasons[0]


def test_lower_is_better_expectation():
    e = Expectation("stream_depth_ratio", "<=", 0.5)
    assert _judge({"stream_depth_ratio": 0.95}, {"stream_depth_ratio": 0.2}, [e]).outcome == verify.PASS
    assert _judge({"stream_depth_ratio": 0.95}, {"stream_depth_ratio": 0.97}, [e]).outcome == verify.FAIL


@pytest.mark.parametrize("after", [R(None, "unknown", "no series"), R(None, "stale", "last sample 40s old"),
                                   R(math.nan), R(math.inf)])
def test_unknown_nan_or_stale_after_is_inconclusive(after):
    v = _judge({"sink_rate": 5200}, {"sink_rate": after}, [SINK_GE])
    assert v.outcome == verify.INCONCLUSIVE
    assert "sink_rate" in v.reasons[0]


def test_guard_ratio_drop_fails_without_expectations():
    v = _judge({"sink_source_ratio": 1.0, verify.BACKPRESSURE: 0.0},
               {"sink_source_ratio": 0.5, verify.BACKPRESSURE: 1.0})
    assert v.outcome == verify.FAIL
    assert {c.name for c in v.checks if c.outcome == "fail"} == {"sink_source_ratio", verify.BACKPRESSURE}


def test_sink_rate_drop_fails():
    v = _judge({"sink_rate": 5000}, {"sink_rate": 2500})
    assert v.outcome == verify.FAIL and "sink_rate got worse" in v.reasons[0]


def test_backpressure_while_sink_keeps_up_is_catching_up_not_a_regression():
    v = _judge({"sink_rate": 5000, verify.BACKPRESSURE: 0.0}, {"sink_rate": 5600, verify.BACKPRESSURE: 1.0})
    assert v.outcome == verify.INCONCLUSIVE and "catching up" in v.reasons[0]
    v = _judge({"sink_rate": 5000, verify.BACKPRESSURE: 0.0}, {"sink_rate": 2600, verify.BACKPRESSURE: 1.0})
    assert v.outcome == verify.FAIL
    assert {c.name for c in v.checks if c.outcome == "fail"} == {"sink_rate", verify.BACKPRESSURE}


def test_guard_noise_within_tolerance_passes_as_healthy_not_worse():
    v = _judge({"sink_source_ratio": 0.99, verify.BACKPRESSURE: 0.0},
               {"sink_source_ratio": 0.93, verify.BACKPRESSURE: 0.05})
    assert v.outcome == verify.PASS
    assert v.label == "healthy, not worse"


def test_new_exhausted_retries_fail_even_when_expectation_met():
    v = _judge({"sink_rate": 5200, verify.EXHAUSTED_RETRIES: 0.0},
               {"sink_rate": 15000, verify.EXHAUSTED_RETRIES: 3.0}, [SINK_GE])
    assert v.outcome == verify.FAIL
    assert "appeared" in v.reasons[0]


def test_guard_signal_absent_on_both_sides_is_skipped_but_half_missing_is_inconclusive():
    v = _judge({"sink_source_ratio": 1.0}, {"sink_source_ratio": 1.0})
    assert [c.name for c in v.checks] == ["status", "sink_source_ratio"]
    v = _judge({"sink_source_ratio": 1.0}, {})
    assert v.outcome == verify.INCONCLUSIVE


def test_data_gap_is_inconclusive_even_when_values_look_good():
    v = _judge({"sink_rate": 5200}, {"sink_rate": 15000}, [SINK_GE], gaps=["sink_rate: data covers 4s of 15s"])
    assert v.outcome == verify.INCONCLUSIVE and "covers 4s" in v.reasons[0]


def test_not_running_fails():
    v = _judge({"sink_source_ratio": 1.0}, {"sink_source_ratio": 1.0}, status="Failed")
    assert v.outcome == verify.FAIL and "Failed" in v.reasons[0]


def test_health_only_mode():
    ok = verify.judge(status="Running", before={}, after={}, metrics=False)
    assert ok.outcome == verify.PASS and ok.label == "healthy, not verified by metrics"
    predicted = verify.judge(status="Running", before={}, after={}, expectations=[SINK_GE], metrics=False)
    assert predicted.outcome == verify.INCONCLUSIVE


def test_verdict_round_trip_and_next_move():
    v = _judge({"sink_rate": 5200}, {"sink_rate": 2000}, [SINK_GE])
    again = verify.Verdict.from_dict(v.to_dict())
    assert again == v
    assert verify.next_move(v) .startswith("reverted")
    assert verify.next_move(v, reverted=False).startswith("revert failed")
    assert verify.next_move(_judge({}, {}, [])) == "accept"


def test_guard_signals_exist_in_the_signal_library():
    from gftune.policy.signals import SIGNALS

    assert {g.signal for g in verify.GUARDS} <= set(SIGNALS)
    assert set(SIGNALS) >= verify.BACKLOG_SIGNALS | verify.THROUGHPUT_SIGNALS
    assert {verify.LAG, verify.LAG_GROWTH, verify.SOURCE_RATE, verify.STREAM_DEPTH} <= set(SIGNALS)


def test_unknown_op_is_an_error():
    with pytest.raises(ValueError):
        verify.holds("!=", 1, 1, 0.1)


# The benchmark's sink-batch-bound: max_batch_size 1000 -> 4000 lifts the sink from ~1,890/s to
# ~6,440/s, the Kafka lag shrinks ~1,450/s, but backpressure stays 1 until ~3.8M records are drained.
BP_ZERO = Expectation("ingestor_backpressure", "<=", 0)
SINK_KEEPS_UP = Expectation("sink_rate", ">=", 6100, "sink_rate >= kafka_input_rate * 0.95")
CATCH_UP_BEFORE = {"sink_rate": 1890, "source_rate": 1890, verify.BACKPRESSURE: 1.0, "consumer_lag": 800_000,
                   "consumer_lag_growth": 4500}
CATCH_UP_AFTER = {"sink_rate": 6440, "source_rate": 6440, verify.BACKPRESSURE: 1.0, "consumer_lag": 3_800_000,
                  "consumer_lag_growth": -1450}


def test_backlog_expectation_missed_while_throughput_holds_and_lag_drains_passes_as_catching_up():
    v = _judge(CATCH_UP_BEFORE, CATCH_UP_AFTER, [SINK_KEEPS_UP, BP_ZERO])
    assert v.outcome == verify.PASS, v.reasons
    check = next(c for c in v.checks if c.kind == "expectation" and c.name == verify.BACKPRESSURE)
    assert check.outcome == verify.PASS and check.reason.startswith("catching up: backlog draining at 1,450/s")
    assert "~44 min to drain 3,800,000 records" in check.reason  # 3.8M / 1,450/s = 2,621 s
    assert (check.before, check.after) == (1.0, 1.0)
    assert v.notes and v.notes[0].startswith(verify.CATCHING_UP) and "ingestor_backpressure" in v.notes[0]
    assert verify.Verdict.from_dict(v.to_dict()) == v


def test_backlog_expectation_with_only_the_sink_rate_guard_passing_also_catches_up():
    v = _judge({**CATCH_UP_BEFORE, "stream_depth_ratio": 0.95}, {**CATCH_UP_AFTER, "stream_depth_ratio": 0.95},
               [BP_ZERO, Expectation("stream_depth_ratio", "<=", 0.5)])
    assert v.outcome == verify.PASS, v.reasons
    assert all(c.reason.startswith("catching up") for c in v.checks if c.kind == "expectation")


def test_backlog_expectation_still_fails_when_the_backlog_does_not_drain():
    for growth in (0.0, -300.0, 2000.0):  # flat, within the noise band (10% of 6,440/s), growing
        v = _judge(CATCH_UP_BEFORE, {**CATCH_UP_AFTER, "consumer_lag_growth": growth}, [SINK_KEEPS_UP, BP_ZERO])
        assert v.outcome == verify.FAIL, growth
        assert "did not improve: 1 → 1" in v.reasons[0]
    v = _judge(CATCH_UP_BEFORE, {k: x for k, x in CATCH_UP_AFTER.items() if not k.startswith("consumer_lag")},
               [SINK_KEEPS_UP, BP_ZERO])
    assert v.outcome == verify.FAIL  # no lag reading and no stream depth: nothing shows a drain


def test_backlog_expectation_still_fails_when_the_throughput_does_not_hold():
    # the throughput expectation missed: the lag drains only because the input dropped
    v = _judge(CATCH_UP_BEFORE, {**CATCH_UP_AFTER, "sink_rate": 1900}, [SINK_KEEPS_UP, BP_ZERO])
    assert v.outcome == verify.FAIL
    assert {c.name for c in v.checks if c.outcome == "fail" and c.kind == "expectation"} == {
        "sink_rate", verify.BACKPRESSURE}
    # no throughput expectation and the sink rate guard failed
    v = _judge(CATCH_UP_BEFORE, {**CATCH_UP_AFTER, "sink_rate": 1000}, [BP_ZERO])
    assert v.outcome == verify.FAIL
    assert not any(c.reason.startswith("catching up") for c in v.checks)


def test_non_backlog_expectation_is_not_excused_by_a_draining_lag():
    v = _judge(CATCH_UP_BEFORE, {**CATCH_UP_AFTER, "sink_batch_fill": 1.0},
               [SINK_KEEPS_UP, Expectation("sink_batch_fill", "<=", 0.5)])
    assert v.outcome == verify.FAIL


def test_falling_stream_depth_counts_as_draining_without_a_lag_reading():
    before = {"sink_rate": 1890, verify.BACKPRESSURE: 1.0, "stream_depth": 40_000}
    after = {"sink_rate": 6440, verify.BACKPRESSURE: 1.0, "stream_depth": 20_000}
    v = _judge(before, after, [SINK_KEEPS_UP, BP_ZERO])
    assert v.outcome == verify.PASS and "stream_depth fell 40,000 → 20,000" in v.notes[0]
    assert _judge(before, {**after, "stream_depth": 39_000}, [SINK_KEEPS_UP, BP_ZERO]).outcome == verify.FAIL


def test_absent_guard_with_no_series_before_passes_at_zero_and_fails_when_it_appears():
    missing = R(None, "unknown", "no series")
    v = _judge({"sink_rate": 5000, verify.TERMINAL_ERRORS: missing}, {"sink_rate": 5000, verify.TERMINAL_ERRORS: 0.0})
    guard = next(c for c in v.checks if c.name == verify.TERMINAL_ERRORS)
    assert guard.outcome == verify.PASS and v.outcome == verify.PASS
    v = _judge({"sink_rate": 5000}, {"sink_rate": 5000, verify.DLQ_RATE: 0.0})  # no before reading at all
    assert v.outcome == verify.PASS
    v = _judge({"sink_rate": 5000, verify.EXHAUSTED_RETRIES: missing},
               {"sink_rate": 5000, verify.EXHAUSTED_RETRIES: 2.5})
    assert v.outcome == verify.FAIL and "appeared" in v.reasons[0]
    # unknown after stays inconclusive
    v = _judge({"sink_rate": 5000, verify.DLQ_RATE: 0.0}, {"sink_rate": 5000, verify.DLQ_RATE: R(None, "stale")})
    assert v.outcome == verify.INCONCLUSIVE


def test_backlog_draining_when_the_kafka_lag_shrinks_beyond_noise():
    """What apply reads to observe another window while a restarted pipeline catches up."""
    def draining(**after):
        return verify.backlog_draining({}, {k: R(v) for k, v in after.items()}, 0.1)

    assert draining(consumer_lag_growth=-9000, consumer_lag=1_200_000, source_rate=18000) == \
        "backlog draining at 9,000/s (Kafka lag), ~2 min to drain 1,200,000 records"
    assert draining(consumer_lag_growth=-1000, source_rate=18000) is None  # within the noise band
    assert draining(consumer_lag_growth=3000, source_rate=18000) is None  # falling behind, not catching up
    assert verify.backlog_draining({}, {"consumer_lag_growth": R(None, "unknown")}, 0.1) is None
    assert verify.backlog_draining({}, {}, 0.1) is None


# The benchmark's step-up-x5 after its step: 10000/s into a 500m ingestor that reads ~3,000/s and one
# sink replica that writes ~4,950/s at most. underprovisioned-ingestor raises the ingestor to a core:
# it reads what the sink takes, the sink's stream fills and the ingestor backpressures.
READ_95 = Expectation("source_rate", ">=", 9500, "source_rate >= kafka_input_rate * 0.95")
LAG_FLAT = Expectation("consumer_lag_growth", "<=", 0)
THROTTLED = {"source_rate": 3000, "sink_rate": 3000, "sink_source_ratio": 1.0, verify.BACKPRESSURE: 0.0,
             verify.BACKPRESSURE_SHARE: 0.0, "sink_batch_fill": 0.95, verify.STREAM_DEPTH_RATIO: 0.125,
             "consumer_lag_growth": 7000}
SINK_LIMITS = {"source_rate": 4950, "sink_rate": 4950, "sink_source_ratio": 1.0, verify.BACKPRESSURE: 1.0,
               verify.BACKPRESSURE_SHARE: 1.0, "sink_batch_fill": 1.0, verify.STREAM_DEPTH_RATIO: 1.0,
               "consumer_lag_growth": 5050}


def test_improved_while_the_sink_became_the_limit_is_the_next_bottleneck():
    v = _judge(THROTTLED, SINK_LIMITS, [READ_95, LAG_FLAT])
    assert v.outcome == verify.NEXT_BOTTLENECK, v.reasons
    assert v.label == "improved; the next bottleneck is the sink" and v.bottleneck == "the sink"
    reason = v.reasons[0]
    assert "source_rate 3,000 → 4,950 (expected >= 9,500)" in reason
    assert "consumer_lag_growth 7,000 → 5,050 (expected <= 0)" in reason
    assert "the sink writes 3,000 → 4,950/s and is saturated now" in reason
    assert "stream is 100% full" in reason and "it was not before" in reason
    assert reason in v.notes
    # the expectations did miss: the checks say so, the verdict says why that is kept
    assert {c.name: c.outcome for c in v.checks if c.kind == "expectation"} == {
        "source_rate": verify.INCONCLUSIVE, "consumer_lag_growth": verify.INCONCLUSIVE}
    assert verify.next_move(v).startswith("keep")
    assert verify.Verdict.from_dict(v.to_dict()) == v and v.to_dict()["label"] == v.label


def test_the_stream_filling_in_front_of_the_sink_explains_a_lower_sink_source_ratio():
    # read faster than written while the stream fills: the ratio guard alone would fail the change
    after = {**SINK_LIMITS, "source_rate": 5600, "sink_source_ratio": 0.88, "consumer_lag_growth": 4400}
    v = _judge({**THROTTLED, "sink_source_ratio": 1.0}, after, [READ_95, LAG_FLAT])
    assert v.outcome == verify.NEXT_BOTTLENECK, v.reasons
    unsaturated = {**after, verify.STREAM_DEPTH_RATIO: 0.3, verify.BACKPRESSURE: 0.0, verify.BACKPRESSURE_SHARE: 0.0}
    assert _judge(THROTTLED, unsaturated, [READ_95, LAG_FLAT]).outcome == verify.FAIL


@pytest.mark.parametrize("why, before, after", [
    ("the sink is not saturated after", THROTTLED,
     {**SINK_LIMITS, verify.STREAM_DEPTH_RATIO: 0.4, verify.BACKPRESSURE: 0.0, verify.BACKPRESSURE_SHARE: 0.0}),
    ("the sink flushes partial batches", THROTTLED, {**SINK_LIMITS, "sink_batch_fill": 0.5}),
    ("the sink was saturated before too: the limit did not move",
     {**THROTTLED, verify.STREAM_DEPTH_RATIO: 0.9, verify.BACKPRESSURE: 1.0, verify.BACKPRESSURE_SHARE: 1.0},
     SINK_LIMITS),
    ("the sink's flush size is unknown after", THROTTLED, {**SINK_LIMITS, "sink_batch_fill": None}),
    ("the read rate moved toward the target, but not clearly beyond the noise", THROTTLED,
     {**SINK_LIMITS, "source_rate": 3500, "sink_rate": 3500, "consumer_lag_growth": 6000}),
])
def test_a_partial_effect_without_a_moved_limit_stays_inconclusive(why, before, after):
    after = {k: R(None, "unknown") if v is None else v for k, v in after.items()}
    v = _judge(before, after, [READ_95, LAG_FLAT])
    assert v.outcome == verify.INCONCLUSIVE, (why, v.reasons)


@pytest.mark.parametrize("why, after", [
    ("an expectation did not move", {**SINK_LIMITS, "consumer_lag_growth": 7000}),
    ("an expectation regressed", {**SINK_LIMITS, "consumer_lag_growth": 9000}),
    ("the sink rate fell", {**SINK_LIMITS, "sink_rate": 2000, "source_rate": 4950}),
    ("DLQ writes appeared", {**SINK_LIMITS, verify.DLQ_RATE: 12.0}),
    ("rejected rows appeared", {**SINK_LIMITS, verify.EXHAUSTED_RETRIES: 3.0}),
])
def test_a_change_that_did_not_help_or_made_anything_worse_still_fails(why, after):
    before = {**THROTTLED, verify.DLQ_RATE: 0.0, verify.EXHAUSTED_RETRIES: 0.0}
    after = {verify.DLQ_RATE: 0.0, verify.EXHAUSTED_RETRIES: 0.0, **after}
    v = _judge(before, after, [READ_95, LAG_FLAT])
    assert v.outcome == verify.FAIL, (why, v.reasons)


def test_not_running_or_a_data_gap_is_never_the_next_bottleneck():
    assert _judge(THROTTLED, SINK_LIMITS, [READ_95, LAG_FLAT], status="Failed").outcome == verify.FAIL
    v = _judge(THROTTLED, SINK_LIMITS, [READ_95, LAG_FLAT], gaps=["source_rate: 3 missing scrapes"])
    assert v.outcome == verify.INCONCLUSIVE


def test_saturation_signals_exist_in_the_signal_library():
    from gftune.policy.signals import SIGNALS

    assert set(verify.SATURATION_SIGNALS) <= set(SIGNALS)


def _judged_run(after: dict[str, float]):
    """A run of underprovisioned-ingestor's change at its judge step, judged by gftune.apply.judging."""
    from datetime import UTC, datetime

    from gftune.apply import judging
    from gftune.apply.state import PipelineRun, Step
    from gftune.desired.config import Config
    from gftune.plan.evidence import VerifySpec
    from gftune.policy.signal_types import SignalReading

    def readings(values):
        at = datetime(2026, 12, 2, tzinfo=UTC)
        return {k: SignalReading(k, v, "", "", 300.0, at, "ok").to_dict() for k, v in values.items()}

    proposal = {"policy": "underprovisioned-ingestor", "changes": []}
    run = PipelineRun("orders", "update", {"changes": [{"path": "resources.sources[orders].limits.cpu", "old": "500m",
                                                        "new": "1", "proposal": proposal}]})
    judge = Step("verify", "judge", VerifySpec((READ_95, LAG_FLAT)).to_dict())
    run.steps = [judge, Step("finish", "provenance"), Step("finish", "unlock")]
    run.baseline, run.after = readings(THROTTLED), readings(after)
    said = judging.judge(run, judge, "Running", config=Config(), metrics=True, now=1_764_633_600.0)
    return run, said


def test_the_next_bottleneck_is_kept_and_tagged_like_a_verified_change():
    from gftune import exitcodes
    from gftune.apply import lifecycle

    run, said = _judged_run(SINK_LIMITS)
    assert run.outcome == "improved" and lifecycle.exit_code([run.outcome]) == exitcodes.OK
    assert [(s.phase, s.action, s.state) for s in run.steps[1:]] == [("finish", "provenance", "pending"),
                                                                      ("finish", "unlock", "pending")]
    assert said[0].startswith("kept: improved; the next bottleneck is the sink: source_rate 3,000 → 4,950")
    assert run.verdict["bottleneck"] == "the sink"


def test_a_change_that_did_not_move_its_signal_is_still_reverted_and_backed_off():
    run, said = _judged_run({**SINK_LIMITS, "consumer_lag_growth": 7000})
    assert run.outcome is None and said[0].startswith("verification failed")
    assert [(s.phase, s.action, s.state) for s in run.steps[1:]] == [
        ("revert", "plan", "pending"), ("finish", "provenance", "skipped"), ("finish", "record_revert", "pending"),
        ("finish", "unlock", "pending")]


# step-up-x5 planned 2 minutes after its step: the 5-minute baseline began at 2,000/s, so it
# averages a lag growth (5,005/s) the input has since outgrown; after the change the ingestor reads
# ~4,955/s of 10,000/s and the lag grows 5,045/s: no better in itself, 2,455/s better at the same input.
STRADDLING = {**THROTTLED, "source_rate": 2500, "sink_rate": 2500, "consumer_lag_growth": 5005,
              verify.INPUT_RATE: 7505}
AT_THE_SINK = {**SINK_LIMITS, "source_rate": 4955, "sink_rate": 4955, "consumer_lag_growth": 5045,
               verify.INPUT_RATE: 10000}


def test_a_lag_growth_that_only_kept_pace_with_a_rising_input_is_judged_net_of_it():
    v = _judge(STRADDLING, AT_THE_SINK, [READ_95, LAG_FLAT])
    assert v.outcome == verify.NEXT_BOTTLENECK, v.reasons
    assert ("consumer_lag_growth 5,005 → 5,045 (expected <= 0) while the input rose 7,505 → 10,000/s: at the same "
            "input, 7,500 → 5,045") in v.reasons[0]
    lag = next(c for c in v.checks if c.kind == "expectation" and c.name == "consumer_lag_growth")
    assert lag.outcome == verify.FAIL  # the check itself says what it saw


@pytest.mark.parametrize("why, after", [
    ("the input held still: the lag growth really did not improve", {**AT_THE_SINK, verify.INPUT_RATE: 7600}),
    ("the input rose, but the growth rose as much", {**AT_THE_SINK, "consumer_lag_growth": 7000}),
    ("the input is unknown after", {**AT_THE_SINK, verify.INPUT_RATE: None}),
])
def test_a_lag_growth_that_did_not_improve_net_of_the_input_still_fails(why, after):
    after = {k: R(None, "unknown") if v is None else v for k, v in after.items()}
    assert _judge(STRADDLING, after, [READ_95, LAG_FLAT]).outcome == verify.FAIL, why


# step-down-half: 2 + 2 replicas at 4,000/s given back to 1 + 1. The restart queues ~90,000 records,
# which the one sink drains with backpressure for a minute or two at the start of the window; by its
# end the lag is gone, but the window's share of time in backpressure still counts the catch-up.
SLACK = {"source_rate": 4000, "sink_rate": 4000, "sink_input_ratio": 1.0, "backpressure_share": 0.0,
         "ingestor_backpressure": 0, "consumer_lag": 2000, "consumer_lag_growth": 0}
CAUGHT_UP = {**SLACK, "backpressure_share": 0.11, "consumer_lag": 3000, "consumer_lag_growth": -290}
KEEPS_UP = Expectation("sink_input_ratio", ">=", 0.95, "sink/input ratio >= 0.95")
NO_BACKPRESSURE = Expectation("backpressure_share", "<=", 0.0, "time in backpressure <= 0")


def test_a_catch_up_over_by_the_windows_end_is_judged_again_not_failed():
    v = _judge(SLACK, CAUGHT_UP, [KEEPS_UP, NO_BACKPRESSURE])
    assert v.outcome == verify.FAIL  # the share over the window missed; the lag no longer drains measurably
    over = verify.catch_up_over(v, {k: R(x) for k, x in CAUGHT_UP.items()})
    assert over and "catch-up after the restart is over" in over and "backpressure_share" in over
    # not over: backpressure now, a lag still above 30 s of input, or another check that missed
    for after in ({**CAUGHT_UP, "ingestor_backpressure": 1}, {**CAUGHT_UP, "consumer_lag": 200_000}):
        assert verify.catch_up_over(_judge(SLACK, after, [KEEPS_UP, NO_BACKPRESSURE]),
                                    {k: R(x) for k, x in after.items()}) is None
    behind = {**CAUGHT_UP, "sink_input_ratio": 0.8}
    assert verify.catch_up_over(_judge(SLACK, behind, [KEEPS_UP, NO_BACKPRESSURE]),
                                {k: R(x) for k, x in behind.items()}) is None


def _judge_step(after: dict[str, float], params: dict | None = None):
    from datetime import UTC, datetime

    from gftune.apply import judging
    from gftune.apply.state import PipelineRun, Step
    from gftune.desired.config import Config
    from gftune.plan.evidence import VerifySpec
    from gftune.policy.signal_types import SignalReading

    def readings(values):
        at = datetime(2026, 12, 2, tzinfo=UTC)
        return {k: SignalReading(k, v, "", "", 300.0, at, "ok").to_dict() for k, v in values.items()}

    run = PipelineRun("orders", "update", {"changes": []})
    judge = Step("verify", "judge", {**VerifySpec((KEEPS_UP, NO_BACKPRESSURE)).to_dict(), **(params or {})})
    run.steps = [judge, Step("finish", "provenance"), Step("finish", "unlock")]
    run.baseline, run.after = readings(SLACK), readings(after)
    said = judging.judge(run, judge, "Running", config=Config(), metrics=True, now=1_764_633_600.0)
    return run, judge, said


def test_apply_observes_one_more_window_after_the_catch_up_and_no_more():
    run, _, said = _judge_step(CAUGHT_UP)
    assert run.outcome is None and "catch-up after the restart is over" in said[0]
    assert [(s.phase, s.action) for s in run.steps[1:3]] == [("verify", "observe"), ("verify", "judge")]
    assert run.steps[2].params["after_catch_up"] is True
    # the window after it still spends time in backpressure: that is the change's, reverted
    run, _, said = _judge_step(CAUGHT_UP, run.steps[2].params)
    assert said[0].startswith("verification failed") and run.steps[1].phase == "revert"
