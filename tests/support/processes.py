"""Waiting for a server started as a child process (``gftune sim`` in the foreground)."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_for_api(process: subprocess.Popen[str], port: int, timeout: float = 20.0) -> None:
    """Until the GlassFlow API on ``port`` answers its health check; fails with the child's output if it
    exits first or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else "the server exited"
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.1)
