"""The judge's verdict on one run, from the simulator's truth sampled over time (pure functions).

A sample is a dict with at least ``t`` (simulated seconds), ``status``, ``cost`` (the live
configuration's cost as the truth prices it), ``min_cost`` (the minimum sufficient configuration's
for the load at that moment), ``lag`` + ``depth`` (Kafka lag and NATS depth, records), ``input``
(noise-free records/s arriving), ``util_max`` (the busiest stage's load ÷ its true capacity),
``lost`` and ``config`` (the tracked fields, see ``harness.TRACKED``).

Definitions (used for every method alike):

* **overload episode**: a stretch in which the input exceeds the busiest stage's capacity
  (``util_max > 1``), or in which the backlog grows by more than ``GROWTH_SHARE`` of the input over
  ``GROWTH_S`` while the pipeline runs the whole time (what the truth's capacity does not price:
  inserts beyond ClickHouse's budget failing, batches capped by the stream);
  **symptom established** ``SUSTAIN_S`` (120 s, the built-in policies' ``for:`` and a typical
  alert) after its onset; episodes that end within that time without a configuration change (a
  short spike) do not count;
* **change live**: the first sample after the onset in which the configuration makes the busiest
  stage keep up (``util_max <= 1``) and the pipeline is Running again; **verified**: the method's
  own positive verdict after that (gftune's apply, the manual procedure's 5-minute check); the
  rule-based controllers and the oracle never verify;
* **drained**: the backlog (Kafka lag + stream depth) back within ``DRAIN_S`` seconds of input;
* **change-sets**: changes of the live configuration; **restarts**: Running -> stopping; **reversals**:
  direction changes of any tracked field across the run;
* **slack**: stretches in which the pipeline keeps up at more than ``SLACK_RATIO`` × the minimum cost.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

Json = dict[str, Any]

SUSTAIN_S = 120.0
DRAIN_S = 30.0
SLACK_RATIO = 1.10
GROWTH_S = 120.0
GROWTH_SHARE = 0.05


def backlog(sample: Json) -> float:
    return float(sample["lag"]) + float(sample["depth"])


def integral(samples: Sequence[Json], key: str, until: float | None = None) -> float:
    """∫ key dt from the first sample to ``until`` (default: the last sample), each sample's value
    held until the next one."""
    total = sum(float(a[key]) * (b["t"] - a["t"]) for a, b in itertools.pairwise(samples))
    if until is not None and samples and until > samples[-1]["t"]:
        total += float(samples[-1][key]) * (until - samples[-1]["t"])
    return total


def reversals(values: Sequence[float]) -> int:
    """Direction reversals in a sequence of values (up then down, or down then up)."""
    moves = [b - a for a, b in itertools.pairwise(values) if abs(b - a) > 1e-9]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


def config_changes(samples: Sequence[Json]) -> list[tuple[float, Json, Json]]:
    """(time, before, after) for every change of the sampled configuration."""
    out = []
    known = [s for s in samples if s.get("config")]
    for a, b in itertools.pairwise(known):
        if a["config"] != b["config"]:
            out.append((b["t"], a["config"], b["config"]))
    return out


def field_reversals(samples: Sequence[Json], to_number: Callable[[str, Any], float | None]) -> int:
    series: dict[str, list[float]] = {}
    for sample in samples:
        for path, value in (sample.get("config") or {}).items():
            number = to_number(path, value)
            if number is not None and (not series.get(path) or series[path][-1] != number):
                series.setdefault(path, []).append(number)
    return sum(reversals(values) for values in series.values())


MAX_REPLICAS = 10  # gftune's default guard (tuning.constraints.max_replicas), the baselines' cap too
MAX_CPU = 8.0  # cores: the sizing's cpu_ceiling


def guard_crossings(samples: Sequence[Json], to_number: Callable[[str, Any], float | None]) -> list[str]:
    """The guard bounds any sample's live configuration or state crossed, each named once: ingestor
    replicas beyond the topic's partitions (idle replicas), replicas beyond ``MAX_REPLICAS``, a CPU
    limit beyond ``MAX_CPU``, the sink's memory beyond its limit (an OOM), a Failed pipeline."""
    crossed: dict[str, None] = {}
    for sample in samples:
        partitions = sample.get("partitions") or {}  # source id -> the topic's partitions
        for path, value in (sample.get("config") or {}).items():
            number = to_number(path, value)
            if number is None:
                continue
            if path.endswith(".replicas"):
                if number > MAX_REPLICAS:
                    crossed[f"{path} > {MAX_REPLICAS}"] = None
                prefix = "resources.sources["
                cap = partitions.get(path[len(prefix):].split("]")[0]) if path.startswith(prefix) else None
                if isinstance(cap, int | float) and number > cap:
                    crossed[f"{path} > {cap:g} partitions"] = None
            elif path.endswith("limits.cpu") and number > MAX_CPU:
                crossed[f"{path} > {MAX_CPU:g} cores"] = None
        memory, limit = sample.get("sink_memory"), sample.get("sink_memory_limit")
        if memory is not None and limit and memory > limit:
            crossed["sink memory > its limit"] = None
        if sample.get("status") == "Failed":
            crossed["pipeline Failed"] = None
    return list(crossed)


