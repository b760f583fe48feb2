"""A real ``prometheus`` server for tests: scrapes the given targets, answers PromQL over HTTP.

The CI test command installs Debian's ``prometheus`` package; locally, tests that need it are
skipped with a clear message when ``/usr/bin/prometheus`` is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.support.ports import free_port

PROMETHEUS_BINARY = os.environ.get("GFTUNE_TEST_PROMETHEUS_BINARY", "/usr/bin/prometheus")


def prometheus_binary() -> str | None:
    if Path(PROMETHEUS_BINARY).exists():
        return PROMETHEUS_BINARY
    return shutil.which("prometheus")


def _target(target: Any) -> tuple[str, str]:
    """``(host:port, metrics_path)`` from a URL, ``host:port`` or an object with ``metrics_url``."""
    url = getattr(target, "metrics_url", target)
    if "://" not in url:
        return url, "/metrics"
    parsed = urlparse(url)
    return parsed.netloc, parsed.path or "/metrics"


class PrometheusServer:
    def __init__(self, targets: list[Any], scrape_interval: str = "1s", *, workdir: Path | None = None) -> None:
        binary = prometheus_binary()
        if binary is None:
            pytest.skip("the prometheus binary is not installed (Debian package `prometheus`; "
                        "the CI test command installs it)")
        self.binary = binary
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gftune-prom-"))
        self.targets = [_target(t) for t in targets]
        self.scrape_interval = scrape_interval
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.client = httpx.Client(timeout=10)

    def _config(self) -> str:
        lines = [
            "global:",
            f"  scrape_interval: {self.scrape_interval}",
            f"  evaluation_interval: {self.scrape_interval}",
            "scrape_configs:",
        ]
        for index, (address, path) in enumerate(self.targets):
            lines += [
                f"  - job_name: target{index}",
                f"    metrics_path: {path}",
                f"    scrape_timeout: {self.scrape_interval}",
                "    static_configs:",
                f"      - targets: ['{address}']",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        config = self.workdir / "prometheus.yml"
        config.write_text(self._config())
        for _attempt in range(3):
            port = free_port()
            log = open(self.workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
            self._log = log
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
                 "--log.level=warn", "--query.lookback-delta=30s"],
                stdout=log, stderr=subprocess.STDOUT)
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if self.client.get(self.url + "/-/ready").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"prometheus did not start; log:\n{self.log_text()}")

    def log_text(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list of a vector answer."""
        response = self.client.get(self.url + "/api/v1/query", params={"query": promql})
        response.raise_for_status()
        data = response.json()
        if data.get("status") != "success":
            raise RuntimeError(f"query failed: {data}")
        return data["data"]["result"]

    def values(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Instant query as ``{sorted label items: value}``."""
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in self.query(promql)}

    def value(self, promql: str) -> float:
        """The single value of a query that must return exactly one series."""
        result = self.query(promql)
        if len(result) != 1:
            raise AssertionError(f"expected one series for {promql!r}, got {result}")
        return float(result[0]["value"][1])

    def wait_for_series(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until the query returns at least one series; return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result and all(r["value"][1] not in ("NaN",) for r in result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no series for {promql!r} within {timeout}s; prometheus log:\n{self.log_text()}")
            time.sleep(0.2)
