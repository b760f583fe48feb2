"""Where the desired state came from: the git commit, branch and dirty flag (GitPython).

Plans record it so that ``apply`` and reports can say which commit they carry out, and ``drift``
compares it with the provenance tag the last apply left on a live pipeline. Outside a repository
(or without a git binary) everything is None: gftune works on a plain directory too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


class GitError(Exception):
    """A git question that has no answer here (unknown ref, no common history, not a repository)."""


@dataclass(frozen=True)
class FileChange:
    """One file that differs between the merge base and the working tree, relative to the gftune root."""

    path: str  # posix, relative to the repository root gftune reads (for a rename: the new path)
    status: str  # added | modified | deleted
    old_text: str | None = None  # the file at the merge base (modified and deleted files)


@dataclass(frozen=True)
class ChangedFiles:
    ref: str
    base: str  # the merge base of ref and HEAD
    files: tuple[FileChange, ...]


def changed_files(path: Path | str, ref: str, *, prefixes: tuple[str, ...] = ("pipelines/", "policies/"),
                  names: tuple[str, ...] = ("gftune.yaml",)) -> ChangedFiles:
    """What this branch changed since it left ``ref``: the merge base of ``ref`` and HEAD compared with
    the working tree (commits, staged and unstaged edits, and untracked files), like ``git diff ref...``.

    Only files under ``prefixes`` or named ``names`` (relative to ``path``, the directory gftune
    reads) are returned. A rename is a deletion of the old path and an addition of the new one.
    """
    import git

    root = Path(path).resolve()
    repo = _open(root)
    if repo is None:
        raise GitError(f"{path} is not inside a git repository: --changed-since needs one")
    with repo:
        try:
            other = repo.commit(ref)
        except (git.BadName, ValueError, git.GitCommandError):
            raise GitError(f"unknown git ref {ref!r} (in CI, check out with fetch-depth: 0 so that the base "
                           "branch's history is there)") from None
        if not repo.head.is_valid():
            raise GitError("the repository has no commit yet")
        bases = repo.merge_base(other, repo.head.commit)
        if not bases:
            raise GitError(f"{ref} and HEAD share no history (a shallow clone? use fetch-depth: 0)")
        base = bases[0]
        top = Path(repo.working_tree_dir or ".").resolve()
        try:
            inside = root.relative_to(top).as_posix()
        except ValueError:
            raise GitError(f"{path} is outside the git work tree {top}") from None
        prefix = "" if inside == "." else inside + "/"

        def ours(git_path: str | None) -> str | None:
            if not git_path or not git_path.startswith(prefix):
                return None
            relative = git_path[len(prefix):]
            wanted = relative in names or relative.startswith(prefixes)
            return relative if wanted and relative.endswith((".yaml", ".yml")) else None

        def old(git_path: str) -> str | None:
            try:
                return (base.tree / git_path).data_stream.read().decode("utf-8")
            except (KeyError, UnicodeDecodeError):
                return None

        found: dict[str, FileChange] = {}
        for diff in base.diff(None):
            kind = diff.change_type
            if kind in ("D", "R") and (relative := ours(diff.a_path)):
                found[relative] = FileChange(relative, "deleted", old(diff.a_path))
            if kind in ("A", "R") and (relative := ours(diff.b_path)):
                found[relative] = FileChange(relative, "added")
            if kind in ("M", "T") and (relative := ours(diff.b_path)):
                found[relative] = FileChange(relative, "modified", old(diff.a_path))
        for untracked in repo.untracked_files:
            if (relative := ours(untracked)) and relative not in found:
                found[relative] = FileChange(relative, "added")
        return ChangedFiles(ref, base.hexsha, tuple(sorted(found.values(), key=lambda f: f.path)))


def iter_file_history(path: Path | str, file: Path | str, *, limit: int = 50) -> Iterator[tuple[str, str]]:
    """Earlier versions of ``file``, read as they are asked for: ``(commit sha, text)`` for the
    commits that changed it, newest first, at most ``limit``. Nothing outside a repository or when
    the history is not there (a shallow clone ends it early)."""
    repo = _open(Path(path))
    if repo is None:
        return
    with repo:
        try:
            root = Path(repo.working_tree_dir or ".").resolve()
            relative = Path(file).resolve().relative_to(root).as_posix()
            commits = repo.iter_commits(paths=relative, max_count=limit)
            for commit in commits:
                try:
                    text = (commit.tree / relative).data_stream.read().decode("utf-8")
                except KeyError:  # the commit deleted the file
                    continue
                yield commit.hexsha, text
        except Exception:  # a shallow clone or a broken repository: attribution then says it cannot tell
            return


def file_history(path: Path | str, file: Path | str, *, limit: int = 50) -> list[tuple[str, str]]:
    """:func:`iter_file_history`, all of it."""
    return list(iter_file_history(path, file, limit=limit))


def iter_spec_history(path: Path | str, file: Path | str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The pipeline file's ``spec`` at each commit that changed it, newest first, parsed as asked for."""
    import yaml

    from gftune.plan.attribution import spec_of

    for commit, text in iter_file_history(path, file):
        spec = spec_of(text, yaml.safe_load)
        if spec is not None:
            yield commit, spec


