"""Where the desired state came from: the git commit, branch and dirty flag (GitPython).

Plans record it so that ``apply`` and reports can say which commit they carry out, and ``drift``
compares it with the provenance tag the last apply left on a live pipeline. Outside a repository
(or without a git binary) everything is None: gftune works on a plain directory too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GitInfo:
    commit: str  # full sha of HEAD
    branch: str | None  # None on a detached HEAD (as in most CI checkouts)
    dirty: bool  # uncommitted changes to tracked files, or untracked YAML files (a new pipeline or policy)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def short(self) -> str:
        return self.commit[:12]


def _open(path: Path) -> Any:
    try:
        import git
    except ImportError:  # GitPython cannot find a git executable
        return None
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def git_info(path: Path | str) -> GitInfo | None:
    """The state of the repository containing ``path``; None outside a repository or before a commit."""
    repo = _open(Path(path))
    if repo is None:
        return None
    try:
        with repo:
            if not repo.head.is_valid():
                return None
            commit = repo.head.commit.hexsha
            branch = None if repo.head.is_detached else repo.active_branch.name
            dirty = repo.is_dirty(untracked_files=False) or any(
                p.endswith((".yaml", ".yml")) for p in repo.untracked_files)
    except Exception:  # a broken repository must not stop a plan; the plan just has no git block
        return None
    return GitInfo(commit=commit, branch=branch, dirty=dirty)


def current_commit(path: Path | str) -> str | None:
    info = git_info(path)
    return info.commit if info else None


def read_at_commit(path: Path | str, commit: str, file: Path | str) -> str | None:
    """The text of ``file`` (a path inside the repository containing ``path``) at ``commit``.

    None when there is no repository, the commit is unknown (e.g. a shallow CI clone) or the file
    did not exist then.
    """
    repo = _open(Path(path))
    if repo is None:
        return None
    try:
        with repo:
            root = Path(repo.working_tree_dir or ".").resolve()
            relative = Path(file).resolve().relative_to(root).as_posix()
            blob = repo.commit(commit).tree / relative
            return blob.data_stream.read().decode("utf-8")
    except Exception:  # unknown commit, missing file, outside the repository: all mean "cannot tell"
        return None
