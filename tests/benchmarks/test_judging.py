"""The economy judge (benchmarks/judging.py) on hand-made truth series: one definition for every method."""

from __future__ import annotations

from benchmarks import judging


def run(points: list[tuple], config_at: dict[float, dict] | None = None) -> list[dict]:
    """Samples every 5 s from (t_end, status, util_max, cost, min_cost, backlog) segments."""
    samples, t, config = [], 0.0, {"resources.sink.replicas": 1}
    for end, status, util, cost, min_cost, backlog in points:
        while t < end:
            for at, change in sorted((config_at or {}).items()):
                if at <= t:
                    config = change
            samples.append({"t": t, "status": status, "util_max": util, "cost": cost, "min_cost": min_cost,
                            "lag": backlog(t) if callable(backlog) else backlog, "depth": 0.0, "input": 1000.0,
                            "lost": 0.0, "config": dict(config)})
            t += 5.0
    return samples


def number(path: str, value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def test_an_overload_fixed_by_a_change_is_timed_from_its_onset():
    samples = run([(600, "Running", 0.8, 1.0, 1.0, 500.0),
                   (900, "Running", 1.6, 1.0, 2.0, lambda t: 500.0 + 600 * (t - 600)),
                   (920, "Stopped", 0.8, 2.0, 2.0, 180_500.0),
                   (2000, "Running", 0.8, 2.0, 2.0, lambda t: max(500.0, 180_500.0 - 1000 * (t - 920)))],
                  config_at={900.0: {"resources.sink.replicas": 2}})
    (episode,) = judging.overload_episodes(samples, verified_at=[1300.0])
    assert episode["onset"] == 600.0 and episode["established"] == 720.0
    assert episode["live"] == 920.0 and episode["to_live"] == 200.0  # established -> Running on the new config
    assert episode["verified"] == 1300.0
    assert episode["drained"] is not None and episode["drained"] > 920.0
    v = judging.verdict(samples, number, [1300.0])
    assert v["change_sets"] == 1 and v["restarts"] == 1 and v["reversals"] == 0
    assert v["keeps_up_at_end"] and v["final_ratio"] == 1.0
    assert v["cost_integral"] == 900 * 1.0 + (1995 - 900) * 2.0  # each value held until the next sample (last: 1995)


def test_a_short_spike_is_not_a_symptom_and_noise_makes_no_episode():
    samples = run([(300, "Running", 0.8, 1.0, 1.0, 0.0), (360, "Running", 3.0, 1.0, 3.0, 0.0),
                   (1200, "Running", 0.8, 1.0, 1.0, 0.0)])
    assert judging.overload_episodes(samples) == []


def test_a_backlog_growing_while_running_is_an_overload_the_capacity_missed():
    # the truth says it keeps up (inserts beyond the budget fail), the backlog says it does not
    samples = run([(600, "Running", 0.8, 3.0, 1.0, lambda t: 100.0 * t)])
    assert judging.overload_episodes(samples)[0]["onset"] == 120.0
    assert not judging.verdict(samples, number)["keeps_up_at_end"]
    # the same growth during a restart is the restart's debt, not an overload
    restart = run([(300, "Running", 0.8, 1.0, 1.0, 0.0), (420, "Stopped", 0.8, 1.0, 1.0, lambda t: 1000.0 * (t - 300)),
                   (800, "Running", 0.8, 1.0, 1.0, lambda t: max(0.0, 120_000.0 - 400 * (t - 420)))])
    assert judging.overload_episodes(restart) == []


def test_reversals_and_slack():
    assert judging.reversals([1, 2, 2, 3, 1, 4]) == 2
    samples = run([(600, "Running", 0.4, 2.0, 1.0, 0.0)],
                  config_at={0.0: {"resources.sink.replicas": 2}, 200.0: {"resources.sink.replicas": 1},
                             400.0: {"resources.sink.replicas": 2}})
    v = judging.verdict(samples, number)
    assert v["reversals"] == 1 and v["change_sets"] == 2
    assert v["slack"] == [{"start": 0.0, "end": None, "seconds": 595.0}] and v["slack_end_s"] == 595.0


def test_guard_crossings_are_named_once_each():
    samples = run([(100, "Running", 0.5, 1.0, 1.0, 0.0), (200, "Failed", 0.5, 1.0, 1.0, 0.0)],
                  config_at={0.0: {"resources.sink.replicas": 2, "resources.sources[orders].replicas": 4},
                             50.0: {"resources.sink.replicas": 11, "resources.sources[orders].replicas": 9}})
    for sample in samples:
        sample.update(partitions={"orders": 8}, sink_memory=1.0, sink_memory_limit=2.0)
    assert judging.guard_crossings(samples[:10], number) == []  # 4 <= 8 partitions, 2 <= 10 replicas
    assert judging.guard_crossings(samples, number) == [
        "resources.sink.replicas > 10", "resources.sources[orders].replicas > 8 partitions", "pipeline Failed"]
    samples[-1]["sink_memory"] = 3.0
    assert "sink memory > its limit" in judging.verdict(samples, number)["guards_crossed"]
