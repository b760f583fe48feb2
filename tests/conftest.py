"""Shared fixtures: the in-process simulator and a real Prometheus scraping it.

* ``sim_factory(*scenarios, **options)``: start a :class:`gftune.sim.Simulator` on free loopback
  ports (options as for ``Simulator``: ``time_scale``, ``naming``, ``namespace``, ``seed``,
  ``delays``); everything started is stopped at teardown.
* ``sim``: an empty simulator with healthy defaults.
* ``prometheus_factory(targets, scrape_interval="1s")``: a real ``prometheus`` scraping the targets
  (simulators, metrics URLs or ``host:port``); ``.url``, ``.query()``, ``.value()``,
  ``.wait_for_series(query, timeout)``. Skips when the binary is not installed locally.
* ``prometheus``: one scraping the ``sim`` fixture every second.
* ``standin``: the GitHub stand-in server, the one thing of GitHub's the tests fake.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gftune.sim import Simulator
from tests.support.github_standin import GitHubStandIn
from tests.support.prometheus import PrometheusServer

# The glassflow SDK reads this when first imported (reference clients §7): never phone home from tests.
os.environ.setdefault("GF_USAGESTATS_ENABLED", "false")


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def make(*scenarios: Any, **options: Any) -> Simulator:
        simulator = Simulator(scenarios=list(scenarios), **options)
        simulator.start()
        started.append(simulator)
        return simulator

    yield make
    for simulator in started:
        simulator.stop()


@pytest.fixture
def sim(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory()


@pytest.fixture
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PrometheusServer]]:
    servers: list[PrometheusServer] = []

    def make(targets: list[Any] | Any, scrape_interval: str = "1s") -> PrometheusServer:
        if not isinstance(targets, list | tuple):
            targets = [targets]
        server = PrometheusServer(list(targets), scrape_interval, workdir=tmp_path_factory.mktemp("prometheus"))
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def prometheus(sim: Simulator, prometheus_factory: Callable[..., PrometheusServer]) -> PrometheusServer:
    return prometheus_factory([sim])


@pytest.fixture
def standin() -> Iterator[GitHubStandIn]:
    """The GitHub stand-in (tests/support/github_standin.py) on a free loopback port, one per test."""
    server = GitHubStandIn().start()
    yield server
    server.stop()
