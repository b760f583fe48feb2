"""PromQL's arithmetic, computed locally for the direct-scrape mode.

The functions follow Prometheus 2.x (``promql/functions.go``, ``promql/quantile.go``) so that a
signal computed from two scrapes of ``/metrics`` gives the number the same PromQL gives on a
Prometheus server scraping the same target:

* :func:`extrapolated_rate` is ``rate()`` / ``increase()``: counter resets add the value before the
  drop, and the result is extrapolated towards the range boundaries (never below zero for a
  counter) when the first and last samples are close to them.
* :func:`bucket_quantile` is ``histogram_quantile()`` over classic ``le`` buckets: linear
  interpolation inside the bucket holding the rank, the lower bound of the first bucket is 0
  (unless its upper bound is <= 0), a rank in the ``+Inf`` bucket returns the highest finite
  bound, non-monotonic buckets are repaired, and no observations give NaN.
* :func:`deriv` is ``deriv()``: the slope of a least-squares line.

NaN is how PromQL says "no answer"; callers turn it into *unknown*, never into zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

NAN = float("nan")

Point = tuple[float, float]  # (unix seconds, value)


def extrapolated_rate(points: Sequence[Point], range_start: float, range_end: float, *,
                      is_counter: bool = True, is_rate: bool = True) -> float:
    """``rate()`` (``is_rate``) or ``increase()`` of the samples inside ``[range_start, range_end]``.

    ``points`` must be sorted by time and already restricted to the range. Fewer than two points
    give NaN, as PromQL returns no sample for them.
    """
    if len(points) < 2:
        return NAN
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    result = last_v - first_v
    if is_counter:
        previous = 0.0
        for _t, value in points:
            if value < previous:  # a counter reset: the drop is the value before it
                result += previous
            previous = value
    sampled = last_t - first_t
    if sampled <= 0:
        return NAN
    to_start = first_t - range_start
    to_end = range_end - last_t
    average_gap = sampled / (len(points) - 1)
    if is_counter and result > 0 and first_v >= 0:
        # A counter cannot go below zero: do not extrapolate past the point where it would be 0.
        to_zero = sampled * (first_v / result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = average_gap * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average_gap / 2
    interval += to_end if to_end < threshold else average_gap / 2
    result *= interval / sampled
    if is_rate:
        result /= range_end - range_start
    return result


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """``histogram_quantile(q, ...)`` of ``(upper_bound, cumulative_count)`` pairs (one series set)."""
    if math.isnan(q):
        return NAN
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets, key=lambda b: b[0])
    if not ordered or not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return NAN
    # Buckets with the same bound (e.g. "1" and "1.0") are one bucket.
    merged: list[list[float]] = []
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    # Counts must not decrease with the bound (scrape skew can break that): repair upwards.
    highest = -math.inf
    for bucket in merged:
        if bucket[1] > highest:
            highest = bucket[1]
        elif bucket[1] < highest:
            bucket[1] = highest
    if len(merged) < 2:
        return NAN
    observations = merged[-1][1]
    if observations == 0 or math.isnan(observations):
        return NAN
    rank = q * observations
    index = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if index == len(merged) - 1:
        return merged[-2][0]
    if index == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start = 0.0
    end, count = merged[index]
    if index > 0:
        start = merged[index - 1][0]
        count -= merged[index - 1][1]
        rank -= merged[index - 1][1]
    if count == 0:
        return start
    return start + (end - start) * (rank / count)


def deriv(points: Sequence[Point]) -> float:
    """``deriv()``: per-second slope of the least-squares line through the points."""
    if len(points) < 2:
        return NAN
    t0 = points[0][0]  # Prometheus centres time on the first sample to keep precision
    n = float(len(points))
    sum_x = sum(t - t0 for t, _ in points)
    sum_y = sum(v for _, v in points)
    sum_xy = sum((t - t0) * v for t, v in points)
    sum_x2 = sum((t - t0) ** 2 for t, _ in points)
    denominator = n * sum_x2 - sum_x * sum_x
    if denominator == 0:
        return NAN
    return (n * sum_xy - sum_x * sum_y) / denominator


def is_number(value: float | None) -> bool:
    """A usable measurement: present and finite (NaN and +/-Inf are PromQL's "no answer")."""
    return value is not None and math.isfinite(value)