def spec_history(path: Path | str, file: Path | str) -> list[tuple[str, dict[str, Any]]]:
    """:func:`iter_spec_history`, all of it."""
    return list(iter_spec_history(path, file))


def spec_at(path: Path | str, file: Path | str, commit: str | None, head: str | None,
            current: dict[str, Any]) -> dict[str, Any] | None:
    """The pipeline file's ``spec`` at ``commit`` (``current`` when it is HEAD); None when unknown."""
    import yaml

    from gftune.plan.attribution import spec_of

    if commit is None:
        return None
    if commit == head:
        return current
    return spec_of(read_at_commit(path, commit, file), yaml.safe_load)


def commit_summaries(path: Path | str, shas: Iterable[str]) -> dict[str, tuple[str, str, str]]:
    """``{sha: (author, authored at (RFC 3339), subject)}`` of the commits found; the others are left out."""
    repo = _open(Path(path))
    out: dict[str, tuple[str, str, str]] = {}
    if repo is None:
        return out
    with repo:
        for sha in dict.fromkeys(shas):
            try:
                commit = repo.commit(sha)
                out[sha] = (str(commit.author.name), commit.authored_datetime.isoformat(timespec="seconds"),
                            str(commit.summary))
            except Exception:  # unknown in this clone (shallow): the plan then names the sha only
                continue
    return out


def current_branch(path: Path | str) -> str | None:
    info = git_info(path)
    return info.branch if info else None


def push_branch(path: Path | str, branch: str, *, remote: str = "origin", token: str | None = None) -> str:
    """Force-push ``branch`` to ``remote`` (a branch gftune owns, rewritten on every run) and return
    the remote's URL. An HTTPS remote gets ``token`` as an HTTP header through git's environment
    (``GIT_CONFIG_*``), never on the command line or in the remote URL. Raises GitError."""
    import base64

    import git

    repo = _open(Path(path))
    if repo is None:
        raise GitError(f"{path} is not inside a git repository")
    with repo:
        try:
            url = repo.remote(remote).url
        except ValueError:
            raise GitError(f"no git remote {remote!r} to push {branch} to") from None
        env: dict[str, str] = {}
        if token and url.startswith(("https://", "http://")):
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraheader",
                   "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}", "GIT_TERMINAL_PROMPT": "0"}
        try:
            repo.git.push("--force", remote, f"refs/heads/{branch}:refs/heads/{branch}", env=env)
        except git.GitCommandError as exc:
            detail = (exc.stderr or "").strip().replace(token or "\0", "***")
            raise GitError(f"git push of {branch} to {remote} failed: {detail}") from None
    return url
