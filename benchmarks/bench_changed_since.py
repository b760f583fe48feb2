"""Benchmark: the plan of a pull request that changes one pipeline of N, with and without
``--changed-since``.

Before issue 11 the plan job planned the whole repository: every pipeline read from the API and
diffed, and anything that differed (an unapplied commit, an edit through the API) planned too. With
``--changed-since <base>`` only what the branch changed is read and planned. For each size N this
starts ``gftune sim`` in its own process, creates N pipelines (bench_plan's repository: the example
pipelines cycled), commits the files on ``main``, changes one pipeline on a branch, and times as child
processes ``gftune plan --format json`` (the whole repository) and ``gftune plan --changed-since main
--format json``, ``--runs`` times each, interleaved. Both must plan the one change; the second must
plan nothing else and list the other N-1 as left alone.

Usage: ``.venv/bin/python benchmarks/bench_changed_since.py [--sizes 100,1000] [--runs 3] [--markdown]``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_plan import PYTHON, SECRETS, run_sizes, running, timed_child
from harness import git


def bench(size: int, runs: int) -> dict[str, object]:
    with running(size) as (url, root):
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "as they run")
        git(root, "checkout", "-q", "-b", "one-change")
        changed = sorted((root / "pipelines").glob("*.yaml"))[size // 2]
        doc = yaml.safe_load(changed.read_text())
        doc["spec"]["sink"]["max_batch_size"] = doc["spec"]["sink"].get("max_batch_size", 1000) + 1
        changed.write_text(yaml.safe_dump(doc, sort_keys=False))
        git(root, "commit", "-q", "-am", "one pipeline changes")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GFTUNE_")} | SECRETS
        base = [PYTHON, "-m", "gftune", "plan", "--repo", str(root), "--api", url, "--format", "json"]
        whole, selected = [], []
        for _ in range(runs):
            wall, rss, out, code = timed_child(base, env)
            plan = json.loads(out)
            assert code == 2 and plan["summary"]["update"] == 1 and plan["summary"]["unchanged"] == size - 1
            whole.append((wall, rss))
            wall, rss, out, code = timed_child([*base, "--changed-since", "main"], env)
            plan = json.loads(out)
            assert code == 2 and [p["pipeline_id"] for p in plan["pipelines"]] == [changed.stem]
            assert len(plan["selection"]["left_alone"]) == size - 1
            selected.append((wall, rss))
    return {"size": size, "whole_s": statistics.median(w for w, _ in whole),
            "whole_rss_mib": max(r for _, r in whole),
            "changed_since_s": statistics.median(w for w, _ in selected),
            "changed_since_rss_mib": max(r for _, r in selected)}


def main() -> None:
    run_sizes(__doc__, bench, "100,1000",
              "| pipelines | whole repository: wall (median) | peak RSS | `--changed-since`: wall (median) "
              "| peak RSS |\n|---:|---:|---:|---:|---:|",
              lambda r: f"| {r['size']:,} | {r['whole_s']:.2f} s | {r['whole_rss_mib']:.0f} MiB | "
                        f"{r['changed_since_s']:.2f} s | {r['changed_since_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
