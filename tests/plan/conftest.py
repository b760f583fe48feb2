"""Fixtures of the plan tests against the simulator (the helpers are :mod:`tests.support.repos`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.repos import Repo, deploy_examples, example_repo


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """The example pipelines in a fresh git repository; no metrics configured; secrets in env."""
    return example_repo(tmp_path / "repo", monkeypatch)


@pytest.fixture
def deployed(sim_factory, repo):
    """The example repository's pipelines created on a simulator, as the plan of ``repo`` says."""
    sim = sim_factory(time_scale=200)
    deploy_examples(repo, sim.api_url)
    return sim
