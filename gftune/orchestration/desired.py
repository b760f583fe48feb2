"""Loading the desired state for a command: the repository read and checked, then its policy files parsed
once by the policy language."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gftune.desired.problems import sorted_problems
from gftune.desired.repo import DesiredState, load_repo
from gftune.desired.validate import empty_repo_problem

# --- load desired ---------------------------------------------------------------------------------

def load_desired(root: Path, *, env: Mapping[str, str] | None = None, overrides: dict[str, Any] | None = None,
                 validate: bool = True) -> DesiredState:
    """The repository at ``root``, checked (by default) by the loader and by the policy language."""
    state = load_repo(root, env=env, overrides=overrides, validate=validate)
    if validate and state.policies:
        # the policy language is loaded only for a repository that has policies (startup time)
        from gftune.policy.files import check_policies

        check_policies(state)
    elif validate:
        state.problems[:] = sorted_problems(state.problems)  # as check_policies leaves them
    return state


def validate_repo(root: Path, *, env: Mapping[str, str] | None = None, overrides: dict[str, Any] | None = None,
                  allow_empty: bool = False) -> DesiredState:
    """Load and check a repository for ``gftune validate``; ``state.problems`` holds everything found, sorted."""
    state = load_desired(root, env=env, overrides=overrides)
    nothing_loaded = not any(p.file.startswith("pipelines/") for p in state.problems)
    if state.root.is_dir() and not state.pipelines and not allow_empty and nothing_loaded:
        state.problems.append(empty_repo_problem())
    state.problems[:] = sorted_problems(state.problems)
    return state
