"""What the tuning benchmarks share: a simulator judged from its ground truth, a user's repository
adopting its pipeline, a real Prometheus scraping it, and gftune's own plan -> tune -> apply loop.

Used by ``bench_economy.py`` (and meant for ``bench_tuning.py``, whose copies of ``Judge``,
``_adopt`` and ``_live_config`` are the same logic; see coord notes). Only the judge reads
``Simulator.truth()`` (``/_sim/truth``); what runs against the pipeline (gftune's commands, the
baselines) sees the GlassFlow API and the metrics only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
Json = dict[str, Any]

# The configuration fields the judge follows (reversals, change-sets), as gftune's field paths.
TRACKED = ("resources.sources[{sid}].replicas", "resources.sources[{sid}].limits.cpu",
           "resources.sources[{sid}].limits.memory", "resources.sink.replicas", "resources.sink.limits.cpu",
           "resources.sink.limits.memory", "sink.max_batch_size", "sink.max_delay_time",
           "transforms[dedup:{sid}].config.time_window")
GIT_ID = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@gftune.invalid",
          "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@gftune.invalid"}


# --- simulated time that starts when Prometheus is watching -----------------------------------------

def held_clock(time_scale: float) -> Any:
    """A simulator clock that stays at 0 until ``release()``, then runs ``time_scale`` x the wall clock.

    A new Prometheus scrapes its first target up to ~5 wall seconds after it starts (its discovery
    manager's update throttle): at a time scale of 120 that is the first 10 simulated minutes of a
    scenario unobserved. The benchmark starts the simulator on this clock, starts Prometheus, waits
    for its first scrape and releases the clock, so every method sees the scenario from t = 0.
    """
    from gftune.sim.clock import Clock

    class HeldClock(Clock):
        def __init__(self) -> None:
            super().__init__(time_scale)
            self._start: float | None = None

        def now(self) -> float:
            return 0.0 if self._start is None else (time.monotonic() - self._start) * self.time_scale

        def release(self) -> None:
            # the API stamps sim time t as epoch + t / time_scale: t = 0 is now, not when the clock was made
            self.epoch = datetime.now(UTC)
            self._start = time.monotonic()

    return HeldClock()


# --- the judge -----------------------------------------------------------------------------------------

class Judge(threading.Thread):
    """Samples the simulator's ground truth every ``interval`` wall seconds, and with
    ``track_config`` the live configuration too (``TRACKED`` fields, read from the API)."""

    def __init__(self, sim: Any, pipeline_id: str, interval: float, *, source_ids: list[str] | None = None,
                 track_config: bool = False) -> None:
        super().__init__(daemon=True)
        self.sim, self.pipeline_id, self.interval = sim, pipeline_id, interval
        self.source_ids = source_ids or []
        self.track_config = track_config
        self.samples: list[Json] = []
        self.statuses: list[tuple[float, str]] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def sample(self) -> Json:
        truth = self.sim.truth(self.pipeline_id)
        records, details, mc = truth["records"], truth["details"], truth["min_config"]
        utilisation = truth["utilisation"]
        row = {"t": truth["sim_seconds"], "status": truth["status"], "lag": records["kafka_lag"],
               "depth": sum(records["stream_depth"].values()), "lost": records["lost"],
               "dlq": sum(records["dlq"].values()), "input": truth["load"]["source_total"],
               "cost": mc["current_cost"], "min_cost": mc["cost"], "feasible": mc["feasible"],
               "min_values": mc["values"],
               "sink_capacity": truth["capacity"].get("sink"), "capacity": truth["capacity"],
               "utilisation": utilisation, "util_max": max(utilisation.values(), default=0.0),
               "bottleneck": truth.get("bottleneck"), "sink_memory": details["sink_memory_bytes"],
               "sink_memory_limit": details["sink_memory_limit_bytes"], "partitions": details["partitions"]}
        if self.track_config:
            row["config"] = live_config(self.sim, self.pipeline_id, self.source_ids)
        with self._lock:
            self.samples.append(row)
            if not self.statuses or self.statuses[-1][1] != row["status"]:
                self.statuses.append((row["t"], row["status"]))
        return row

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # the judge must not die silently mid-run
                print(f"judge: {exc!r}", file=sys.stderr)

    def stop(self) -> Json:
        self._halt.set()
        self.join(timeout=5)
        return self.sample()


# --- a user's repository -----------------------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ID}).stdout


def adopt(sim: Any, repo: Path) -> tuple[str, Json, dict[str, str]]:
    """A git repository with the simulator's pipeline (as ``gftune demo`` adopts it), the built-in
    policies and a gftune.yaml pointing at the simulator (direct scrape)."""
    import httpx

    from gftune.commands.demo import adopted_spec, demo_config_text, pipeline_file_text

    rows = httpx.get(f"{sim.api_url}/api/v1/pipeline", timeout=10).json()
    if len(rows) != 1:
        raise SystemExit(f"expected one pipeline in the scenario, found {len(rows)}")
    pipeline_id = rows[0]["pipeline_id"]
    live = httpx.get(f"{sim.api_url}/api/v1/pipeline/{pipeline_id}", timeout=10).json()
    spec, env = adopted_spec(live, prefix="BENCH_")
    (repo / "pipelines").mkdir(parents=True)
    (repo / "pipelines" / f"{pipeline_id}.yaml").write_text(pipeline_file_text(spec, sim.api_url), encoding="utf-8")
    shutil.copytree(ROOT / "policies", repo / "policies")
    (repo / "gftune.yaml").write_text(demo_config_text(ROOT / "gftune.yaml", api_url=sim.api_url,
                                                       scrape_url=sim.metrics_url, time_scale=sim.time_scale),
                                      encoding="utf-8")
    (repo / ".gitignore").write_text(".gftune/\n", encoding="utf-8")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "pipelines", "policies", "gftune.yaml", ".gitignore")
    git(repo, "commit", "-q", "-m", "adopt the simulator's pipeline and the built-in policies")
    return pipeline_id, live, env


def live_config(sim: Any, pipeline_id: str, source_ids: list[str]) -> Json:
    """The live values of the ``TRACKED`` fields (GET of the pipeline)."""
    import httpx

    from gftune.desired import paths

    doc = httpx.get(f"{sim.api_url}/api/v1/pipeline/{pipeline_id}", timeout=10).json()
    out: Json = {}
    for template in TRACKED:
        for sid in source_ids:
            path = template.format(sid=sid)
            value = paths.get(doc, path)
            if value is not None:
                out[path] = value
    return out


def number(path: str, value: Any) -> float | None:
    """A tracked field's value as a number (replicas, cores, bytes, seconds), None if it has none."""
    from gftune.policy import guards

    kind = guards.field_kind(path, value)
    return guards.to_number(kind, value)


# --- a real Prometheus ---------------------------------------------------------------------------------

def scrape_targets(sim: Any) -> list[str]:
    """What a user's Prometheus scrapes: the collector's /metrics, and kafka_exporter's and the
    ClickHouse server's own /metrics where the simulator serves them."""
    return [sim.metrics_url, *(url for url in (getattr(sim, "kafka_exporter_url", ""),
                                               getattr(sim, "clickhouse_url", "")) if url)]


def start_prometheus(sim: Any, workdir: Path, time_scale: float) -> Any:
    """A real Prometheus (the test suite's helper) scraping the simulator as often as the OTel
    collector's 10 s push interval is in wall time (at least every 0.5 s, at most every 0.1 s),
    honor_labels left false: the collector's job/instance arrive as exported_job/exported_instance."""
    from tests.support.prometheus import PrometheusServer

    interval_ms = max(100, min(500, round(10_000 / time_scale)))
    workdir.mkdir(parents=True, exist_ok=True)  # PrometheusServer writes its config there
    return PrometheusServer(scrape_targets(sim), f"{interval_ms}ms", workdir=workdir).start()


def wait_for_first_scrape(prometheus: Any, targets: int, timeout: float = 30.0) -> None:
    """Until Prometheus has scraped every target successfully once (``up == 1``)."""
    deadline = time.monotonic() + timeout
    while True:
        up = prometheus.query("up")
        if len(up) >= targets and all(r["value"][1] == "1" for r in up):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"prometheus did not scrape its {targets} target(s) within {timeout:.0f} s: {up}")
        time.sleep(0.1)


