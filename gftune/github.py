"""GitHub, where the team reviews changes: the living PR comment, the drift tracking issue, the tuning
pull request, the reviewed plan's artifact, and the job summary.

One module on purpose: it is gftune's one edge to GitHub, and every call in it shares the client, the
retry policy for rate limits and the handling of the token (which must never reach a message). What
the comment says, and how it fits GitHub's size limit, is pure and lives in :mod:`gftune.comment`.

The REST and GraphQL calls go through PyGithub (pagination, GitHub Enterprise base URLs, GitHub App
authentication), with :class:`GitHubRetry` deciding what is retried:

* a **rate limit** is waited out, whatever the method (GitHub did not carry out the request): a
  ``retry-after`` header is obeyed; a primary limit (``x-ratelimit-remaining: 0``) waits until
  ``x-ratelimit-reset``; a secondary limit without ``retry-after`` waits a minute, as GitHub's docs
  ask. A 403 or 429 that is a rate limit is never reported as a permissions problem. A wait longer
  than ``max_wait`` (default 2 minutes, ``GFTUNE_GITHUB_MAX_WAIT``) fails with the reset time
  instead of holding a CI job for an hour;
* a 5xx or a dropped connection is retried with backoff for requests that are safe to repeat (not a
  POST, which could create a second comment).

The token comes from ``GH_TOKEN`` or ``GITHUB_TOKEN`` (that order, as the ``gh`` CLI reads them),
or is minted for a GitHub App installation from ``GFTUNE_GITHUB_APP_ID`` and
``GFTUNE_GITHUB_APP_PRIVATE_KEY`` (:func:`token_from_env`). It is registered with the masker the
moment it is read; every body sent goes through :data:`gftune.secrets.masker` first, and no message
ever contains it.

**One living comment per pull request.** Its first line names gftune and the pull request
(:func:`comment_marker`), and only a comment that starts with that line *and* was written by the
token's own user (GraphQL ``viewer``, which answers for installation tokens too) is ever edited.
Each run replaces the report in place; the report it replaces collapses into a short history at
the bottom (kept machine-readable in a trailing hidden line), so a reviewer sees the current plan
or verdict first and what came before in one fold.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gftune import __version__
from gftune.comment import (
    CommentState,
    Entry,
    PullRequest,
    comment_marker,
    compose_comment,
    digest,
    fit,
    headline,
)
from gftune.desired.secrets import masker

STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes per step
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_MAX_WAIT_S = 120.0
SECONDARY_WAIT_S = 60.0  # GitHub: without retry-after, wait at least a minute after a secondary limit
ACTIONS_BOT = "github-actions[bot]"  # who a workflow's GITHUB_TOKEN writes as
DRIFT_LABEL = "gftune-drift"
NO_WORKFLOWS_NOTE = (
    "this pull request was opened with the workflow's GITHUB_TOKEN, and GitHub starts no workflow for "
    "events caused by that token: `gftune plan` will not run on it until someone pushes to it. Give the "
    "tune job a token that does: a fine-grained personal access token in the secret GFTUNE_PR_TOKEN "
    "(contents and pull requests: read and write), or a GitHub App (variable GFTUNE_GITHUB_APP_ID, "
    "secret GFTUNE_GITHUB_APP_PRIVATE_KEY); see docs/github.md")


class GitHubError(Exception):
    """A GitHub API call failed; the message never contains the token."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(masker.mask(message))
        self.status = status


# --- the Actions environment ----------------------------------------------------------------------

def _event(environ: Mapping[str, str]) -> dict[str, Any]:
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def pr_number_from_env(environ: Mapping[str, str]) -> int | None:
    """The pull request of a GitHub Actions run: the event payload, else ``refs/pull/N/...``."""
    event = _event(environ)
    pr = event.get("pull_request")
    if isinstance(pr, dict) and isinstance(pr.get("number"), int):
        return pr["number"]
    issue = event.get("issue")
    if isinstance(issue, dict) and issue.get("pull_request") and isinstance(issue.get("number"), int):
        return issue["number"]
    parts = environ.get("GITHUB_REF", "").split("/")
    if len(parts) >= 3 and parts[0] == "refs" and parts[1] == "pull" and parts[2].isdigit():
        return int(parts[2])
    return None


