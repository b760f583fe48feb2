"""``gftune sim`` as a user runs it: a foreground server that stops cleanly on Ctrl+C."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
from click.testing import CliRunner

from gftune.cli import cli
from tests.support.ports import free_port
from tests.support.processes import wait_for_api


def test_list_scenarios():
    result = CliRunner().invoke(cli, ["sim", "--list-scenarios"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert "healthy" in names and "backpressure-sink-bound" in names


def test_unknown_scenario_is_a_clear_error():
    result = CliRunner().invoke(cli, ["sim", "--scenario", "nope", "--port", "0", "--metrics-port", "0"])
    assert result.exit_code == 1
    assert "unknown scenario 'nope'" in result.output


def test_runs_in_the_foreground_and_stops_on_sigint():
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gftune", "sim", "--port", str(port), "--metrics-port", str(metrics_port),
         "--scenario", "healthy", "--time-scale", "10", "--naming", "collector"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_api(process, port)
        rows = httpx.get(f"http://127.0.0.1:{port}/api/v1/pipeline").json()
        assert [r["pipeline_id"] for r in rows] == ["orders-healthy"]
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert "kafka_consumergroup_lag{" in metrics
        # healthy: no backpressure episode has happened, so GlassFlow has recorded no such series
        assert "backpressure" not in metrics
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        output = process.stdout.read()
        assert f"http://127.0.0.1:{port}" in output and "1 pipeline(s) preloaded from healthy" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
