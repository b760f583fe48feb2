"""What a new user meets in the first minutes (issue 14): an empty simulator says how to fill it; a plan
names the secrets it misses before it waits for metrics, and says at once how long that wait is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx

from tests.support.ports import free_port
from tests.support.processes import wait_for_api
from tests.support.repos import DEMO_SECRETS


def test_plain_sim_says_it_is_empty_and_points_to_the_demo_scenario():
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "gftune", "sim", "--port", str(port),
                                "--metrics-port", str(metrics_port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_api(process, port)
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/pipeline").json() == []
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        output = process.stdout.read()
        assert "0 pipeline(s) preloaded" in output
        assert "No pipelines yet" in output and "`gftune sim --scenario demo`" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- plan: secrets checked before the metrics wait, and the wait said at once --------------------------------

def plan(repo, env, *args):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GFTUNE_") and k not in DEMO_SECRETS}
    return subprocess.run([sys.executable, "-m", "gftune", "plan", "--repo", str(repo), *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_plan_names_unset_secrets_before_it_waits_for_metrics(demo_repository):
    # A 10-minute metrics window: were the secrets checked after the scrapes, plan() would time out.
    result = plan(demo_repository, {"GFTUNE_METRICS_WINDOW": "10m", "GFTUNE_TIME_SCALE": "1",
                             "CLICKHOUSE_PASSWORD": DEMO_SECRETS["CLICKHOUSE_PASSWORD"]})
    assert result.returncode == 1
    assert "pipelines/fraud-detection-logins-tested.yaml:19:9: spec.sources[0].connection_params.password: " \
           "environment variable KAFKA_PASSWORD is not set (referenced as ${env:KAFKA_PASSWORD})" in result.stderr
    assert "set KAFKA_PASSWORD in the environment" in result.stderr
    assert "nothing was planned and no metrics were read" in result.stderr
    assert "direct scrape" not in result.stderr and result.stdout == ""

    as_json = plan(demo_repository, {"GFTUNE_METRICS_WINDOW": "10m", "GFTUNE_TIME_SCALE": "1"}, "--format", "json")
    assert as_json.returncode == 1
    problems = json.loads(as_json.stdout)["problems"]
    assert {p["message"].split(" is not set")[0] for p in problems} == \
        {"environment variable CLICKHOUSE_PASSWORD", "environment variable KAFKA_PASSWORD"}


def test_plan_says_at_once_how_long_a_direct_scrape_waits_and_counts_down(demo_repository):
    result = plan(demo_repository, {**DEMO_SECRETS, "GFTUNE_METRICS_WINDOW": "5s", "GFTUNE_TIME_SCALE": "1"})
    assert result.returncode in (0, 2), result.stderr
    lines = result.stderr.splitlines()
    announce = next(i for i, line in enumerate(lines) if line.startswith("metrics: a direct scrape of"))
    assert "takes two scrapes 5s apart" in lines[announce] and "metrics.prometheus" in lines[announce]
    scraping = next(i for i, line in enumerate(lines) if line.startswith("scraping "))
    assert announce < scraping  # said before the first scrape, not after
    assert any("waiting for the second scrape:" in line and "left" in line for line in lines[scraping:])