def restarts(samples: Sequence[Json]) -> int:
    return sum(1 for a, b in itertools.pairwise(samples) if a["status"] == "Running" and b["status"] != "Running")


def overloaded(samples: Sequence[Json]) -> list[bool]:
    """Per sample: the input exceeds the true capacity, or the backlog grew over the last GROWTH_S
    while the pipeline ran the whole time (through a restart the last such verdict stands; after
    one, growth counts again once the pipeline has run GROWTH_S)."""
    flags = []
    start = 0  # the first sample of the trailing GROWTH_S window
    running_since: float | None = None
    growing = False
    for sample in samples:
        while sample["t"] - samples[start]["t"] > GROWTH_S:
            start += 1
        then = samples[start]
        if sample["status"] != "Running":
            running_since = None  # a restart: the backlog grows by design, the last verdict stands
        else:
            if running_since is None:
                running_since, growing = sample["t"], False
            if running_since <= then["t"] and sample["t"] - then["t"] >= GROWTH_S - 1e-9:
                growing = backlog(sample) - backlog(then) > GROWTH_SHARE * float(sample["input"]) * GROWTH_S
        flags.append(sample["util_max"] > 1.0 or growing)
    return flags


def overload_episodes(samples: Sequence[Json], verified_at: Sequence[float] = ()) -> list[Json]:
    """Every overload episode with its onset, when it was established, when the fix was live,
    verified and drained (None: not within the run)."""
    changes = [t for t, _, _ in config_changes(samples)]
    flags = overloaded(samples)
    episodes: list[Json] = []
    i = 0
    while i < len(samples):
        if not flags[i]:
            i += 1
            continue
        onset = samples[i]["t"]
        j = i
        while j < len(samples) and flags[j]:
            j += 1
        end = samples[j]["t"] if j < len(samples) else None
        changed = any(onset <= t <= (end if end is not None else math.inf) for t in changes)
        if end is not None and end - onset < SUSTAIN_S and not changed:
            i = j  # a short spike the buffers absorb: not a symptom
            continue
        live = next((s["t"] for s in samples[j:] if s["status"] == "Running"), None) if end is not None else None
        drained = None
        if live is not None:
            drained = next((s["t"] for s in samples if s["t"] >= live
                            and backlog(s) <= DRAIN_S * max(float(s["input"]), 1.0)), None)
        verified = next((t for t in sorted(verified_at) if live is not None and t >= live), None)
        established = onset + SUSTAIN_S
        episodes.append({"onset": onset, "established": established, "end": end, "live": live,
                         "verified": verified, "drained": drained,
                         "to_live": None if live is None else live - established,
                         "to_verified": None if verified is None else verified - established,
                         "to_drained": None if drained is None else drained - established})
        i = j
    return _merge(episodes)


