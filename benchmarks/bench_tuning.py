"""Benchmark: how well gftune's tuning loop tunes, judged by the simulator's oracle.

The loop under test is what a user runs, as child processes, against an in-process
``gftune.sim.Simulator`` (one scenario, one pipeline, a high time scale): in a temporary git
repository holding the adopted pipeline, the built-in ``policies/`` and a ``gftune.yaml`` pointing
at the simulator (``time_scale`` equal to the simulator's), in one of two metric modes
(``--metrics``): the **direct scrape** of its ``/metrics`` (two scrapes a window apart), or a real
**Prometheus** (Debian's ``prometheus``, ``benchmarks/harness.py``) scraping it with
``honor_labels`` false, so that the collector's ``job``/``instance`` arrive as
``exported_job``/``exported_instance``, as behind a default Prometheus. Then repeat

    gftune plan --format json
      -> proposals?  gftune tune --write --format json   (a branch; merged into main as a PR would be)
                     gftune apply --auto-approve --format json   (the verdict; a reverted change is
                                                                  git-reverted, as its next move says)
      -> none?       count a quiet window

until ``--quiet`` consecutive plans show no proposals (converged) or ``--max-steps`` change-sets
were applied. ``diurnal`` is not run to convergence: the loop runs for ``--days`` periods of its
load (one period is the scenario's compressed day) and counts restarts per day.

Only this script is the judge: it samples ``Simulator.truth()`` (``/_sim/truth``: true capacities,
Kafka lag, records lost, the minimum sufficient configuration and its cost) in a thread; the gftune
commands never see it. Per run it reports: applied change-sets, sim time to converge, disruptive
restarts, each verdict, escalations, the final configuration and its cost against the oracle's
minimum (over-provisioning), guard bounds crossed (replicas beyond partitions or ``max_replicas``,
CPU, memory / OOM), records lost, peak backlog, and the prediction error of each change (the sink
capacity ``scale_to_fit`` said it would have vs the true one; the predicted sink rate vs the one
``apply`` measured one window after the change).

Usage::

    .venv/bin/python benchmarks/bench_tuning.py [--scenarios a,b] [--seeds 3] [--time-scale 60]
                                               [--metrics scrape,prometheus] [--parallel 5]
                                               [--markdown] [--json results.json]

Each (scenario, seed) runs in a worker process of its own (``--worker``), ``--parallel`` at a time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Json = dict[str, Any]

# What each scenario should lead to (scenarios/README.md), and how long the judge watches at least.
SCENARIOS: dict[str, Json] = {
    "backpressure-sink-bound": {"expect": "fix"},
    "sink-batch-bound": {"expect": "fix"},
    "underprovisioned-ingestor": {"expect": "fix"},
    "sink-retries": {"expect": "fix"},
    "dedup-storage": {"expect": "fix"},
    "partition-capped-ingestor": {"expect": "escalate"},
    "retry-exhaustion": {"expect": "escalate"},
    "terminal-errors": {"expect": "escalate"},
    "healthy": {"expect": "nothing"},
    "memory-bound-sink": {"expect": "fix"},
    "stream-loss": {"expect": "fix"},
    "sink-replicas-batch": {"expect": "fix"},  # 3 ingestors -> 2 sinks: shares 2/3 + 1/3
    "dedup-sink-bound": {"expect": "fix"},  # only the dedup pod's backpressure shows the sink's backlog
    "join-sink-bound": {"expect": "fix"},  # the join records nothing: the ingestors' backpressure shows it
    "spike": {"expect": "nothing", "min_sim_s": 900},  # the burst is at 300-360 s; watch it drain
    "diurnal": {"expect": "day", "period_s": 3600},
    # no symptom: slack given back in bounded steps, once 30 minutes of it are on record (Prometheus)
    "overprovisioned": {"expect": "shrink", "min_sim_s": 2400},
}
DEFAULT_ORDER = list(SCENARIOS)
EXTRA_SEEDS = (101, 202, 303, 404)  # seed index 0 is the scenario's own seed
MAX_REPLICAS = 10  # gftune's default guard (no tuning.constraints in the adopted files)
METRIC_MODES = ("scrape", "prometheus")
PLAN_PERIOD_S = 300.0  # sim s between plans with Prometheus: the example gftune.yaml's 5-minute metrics window
CPU_CEILING = 8.0


# --- one run (worker process) ------------------------------------------------------------------------

# The judge (the simulator's truth sampled in a thread), the adopted repository and the live
# configuration are the same logic as bench_economy.py's: one definition in harness.py.
from benchmarks.harness import GIT_ID, Judge  # noqa: E402
from benchmarks.harness import adopt as _adopt  # noqa: E402
from benchmarks.harness import git as _git  # noqa: E402
from benchmarks.harness import live_config as _live_config  # noqa: E402
from benchmarks.tuning_tables import anchors_markdown, fmt, markdown, summary_markdown  # noqa: E402


def _number(path: str, value: Any) -> float | None:
    from gftune.policy import guards

    kind = guards.field_kind(path, value)
    return guards.to_number(kind, value)


_SINK_CAPACITY = re.compile(r"sink: \d+ replica\(s\) x .*? -> \d+ replica\(s\)(?: at \S+ CPU)? = ([\d,.]+)/s")


def run_one(scenario: str, seed: int | None, time_scale: float, quiet_needed: int, max_steps: int,
            days: float, wall_budget: float, log: Any, metrics: str = "scrape") -> Json:
    from benchmarks import harness
    from gftune.sim import Simulator

    spec = SCENARIOS.get(scenario, {"expect": "fix"})
    # With Prometheus the scenario's clock starts at its first scrape, so it sees the scenario from t = 0.
    clock = harness.held_clock(time_scale) if metrics == "prometheus" else None
    sim = Simulator(scenarios=[scenario], time_scale=time_scale, seed=seed, clock=clock).start()
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-tuning-{scenario}-{metrics}-"))
    repo = tmp / "repo"
    started = time.monotonic()
    prometheus = None
    try:
        if metrics == "prometheus":
            prometheus = harness.start_prometheus(sim, tmp / "prometheus", time_scale)
            harness.wait_for_first_scrape(prometheus, len(harness.scrape_targets(sim)))
            clock.release()
        pipeline_id, live0, secret_env = _adopt(sim, repo)
        if prometheus is not None:
            harness.use_prometheus(repo, prometheus.url)
        source_ids = [s["source_id"] for s in live0.get("sources", [])]
        env = {**os.environ, **secret_env, **GIT_ID, "NO_COLOR": "1"}
        for name in ("GFTUNE_API", "GFTUNE_PROMETHEUS", "GFTUNE_SCRAPE", "GFTUNE_TIME_SCALE",
                     "GFTUNE_METRIC_NAMESPACE"):
            env.pop(name, None)
        judge = Judge(sim, pipeline_id, interval=max(0.05, 4.0 / time_scale))  # catches a 16 s restart
        judge.sample()
        judge.start()
        config0 = _live_config(sim, pipeline_id, source_ids)

        def gftune(*args: str) -> tuple[int, Json | None, float, float]:
            t0 = sim.clock.now()
            proc = subprocess.run([sys.executable, "-m", "gftune", *args, "--repo", str(repo)], env=env,
                                  capture_output=True, text=True, timeout=max(120.0, 7200.0 / time_scale))
            t1 = sim.clock.now()
            log.write(f"[{scenario} seed {seed}] t={t0:7.0f}..{t1:7.0f} gftune {args[0]} exit {proc.returncode}\n")
            if proc.stderr.strip():
                log.write("    " + proc.stderr.strip().replace("\n", "\n    ")[-3000:] + "\n")
            log.flush()
            data = None
            if proc.stdout.strip().startswith("{"):
                data = json.loads(proc.stdout)
            return proc.returncode, data, t0, t1

        horizon = days * spec["period_s"] if spec["expect"] == "day" else None
        min_sim = float(spec.get("min_sim_s", 0))
        plans: list[Json] = []
        steps: list[Json] = []
        configs: list[Json] = [config0]
        quiet, quiet_since = 0, None
        stop_reason = ""
        while True:
            if horizon is not None and sim.clock.now() >= horizon:
                stop_reason = f"horizon {days:g} day(s)"
                break
            if time.monotonic() - started > wall_budget:
                stop_reason = "wall-clock budget"
                break
            if prometheus is not None:
                # Plans paced one metrics window apart, as the direct scrape paces itself (each of its
                # plans reads two scrapes a window apart): Prometheus answers at once, and three quiet
                # plans seconds apart would say nothing. The first waits for a window of history.
                last = plans[-1]["t0"] if plans else 0.0
                harness.scaled_sleep(sim, last + PLAN_PERIOD_S - sim.clock.now())
            code, plan, t0, t1 = gftune("plan", "--format", "json")
            entry = (plan or {}).get("pipelines", [{}])
            entry = next((p for p in entry if p.get("pipeline_id") == pipeline_id), {})
            proposals = entry.get("proposals", [])
            escalations = entry.get("escalations", [])
            plans.append({"t0": t0, "t1": t1, "exit": code, "action": entry.get("action"),
                          "proposals": [{"policy": p["policy"], "changes": p["changes"], "notes": p.get("notes", []),
                                         "evidence": [(e["signal"], e["measured"], e["threshold"])
                                                      for e in p["evidence"]]} for p in proposals],
                          "escalations": [{"policy": e["policy"], "reason": e["reason"]} for e in escalations],
                          "notes": entry.get("notes", [])})
            if code == 1:
                stop_reason = "plan error"
                break
            cooling = [n for n in plans[-1]["notes"] if "cooldown" in n and "active" in n]
            if not proposals and cooling:
                # a policy held back by its cooldown is not a quiet window: the symptom may be back
                plans[-1]["cooling"] = True
                quiet, quiet_since = 0, None
                continue
            if not proposals:
                if quiet == 0:
                    quiet_since = t0
                quiet += 1
                if horizon is None and quiet >= quiet_needed and sim.clock.now() >= min_sim:
                    stop_reason = "converged"
                    break
                continue
            quiet, quiet_since = 0, None
            if len(steps) >= max_steps:
                stop_reason = "step limit"
                break
            branch = f"gftune/bench-step-{len(steps) + 1}"
            tcode, tuned, tt0, _ = gftune("tune", "--write", "--format", "json", "--branch", branch)
            if tcode != 2 or not (tuned or {}).get("written"):
                plans[-1]["tune_found_nothing"] = True
                _git(repo, "checkout", "-q", "main")
                continue
            _git(repo, "checkout", "-q", "main")
            _git(repo, "merge", "-q", "--ff-only", branch)
            tuned_proposals = [p for o in (tuned or {}).get("outcomes", {}).values() for p in o["proposals"]]
            acode, report, at0, at1 = gftune("apply", "--auto-approve", "--format", "json")
            after = judge.sample()
            pipe = next((p for p in (report or {}).get("pipelines", []) if p.get("pipeline_id") == pipeline_id), {})
            if acode in (1, 4):  # reverted or restored: take the change out of git too, as a user would
                _git(repo, "revert", "--no-edit", "HEAD")
            configs.append(_live_config(sim, pipeline_id, source_ids))
            predicted_capacity = None
            for proposal in tuned_proposals:
                found = _SINK_CAPACITY.search(proposal.get("rationale", ""))
                if found and any(c["path"].startswith(("resources.sink", "sink.")) for c in proposal["changes"]):
                    predicted_capacity = float(found.group(1).replace(",", ""))
            predicted_rate = next((p["value"] for p in pipe.get("predictions", []) if p["signal"] == "sink_rate"), None)
            signals = {s["name"]: s for s in pipe.get("signals", [])}
            realized_rate = (signals.get("sink_rate") or {}).get("after")
            timeline = pipe.get("timeline", [])
            steps.append({
                "t_tune": tt0, "t_apply": at0, "t_done": at1, "apply_exit": acode,
                "policies": sorted({p["policy"] for p in tuned_proposals}),
                "changes": [{"path": c["path"], "old": c["old"], "new": c["new"]} for c in pipe.get("changes", [])]
                or [c for p in tuned_proposals for c in p["changes"]],
                "verdict": (pipe.get("verdict") or {}).get("label"), "outcome": pipe.get("outcome"),
                "revert_verdict": (pipe.get("revert_verdict") or {}).get("label"),
                "restarts": sum(1 for s in timeline if s["step"].endswith(".stop") and s["state"] == "done"),
                "steps_failed": [s["step"] for s in timeline if s["state"] == "failed"],
                "predicted_sink_capacity": predicted_capacity,
                "true_sink_capacity": _capacity_after_restart(judge.samples, at0, at1, after),
                "true_utilisation_after": after["utilisation"], "dlq_after": after["dlq"],
                "predicted_sink_rate": predicted_rate, "realized_sink_rate": realized_rate,
                "error": pipe.get("error"), "notes": pipe.get("notes", []),
                "failed_checks": [c["reason"] for c in (pipe.get("verdict") or {}).get("checks", [])
                                  if c["outcome"] not in ("pass", "ok")],
            })
        final = judge.stop()
        config_end = _live_config(sim, pipeline_id, source_ids)
        result = summarize(scenario, spec, sim.seed, time_scale, stop_reason, plans, steps, configs, config_end,
                           judge, final, quiet_since, time.monotonic() - started, str(tmp))
        return {**result, "metrics": metrics}
    finally:
        if prometheus is not None:
            prometheus.stop()
        sim.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


def _capacity_after_restart(samples: list[Json], t0: float, t1: float, fallback: Json) -> float | None:
    """The true sink capacity once the change is live: the first Running sample after the apply's
    first restart (a revert later in the same run changes it back, so not the sample at the end)."""
    window = [s for s in samples if t0 <= s["t"] <= t1]
    restarted = False
    for sample in window:
        if sample["status"] != "Running":
            restarted = True
        elif restarted:
            return sample["sink_capacity"]
    return fallback["sink_capacity"]


def _reversals(values: list[float]) -> int:
    """Direction reversals in a sequence of values (up then down, or down then up)."""
    moves = [b - a for a, b in itertools.pairwise(values) if abs(b - a) > 1e-9]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


def summarize(scenario: str, spec: Json, seed: int, time_scale: float, stop_reason: str, plans: list[Json],
              steps: list[Json], configs: list[Json], config_end: Json, judge: Judge, final: Json,
              quiet_since: float | None, wall: float, workdir: str) -> Json:
    samples = judge.samples
    applied = [s for s in steps if s["changes"] and s["apply_exit"] in (0, 3, 4, 5)]
    escalated = sorted({e["policy"] for p in plans for e in p["escalations"]})
    # disruptive restarts: the stops apply sent (change, revert, restore) plus every Failed (OOM) episode
    failed_episodes = sum(1 for _, status in judge.statuses if status == "Failed")
    restarts = sum(s["restarts"] for s in steps) + failed_episodes
    # guards: bounds of the configuration the pipeline actually ran
    crossings: list[str] = []
    partitions = final["partitions"]
    for index, config in enumerate([*configs, config_end]):
        for path, value in config.items():
            number = _number(path, value)
            if number is None:
                continue
            where = "start" if index == 0 else f"after step {min(index, len(configs) - 1)}"
            sid = re.match(r"resources\.sources\[(.+?)\]\.replicas", path)
            if sid and number > partitions.get(sid.group(1), math.inf):
                crossings.append(f"{path} {value} > {partitions[sid.group(1)]} partitions ({where})")
            if path.endswith(".replicas") and number > MAX_REPLICAS:
                crossings.append(f"{path} {value} > max_replicas {MAX_REPLICAS} ({where})")
            if path.endswith(".cpu") and number > CPU_CEILING:
                crossings.append(f"{path} {value} > {CPU_CEILING:g} cores ({where})")
    crossings = list(dict.fromkeys(c for c in crossings if "(start)" not in c))
    memory_peak = max((s["sink_memory"] / s["sink_memory_limit"] for s in samples
                       if s["sink_memory_limit"] and math.isfinite(s["sink_memory_limit"])), default=None)
    if failed_episodes:
        crossings.append(f"pipeline Failed {failed_episodes}x (sink memory peak {memory_peak:.0%} of its limit)"
                         if memory_peak else f"pipeline Failed {failed_episodes}x")
    # backlog (Kafka lag + NATS depth), in records and in seconds of the mean (noise-free) input
    peak = max(samples, key=lambda s: s["lag"] + s["depth"])
    peak_records = peak["lag"] + peak["depth"]
    backlog_end = final["lag"] + final["depth"]
    drained = backlog_end <= 30 * max(final["input"], 1.0)
    # cost: final against the oracle's minimum for the same load, and the integral over the run
    integral, integral_min = 0.0, 0.0
    for a, b in itertools.pairwise(samples):
        dt = b["t"] - a["t"]
        integral += a["cost"] * dt
        integral_min += a["min_cost"] * dt
    oscillations = 0
    for path in {p for c in [*configs, config_end] for p in c}:
        series = [_number(path, c.get(path)) for c in [*configs, config_end] if c.get(path) is not None]
        oscillations += _reversals([v for v in series if v is not None])
    changed = {p: (configs[0].get(p), config_end.get(p)) for p in sorted(set(configs[0]) | set(config_end))
               if str(configs[0].get(p)) != str(config_end.get(p))}
    predictions = []
    for step in applied:
        entry: Json = {}
        if step["predicted_sink_capacity"] and step["true_sink_capacity"]:
            entry["capacity_error"] = (step["predicted_sink_capacity"] - step["true_sink_capacity"]) \
                / step["true_sink_capacity"]
        if step["predicted_sink_rate"] and step["realized_sink_rate"] is not None:
            entry["rate_ratio"] = step["realized_sink_rate"] / step["predicted_sink_rate"]
        predictions.append(entry)
    converged = stop_reason == "converged"
    period = spec.get("period_s")
    days_run = final["t"] / period if period else None
    return {
        "scenario": scenario, "seed": seed, "expect": spec["expect"], "time_scale": time_scale,
        "stop_reason": stop_reason, "converged": converged, "wall_s": round(wall, 1), "workdir": workdir,
        "steps": len(applied), "plans": len(plans),
        # the sim time the final configuration was in place (end of the last apply, verification included)
        "t_converged": ((applied[-1]["t_done"] if applied else 0.0) if converged else None),
        "t_quiet_from": quiet_since,
        "t_last_change": applied[-1]["t_done"] if applied else None,
        "t_end": final["t"], "restarts": restarts,
        "restarts_per_day": (restarts / days_run) if days_run else None,
        "verdicts": [s["verdict"] or s["outcome"] or f"exit {s['apply_exit']}" for s in applied],
        "apply_exits": [s["apply_exit"] for s in applied],
        "policies": [s["policies"] for s in applied],
        "escalations": escalated,
        "tune_found_nothing": sum(1 for p in plans if p.get("tune_found_nothing")),
        "start_config": configs[0], "final_config": config_end, "changed": changed,
        "cost_start": samples[0]["cost"], "cost_final": final["cost"], "min_cost_final": final["min_cost"],
        "overprovisioning": final["cost"] / final["min_cost"] if final["min_cost"] else None,
        "overprovisioning_start": samples[0]["cost"] / samples[0]["min_cost"] if samples[0]["min_cost"] else None,
        "cost_integral_ratio": integral / integral_min if integral_min else None,
        "oracle_feasible": final["feasible"],
        "guard_crossings": crossings, "sink_memory_peak": memory_peak,
        "lost": final["lost"], "dlq": final["dlq"],
        "peak_backlog": peak_records,
        "peak_backlog_s": peak_records / max(statistics.fmean(s["input"] for s in samples), 1.0),
        "backlog_end": backlog_end, "drained": drained,
        "keeps_up": max(final["utilisation"].values(), default=0.0) <= 1.0,
        "final_utilisation": final["utilisation"],
        "oscillations": oscillations, "predictions": predictions,
        "step_details": steps, "plan_details": plans,
    }


# --- the driver ----------------------------------------------------------------------------------------

def _worker_cmd(args: argparse.Namespace, scenario: str, seed: int | None, metrics: str, out: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", scenario, "--metrics", metrics,
           "--time-scale", str(args.time_scale),
           "--quiet", str(args.quiet), "--max-steps", str(args.max_steps), "--days", str(args.days),
           "--wall-budget", str(args.wall_budget), "--out", str(out)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    return cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(DEFAULT_ORDER), help="comma-separated scenario names")
    parser.add_argument("--seeds", type=int, default=3, help="runs per scenario: its own seed, then 101, 202, ...")
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--metrics", default=",".join(METRIC_MODES),
                        help="metric modes, comma-separated: scrape (direct /metrics) and/or prometheus")
    parser.add_argument("--parallel", type=int, default=5, help="worker processes at a time")
    parser.add_argument("--quiet", type=int, default=3, help="consecutive plans without proposals = converged")
    parser.add_argument("--max-steps", type=int, default=6, help="applied change-sets before giving up")
    parser.add_argument("--days", type=float, default=3.0, help="diurnal: periods (compressed days) to run")
    parser.add_argument("--wall-budget", type=float, default=900.0, help="wall seconds per run at most")
    parser.add_argument("--markdown", action="store_true", help="print the tables for docs/benchmarks.md")
    parser.add_argument("--json", type=Path, default=None, help="write every result (with step details) here")
    parser.add_argument("--worker", metavar="SCENARIO", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("GF_USAGESTATS_ENABLED", "false")

    if args.worker:
        result = run_one(args.worker, args.seed, args.time_scale, args.quiet, args.max_steps, args.days,
                         args.wall_budget, sys.stderr, args.metrics)
        text = json.dumps(result, default=str)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
        else:
            print(text)
        return

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    modes = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in modes if m not in METRIC_MODES]
    if unknown:
        parser.error(f"--metrics: {', '.join(unknown)} (use {', '.join(METRIC_MODES)})")
    seeds: list[int | None] = [None, *EXTRA_SEEDS][:max(1, args.seeds)]
    # slowest first (diurnal runs for --days; the batch-bound sinks took the most steps), so the pool's tail is short
    slow = ["diurnal", "sink-batch-bound", "memory-bound-sink", "sink-retries"]
    ordered = [s for s in slow if s in scenarios] + [s for s in scenarios if s not in slow]
    tasks = [(s, seed, mode) for s in ordered for mode in modes for seed in seeds]
    outdir = Path(tempfile.mkdtemp(prefix="bench-tuning-"))
    started = time.monotonic()
    print(f"{len(tasks)} run(s), {args.parallel} at a time, time scale {args.time_scale:g}; logs in {outdir}",
          file=sys.stderr, flush=True)

    def one(task: tuple[str, int | None, str]) -> Json | None:
        scenario, seed, mode = task
        name = f"{scenario}-{seed if seed is not None else 'own'}-{mode}"
        out, logfile = outdir / f"{name}.json", outdir / f"{name}.log"
        with logfile.open("w") as log:
            proc = subprocess.run(_worker_cmd(args, scenario, seed, mode, out), stdout=log, stderr=subprocess.STDOUT,
                                  cwd=ROOT)
        if proc.returncode != 0 or not out.exists():
            print(f"  {name}: worker failed (exit {proc.returncode}); see {logfile}", file=sys.stderr, flush=True)
            return None
        result = json.loads(out.read_text())
        print(f"  {name}: {result['stop_reason']}, {result['steps']} step(s), verdicts {result['verdicts']}, "
              f"escalations {result['escalations']}, cost/min {fmt(result['overprovisioning'])}, "
              f"lost {result['lost']:,.0f}, {result['wall_s']:.0f} s wall "
              f"[{time.monotonic() - started:.0f} s]", file=sys.stderr, flush=True)
        return result

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        results = [r for r in pool.map(one, tasks) if r is not None]
    order = {s: i for i, s in enumerate(scenarios)}
    results.sort(key=lambda r: (r.get("metrics", ""), order.get(r["scenario"], 99), r["seed"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    wall = time.monotonic() - started
    print(f"done in {wall:.0f} s on {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
          file=sys.stderr)
    for mode in modes:
        ran = [r for r in results if r.get("metrics") == mode]
        if args.markdown:
            print(f"### Metrics by {'direct scrape' if mode == 'scrape' else 'Prometheus'}\n")
            print(summary_markdown(ran))
            print()
            print(anchors_markdown(ran))
            print()
            print(markdown(ran))
            print()
        else:
            for r in ran:
                print(json.dumps({k: v for k, v in r.items() if k not in ("step_details", "plan_details")},
                                 default=str))
    sys.exit(0 if len(results) == len(tasks) else 1)


if __name__ == "__main__":
    main()