def head_sha_from_env(environ: Mapping[str, str]) -> str | None:
    """The commit a run is about: a pull request's head (``GITHUB_SHA`` is the test merge), else ``GITHUB_SHA``."""
    pr = _event(environ).get("pull_request")
    if isinstance(pr, dict) and isinstance(pr.get("head"), dict) and isinstance(pr["head"].get("sha"), str):
        return pr["head"]["sha"]
    return environ.get("GITHUB_SHA") or None


def run_url_from_env(environ: Mapping[str, str]) -> str | None:
    server, repository, run = (environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server.rstrip('/')}/{repository}/actions/runs/{run}" if server and repository and run else None


def api_url_from_env(environ: Mapping[str, str], configured: str | None = None) -> str:
    """``GITHUB_API_URL`` (set by Actions, GitHub Enterprise included), else gftune.yaml, else github.com."""
    return (environ.get("GITHUB_API_URL") or configured or DEFAULT_API_URL).rstrip("/")


def pull_request_from_env(environ: Mapping[str, str] | None = None, *, number: int | None = None,
                          repository: str | None = None, api_url: str | None = None) -> PullRequest | None:
    """Where to comment: explicit values win over the Actions environment. None when not in a PR."""
    env = os.environ if environ is None else environ
    number = number if number is not None else pr_number_from_env(env)
    repository = repository or env.get("GITHUB_REPOSITORY")
    if number is None or not repository:
        return None
    return PullRequest(api_url_from_env(env, api_url), repository, number)