def _merge(episodes: list[Json]) -> list[Json]:
    """One episode where an overload came back within GROWTH_S of a change going live (the change
    did not fix it; growth needs that long to show again)."""
    merged: list[Json] = []
    for episode in episodes:
        last = merged[-1] if merged else None
        if last is not None and last["end"] is not None and episode["onset"] - last["end"] <= GROWTH_S + 15.0:
            keep = {k: last[k] for k in ("onset", "established")}
            merged[-1] = {**episode, **keep}
            for key, at in (("to_live", "live"), ("to_verified", "verified"), ("to_drained", "drained")):
                merged[-1][key] = None if merged[-1][at] is None else merged[-1][at] - keep["established"]
        else:
            merged.append(episode)
    return merged


def slack_episodes(samples: Sequence[Json]) -> list[Json]:
    """Stretches of keeping up at more than SLACK_RATIO × the minimum cost: start, end (None when
    still there at the end of the run) and duration."""
    out: list[Json] = []
    start = None
    for sample in samples:
        slack = sample["util_max"] <= 1.0 and sample["min_cost"] > 0 and \
            sample["cost"] > SLACK_RATIO * sample["min_cost"]
        if slack and start is None:
            start = sample["t"]
        elif not slack and start is not None:
            out.append({"start": start, "end": sample["t"], "seconds": sample["t"] - start})
            start = None
    if start is not None and samples:
        out.append({"start": start, "end": None, "seconds": samples[-1]["t"] - start})
    return out


def verdict(samples: Sequence[Json], to_number: Callable[[str, Any], float | None],
            verified_at: Sequence[float] = (), horizon: float | None = None) -> Json:
    """Everything the economy table reports about one run, over [0, horizon] (default: the samples)."""
    if horizon is not None:
        samples = [s for s in samples if s["t"] <= horizon]
    first, last = samples[0], samples[-1]
    cost_integral = integral(samples, "cost", horizon)
    min_integral = integral(samples, "min_cost", horizon)
    peak = max(samples, key=backlog)
    mean_input = statistics.fmean(float(s["input"]) for s in samples)
    episodes = overload_episodes(samples, verified_at)
    slack = slack_episodes(samples)
    return {
        "t_end": last["t"],
        "cost_start": first["cost"], "cost_final": last["cost"], "min_cost_final": last["min_cost"],
        "final_ratio": last["cost"] / last["min_cost"] if last["min_cost"] else None,
        "keeps_up_at_end": not overloaded(samples)[-1],
        "cost_integral": cost_integral, "min_cost_integral": min_integral,
        "cost_integral_ratio": cost_integral / min_integral if min_integral else None,
        "peak_backlog": backlog(peak), "peak_backlog_at": peak["t"],
        "peak_backlog_s": backlog(peak) / max(mean_input, 1.0),
        "backlog_end": backlog(last),
        "drained_at_end": backlog(last) <= DRAIN_S * max(float(last["input"]), 1.0),
        "change_sets": len(config_changes(samples)), "restarts": restarts(samples),
        "reversals": field_reversals(samples, to_number),
        "guards_crossed": guard_crossings(samples, to_number),
        "lost": float(last["lost"]),
        "episodes": episodes, "slack": slack,
        "slack_end_s": slack[-1]["seconds"] if slack and slack[-1]["end"] is None else 0.0,
    }


def series(samples: Sequence[Json], every_s: float = 10.0) -> list[list[float]]:
    """``[t, cost, min_cost, backlog]`` thinned to one point per ``every_s``, for the chart."""
    out: list[list[float]] = []
    for sample in samples:
        if not out or sample["t"] - out[-1][0] >= every_s or sample is samples[-1]:
            out.append([round(sample["t"], 1), round(sample["cost"], 4), round(sample["min_cost"], 4),
                        round(backlog(sample))])
    return out