def use_prometheus(repo: Path, url: str) -> None:
    """Point the repository's gftune.yaml at a Prometheus server instead of the direct scrape."""
    from ruamel.yaml import YAML

    yaml = YAML()
    path = repo / "gftune.yaml"
    doc = yaml.load(path.read_text(encoding="utf-8"))
    metrics = doc.setdefault("metrics", {})
    metrics.pop("scrape", None)
    metrics["prometheus"] = url
    out = StringIO()
    yaml.dump(doc, out)
    path.write_text(out.getvalue(), encoding="utf-8")
    git(repo, "commit", "-q", "-am", "metrics from Prometheus")


# --- gftune's loop, as a user (or the nightly workflow) runs it -------------------------------------------

@dataclass
class GftuneLoop:
    """``gftune plan`` -> proposals? ``gftune tune --write`` (a branch, fast-forwarded into main as a
    merged pull request) -> ``gftune apply --auto-approve``; a reverted change is ``git revert``ed too,
    as the report's next move says. :meth:`iterate` runs one plan (and what it leads to)."""

    sim: Any
    repo: Path
    env: dict[str, str]
    pipeline_id: str
    judge: Judge
    log: TextIO
    label: str = ""
    reuse_plan: bool = True
    in_process: bool = False
    plans: list[Json] = field(default_factory=list)
    steps: list[Json] = field(default_factory=list)

    def command(self, *args: str) -> tuple[int, Json | None, float, float]:
        t0 = self.sim.clock.now()
        argv = [*args, "--repo", str(self.repo)]
        code, stdout, stderr = self._in_process(argv) if self.in_process else self._child(argv)
        t1 = self.sim.clock.now()
        self.log.write(f"[{self.label}] t={t0:7.0f}..{t1:7.0f} gftune {args[0]} exit {code}\n")
        if stderr.strip():
            self.log.write("    " + stderr.strip().replace("\n", "\n    ")[-3000:] + "\n")
        self.log.flush()
        data = json.loads(stdout) if stdout.strip().startswith("{") else None
        return code, data, t0, t1

    def _child(self, argv: list[str]) -> tuple[int, str, str]:
        proc = subprocess.run([sys.executable, "-m", "gftune", *argv], env=self.env, capture_output=True, text=True,
                              timeout=max(120.0, 7200.0 / self.sim.time_scale))
        return proc.returncode, proc.stdout, proc.stderr

    def _in_process(self, argv: list[str]) -> tuple[int, str, str]:
        """The same CLI, run by click's runner in this process. A new interpreter costs ~1 s of CPU
        importing gftune before a plan starts; at a time scale of 20 to 40 that is 20 to 40 simulated
        seconds a real deployment never pays, and the CPU the runs beside it need."""
        from click.testing import CliRunner

        from gftune.cli import cli

        # the loop's environment as a change of this process's: CliRunner sets it for the command only
        delta: dict[str, str | None] = {k: v for k, v in self.env.items() if os.environ.get(k) != v}
        delta.update({k: None for k in os.environ if k not in self.env})
        result = CliRunner().invoke(cli, argv, env=delta, catch_exceptions=True)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            stderr += "".join(traceback.format_exception(result.exception))
        return result.exit_code, result.stdout, stderr

    def iterate(self) -> str:
        """One plan and, when it proposes, tune and apply. Returns what happened: ``plan error``,
        ``cooling`` (a policy held back by its cooldown: not a quiet window), ``quiet``,
        ``tune found nothing`` or ``applied``.

        With ``reuse_plan`` (the default) tune writes the saved plan's proposals (``tune --plan``)
        instead of evaluating the policies again: the plan's reading of the metrics serves both, as
        in a nightly workflow that plans, reviews and writes the same proposals."""
        saved = self.repo / ".gftune" / "bench-plan.json"
        saved.parent.mkdir(parents=True, exist_ok=True)
        out = ("--out", str(saved)) if self.reuse_plan else ()
        code, plan, t0, t1 = self.command("plan", "--format", "json", *out)
        entries = (plan or {}).get("pipelines", [{}])
        entry = next((p for p in entries if p.get("pipeline_id") == self.pipeline_id), {})
        proposals = entry.get("proposals", [])
        record: Json = {"t0": t0, "t1": t1, "exit": code, "action": entry.get("action"),
                        "proposals": [{"policy": p["policy"], "changes": p["changes"],
                                       "rationale": p.get("rationale", ""), "notes": p.get("notes", [])}
                                      for p in proposals],
                        "escalations": [{"policy": e["policy"], "reason": e["reason"]}
                                        for e in entry.get("escalations", [])],
                        "notes": [*entry.get("notes", []), *entry.get("policy_notes", [])]}
        self.plans.append(record)
        if code == 1:
            return "plan error"
        if not proposals:
            cooling = any("cooldown" in n and "active" in n for n in record["notes"])
            return "cooling" if cooling else "quiet"
        branch = f"gftune/bench-step-{len(self.steps) + 1}"
        reviewed = ("--plan", str(saved)) if self.reuse_plan and saved.exists() else ()
        tcode, tuned, tt0, _ = self.command("tune", "--write", "--format", "json", "--branch", branch, *reviewed)
        git(self.repo, "checkout", "-q", "main")
        if tcode != 2 or not (tuned or {}).get("written"):
            record["tune_found_nothing"] = True
            return "tune found nothing"
        git(self.repo, "merge", "-q", "--ff-only", branch)
        tuned_proposals = [p for o in (tuned or {}).get("outcomes", {}).values() for p in o["proposals"]]
        acode, report, at0, at1 = self.command("apply", "--auto-approve", "--format", "json")
        pipe = next((p for p in (report or {}).get("pipelines", []) if p.get("pipeline_id") == self.pipeline_id), {})
        if acode in (1, 4):  # reverted or restored: take the change out of git too, as a user would
            git(self.repo, "revert", "--no-edit", "HEAD")
        timeline = pipe.get("timeline", [])
        self.steps.append({
            "t_tune": tt0, "t_apply": at0, "t_done": at1, "apply_exit": acode,
            "policies": sorted({p["policy"] for p in tuned_proposals}),
            "changes": [{"path": c["path"], "old": c["old"], "new": c["new"]} for c in pipe.get("changes", [])]
            or [c for p in tuned_proposals for c in p["changes"]],
            "verdict": (pipe.get("verdict") or {}).get("label"), "outcome": pipe.get("outcome"),
            "restarts": sum(1 for s in timeline if s["step"].endswith(".stop") and s["state"] == "done"),
            "tuned_proposals": tuned_proposals, "report": pipe,
        })
        return "applied"


def scaled_sleep(sim: Any, sim_seconds: float) -> None:
    """Sleep ``sim_seconds`` of simulated time (wall = sim / time scale)."""
    if sim_seconds > 0 and math.isfinite(sim_seconds):
        time.sleep(sim_seconds / sim.time_scale)