def plain_token_from_env(environ: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """``GH_TOKEN``, else ``GITHUB_TOKEN`` (registered with the masker), and which variable it was."""
    env = os.environ if environ is None else environ
    for name in ("GH_TOKEN", "GITHUB_TOKEN"):
        token = (env.get(name) or "").strip()
        if token:
            masker.add(token)
            return token, name
    return None, "GH_TOKEN or GITHUB_TOKEN"


def token_from_env(environ: Mapping[str, str] | None = None, *, api_url: str | None = None,
                   repository: str | None = None) -> tuple[str | None, str]:
    """The token to use and where it came from (for messages; never the token itself).

    A GitHub App (``GFTUNE_GITHUB_APP_ID`` + ``GFTUNE_GITHUB_APP_PRIVATE_KEY``, optionally
    ``GFTUNE_GITHUB_APP_INSTALLATION_ID``) wins: its installation token is minted here, and unlike a
    workflow's ``GITHUB_TOKEN`` its pull requests start workflows. Else ``GH_TOKEN``/``GITHUB_TOKEN``.
    """
    env = os.environ if environ is None else environ
    app_id = (env.get("GFTUNE_GITHUB_APP_ID") or "").strip()
    key = env.get("GFTUNE_GITHUB_APP_PRIVATE_KEY") or ""
    if app_id and key.strip():
        masker.add(key.strip())
        repository = repository or env.get("GITHUB_REPOSITORY")
        if not repository:
            raise GitHubError("GFTUNE_GITHUB_APP_ID is set but no repository is known (GITHUB_REPOSITORY)")
        installation = (env.get("GFTUNE_GITHUB_APP_INSTALLATION_ID") or "").strip() or None
        token = app_installation_token(api_url_from_env(env, api_url), app_id, key, repository,
                                       installation_id=int(installation) if installation else None)
        return token, f"GitHub App {app_id}"
    return plain_token_from_env(env)


def append_step_summary(path: str | os.PathLike[str], renderings: Sequence[str]) -> int | None:
    """Append the most detailed rendering that keeps the step summary under 1 MiB.

    Returns the index of the rendering written, or None when not even the shortest fits.
    """
    target = Path(path)
    used = target.stat().st_size if target.exists() else 0
    for index, text in enumerate(renderings):
        data = (masker.mask(text).rstrip("\n") + "\n\n").encode("utf-8")
        if used + len(data) <= STEP_SUMMARY_LIMIT:
            with target.open("ab") as handle:
                handle.write(data)
            return index
    return None


# --- the client -----------------------------------------------------------------------------------

def _retry_class() -> type:
    from github.GithubException import RateLimitExceededExceedsMaxWait
    from github.GithubRetry import GithubRetry
    from urllib3 import Retry

    class GitHubRetry(GithubRetry):
        """PyGithub's retry policy, widened to every method for rate limits and to 429, and capped.

        GithubRetry already tells a rate-limit 403 from a permissions 403 by the answer's headers and
        message. This adds: 429 (GitHub answers 403 *or* 429), a cap on ``retry-after`` too, and no
        replay of a POST after a 5xx (the comment may have been created).
        """

        IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})

        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            if status_code >= 500 and method.upper() not in self.IDEMPOTENT:
                return False
            return bool(super().is_retry(method, status_code, has_retry_after))

        def get_retry_after(self, response: Any) -> float | None:
            wait = super().get_retry_after(response)
            if wait is not None and self.max_rate_limit_wait is not None and wait > self.max_rate_limit_wait:
                raise RateLimitExceededExceedsMaxWait(response.status, {"message": "retry-after too long"},
                                                      dict(response.headers), wait=wait)
            return wait

        def increment(self, method: Any = None, url: Any = None, response: Any = None, error: Any = None,
                      _pool: Any = None, _stacktrace: Any = None) -> Any:
            if response is None or response.status != 429 or "Retry-After" in response.headers:
                return super().increment(method, url, response, error, _pool, _stacktrace)
            # 429 without retry-after: a primary limit (remaining 0) waits for the reset, else a secondary one
            retry = Retry.increment(self, method, url, response, error, _pool, _stacktrace)
            wait = float(self.secondary_rate_wait)
            if response.headers.get("X-RateLimit-Remaining") == "0":
                reset = response.headers.get("X-RateLimit-Reset", "")
                wait = max(float(reset) - time.time(), 0.0) + 1.0 if reset.isdigit() else wait
            if self.max_rate_limit_wait is not None and wait > self.max_rate_limit_wait:
                raise RateLimitExceededExceedsMaxWait(429, {"message": "rate limited"}, dict(response.headers),
                                                      wait=wait)
            retry.get_backoff_time = lambda: max(wait, Retry.get_backoff_time(retry))
            return retry

    return GitHubRetry


def make_retry(*, max_wait: float = DEFAULT_MAX_WAIT_S, total: int = 5) -> Any:
    """The retry policy gftune gives PyGithub (see the module docstring)."""
    from urllib3 import Retry

    return _retry_class()(total=total, backoff_factor=0.5, secondary_rate_wait=SECONDARY_WAIT_S,
                          max_rate_limit_wait=max_wait,
                          status_forcelist=[*range(500, 600), 429],
                          allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"GET", "POST", "PATCH", "DELETE"})


def max_wait_from_env(environ: Mapping[str, str]) -> float:
    try:
        return float(environ.get("GFTUNE_GITHUB_MAX_WAIT") or DEFAULT_MAX_WAIT_S)
    except ValueError:
        return DEFAULT_MAX_WAIT_S


