"""Benchmark: ``gftune plan`` over 10, 100 and 1,000 pipelines against the simulator.

For each size N the benchmark

1. starts ``gftune sim`` in its own process (the API a user's gftune would talk to),
2. creates N pipelines through the API (the five example pipelines, cycled, with unique ids) and a
   repository with the N matching pipeline files,
3. runs ``gftune plan --format json`` as a child process ``--runs`` times (wall time, peak RSS of
   the child; every run must exit 0 with N unchanged: no phantom drift at scale),
4. runs the **floor** the same way: a child process that only does the same HTTP reads
   (``GET /pipeline`` plus the pipeline, ``/resources`` and ``/health`` of each, concurrently with the
   same httpx client settings and bound) and nothing else,
5. times the phases of the plan in this process (load the repository; read + plan + render).

Usage: ``.venv/bin/python benchmarks/bench_plan.py [--sizes 10,100,1000] [--runs 3] [--markdown]``.
The goal (issue 4): 1,000 pipelines under 10 s on a 2-core machine and within 1.5x of the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SECRETS = {"CLICKHOUSE_PASSWORD": "bench-password-1", "KAFKA_PASSWORD": "bench-password-2",
           "KAFKA_USERNAME": "bench-user", "CLICKHOUSE_USER": "bench-ch-user"}
CONCURRENCY = 16  # gftune's default api.concurrency

FLOOR = textwrap.dedent("""
    import asyncio, sys, httpx
    url, concurrency = sys.argv[1], int(sys.argv[2])
    async def main():
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        slots = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            async def get(path):
                async with slots:
                    response = await client.get(path)
                response.raise_for_status()
                return response.json()
            rows = await get("/api/v1/pipeline")
            paths = [f"/api/v1/pipeline/{r['pipeline_id']}{suffix}" for r in rows
                     for suffix in ("", "/resources", "/health")]
            await asyncio.gather(*(get(p) for p in paths))
            print(len(paths))
    asyncio.run(main())
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sim() -> tuple[subprocess.Popen[bytes], str]:
    port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen([PYTHON, "-m", "gftune", "sim", "--port", str(port), "--metrics-port", str(metrics_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/v2/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("simulator did not start")


def example_files() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "pipelines").glob("*.yaml"))]


