"""Benchmark: the simulator holding N pipelines, serving GET requests from a concurrent client.

    .venv/bin/python benchmarks/bench_sim.py                 # 1000 pipelines, 20 s, 32 connections
    .venv/bin/python benchmarks/bench_sim.py --pipelines 1000 --seconds 30 --connections 64 --json

The simulator runs in this process (as in tests and ``gftune demo``); the load generator runs in a
second process (httpx async, keep-alive connections) so the two do not share a GIL. Requests are
``GET /api/v1/pipeline/{id}`` over random pipelines, with every 10th a ``GET .../health``; the
model advances lazily per pipeline on each read, and a Prometheus-like scrape of ``/metrics``
every ``--scrape-interval`` seconds advances all of them. Reports requests/s, latency p50/p99,
the simulator's resident memory, and the time of one full ``/metrics`` scrape.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from gftune.sim import Simulator

KINDS = ("plain", "dedup", "filter")


def pipeline_doc(index: int) -> dict:
    kind = KINDS[index % len(KINDS)]
    doc = {
        "version": "v3", "pipeline_id": f"bench-{index:04d}", "name": f"Bench {index}",
        "sources": [{"type": "kafka", "source_id": "events", "topic": f"events-{index % 50}",
                     "connection_params": {"brokers": ["kafka:9092"], "protocol": "PLAINTEXT", "mechanism": "NO_AUTH"},
                     "schema_fields": [{"name": "id", "type": "string"}, {"name": "value", "type": "float"}]}],
        "sink": {"type": "clickhouse", "table": "events", "max_batch_size": 1000, "max_delay_time": "1s",
                 "connection_params": {"host": "ch", "port": "9000", "http_port": "8123", "database": "default",
                                       "username": "default", "password": "pw", "secure": False},
                 "mapping": [{"name": "id", "column_name": "id", "column_type": "String"},
                             {"name": "value", "column_name": "value", "column_type": "Float64"}]},
        "resources": {"sources": [{"source_id": "events", "replicas": 2}], "sink": {"replicas": 2}},
    }
    if kind == "dedup":
        doc["transforms"] = [{"type": "dedup", "source_id": "events", "config": {"key": "id", "time_window": "10m"}}]
    elif kind == "filter":
        doc["transforms"] = [{"type": "filter", "source_id": "events", "config": {"expression": "value > 0"}}]
    return doc


def scenario(count: int) -> dict:
    rng = random.Random(1)
    return {"name": "bench", "seed": 1, "pipelines": [
        {"spec": pipeline_doc(i), "model": {"source": {"profile": {"kind": "constant", "rate": rng.randint(500, 8000)},
                                                        "noise": 0.02}}}
        for i in range(count)]}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- load generator (second process) ----------------------------------------------------------------
# Plain asyncio HTTP/1.1 with keep-alive: httpx's async pool tops out at a few hundred requests per
# second on a 2-core machine, which would measure the client instead of the simulator.

async def _connection(host: str, port: int, ids: list[str], stop_at: float, latencies: list[float],
                      errors: list[int], rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    try:
        while time.perf_counter() < stop_at:
            pid = rng.choice(ids)
            path = f"/api/v1/pipeline/{pid}/health" if n % 10 == 9 else f"/api/v1/pipeline/{pid}"
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            length = next((int(line.split(b":")[1]) for line in lines
                           if line.lower().startswith(b"content-length:")), 0)
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(status)
            n += 1
    finally:
        writer.close()


def load(base_url: str, ids: list[str], seconds: float, connections: int, queue: multiprocessing.Queue) -> None:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)

    async def main() -> None:
        latencies: list[float] = []
        errors: list[int] = []
        started = time.perf_counter()
        await asyncio.gather(*(_connection(host, int(port), ids, started + seconds, latencies, errors,
                                           random.Random(i)) for i in range(connections)))
        elapsed = time.perf_counter() - started
        queue.put({"requests": len(latencies), "elapsed": elapsed, "errors": len(errors),
                   "latencies": sorted(latencies)})

    asyncio.run(main())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--scrape-interval", type=float, default=15.0, help="0 disables the /metrics scrapes")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    base_rss = rss_mib()
    started = time.perf_counter()
    sim = Simulator([scenario(args.pipelines)], time_scale=args.time_scale).start()
    load_seconds = time.perf_counter() - started
    loaded_rss = rss_mib()
    ids = [f"bench-{i:04d}" for i in range(args.pipelines)]
    scrape_times: list[float] = []
    stop = threading.Event()

    def scraper() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.wait(args.scrape_interval):
                t0 = time.perf_counter()
                client.get(sim.metrics_url).raise_for_status()
                scrape_times.append(time.perf_counter() - t0)

    scrape_thread = threading.Thread(target=scraper, daemon=True)
    if args.scrape_interval > 0:
        scrape_thread.start()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    client = ctx.Process(target=load, args=(sim.api_url, ids, args.seconds, args.connections, queue))
    client.start()
    result = queue.get(timeout=args.seconds + 120)
    client.join()
    stop.set()
    t0 = time.perf_counter()
    metrics_body = httpx.get(sim.metrics_url, timeout=120).content
    full_scrape = time.perf_counter() - t0
    final_rss = rss_mib()
    sim.stop()

    latencies = result.pop("latencies")
    report = {
        "pipelines": args.pipelines,
        "connections": args.connections,
        "seconds": round(result["elapsed"], 2),
        "requests": result["requests"],
        "errors": result["errors"],
        "requests_per_second": round(result["requests"] / result["elapsed"], 1),
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "latency_mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "startup_seconds": round(load_seconds, 2),
        "rss_mib_before": round(base_rss, 1),
        "rss_mib_loaded": round(loaded_rss, 1),
        "rss_mib_after": round(final_rss, 1),
        "metrics_scrape_seconds": round(full_scrape, 3),
        "metrics_bytes": len(metrics_body),
        "scrapes_during_run": len(scrape_times),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    if args.json:
        print(json.dumps(report))
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