def _describe(exc: BaseException, what: str, token_source: str) -> GitHubError:
    """A GitHub failure as one sentence that says what to do, without the token."""
    from github.GithubException import (
        BadCredentialsException,
        GithubException,
        RateLimitExceededExceedsMaxWait,
        RateLimitExceededException,
    )

    if isinstance(exc, RateLimitExceededExceedsMaxWait):
        return GitHubError(f"{what}: GitHub rate limit: the next try would be in {exc.wait or 0:.0f} s, longer than "
                           f"gftune waits (GFTUNE_GITHUB_MAX_WAIT); {_reset_text(exc.headers)}", exc.status)
    if isinstance(exc, RateLimitExceededException):
        return GitHubError(f"{what}: GitHub rate limit exceeded and retries used up; {_reset_text(exc.headers)}",
                           exc.status)
    if isinstance(exc, BadCredentialsException):
        return GitHubError(f"{what}: HTTP 401 Bad credentials (check {token_source})", 401)
    if isinstance(exc, GithubException):
        data = exc.data if isinstance(exc.data, dict) else {}
        message = str(data.get("message") or exc.message or "")
        errors = "; ".join(str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
                           for e in data.get("errors", []) or [])
        if errors:
            message = f"{message}: {errors}"
        hint = {403: f" ({token_source} lacks a permission this needs: see docs/github.md)",
                404: " (wrong repository or number, or the token cannot see it)"}.get(exc.status, "")
        return GitHubError(f"{what}: HTTP {exc.status} {message}{hint}".rstrip(), exc.status)
    text = str(exc)
    if re.search(r"too many (403|429) error responses", text):
        # the retry policy only repeats a 403/429 that is a rate limit (a permissions 403 fails at once)
        return GitHubError(f"{what}: GitHub rate limit: still limited after every retry; try again in a few "
                           "minutes or space the jobs out", 429)
    if "too many 5" in text:
        return GitHubError(f"{what}: GitHub kept failing (5xx) after every retry: {text[-200:]}")
    return GitHubError(f"{what}: cannot reach GitHub ({type(exc).__name__}: {text})")


def _reset_text(headers: Mapping[str, Any] | None) -> str:
    lowered = {str(k).lower(): v for k, v in (headers or {}).items()}
    reset = str(lowered.get("x-ratelimit-reset") or "")
    if reset.isdigit():
        return "the limit resets at " + datetime.fromtimestamp(int(reset), UTC).strftime("%H:%M:%S UTC")
    if lowered.get("retry-after"):
        return f"GitHub asked to retry after {lowered['retry-after']} s"
    return "try again in a few minutes"


