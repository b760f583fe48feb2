"""Judging: expectations, guards, unknown data, health-only mode."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from gftune import verify
from gftune.evidence import Expectation


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
    from gftune.signals import SIGNALS

    assert {g.signal for g in verify.GUARDS} <= set(SIGNALS)


def test_unknown_op_is_an_error():
    with pytest.raises(ValueError):
        verify.holds("!=", 1, 1, 0.1)
