"""Shared fixtures of the apply tests."""

from __future__ import annotations

import pytest

from tests.support import apply as h
from tests.support.apply import HEALTHY


@pytest.fixture
def setup(sim_factory, tmp_path):
    """The simulator's healthy scenario (time scale 20, direct scrape) adopted into a git repository."""
    sim = sim_factory("healthy", time_scale=20)
    config = h.config_yaml(sim.api_url, scrape=sim.metrics_url, settle="20s", window="60s")
    repo = h.adopt(tmp_path / "repo", sim.api_url, HEALTHY, config)
    return sim, repo