def make_repo(directory: Path, count: int) -> list[dict]:
    """N pipeline files (the examples cycled, ids made unique); returns their specs."""
    (directory / "pipelines").mkdir(parents=True)
    (directory / "gftune.yaml").write_text("apiVersion: gftune/v1\nkind: Config\n")
    examples = example_files()
    specs = []
    for i in range(count):
        doc = json.loads(json.dumps(examples[i % len(examples)]))
        pid = f"bench-{i:04d}-{doc['spec']['pipeline_id']}"[:40].rstrip("-")
        doc["metadata"]["name"] = doc["spec"]["pipeline_id"] = pid
        (directory / "pipelines" / f"{pid}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        specs.append(doc["spec"])
    return specs


async def create_all(url: str, specs: list[dict], root: Path) -> None:
    from gftune.client import GlassFlowClient
    from gftune.desired import secrets

    async with GlassFlowClient(url, concurrency=CONCURRENCY, timeout=30) as client:
        async def create(spec: dict) -> None:
            body = secrets.resolve_document(spec, secrets.Resolver(SECRETS, base_dir=root))
            (body.get("resources") or {}).pop("join", None)
            body["metadata"] = {"tags": [*((body.get("metadata") or {}).get("tags") or []), "gftune:managed"]}
            await client.create(body)

        await asyncio.gather(*(create(s) for s in specs))
        deadline = time.monotonic() + 120
        while True:
            rows = await client.list()
            if all(r["status"] == "Running" for r in rows) and len(rows) == len(specs):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("pipelines did not reach Running")
            await asyncio.sleep(0.5)


def timed_child(args: list[str], env: dict[str, str]) -> tuple[float, float, bytes, int]:
    """Wall seconds, peak RSS (MiB), stdout and exit code of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_maxrss / 1024, out, os.waitstatus_to_exitcode(status)


def in_process_phases(root: Path, url: str) -> dict[str, float]:
    from gftune.desired.repo import load_repo
    from gftune.orchestration.plan import produce_plan
    from gftune.plan.render import render_json

    t0 = time.perf_counter()
    state = load_repo(root, overrides={"api_url": url}, env={**os.environ, **SECRETS})
    t1 = time.perf_counter()
    run = asyncio.run(produce_plan(state, env=SECRETS))
    t2 = time.perf_counter()
    render_json(run.plan)
    t3 = time.perf_counter()
    assert run.plan.exit_code == 0, run.plan.summary
    return {"load": t1 - t0, "read_and_plan": t2 - t1, "render": t3 - t2}


@contextmanager
def running(size: int) -> Iterator[tuple[str, Path]]:
    """A simulator in its own process running N pipelines, and a repository of their files (not a git
    repository yet): (API URL, repository). Both go at the end."""
    proc, url = start_sim()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "repo"
            specs = make_repo(root, size)
            asyncio.run(create_all(url, specs, root))
            yield url, root
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench(size: int, runs: int) -> dict[str, object]:
    with running(size) as (url, root):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GFTUNE_")} | SECRETS
        plan_cmd = [PYTHON, "-m", "gftune", "plan", "--repo", str(root), "--api", url, "--format", "json"]
        floor_cmd = [PYTHON, "-c", FLOOR, url, str(CONCURRENCY)]
        plans, floors = [], []
        for _ in range(runs):  # interleaved, so both see the same simulator state
            wall, rss, out, code = timed_child(plan_cmd, env)
            summary = json.loads(out)["summary"]
            assert code == 0 and summary["unchanged"] == size, (code, summary)
            plans.append((wall, rss))
            wall, rss, out, code = timed_child(floor_cmd, env)
            assert code == 0 and int(out) == 3 * size
            floors.append((wall, rss))
        phases = in_process_phases(root, url)
    plan_wall = statistics.median(w for w, _ in plans)
    floor_wall = statistics.median(w for w, _ in floors)
    return {"size": size, "plan_s": plan_wall, "plan_rss_mib": max(r for _, r in plans), "floor_s": floor_wall,
            "floor_rss_mib": max(r for _, r in floors), "ratio": plan_wall / floor_wall, **phases}


def run_sizes(doc: str, bench: Callable[[int, int], dict[str, Any]], default_sizes: str, header: str,
              row: Callable[[dict[str, Any]], str]) -> None:
    """The command line the plan benchmarks share: ``--sizes``, ``--runs``, ``--markdown``; one JSON line
    a size, and with ``--markdown`` a table (``header``, then ``row`` of each result) for docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--sizes", default=default_sizes)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table for docs/benchmarks.md")
    args = parser.parse_args()
    os.chdir(ROOT)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = bench(size, args.runs)
        results.append(result)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
    if args.markdown:
        print()
        print(header)
        for result in results:
            print(row(result))


def main() -> None:
    run_sizes(__doc__, bench, "10,100,1000",
              "| pipelines | `gftune plan` wall (median) | peak RSS | floor wall | floor RSS | plan / floor | "
              "load repo | read + plan | render |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
              lambda r: f"| {r['size']:,} | {r['plan_s']:.2f} s | {r['plan_rss_mib']:.0f} MiB | {r['floor_s']:.2f} s | "
                        f"{r['floor_rss_mib']:.0f} MiB | {r['ratio']:.2f}x | {r['load']:.2f} s | "
                        f"{r['read_and_plan']:.2f} s | {r['render']:.2f} s |")
    cpu = os.cpu_count()
    print(f"\nmachine: {cpu} cores, Python {sys.version.split()[0]}; "
          f"max RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB",
          file=sys.stderr)


if __name__ == "__main__":
    if shutil.which("git") is None:
        print("note: git not found; plans carry no git block", file=sys.stderr)
    main()
