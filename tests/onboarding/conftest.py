"""Shared by the first-hour tests (init, import): the CLI in-process, and an environment without the
developer's GFTUNE_* settings or secrets' values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gftune.cli import cli
from gftune.desired import adopt

ROOT = Path(__file__).resolve().parents[2]


def gftune(*args: Any, env: dict[str, str] | None = None) -> Any:
    """Run the CLI in-process; ``env`` adds environment variables for this run only."""
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GFTUNE_") or name in adopt.SECRET_ENV_NAMES.values():
            monkeypatch.delenv(name)


# The values the demo scenario creates its pipelines with (scenarios/demo.yaml, each pipeline's patch:).
DEMO_SECRETS = {"CLICKHOUSE_PASSWORD": "gftune-demo-clickhouse-pw", "KAFKA_PASSWORD": "gftune-demo-kafka-pw"}


@pytest.fixture
def demo_repository(sim_factory: Any, tmp_path: Path) -> Path:
    """The documented first hour against the demo scenario: `gftune init` (direct scrape of the
    simulator), then `gftune import` of its five pipelines."""
    sim = sim_factory("demo", time_scale=100)
    repo = tmp_path / "ops"
    assert gftune("init", repo, "--yes", "--api", sim.api_url, "--scrape", sim.metrics_url).exit_code == 0
    assert gftune("import", "--repo", repo).exit_code == 0
    return repo
