"""Benchmark: the README's main command, ``gftune demo``, end to end.

Runs ``gftune demo`` (default scenario ``demo``: the example repository's five pipelines, the
deduplication demo sink-bound) as a child process ``--runs`` times, each in a fresh temporary
repository, and reports per run the wall time, the exit code, the verdict the report printed, the
plan's summary (pipelines unchanged, policy proposals), the change ``tune --write`` committed, and
the time spent in each command the demo runs (``gftune plan``, ``tune --write``,
``apply --auto-approve``), taken from the demo's own banners.

Usage: ``.venv/bin/python benchmarks/bench_demo.py [--runs 3] [--time-scale 30] [--scenario NAME]
[--markdown]``. The goal (issue 6): under two minutes on a fresh 2-core machine, ending with an
improved verdict.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(time_scale: float, scenario: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        started = time.monotonic()
        marks: list[tuple[str, float]] = []
        proc = subprocess.Popen([sys.executable, "-m", "gftune", "demo", "--scenario", scenario,
                                 "--time-scale", str(time_scale), "--repo", str(Path(tmp) / "repo")],
                                cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        output = []
        for line in proc.stdout:
            output.append(line)
            found = re.search(r"━━ \$ gftune (\w+)", line)
            if found:
                marks.append((found.group(1), time.monotonic() - started))
        code = proc.wait()
        wall = time.monotonic() - started
    text = "".join(output)
    verdict = re.findall(r"^Verdict: (.+)$", text, flags=re.M)
    summary = re.search(r"^Plan: .*?(\d+) unchanged.*?(?:; (\d+) policy proposals? not in git)?\.$", text, flags=re.M)
    plan = f"{summary.group(1)} unchanged, {summary.group(2) or 0} proposal" if summary else "none"
    tune = text[text.find("━━ $ gftune tune"):text.find("━━ $ gftune apply")]
    change = ", ".join(f"`{path}` {old} → {new}" for path, old, new in
                       re.findall(r"^    ((?:sink|resources)\.\S+): (\S+) -> (\S+)$", tune, flags=re.M))
    phases = {}
    ends = [t for _, t in marks[1:]] + [wall]
    for (name, start), end in zip(marks, ends, strict=True):
        phases[name] = end - start
    return {"wall_s": wall, "exit": code, "verdict": verdict[-1] if verdict else "none", "phases": phases,
            "plan": plan, "change": change or "none"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=30.0)
    parser.add_argument("--scenario", default="demo")
    parser.add_argument("--markdown", action="store_true", help="print table rows for docs/benchmarks.md")
    args = parser.parse_args()
    results = []
    for index in range(args.runs):
        result = run_once(args.time_scale, args.scenario)
        results.append(result)
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in result["phases"].items())  # type: ignore[union-attr]
        print(f"run {index + 1}: {result['wall_s']:.1f}s exit {result['exit']} verdict {result['verdict']!r} "
              f"({phases}); plan: {result['plan']}; tuned: {result['change']}", flush=True)
    walls = [float(r["wall_s"]) for r in results]
    print(f"median {statistics.median(walls):.1f}s, max {max(walls):.1f}s over {len(walls)} run(s) "
          f"on {platform.machine()}, Python {platform.python_version()}")
    if args.markdown:
        for index, r in enumerate(results, 1):
            phases = r["phases"]
            print(f"| {index} | {r['wall_s']:.1f} s | {phases.get('plan', 0):.1f} s | "  # type: ignore[union-attr]
                  f"{phases.get('tune', 0):.1f} s | {phases.get('apply', 0):.1f} s | {r['plan']} | "  # type: ignore[union-attr]
                  f"{r['change']} | {r['exit']} | {r['verdict']} |")
    sys.exit(0 if all(r["exit"] == 0 for r in results) else 1)


if __name__ == "__main__":
    main()
