"""What a new user meets in the first minutes (issue 14): an empty simulator says how to fill it."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

from tests.support.ports import free_port
from tests.support.processes import wait_for_api


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
