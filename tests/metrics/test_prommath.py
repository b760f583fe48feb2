"""PromQL arithmetic computed locally (direct-scrape mode) against hand-worked Prometheus results."""

import math

import pytest

from gftune.metrics import prommath


def test_rate_over_exactly_the_range_is_the_slope():
    assert prommath.extrapolated_rate([(100.0, 10.0), (130.0, 70.0)], 100.0, 130.0) == pytest.approx(2.0)


def test_counter_reset_adds_the_value_before_the_drop():
    # 10 -> 40 (+30), reset, 0 -> 20 (+20): increase 50 over 30 s
    points = [(0.0, 10.0), (10.0, 40.0), (20.0, 5.0), (30.0, 20.0)]
    assert prommath.extrapolated_rate(points, 0.0, 30.0, is_rate=False) == pytest.approx(50.0)
    # the drop from 40 to 5 counts 40, and last-first is 10: 10 + 40 = 50
    assert prommath.extrapolated_rate(points, 0.0, 30.0) == pytest.approx(50 / 30)


def test_extrapolation_to_range_edges_and_not_below_zero():
    # samples at 10..50 in a [0, 60] range, 10 s apart: extrapolate 10 s each side (within 1.1 x gap)
    points = [(10.0 * i, 100.0 + 10.0 * (i - 1)) for i in range(1, 6)]
    assert prommath.extrapolated_rate(points, 0.0, 60.0, is_rate=False) == pytest.approx(40 * 60 / 40)
    # a counter starting near zero is only extrapolated to where it would have been zero
    near_zero = [(10.0, 1.0), (20.0, 11.0), (30.0, 21.0)]
    assert prommath.extrapolated_rate(near_zero, 0.0, 30.0, is_rate=False) == pytest.approx(21.0)
    # far from the edges: half an average gap on each side
    far = [(20.0, 100.0), (30.0, 110.0)]
    assert prommath.extrapolated_rate(far, 0.0, 60.0, is_rate=False) == pytest.approx(20.0)


def test_fewer_than_two_samples_is_no_answer():
    assert math.isnan(prommath.extrapolated_rate([(1.0, 5.0)], 0.0, 10.0))


def test_histogram_quantile_interpolates_within_the_bucket():
    buckets = [(1.0, 10.0), (2.0, 20.0), (math.inf, 20.0)]
    assert prommath.bucket_quantile(0.5, buckets) == pytest.approx(1.0)
    assert prommath.bucket_quantile(0.75, buckets) == pytest.approx(1.5)
    assert prommath.bucket_quantile(1.0, buckets) == pytest.approx(2.0)


def test_histogram_quantile_edges():
    # rank in the +Inf bucket: the highest finite bound
    assert prommath.bucket_quantile(0.9, [(1.0, 10.0), (math.inf, 20.0)]) == 1.0
    # no observations, no +Inf bucket, a single bucket: NaN
    assert math.isnan(prommath.bucket_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))
    assert math.isnan(prommath.bucket_quantile(0.5, [(1.0, 3.0), (2.0, 4.0)]))
    assert math.isnan(prommath.bucket_quantile(0.5, [(math.inf, 4.0)]))
    assert prommath.bucket_quantile(-0.1, [(1.0, 1.0), (math.inf, 1.0)]) == -math.inf
    assert prommath.bucket_quantile(1.1, [(1.0, 1.0), (math.inf, 1.0)]) == math.inf
    # non-monotonic buckets (scrape skew) are repaired upwards
    assert prommath.bucket_quantile(0.5, [(1.0, 10.0), (2.0, 8.0), (math.inf, 20.0)]) == pytest.approx(1.0)


def test_sink_batch_buckets_make_p95_coarse():
    # every batch is 5000 records: p95 lands at 1000 + 9000 x 0.95 = 9550 (why gftune prefers the mean)
    bounds = [1, 10, 100, 1000, 10000, 100000]
    buckets = [(float(b), 0.0 if b < 10000 else 40.0) for b in bounds] + [(math.inf, 40.0)]
    assert prommath.bucket_quantile(0.95, buckets) == pytest.approx(9550.0)


def test_deriv_is_the_least_squares_slope():
    assert prommath.deriv([(0.0, 1.0), (10.0, 21.0)]) == pytest.approx(2.0)
    assert prommath.deriv([(0.0, 0.0), (1.0, 1.0), (2.0, 4.0)]) == pytest.approx(2.0)
    assert math.isnan(prommath.deriv([(0.0, 1.0)]))