class GitHub:
    """One authenticated GitHub session (sync; PyGithub underneath)."""

    def __init__(self, api_url: str, token: str | None, *, token_source: str = "GH_TOKEN or GITHUB_TOKEN",
                 max_wait: float = DEFAULT_MAX_WAIT_S, retries: int = 5, timeout: int = 15) -> None:
        from github import Auth, Github

        if token:
            masker.add(token)
        self.api_url = api_url.rstrip("/")
        self.token_source = token_source
        # GitHub asks integrators for a second between writes (secondary limits); reads are not spaced
        self._gh = Github(auth=Auth.Token(token) if token else None, base_url=self.api_url, timeout=timeout,
                          user_agent=f"gftune/{__version__}", per_page=100, retry=make_retry(max_wait=max_wait,
                                                                                            total=retries),
                          seconds_between_requests=None, seconds_between_writes=1.0, lazy=True)
        self._login: str | None = None
        self._token = token
        self._max_wait = max_wait

    def close(self) -> None:
        self._gh.close()

    def __enter__(self) -> GitHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """Turn whatever PyGithub or the transport raises into a :class:`GitHubError` about ``what``."""
        try:
            yield
        except GitHubError:
            raise
        except Exception as exc:  # PyGithub, requests and urllib3 exceptions: all mean "that call failed"
            raise _describe(exc, what, self.token_source) from None

    def repo(self, repository: str) -> Any:
        return self._gh.get_repo(repository)  # lazy: the session is

    @property
    def login(self) -> str:
        """Who the token writes as: GraphQL ``viewer`` (answers for app installation tokens, which may not
        call ``GET /user``), else ``GET /user``."""
        if self._login is None:
            with self.calling("who is this token (GraphQL viewer)"):
                try:
                    _, data = self._gh.requester.graphql_query("query { viewer { login } }", {})
                    self._login = str(data["data"]["viewer"]["login"])
                except Exception as first:  # an old GitHub Enterprise without GraphQL: ask REST
                    try:
                        self._login = str(self._gh.get_user().login)
                    except Exception:
                        raise first from None
        return self._login

    # -- pull requests -----------------------------------------------------------------------------
    def pulls_for_commit(self, repository: str, sha: str) -> list[dict[str, Any]]:
        """The pull requests a commit belongs to (how a push to the default branch finds what it merged)."""
        with self.calling(f"pull requests of commit {sha[:12]}"):
            return [p.raw_data for p in self.repo(repository).get_commit(sha).get_pulls()]

    def pull(self, repository: str, number: int) -> dict[str, Any]:
        with self.calling(f"pull request {repository}#{number}"):
            pull = self.repo(repository).get_pull(number)
            return dict(pull.raw_data)

    def find_open_pull(self, repository: str, head_branch: str, base: str) -> Any | None:
        owner = repository.split("/")[0]
        with self.calling(f"open pull requests from {head_branch}"):
            return next(iter(self.repo(repository).get_pulls(state="open", head=f"{owner}:{head_branch}",
                                                              base=base)), None)

    # -- artifacts ---------------------------------------------------------------------------------
    def workflow_runs(self, repository: str, workflow: str, *, head_sha: str, event: str | None = None
                      ) -> list[Any]:
        with self.calling(f"runs of {workflow} for {head_sha[:12]}"):
            kwargs: dict[str, Any] = {"head_sha": head_sha}
            if event:
                kwargs["event"] = event
            return list(self.repo(repository).get_workflow(workflow).get_runs(**kwargs))

    def _download(self, url: str) -> bytes:
        """GET a file behind GitHub's signed redirect. Not through PyGithub: it refuses to follow a
        redirect off GitHub's own domains, and artifacts are served from cloud storage."""
        import requests
        from requests.adapters import HTTPAdapter

        with requests.Session() as session:
            adapter = HTTPAdapter(max_retries=make_retry(max_wait=self._max_wait))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            headers = {"Accept": "application/vnd.github+json", "User-Agent": f"gftune/{__version__}",
                       "X-GitHub-Api-Version": "2022-11-28"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            response = session.get(url, headers=headers, allow_redirects=False, timeout=30)
            if response.is_redirect and response.headers.get("Location"):
                # the signed URL carries its own authorisation; the token must not travel to storage
                response = session.get(response.headers["Location"], timeout=120)
            if response.status_code != 200:
                from github.GithubException import GithubException

                try:
                    data: Any = response.json()
                except ValueError:
                    data = {"message": response.text[:200]}
                raise GithubException(response.status_code, data, dict(response.headers))
            return response.content

    def run_artifacts(self, repository: str, run_id: int, name: str) -> list[Any]:
        """The unexpired artifacts called ``name`` of a workflow run (every attempt's), oldest first."""
        with self.calling(f"artifacts of run {run_id}"):
            found = [a for a in self.repo(repository).get_workflow_run(run_id).get_artifacts()
                     if a.name == name and not a.expired]
        return sorted(found, key=lambda a: (str(a.created_at), a.id))

    def artifact_member(self, artifact: Any, file_name: str) -> bytes:
        """One file of an artifact (the download is a zip behind a signed redirect)."""
        with self.calling(f"artifact {artifact.name} ({artifact.id})"):
            data = self._download(artifact.archive_download_url)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return archive.read(file_name)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise GitHubError(f"artifact {artifact.name} ({artifact.id}): no {file_name} in it ({exc})") from None

    def artifact_file(self, repository: str, run_id: int, artifact: str, file_name: str) -> bytes | None:
        """One file of the newest artifact called ``artifact`` of a workflow run; None when there is none."""
        found = self.run_artifacts(repository, run_id, artifact)
        return self.artifact_member(found[-1], file_name) if found else None


# --- GitHub App tokens ----------------------------------------------------------------------------

def app_installation_token(api_url: str, app_id: str, private_key: str, repository: str, *,
                           installation_id: int | None = None) -> str:
    """Mint an installation token for a GitHub App (a JWT signed with its key, then
    ``POST /app/installations/{id}/access_tokens``); the installation is looked up by repository."""
    from github import Auth, GithubIntegration

    key = private_key.strip().replace("\\n", "\n")  # a key pasted on one line into a secret
    masker.add(key)
    auth = Auth.AppAuth(app_id, key)
    integration = GithubIntegration(auth=auth, base_url=api_url.rstrip("/"), retry=make_retry())
    owner, _, name = repository.partition("/")
    try:
        if installation_id is None:
            installation_id = integration.get_repo_installation(owner, name).id
        token = str(integration.get_access_token(installation_id).token)
    except Exception as exc:  # PyGithub/JWT/transport failures: one message that names the app
        raise _describe(exc, f"GitHub App {app_id}: installation token for {repository}", "the app's key") from None
    finally:
        integration.close()
    masker.add(token)
    return token


@dataclass(frozen=True)
class CommentResult:
    action: str  # "created" | "updated" | "unchanged"
    comment_id: int
    url: str
    size: int
    cut_level: int  # index of the rendering used (0 = full detail)
    removed_duplicates: int = 0


def upsert_comment(gh: GitHub, pr: PullRequest, renderings: Sequence[str], *, kind: str, commit: str | None = None,
                   run_url: str | None = None, now: datetime | None = None) -> CommentResult:
    """Write the report into the pull request's living comment (create it the first time).

    Only comments that start with :func:`comment_marker` *and* were written by the token's own user
    count as ours; any other comment is never touched. Should two of ours exist (a create retried by
    hand), the oldest is kept and the others are deleted.
    """
    marker = comment_marker(pr)
    me = gh.login
    with gh.calling(f"comments of {pr}"):
        issue = gh.repo(pr.repository).get_issue(pr.number)
        ours = [c for c in issue.get_comments() if c.user is not None and c.user.login == me
                and (c.body or "").startswith(marker)]
    ours.sort(key=lambda c: c.id)
    at = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M")
    entry = Entry(kind, headline(renderings[0]), at, commit, run_url, digest(renderings))
    existing = ours[0] if ours else None
    previous = CommentState.decode(existing.body or "") if existing is not None else CommentState()
    if existing is not None and previous.current is not None and previous.current.digest == entry.digest \
            and previous.current.kind == kind:
        return CommentResult("unchanged", existing.id, existing.html_url or "", len(existing.body or ""), 0)
    body, level, _ = compose_comment(pr, renderings, entry, previous)
    removed = 0
    with gh.calling(f"the gftune comment on {pr}"):
        if existing is None:
            created = issue.create_comment(body)
            return CommentResult("created", created.id, created.html_url or "", len(body), level)
        existing.edit(body)
        for duplicate in ours[1:]:
            duplicate.delete()
            removed += 1
    return CommentResult("updated", existing.id, existing.html_url or "", len(body), level, removed)


def find_pull_request(gh: GitHub, repository: str, sha: str) -> int | None:
    """The pull request a pushed commit was merged from (None for a direct push)."""
    pulls = gh.pulls_for_commit(repository, sha)
    merged = [p for p in pulls if p.get("merged_at") or p.get("merge_commit_sha") == sha]
    chosen = (merged or pulls or [None])[0]
    return int(chosen["number"]) if chosen else None


def publish(renderings: Sequence[str] | Callable[[], Sequence[str]], *, kind: str, environ: Mapping[str, str],
            number: int | None = None, repository: str | None = None, api_url: str | None = None,
            summary: bool = True) -> list[str]:
    """Post a report where the team reviews changes; returns one line per surface saying what happened.

    ``renderings`` is the Markdown, most detailed first, or what makes it: then it is made only when a
    surface takes it (outside GitHub Actions, usually none does; the Markdown of 1,000 pipelines is not
    free). It goes to ``$GITHUB_STEP_SUMMARY`` when set, and to the pull request's living comment:
    ``number``, else the Actions event's PR, else (a push to the default branch) the PR that the pushed
    commit ``GITHUB_SHA`` was merged from. ``kind`` (plan, apply, ...) is what the history says each
    report was.
    """
    made: list[Sequence[str]] = []

    def rendered() -> Sequence[str]:
        if not made:
            made.append(renderings() if callable(renderings) else renderings)
        return made[0]

    done: list[str] = []
    summary_path = environ.get("GITHUB_STEP_SUMMARY")
    if summary and summary_path:
        level = append_step_summary(summary_path, rendered())
        done.append("job summary: " + ("written" if level is not None else "skipped (over 1 MiB)"))
    repository = repository or environ.get("GITHUB_REPOSITORY")
    api = api_url_from_env(environ, api_url)
    if number is None:
        number = pr_number_from_env(environ)
    if not repository:
        if number is not None:
            done.append("PR comment: skipped: set GITHUB_REPOSITORY (or github.repository in gftune.yaml)")
        return done
    token, source = plain_token_from_env(environ)
    if number is None and not (environ.get("GITHUB_SHA") and token):
        return done
    if not token:
        done.append(f"PR comment on {repository}#{number}: skipped: {source} is not set")
        return done
    try:
        with GitHub(api, token, token_source=source, max_wait=max_wait_from_env(environ)) as gh:
            if number is None:
                number = find_pull_request(gh, repository, environ["GITHUB_SHA"])
                if number is None:
                    return done
            pr = PullRequest(api, repository, number)
            result = upsert_comment(gh, pr, rendered(), kind=kind, commit=head_sha_from_env(environ),
                                    run_url=run_url_from_env(environ))
    except GitHubError as exc:
        done.append(f"PR comment on {repository}#{number}: failed: {exc}")
        return done
    cut = " (shortened to fit GitHub's limit)" if result.cut_level else ""
    dupes = f", {result.removed_duplicates} duplicate(s) removed" if result.removed_duplicates else ""
    done.append(f"PR comment on {pr}: {result.action}{cut}{dupes} {result.url}".rstrip())
    return done


# --- the plan reviewed on a pull request ----------------------------------------------------------

PLAN_ARTIFACT = "gftune-plan"  # what plan.yml uploads: plan.json
REPLAN_ARTIFACT = "gftune-replan"  # what apply.yml uploads when the reviewed plan was stale: replan.json


@dataclass(frozen=True)
class ReviewedPlan:
    data: bytes  # the plan file
    commit: str  # the commit the run that made it was for
    where: str  # for people: "plan.yml run 123 (artifact gftune-plan)"


def current_workflow(environ: Mapping[str, str]) -> str | None:
    """The workflow file of this run, from ``GITHUB_WORKFLOW_REF`` (``o/r/.github/workflows/x.yml@ref``)."""
    ref = environ.get("GITHUB_WORKFLOW_REF") or ""
    path = ref.split("@", 1)[0]
    return path.rsplit("/", 1)[-1] if "/.github/workflows/" in path else None


def reviewed_plan(gh: GitHub, repository: str, *, head_sha: str, plan_workflow: str = "plan.yml",
                  replan_workflow: str | None = None, replan_sha: str | None = None) -> ReviewedPlan | None:
    """The newest plan shown for review on a pull request.

    That is the ``gftune-plan`` artifact of a successful ``plan_workflow`` run for the pull request's
    head commit, or, newer, a ``gftune-replan`` artifact that ``replan_workflow`` left for
    ``replan_sha`` (the merge commit) after refusing a stale plan and posting the new one on the pull
    request. None when there is neither.
    """
    candidates: list[tuple[Any, str, str, str]] = []  # (artifact, file, commit, where)
    for run in gh.workflow_runs(repository, plan_workflow, head_sha=head_sha, event="pull_request"):
        if run.conclusion == "success":
            for artifact in gh.run_artifacts(repository, run.id, PLAN_ARTIFACT):
                candidates.append((artifact, "plan.json", head_sha, f"{plan_workflow} run {run.id}"))
    if replan_workflow and replan_sha:
        for run in gh.workflow_runs(repository, replan_workflow, head_sha=replan_sha):
            for artifact in gh.run_artifacts(repository, run.id, REPLAN_ARTIFACT):
                candidates.append((artifact, "replan.json", replan_sha, f"{replan_workflow} run {run.id}"))
    if not candidates:
        return None
    artifact, member, commit, where = max(candidates, key=lambda c: (str(c[0].created_at), c[0].id))
    return ReviewedPlan(gh.artifact_member(artifact, member), commit, f"{where} (artifact {artifact.name})")


# --- the drift tracking issue ---------------------------------------------------------------------

DRIFT_MARKER = "<!-- gftune: the drift tracking issue; gftune opens, updates and closes it -->"
_DRIFT_STATE = re.compile(r"<!-- gftune:drift ([0-9a-f]{16}) -->")


@dataclass(frozen=True)
class IssueResult:
    action: str  # opened | updated | unchanged | closed | none
    number: int | None = None
    url: str = ""


def track_drift(gh: GitHub, repository: str, *, drifted: bool, title: str, renderings: Sequence[str],
                run_url: str | None = None, commit: str | None = None, now: datetime | None = None) -> IssueResult:
    """Keep one tracking issue for drift in ``repository``.

    Drift and no open issue: open one (label ``gftune-drift``). Drift and an open one: update its
    body in place, and comment when what drifted changed (so watchers hear of it; an unchanged
    nightly result only refreshes the body). Back in sync: comment and close it as completed. Only
    an issue that starts with :data:`DRIFT_MARKER` and was opened by the token's own user counts.
    """
    me = gh.login
    at = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    where = " · ".join(x for x in (f"commit `{commit[:7]}`" if commit else "",
                                   f"[workflow run]({run_url})" if run_url else "", at) if x)
    with gh.calling(f"the drift issue of {repository}"):
        repo = gh.repo(repository)
        if drifted and DRIFT_LABEL not in {label.name for label in repo.get_labels()}:
            repo.create_label(DRIFT_LABEL, "d93f0b", "gftune: live pipelines differ from git")
        ours = [i for i in repo.get_issues(state="open", labels=[DRIFT_LABEL])
                if i.pull_request is None and i.user is not None and i.user.login == me
                and (i.body or "").startswith(DRIFT_MARKER)]
        ours.sort(key=lambda i: i.number)
        issue = ours[0] if ours else None
        if not drifted:
            if issue is None:
                return IssueResult("none")
            issue.create_comment(masker.mask(f"Back in sync: live pipelines match git ({where}). Closing."))
            issue.edit(state="closed", state_reason="completed")
            return IssueResult("closed", issue.number, issue.html_url or "")
        report_digest = digest(renderings)
        footer = f"\n\n<sub>checked {where}</sub>\n<!-- gftune:drift {report_digest} -->"
        body, _ = fit([masker.mask(r).rstrip("\n") + "\n" for r in renderings], header=DRIFT_MARKER + "\n",
                      footer=footer)
        if issue is None:
            created = repo.create_issue(title=masker.mask(title), body=body, labels=[DRIFT_LABEL])
            return IssueResult("opened", created.number, created.html_url or "")
        previous = _DRIFT_STATE.search(issue.body or "")
        issue.edit(title=masker.mask(title), body=body)
        if previous is None or previous.group(1) != report_digest:
            issue.create_comment(masker.mask(f"The drift changed ({where}): {title}. The description shows it now."))
            return IssueResult("updated", issue.number, issue.html_url or "")
        return IssueResult("unchanged", issue.number, issue.html_url or "")


# --- the tuning pull request ----------------------------------------------------------------------

@dataclass(frozen=True)
class PullResult:
    action: str  # opened | updated
    number: int
    url: str
    author: str  # who the token wrote it as


def open_or_update_pull(gh: GitHub, repository: str, *, head: str, base: str, title: str, body: str
                        ) -> PullResult:
    """One living pull request from branch ``head`` into ``base``: updated when it is open, else opened."""
    me = gh.login
    text = fit([masker.mask(body)])[0]
    existing = gh.find_open_pull(repository, head, base)
    with gh.calling(f"the pull request from {head}"):
        if existing is not None:
            existing.edit(title=masker.mask(title), body=text)
            return PullResult("updated", existing.number, existing.html_url or "", me)
        created = gh.repo(repository).create_pull(base=base, head=head, title=masker.mask(title), body=text)
        return PullResult("opened", created.number, created.html_url or "", me)


def triggers_workflows(author: str) -> bool:
    """Whether GitHub starts workflows for events this author causes (not for the workflow's own token)."""
    return author != ACTIONS_BOT
