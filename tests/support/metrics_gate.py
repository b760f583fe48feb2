"""A real HTTP server in front of the simulator's /metrics that can go dark: a data gap on demand.

Prometheus scrapes the gate; ``dark = True`` makes every scrape fail with 503, as when an OTel
collector restarts or the network drops, so the series have a hole where apply observes.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class MetricsGate:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dark = False
        self.scrapes = 0
        self.refused = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> MetricsGate:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if gate.dark:
                    gate.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                gate.scrapes += 1
                answer = httpx.get(gate.upstream, timeout=5)
                body = answer.content
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="metrics-gate", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
