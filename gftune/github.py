"""Reports where the team reviews changes: one living PR comment per pipeline set, and the job summary.

* The comment is found again by a hidden marker, ``<!-- gftune:report id=<hash> -->`` where the
  hash is of the sorted pipeline ids, and edited in place (never a pile of comments).
* GitHub refuses a comment body over 65,536 characters (HTTP 422). :func:`fit` picks the most
  detailed rendering that fits and, as a last resort, cuts the middle, keeping the summary at the
  top and the tail.
* ``$GITHUB_STEP_SUMMARY`` (1 MiB per step) gets the same Markdown.
* The token comes from ``GITHUB_TOKEN``; it is registered with the masker and every body sent goes
  through :data:`gftune.desired.secrets.masker` first. The token never appears in output or errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gftune import __version__
from gftune.desired.secrets import masker

COMMENT_LIMIT = 65_536  # characters; GitHub answers 422 "Body is too long" beyond
STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes per step
DEFAULT_API_URL = "https://api.github.com"
MARKER_PREFIX = "<!-- gftune:report id="
TRUNCATION_NOTE = ("\n\n> [!WARNING]\n> This report was longer than GitHub's 65,536-character comment limit; "
                   "the middle was cut. The full report is in the job summary and `gftune apply --format json`.\n\n")


class GitHubError(Exception):
    """A GitHub API call failed; the message never contains the token."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(masker.mask(message))
        self.status = status


@dataclass(frozen=True)
class PullRequest:
    api_url: str
    repository: str  # owner/name
    number: int

    def __str__(self) -> str:
        return f"{self.repository}#{self.number}"


def report_marker(pipeline_ids: Iterable[str]) -> str:
    """The hidden line that identifies our comment for this set of pipelines."""
    digest = hashlib.sha256(",".join(sorted(set(pipeline_ids))).encode()).hexdigest()[:16]
    return f"{MARKER_PREFIX}{digest} -->"


def pr_number_from_env(environ: Mapping[str, str]) -> int | None:
    """The pull request of a GitHub Actions run: the event payload, else ``refs/pull/N/...``."""
    event_path = environ.get("GITHUB_EVENT_PATH")
    if event_path:
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            event = {}
        if isinstance(event, dict):
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


