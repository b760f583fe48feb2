"""Fixtures of the first-hour tests (init, import): an environment without the developer's GFTUNE_*
settings or secrets' values, and the demo repository (helpers: :mod:`tests.support.repos`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gftune.desired import adopt
from tests.support.repos import gftune


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GFTUNE_") or name in adopt.SECRET_ENV_NAMES.values():
            monkeypatch.delenv(name)




@pytest.fixture
def demo_repository(sim_factory: Any, tmp_path: Path) -> Path:
    """The documented first hour against the demo scenario: `gftune init` (direct scrape of the
    simulator), then `gftune import` of its five pipelines."""
    sim = sim_factory("demo", time_scale=100)
    repo = tmp_path / "ops"
    assert gftune("init", repo, "--yes", "--api", sim.api_url, "--scrape", sim.metrics_url).exit_code == 0
    assert gftune("import", "--repo", repo).exit_code == 0
    return repo