def pull_request_from_env(environ: Mapping[str, str] | None = None, *, number: int | None = None,
                          repository: str | None = None, api_url: str | None = None) -> PullRequest | None:
    """Where to comment: explicit values win over the Actions environment. None when not in a PR."""
    env = os.environ if environ is None else environ
    number = number if number is not None else pr_number_from_env(env)
    repository = repository or env.get("GITHUB_REPOSITORY")
    if number is None or not repository:
        return None
    return PullRequest((api_url or env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"), repository, number)


def token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``GITHUB_TOKEN``, registered with the masker so that it can never be printed."""
    env = os.environ if environ is None else environ
    token = env.get("GITHUB_TOKEN") or None
    if token:
        masker.add(token)
    return token


def _utf16_len(text: str) -> int:
    # GitHub counts characters; UTF-16 code units are never fewer than code points, so this is safe.
    return len(text.encode("utf-16-le")) // 2


def fit(renderings: Sequence[str], *, limit: int = COMMENT_LIMIT, header: str = "") -> tuple[str, int]:
    """The first rendering (most detailed first) that fits with ``header``, and its index.

    When none fits, the last one is cut in the middle: the head (summary) and the tail (verdicts,
    errors) survive, with a note saying so. Index ``len(renderings)`` means it was cut.
    """
    if not renderings:
        raise ValueError("nothing to fit")
    for index, body in enumerate(renderings):
        full = header + body
        if _utf16_len(full) <= limit:
            return full, index
    body = renderings[-1]
    budget = limit - _utf16_len(header) - _utf16_len(TRUNCATION_NOTE) - 16
    head_budget = budget * 2 // 3
    head = _take(body, head_budget)
    tail = _take_tail(body, budget - _utf16_len(head))
    return header + head + TRUNCATION_NOTE + tail, len(renderings)


def _take(text: str, units: int) -> str:
    out = text[:units]
    while _utf16_len(out) > units:
        out = out[:-1]
    cut = out.rfind("\n")
    return out[:cut + 1] if cut > len(out) // 2 else out


def _take_tail(text: str, units: int) -> str:
    out = text[-units:] if units > 0 else ""
    while _utf16_len(out) > units:
        out = out[1:]
    cut = out.find("\n")
    return out[cut + 1:] if 0 <= cut < len(out) // 2 else out


@dataclass(frozen=True)
class CommentResult:
    action: str  # "created" | "updated" | "unchanged"
    comment_id: int
    url: str
    size: int
    cut_level: int  # index of the rendering used (0 = full detail)


class GitHubClient:
    """The few REST endpoints gftune uses (issue comments), with retries on 5xx and transport errors."""

    def __init__(self, api_url: str, token: str | None, *, timeout: float = 15.0, retries: int = 3,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": f"gftune/{__version__}"}
        if token:
            masker.add(token)
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout,
                                  transport=transport)
        self._retries = retries

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        delay = 0.5
        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise GitHubError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
            else:
                if response.status_code < 500 or attempt == self._retries:
                    return _checked(method, url, response)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def list_comments(self, pr: PullRequest) -> Iterator[dict[str, Any]]:
        url: str | None = f"/repos/{pr.repository}/issues/{pr.number}/comments"
        params: dict[str, Any] | None = {"per_page": 100}
        while url:
            response = self._request("GET", url, params=params)
            yield from response.json()
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries them

    def pulls_for_commit(self, api_repository: str, sha: str) -> list[dict[str, Any]]:
        """The pull requests a commit belongs to (how a push to main finds the PR it merged)."""
        return self._request("GET", f"/repos/{api_repository}/commits/{sha}/pulls").json()

    def create_comment(self, pr: PullRequest, body: str) -> dict[str, Any]:
        return self._request("POST", f"/repos/{pr.repository}/issues/{pr.number}/comments",
                             json={"body": masker.mask(body)}).json()

    def update_comment(self, pr: PullRequest, comment_id: int, body: str) -> dict[str, Any]:
        return self._request("PATCH", f"/repos/{pr.repository}/issues/comments/{comment_id}",
                             json={"body": masker.mask(body)}).json()


def _checked(method: str, url: str, response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    try:
        data = response.json()
        message = data.get("message", "")
        errors = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                           for e in data.get("errors", []) or [])
        if errors:
            message = f"{message}: {errors}"
    except ValueError:
        message = response.text[:200]
    hint = {401: " (check GITHUB_TOKEN)", 403: " (the token needs `pull-requests: write` / `issues: write`)",
            404: " (wrong repository or PR number, or the token cannot see it)"}.get(response.status_code, "")
    raise GitHubError(f"GitHub {method} {url} → HTTP {response.status_code}: {message}{hint}", response.status_code)


def upsert_comment(client: GitHubClient, pr: PullRequest, marker: str, renderings: Sequence[str]) -> CommentResult:
    """Edit our comment (found by ``marker``) or create it; ``renderings`` most detailed first."""
    body, level = fit([masker.mask(r) for r in renderings], header=marker + "\n")
    existing = next((c for c in client.list_comments(pr) if marker in (c.get("body") or "")), None)
    if existing is None:
        created = client.create_comment(pr, body)
        return CommentResult("created", created["id"], created.get("html_url", ""), len(body), level)
    if existing.get("body") == body:
        return CommentResult("unchanged", existing["id"], existing.get("html_url", ""), len(body), level)
    updated = client.update_comment(pr, existing["id"], body)
    return CommentResult("updated", updated["id"], updated.get("html_url", ""), len(body), level)


def publish(renderings: Sequence[str], pipeline_ids: Iterable[str], *, environ: Mapping[str, str],
            number: int | None = None, repository: str | None = None, api_url: str | None = None) -> list[str]:
    """Post a report where the team reviews changes; returns one line per surface saying what happened.

    ``renderings`` is the Markdown, most detailed first. It goes to ``$GITHUB_STEP_SUMMARY`` when set,
    and to the living comment of the pull request: ``number``, else the Actions event's PR, else
    (a push to the default branch) the PR that the pushed commit ``GITHUB_SHA`` was merged from.
    ``gftune plan`` and ``gftune apply`` share the marker for a set of pipelines, so the comment
    moves from "planned" to "verified" or "reverted" in place.
    """
    done: list[str] = []
    summary_path = environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        level = append_step_summary(summary_path, renderings)
        done.append("job summary: " + ("written" if level is not None else "skipped (over 1 MiB)"))
    repository = repository or environ.get("GITHUB_REPOSITORY")
    api = (api_url or environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
    if number is None:
        number = pr_number_from_env(environ)
    if not repository:
        if number is not None:
            done.append("PR comment: skipped: set GITHUB_REPOSITORY (or github.repository in gftune.yaml)")
        return done
    token = token_from_env(environ)
    if number is None and not (environ.get("GITHUB_SHA") and token):
        return done
    if not token:
        done.append(f"PR comment on {repository}#{number}: skipped: GITHUB_TOKEN is not set")
        return done
    try:
        with GitHubClient(api, token) as client:
            if number is None:
                pulls = client.pulls_for_commit(repository, environ["GITHUB_SHA"])
                if not pulls:
                    return done
                number = int(pulls[0]["number"])
            pr = PullRequest(api, repository, number)
            result = upsert_comment(client, pr, report_marker(pipeline_ids), renderings)
    except GitHubError as exc:
        done.append(f"PR comment on {repository}#{number}: failed: {exc}")
        return done
    cut = " (shortened to fit GitHub's limit)" if result.cut_level else ""
    done.append(f"PR comment on {pr}: {result.action}{cut} {result.url}".rstrip())
    return done


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
