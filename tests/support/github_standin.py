"""A local stand-in for the GitHub API gftune uses: a real HTTP server on loopback.

(One module over ~500 lines on purpose: one server whose endpoints share one state, the repositories,
tokens, permissions and rate-limit budgets; split by endpoint, each part would reach into the others'.)

It answers like GitHub's REST API (docs.github.com/rest, API version 2022-11-28) for the endpoints
gftune calls, with GitHub's response shapes, status codes and headers:

* identity: ``GET /user`` (403 "Resource not accessible by integration" for an installation token
  such as a workflow's ``GITHUB_TOKEN``, as on GitHub) and GraphQL ``viewer { login }``
  (``POST /graphql``, which answers for every kind of token);
* issue comments: list (``per_page`` default 30, max 100, ``page``, ``Link`` rel next/last/prev/
  first), create (201), get, update, delete (204);
* issues: list (``state``, ``labels``, ``creator``; pull requests included with a ``pull_request``
  key, as GitHub does), create, get, update (``state``/``state_reason``); labels list/get/create;
* pull requests: list (``state``, ``head=owner:branch``, ``base``), create (422 when the head branch
  does not exist in the repository's git remote, when one is registered), get, update;
  ``GET /commits/{sha}/pulls``;
* Actions: ``GET /actions/workflows/{file}/runs`` (``head_sha``, ``event``, ``status``,
  ``branch``), ``GET /actions/runs/{id}/artifacts`` (``name``), ``GET /actions/artifacts/{id}/zip``
  (302 to a short-lived signed download URL that needs no token, as GitHub's does);
* GitHub Apps: ``GET /repos/{o}/{r}/installation`` and ``POST /app/installations/{id}/access_tokens``
  authenticated by an RS256 JWT signed with the app's private key (verified with its public key).

Every answer carries the ``x-ratelimit-*`` headers (limit, remaining, used, reset, resource) and an
``x-github-request-id``. A token's primary budget can be exhausted (403 "API rate limit exceeded for
..." with ``x-ratelimit-remaining: 0``), and :meth:`GitHubStandIn.throttle` makes the next requests hit
a secondary rate limit (403 or 429 "You have exceeded a secondary rate limit", with or without
``retry-after``). ``api_prefix="/api/v3"`` serves the REST API the way GitHub Enterprise Server does
(GraphQL then at ``/api/graphql``).

Like GitHub it checks the token (``Authorization: Bearer|token <t>``, else 401 "Bad credentials") and
what it may do (a workflow token's ``permissions:``, else 403 "Resource not accessible by integration"),
refuses a comment or issue body over 65,536 characters with 422 "Body is too long (maximum is 65536
characters)", and refuses a missing body with 422. Every request is recorded (method, path, query,
body text, headers, whether the token matched, the answer's status) so that tests can assert on what
gftune sent. The Actions side (runs, artifacts) is filled by whoever plays the runner in a test.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import subprocess
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY = 65_536
DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                     "If you reach out to GitHub Support for help, please include the request ID {rid}.")
NO_INTEGRATION = "Resource not accessible by integration"

_REPO = r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(pattern)) for name, pattern in [
    ("user", r"^/user$"),
    ("graphql", r"^/graphql$"),
    ("app_token", r"^/app/installations/(?P<id>\d+)/access_tokens$"),
    ("installation", _REPO + r"/installation$"),
    ("issue_comments", _REPO + r"/issues/(?P<number>\d+)/comments$"),
    ("comment", _REPO + r"/issues/comments/(?P<id>\d+)$"),
    ("issues", _REPO + r"/issues$"),
    ("issue", _REPO + r"/issues/(?P<number>\d+)$"),
    ("labels", _REPO + r"/labels$"),
    ("label", _REPO + r"/labels/(?P<name>[^/]+)$"),
    ("pulls", _REPO + r"/pulls$"),
    ("pull", _REPO + r"/pulls/(?P<number>\d+)$"),
    ("commit_pulls", _REPO + r"/commits/(?P<sha>[0-9a-fA-F]+)/pulls$"),
    ("workflow_runs", _REPO + r"/actions/workflows/(?P<workflow>[^/]+)/runs$"),
    ("run", _REPO + r"/actions/runs/(?P<id>\d+)$"),
    ("run_artifacts", _REPO + r"/actions/runs/(?P<id>\d+)/artifacts$"),
    ("artifact_zip", _REPO + r"/actions/artifacts/(?P<id>\d+)/zip$"),
]]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: str
    authorized: bool
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    at: float = 0.0


@dataclass
class Account:
    login: str
    id: int
    installation: bool  # a GitHub App installation token (GITHUB_TOKEN is one): no GET /user
    read_only: bool = False  # e.g. a workflow token with `pull-requests: read`: every write is refused
    permissions: dict[str, str] | None = None  # a workflow's `permissions:` ({"issues": "write", ...}); None = all

    def may(self, needs: tuple[tuple[str, str], ...]) -> bool:
        """Whether one of ``needs`` ((scope, "read"|"write")) is granted (write implies read)."""
        if self.permissions is None or not needs:
            return True
        rank = {"none": 0, "read": 1, "write": 2}
        return any(rank.get(self.permissions.get(scope, "none"), 0) >= rank[level] for scope, level in needs)

    def as_json(self) -> dict[str, Any]:
        return {"login": self.login, "id": self.id, "node_id": f"U_{self.id}",
                "type": "Bot" if self.login.endswith("[bot]") else "User", "site_admin": False,
                "html_url": f"https://github.invalid/{self.login}"}


@dataclass
class Comment:
    id: int
    repository: str
    number: int
    body: str
    user: str
    created_at: str
    updated_at: str

    def as_json(self, base_url: str, accounts: dict[str, Account] | None = None) -> dict[str, Any]:
        user = (accounts or {}).get(self.user) or Account(self.user, 1, False)
        return {
            "id": self.id, "node_id": f"IC_{self.id}",
            "url": f"{base_url}/repos/{self.repository}/issues/comments/{self.id}",
            "html_url": f"https://github.invalid/{self.repository}/pull/{self.number}#issuecomment-{self.id}",
            "issue_url": f"{base_url}/repos/{self.repository}/issues/{self.number}",
            "body": self.body, "user": user.as_json(),
            "created_at": self.created_at, "updated_at": self.updated_at,
            "author_association": "NONE",
        }


@dataclass
class Issue:
    """An issue or a pull request (they share one number space, as on GitHub)."""

    repository: str
    number: int
    title: str
    body: str
    user: str
    labels: list[str] = field(default_factory=list)
    state: str = "open"
    state_reason: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    closed_at: str | None = None
    pull: dict[str, Any] | None = None  # head/base/merge data of a pull request

    def as_issue_json(self, base: str, accounts: dict[str, Account], comments: int) -> dict[str, Any]:
        user = accounts.get(self.user) or Account(self.user, 1, False)
        data: dict[str, Any] = {
            "id": 500_000 + self.number, "node_id": f"I_{self.number}", "number": self.number,
            "url": f"{base}/repos/{self.repository}/issues/{self.number}",
            "html_url": f"https://github.invalid/{self.repository}/{'pull' if self.pull else 'issues'}/{self.number}",
            "title": self.title, "body": self.body, "user": user.as_json(), "state": self.state,
            "state_reason": self.state_reason, "locked": False, "comments": comments,
            "labels": [_label_json(base, self.repository, n) for n in self.labels],
            "created_at": self.created_at, "updated_at": self.updated_at, "closed_at": self.closed_at,
            "author_association": "NONE",
        }
        if self.pull is not None:
            data["pull_request"] = {"url": f"{base}/repos/{self.repository}/pulls/{self.number}",
                                    "html_url": data["html_url"], "merged_at": self.pull.get("merged_at")}
        return data

    def as_pull_json(self, base: str, accounts: dict[str, Account]) -> dict[str, Any]:
        assert self.pull is not None
        user = accounts.get(self.user) or Account(self.user, 1, False)
        owner = self.repository.split("/")[0]
        return {
            "id": 700_000 + self.number, "node_id": f"PR_{self.number}", "number": self.number,
            "url": f"{base}/repos/{self.repository}/pulls/{self.number}",
            "html_url": f"https://github.invalid/{self.repository}/pull/{self.number}",
            "issue_url": f"{base}/repos/{self.repository}/issues/{self.number}",
            "state": self.state, "title": self.title, "body": self.body, "user": user.as_json(), "draft": False,
            "labels": [_label_json(base, self.repository, n) for n in self.labels],
            "head": {"ref": self.pull["head_ref"], "sha": self.pull["head_sha"], "label": f"{owner}:{self.pull['head_ref']}"},
            "base": {"ref": self.pull["base_ref"], "sha": self.pull.get("base_sha") or "0" * 40,
                     "label": f"{owner}:{self.pull['base_ref']}"},
            "merged": self.pull.get("merged_at") is not None, "merged_at": self.pull.get("merged_at"),
            "merge_commit_sha": self.pull.get("merge_commit_sha"),
            "created_at": self.created_at, "updated_at": self.updated_at, "closed_at": self.closed_at,
        }


@dataclass
class WorkflowRun:
    id: int
    repository: str
    workflow: str  # the file name, e.g. plan.yml
    event: str
    head_sha: str
    head_branch: str | None
    status: str = "completed"
    conclusion: str | None = "success"
    pull_requests: list[int] = field(default_factory=list)
    created_at: str = field(default_factory=_now)

    def as_json(self, base: str) -> dict[str, Any]:
        return {"id": self.id, "name": self.workflow, "path": f".github/workflows/{self.workflow}",
                "event": self.event, "head_sha": self.head_sha, "head_branch": self.head_branch,
                "status": self.status, "conclusion": self.conclusion, "run_number": self.id % 1000,
                "run_attempt": 1, "created_at": self.created_at, "updated_at": self.created_at,
                "url": f"{base}/repos/{self.repository}/actions/runs/{self.id}",
                "html_url": f"https://github.invalid/{self.repository}/actions/runs/{self.id}",
                "artifacts_url": f"{base}/repos/{self.repository}/actions/runs/{self.id}/artifacts",
                "pull_requests": [{"number": n} for n in self.pull_requests]}


@dataclass
class Artifact:
    id: int
    repository: str
    run_id: int
    name: str
    data: bytes  # the zip archive
    head_sha: str
    created_at: str = field(default_factory=_now)


def _label_json(base: str, repository: str, name: str) -> dict[str, Any]:
    return {"id": abs(hash(name)) % 10_000_000, "name": name, "color": "ededed", "default": False,
            "url": f"{base}/repos/{repository}/labels/{name}", "description": None}


@dataclass
class Throttle:
    count: int
    retry_after: int | None
    status: int
    methods: tuple[str, ...]


class _Answer(Exception):
    def __init__(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.payload, self.headers = status, payload, headers or {}


def _error(status: int, message: str, **extra: Any) -> _Answer:
    return _Answer(status, {"message": message, "documentation_url": DOCS, "status": str(status), **extra})


@dataclass
class GitHubStandIn:
    token: str = "ghs_standin_token_0123456789"
    user: str = "github-actions[bot]"
    api_prefix: str = ""  # "/api/v3" = GitHub Enterprise Server layout
    rate_limit: int = 5000
    comments: dict[int, Comment] = field(default_factory=dict)
    merged: dict[tuple[str, str], int] = field(default_factory=dict)  # (repository, sha) -> PR number
    issues: dict[tuple[str, int], Issue] = field(default_factory=dict)
    labels: dict[str, set[str]] = field(default_factory=dict)
    runs: dict[int, WorkflowRun] = field(default_factory=dict)
    artifacts: dict[int, Artifact] = field(default_factory=dict)
    git_remotes: dict[str, Path] = field(default_factory=dict)  # repository -> bare repository (push target)
    requests: list[Recorded] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)  # token -> who it authenticates
    apps: dict[int, dict[str, Any]] = field(default_factory=dict)  # app id -> {public_key, slug, installation}
    _used: dict[str, int] = field(default_factory=dict)
    _reset: dict[str, int] = field(default_factory=dict)
    _throttles: list[Throttle] = field(default_factory=list)
    _blob_keys: dict[int, str] = field(default_factory=dict)
    _next_id: int = 1000
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.accounts.setdefault(self.token, Account(self.user, 41898282, installation=True))

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> GitHubStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                standin._handle(self, "GET")

            def do_POST(self) -> None:
                standin._handle(self, "POST")

            def do_PATCH(self) -> None:
                standin._handle(self, "PATCH")

            def do_PUT(self) -> None:
                standin._handle(self, "PUT")

            def do_DELETE(self) -> None:
                standin._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="github-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def root(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The REST API base URL (what ``GITHUB_API_URL`` holds in Actions)."""
        return self.root + self.api_prefix

    @property
    def graphql_url(self) -> str:
        return self.root + (self.api_prefix[: -len("/v3")] if self.api_prefix.endswith("/v3") else self.api_prefix) \
            + "/graphql"

    # -- test set-up -------------------------------------------------------------------------------
    def add_token(self, token: str, login: str, *, installation: bool = False, read_only: bool = False,
                  permissions: dict[str, str] | None = None) -> str:
        """A token for ``login``; ``permissions`` as a workflow grants them (``{"pull-requests": "write"}``):
        a call whose endpoint needs more is refused with GitHub's 403 "Resource not accessible by integration"."""
        scoped = None if permissions is None else {k.replace("-", "_"): v for k, v in permissions.items()}
        with self._lock:
            self.accounts[token] = Account(login, 100_000 + len(self.accounts), installation, read_only, scoped)
        return token

    def register_app(self, app_id: int, public_key_pem: str, slug: str, installation_id: int = 77) -> None:
        """A GitHub App installed on every repository here; its tokens act as ``<slug>[bot]``."""
        with self._lock:
            self.apps[app_id] = {"public_key": public_key_pem, "slug": slug, "installation": installation_id}

    def register_git_remote(self, repository: str, bare: Path) -> None:
        """The git repository behind ``repository`` (pull requests need their head branch to exist)."""
        with self._lock:
            self.git_remotes[repository] = Path(bare)

    def exhaust(self, token: str | None = None, *, reset_in: float = 2.0) -> None:
        """Use up the token's primary budget until ``reset_in`` seconds from now."""
        token = token or self.token
        with self._lock:
            self._used[token] = self.rate_limit
            self._reset[token] = int(time.time() + reset_in) + 1

    def throttle(self, count: int = 1, *, retry_after: int | None = 1, status: int = 403,
                 methods: tuple[str, ...] = ("GET", "POST", "PATCH", "DELETE", "PUT")) -> None:
        """The next ``count`` requests with one of ``methods`` hit a secondary rate limit."""
        with self._lock:
            self._throttles.append(Throttle(count, retry_after, status, methods))

    def seed(self, repository: str, number: int, body: str, user: str = "someone") -> Comment:
        with self._lock:
            return self._add_comment(repository, number, body, user)

    def open_pull(self, repository: str, number: int, *, head_sha: str, head_ref: str = "feature",
                  base_ref: str = "main", title: str = "change", user: str = "alice") -> Issue:
        with self._lock:
            issue = Issue(repository, number, title, "", user,
                          pull={"head_sha": head_sha, "head_ref": head_ref, "base_ref": base_ref})
            self.issues[(repository, number)] = issue
            return issue

    def update_pull_head(self, repository: str, number: int, head_sha: str) -> None:
        with self._lock:
            pull = self.issues[(repository, number)].pull
            assert pull is not None
            pull["head_sha"] = head_sha

    def merge(self, repository: str, sha: str, number: int) -> None:
        """Record that commit ``sha`` came from pull request ``number`` (for ``commits/{sha}/pulls``)."""
        with self._lock:
            self.merged[(repository, sha)] = number
            issue = self.issues.get((repository, number))
            if issue is None:
                issue = self.open_pull(repository, number, head_sha=sha)
            if issue.pull is not None:
                issue.state, issue.closed_at = "closed", _now()
                issue.pull.update(merged_at=_now(), merge_commit_sha=sha)

    def add_run(self, repository: str, workflow: str, *, event: str, head_sha: str, head_branch: str | None = None,
                conclusion: str | None = "success", pull_requests: tuple[int, ...] = ()) -> WorkflowRun:
        with self._lock:
            run = WorkflowRun(self._new_id(), repository, workflow, event, head_sha, head_branch,
                              conclusion=conclusion, pull_requests=list(pull_requests))
            self.runs[run.id] = run
            return run

    def add_artifact(self, run_id: int, name: str, files: dict[str, bytes]) -> Artifact:
        """Upload an artifact to a run, zipped as ``actions/upload-artifact`` stores it."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name_in_zip, data in sorted(files.items()):
                archive.writestr(name_in_zip, data)
        with self._lock:
            run = self.runs[run_id]
            artifact = Artifact(self._new_id(), run.repository, run_id, name, buffer.getvalue(), run.head_sha)
            self.artifacts[artifact.id] = artifact
            return artifact

    # -- inspection --------------------------------------------------------------------------------
    def comments_on(self, repository: str, number: int) -> list[Comment]:
        with self._lock:
            return sorted((c for c in self.comments.values()
                           if c.repository == repository and c.number == number), key=lambda c: c.id)

    def issues_in(self, repository: str, *, pulls: bool = False) -> list[Issue]:
        with self._lock:
            return sorted((i for (r, _), i in self.issues.items() if r == repository and (i.pull is not None) == pulls),
                          key=lambda i: i.number)

    def bodies_sent(self) -> list[str]:
        return [r.body for r in self.requests if r.body]

    # -- internals ---------------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _next_number(self, repository: str) -> int:
        return max((n for (r, n) in self.issues if r == repository), default=0) + 1

    def _add_comment(self, repository: str, number: int, body: str, user: str) -> Comment:
        now = _now()
        comment = Comment(self._new_id(), repository, number, body, user, now, now)
        self.comments[comment.id] = comment
        return comment

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8") if length else ""
        authorization = handler.headers.get("Authorization")
        headers = {k.lower(): v for k, v in handler.headers.items() if k.lower() != "authorization"}
        headers["authorization-scheme"] = (authorization or "").partition(" ")[0]
        record = Recorded(method, parts.path, parse_qs(parts.query), raw, self._account(authorization) is not None,
                          headers, at=time.monotonic())
        base = f"http://{handler.headers.get('Host', '')}" + self.api_prefix
        with self._lock:
            self.requests.append(record)
            try:
                status, payload, extra = self._dispatch(method, parts.path, record.query, raw, authorization, base)
            except _Answer as answer:
                status, payload, extra = answer.status, answer.payload, answer.headers
            record.status = status
        if isinstance(payload, bytes):
            data, content_type = payload, "application/zip"
        elif payload is None:
            data, content_type = b"", "application/json; charset=utf-8"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json; charset=utf-8"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _account(self, authorization: str | None) -> Account | None:
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        return self.accounts.get(value)

    def _rate_headers(self, token: str, resource: str) -> dict[str, str]:
        reset = self._reset.get(token)
        if reset is None or reset <= time.time():
            reset = int(time.time()) + 3600
            self._reset[token], self._used[token] = reset, 0
        used = self._used.get(token, 0)
        return {"x-ratelimit-limit": str(self.rate_limit), "x-ratelimit-remaining": str(max(self.rate_limit - used, 0)),
                "x-ratelimit-used": str(used), "x-ratelimit-reset": str(reset), "x-ratelimit-resource": resource}

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], raw: str, authorization: str | None,
                  base: str) -> tuple[int, Any, dict[str, str]]:
        rid = uuid.uuid4().hex[:16].upper()
        common = {"x-github-request-id": rid, "x-github-api-version-selected": "2022-11-28"}
        if path.startswith("/_blobs/"):  # the signed download URL: no token, as on GitHub's storage
            return (*self._blob(path, query), common)
        if self.api_prefix:
            graphql_path = self.graphql_url[len(self.root):]
            if path == graphql_path:
                path = "/graphql"
            elif path.startswith(self.api_prefix + "/"):
                path = path[len(self.api_prefix):]
            else:
                raise _Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, common)
        route = next(((name, m) for name, pattern in ROUTES if (m := pattern.match(path))), None)
        if route is None:
            raise _Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, common)
        name, match = route
        if name in ("app_token", "installation"):
            status, payload = self._app(name, match, method, authorization)
            return status, payload, common
        account = self._account(authorization)
        if account is None:
            raise _Answer(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}, common)
        token = authorization.partition(" ")[2] if authorization else ""
        resource = "graphql" if name == "graphql" else "core"
        for throttle in self._throttles:
            if throttle.count > 0 and method in throttle.methods:
                throttle.count -= 1
                headers = {**common, **self._rate_headers(token, resource)}
                if throttle.retry_after is not None:
                    headers["retry-after"] = str(throttle.retry_after)
                raise _Answer(throttle.status, {"message": SECONDARY_MESSAGE.format(rid=rid),
                                                "documentation_url": RATE_LIMIT_DOCS}, headers)
        headers = {**common, **self._rate_headers(token, resource)}
        if self._used.get(token, 0) >= self.rate_limit:
            who = f"installation ID {account.id}" if account.installation else f"user ID {account.id}"
            raise _Answer(403, {"message": f"API rate limit exceeded for {who}. If you reach out to GitHub Support "
                                           f"for help, please include the request ID {rid}.",
                                "documentation_url": RATE_LIMIT_DOCS}, headers)
        self._used[token] = self._used.get(token, 0) + 1
        headers = {**common, **self._rate_headers(token, resource)}
        if (account.read_only and method != "GET" and name != "graphql") or not account.may(_needs(name, method)):
            raise _Answer(403, {"message": NO_INTEGRATION, "documentation_url": DOCS, "status": "403"}, headers)
        try:
            status, payload, extra = getattr(self, f"_r_{name}")(method, match, query, raw, account, base)
        except _Answer as answer:
            raise _Answer(answer.status, answer.payload, {**headers, **answer.headers}) from None
        return status, payload, {**headers, **extra}

    # -- routes ------------------------------------------------------------------------------------
    def _r_user(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        if method != "GET":
            raise _error(404, "Not Found")
        if who.installation:
            raise _Answer(403, {"message": NO_INTEGRATION,
                                "documentation_url": f"{DOCS}/users/users#get-the-authenticated-user", "status": "403"})
        return 200, who.as_json(), {}

    def _r_graphql(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        if method != "POST":
            raise _error(404, "Not Found")
        request = _json_body(raw)
        text = request.get("query") if isinstance(request, dict) else None
        if not isinstance(text, str):
            return 200, {"errors": [{"message": "A query attribute must be specified and must be a string."}]}, {}
        if re.fullmatch(r"\s*(query\s*)?\{\s*viewer\s*\{\s*login\s*\}\s*\}\s*", text):
            return 200, {"data": {"viewer": {"login": who.login}}}, {}
        return 200, {"errors": [{"message": "the stand-in answers only `{ viewer { login } }`"}]}, {}

    def _app(self, name: str, m: re.Match[str], method: str, authorization: str | None) -> tuple[int, Any]:
        import jwt  # PyJWT, installed with PyGithub

        scheme, _, value = (authorization or "").partition(" ")
        app = None
        try:
            claims = jwt.decode(value, options={"verify_signature": False})
            app = self.apps.get(int(claims.get("iss")))
            if app is None or scheme.lower() != "bearer":
                raise jwt.InvalidTokenError("unknown app")
            jwt.decode(value, app["public_key"], algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]})
        except (jwt.InvalidTokenError, TypeError, ValueError):
            raise _Answer(401, {"message": "A JSON web token could not be decoded", "documentation_url": DOCS,
                                "status": "401"}) from None
        if name == "installation" and method == "GET":
            return 200, {"id": app["installation"], "app_id": int(claims["iss"]), "app_slug": app["slug"],
                         "account": {"login": m["owner"]}, "target_type": "Organization",
                         "permissions": {"contents": "write", "pull_requests": "write", "issues": "write"}}
        if name == "app_token" and method == "POST" and int(m["id"]) == app["installation"]:
            token = "ghs_" + secrets.token_hex(18)
            self.accounts[token] = Account(f"{app['slug']}[bot]", 200_000 + int(claims["iss"]), installation=True)
            expires = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return 201, {"token": token, "expires_at": expires, "repository_selection": "all",
                         "permissions": {"contents": "write", "pull_requests": "write", "issues": "write"}}
        raise _error(404, "Not Found")

    def _r_issue_comments(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account,
                          base: str) -> Any:
        repository, number = f"{m['owner']}/{m['repo']}", int(m["number"])
        if method == "GET":
            items = self.comments_on(repository, number)
            return self._page([c.as_json(base, self._by_login()) for c in items], query, base,
                              f"/repos/{repository}/issues/{number}/comments")
        if method == "POST":
            body = _text_field(raw, "body", "IssueComment")
            comment = self._add_comment(repository, number, body, who.login)
            data = comment.as_json(base, self._by_login())
            return 201, data, {"Location": data["url"]}
        raise _error(404, "Not Found")

    def _r_comment(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        comment = self.comments.get(int(m["id"]))
        if comment is None or comment.repository != f"{m['owner']}/{m['repo']}":
            raise _error(404, "Not Found")
        if method == "GET":
            return 200, comment.as_json(base, self._by_login()), {}
        if method == "PATCH":
            comment.body = _text_field(raw, "body", "IssueComment")
            comment.updated_at = _now()
            return 200, comment.as_json(base, self._by_login()), {}
        if method == "DELETE":
            del self.comments[comment.id]
            return 204, None, {}
        raise _error(404, "Not Found")

    def _issue_json(self, issue: Issue, base: str) -> dict[str, Any]:
        count = sum(1 for c in self.comments.values() if c.repository == issue.repository and c.number == issue.number)
        return issue.as_issue_json(base, self._by_login(), count)

    def _r_issues(self, method: str, m: re.Match[str], query: dict[str, list[str]], raw: str, who: Account,
                  base: str) -> Any:
        repository = f"{m['owner']}/{m['repo']}"
        if method == "GET":
            state = query.get("state", ["open"])[0]
            wanted = [x for x in query.get("labels", [""])[0].split(",") if x]
            creator = query.get("creator", [None])[0]
            items = [i for (r, _), i in self.issues.items() if r == repository
                     and (state == "all" or i.state == state) and all(w in i.labels for w in wanted)
                     and (creator is None or i.user == creator)]
            items.sort(key=lambda i: i.number, reverse=True)  # default sort: created, newest first
            return self._page([self._issue_json(i, base) for i in items], query, base, f"/repos/{repository}/issues")
        if method == "POST":
            data = _json_body(raw)
            title = data.get("title") if isinstance(data, dict) else None
            if not isinstance(title, str) or not title:
                raise _error(422, "Validation Failed", errors=[{"resource": "Issue", "code": "missing_field",
                                                                 "field": "title"}])
            body = data.get("body") or ""
            _check_length(body, "Issue")
            labels = [str(x) for x in data.get("labels") or []]
            self.labels.setdefault(repository, set()).update(labels)
            issue = Issue(repository, self._next_number(repository), title, body, who.login, labels=labels)
            self.issues[(repository, issue.number)] = issue
            out = self._issue_json(issue, base)
            return 201, out, {"Location": out["url"]}
        raise _error(404, "Not Found")

    def _r_issue(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        issue = self.issues.get((f"{m['owner']}/{m['repo']}", int(m["number"])))
        if issue is None:
            raise _error(404, "Not Found")
        if method == "GET":
            return 200, self._issue_json(issue, base), {}
        if method == "PATCH":
            _edit(issue, raw, "Issue")
            return 200, self._issue_json(issue, base), {}
        raise _error(404, "Not Found")

    def _r_labels(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        repository = f"{m['owner']}/{m['repo']}"
        if method == "GET":
            names = sorted(self.labels.get(repository, set()))
            return self._page([_label_json(base, repository, n) for n in names], query, base,
                              f"/repos/{repository}/labels")
        if method == "POST":
            data = _json_body(raw)
            name = data.get("name") if isinstance(data, dict) else None
            if not isinstance(name, str) or not name:
                raise _error(422, "Validation Failed", errors=[{"resource": "Label", "code": "missing_field",
                                                                 "field": "name"}])
            if name in self.labels.get(repository, set()):
                raise _error(422, "Validation Failed", errors=[{"resource": "Label", "code": "already_exists",
                                                                 "field": "name"}])
            self.labels.setdefault(repository, set()).add(name)
            return 201, _label_json(base, repository, name), {}
        raise _error(404, "Not Found")

    def _r_label(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        repository, name = f"{m['owner']}/{m['repo']}", unquote(m["name"])
        if method == "GET" and name in self.labels.get(repository, set()):
            return 200, _label_json(base, repository, name), {}
        raise _error(404, "Not Found")

    def _r_pulls(self, method: str, m: re.Match[str], query: dict[str, list[str]], raw: str, who: Account,
                 base: str) -> Any:
        repository, owner = f"{m['owner']}/{m['repo']}", m["owner"]
        if method == "GET":
            state = query.get("state", ["open"])[0]
            head = query.get("head", [None])[0]
            base_ref = query.get("base", [None])[0]
            items = [i for (r, _), i in self.issues.items() if r == repository and i.pull is not None
                     and (state == "all" or i.state == state)
                     and (head is None or head == f"{owner}:{i.pull['head_ref']}")
                     and (base_ref is None or base_ref == i.pull["base_ref"])]
            items.sort(key=lambda i: i.number, reverse=True)
            return self._page([i.as_pull_json(base, self._by_login()) for i in items], query, base,
                              f"/repos/{repository}/pulls")
        if method == "POST":
            data = _json_body(raw)
            if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("title", "head", "base")):
                raise _error(422, "Validation Failed", errors=[{"resource": "PullRequest", "code": "missing_field"}])
            head_ref = data["head"].split(":", 1)[-1]
            body = data.get("body") or ""
            _check_length(body, "PullRequest")
            head_sha = self._branch_sha(repository, head_ref)
            if head_sha is None:
                raise _error(422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "head",
                                                                 "code": "invalid"}])
            if any(i.pull and i.state == "open" and i.pull["head_ref"] == head_ref and i.pull["base_ref"] == data["base"]
                   for (r, _), i in self.issues.items() if r == repository):
                raise _error(422, "Validation Failed", errors=[{
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {owner}:{head_ref}."}])
            issue = Issue(repository, self._next_number(repository), data["title"], body, who.login,
                          pull={"head_sha": head_sha, "head_ref": head_ref, "base_ref": data["base"]})
            self.issues[(repository, issue.number)] = issue
            out = issue.as_pull_json(base, self._by_login())
            return 201, out, {"Location": out["url"]}
        raise _error(404, "Not Found")

    def _r_pull(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        repository = f"{m['owner']}/{m['repo']}"
        issue = self.issues.get((repository, int(m["number"])))
        if issue is None or issue.pull is None:
            raise _error(404, "Not Found")
        if method == "GET":
            sha = self._branch_sha(repository, issue.pull["head_ref"]) if issue.state == "open" else None
            if sha:
                issue.pull["head_sha"] = sha
            return 200, issue.as_pull_json(base, self._by_login()), {}
        if method == "PATCH":
            _edit(issue, raw, "PullRequest")
            return 200, issue.as_pull_json(base, self._by_login()), {}
        raise _error(404, "Not Found")

    def _r_commit_pulls(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        repository = f"{m['owner']}/{m['repo']}"
        number = self.merged.get((repository, m["sha"]))
        if number is None:
            return 200, [], {}
        return 200, [self.issues[(repository, number)].as_pull_json(base, self._by_login())], {}

    def _r_workflow_runs(self, method: str, m: re.Match[str], query: dict[str, list[str]], raw: str, who: Account,
                         base: str) -> Any:
        repository = f"{m['owner']}/{m['repo']}"
        filters = {k: query[k][0] for k in ("head_sha", "event", "branch") if k in query}
        status = query.get("status", [None])[0]
        runs = [r for r in self.runs.values() if r.repository == repository and r.workflow == unquote(m["workflow"])
                and all(getattr(r, "head_branch" if k == "branch" else k) == v for k, v in filters.items())
                and (status is None or status in (r.status, r.conclusion))]
        runs.sort(key=lambda r: r.id, reverse=True)
        status_code, page, headers = self._page([r.as_json(base) for r in runs], query, base,
                                                f"/repos/{repository}/actions/workflows/{m['workflow']}/runs")
        return status_code, {"total_count": len(runs), "workflow_runs": page}, headers

    def _r_run(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        run = self.runs.get(int(m["id"]))
        if method != "GET" or run is None or run.repository != f"{m['owner']}/{m['repo']}":
            raise _error(404, "Not Found")
        return 200, run.as_json(base), {}

    def _r_run_artifacts(self, method: str, m: re.Match[str], query: dict[str, list[str]], raw: str, who: Account,
                         base: str) -> Any:
        repository, run_id = f"{m['owner']}/{m['repo']}", int(m["id"])
        name = query.get("name", [None])[0]
        found = [a for a in self.artifacts.values() if a.repository == repository and a.run_id == run_id
                 and (name is None or a.name == name)]
        data = [{"id": a.id, "node_id": f"MDg_{a.id}", "name": a.name, "size_in_bytes": len(a.data), "expired": False,
                 "url": f"{base}/repos/{repository}/actions/artifacts/{a.id}",
                 "archive_download_url": f"{base}/repos/{repository}/actions/artifacts/{a.id}/zip",
                 "created_at": a.created_at, "workflow_run": {"id": a.run_id, "head_sha": a.head_sha}}
                for a in sorted(found, key=lambda a: a.id)]
        return 200, {"total_count": len(data), "artifacts": data}, {}

    def _r_artifact_zip(self, method: str, m: re.Match[str], query: Any, raw: str, who: Account, base: str) -> Any:
        artifact = self.artifacts.get(int(m["id"]))
        if artifact is None or artifact.repository != f"{m['owner']}/{m['repo']}":
            raise _error(404, "Not Found")
        key = self._blob_keys.setdefault(artifact.id, secrets.token_hex(8))
        # GitHub redirects to another host (its storage), so a client must drop the token on the way;
        # "localhost" is that other host name here
        port = self.root.rsplit(":", 1)[1]
        return 302, None, {"Location": f"http://localhost:{port}/_blobs/{artifact.id}?sig={key}"}

    def _blob(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            artifact_id = int(path.rsplit("/", 1)[1])
        except ValueError:
            return 404, {"message": "Not Found"}
        if query.get("sig", [None])[0] != self._blob_keys.get(artifact_id):
            return 403, {"message": "Server failed to authenticate the request."}
        return 200, self.artifacts[artifact_id].data

    # -- helpers -----------------------------------------------------------------------------------
    def _by_login(self) -> dict[str, Account]:
        return {a.login: a for a in self.accounts.values()}

    def _branch_sha(self, repository: str, branch: str) -> str | None:
        bare = self.git_remotes.get(repository)
        if bare is None:
            return "0" * 40
        proc = subprocess.run(["git", "-C", str(bare), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                              capture_output=True, text=True)
        return proc.stdout.strip() or None

    def _page(self, items: list[Any], query: dict[str, list[str]], base: str, path: str
              ) -> tuple[int, Any, dict[str, str]]:
        try:
            per_page = min(max(int(query.get("per_page", ["30"])[0]), 1), 100)
            page = max(int(query.get("page", ["1"])[0]), 1)
        except ValueError:
            raise _error(422, "Invalid value for per_page or page") from None
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        kept = "&".join(f"{k}={v[0]}" for k, v in sorted(query.items()) if k not in ("page", "per_page"))
        kept = (kept + "&") if kept else ""
        links = []
        if page < last:
            links.append(f'<{base}{path}?{kept}per_page={per_page}&page={page + 1}>; rel="next"')
            links.append(f'<{base}{path}?{kept}per_page={per_page}&page={last}>; rel="last"')
        if page > 1:
            links.append(f'<{base}{path}?{kept}per_page={per_page}&page={page - 1}>; rel="prev"')
            links.append(f'<{base}{path}?{kept}per_page={per_page}&page=1>; rel="first"')
        return 200, chunk, ({"Link": ", ".join(links)} if links else {})


def _needs(route: str, method: str) -> tuple[tuple[str, str], ...]:
    """The fine-grained permissions an endpoint takes (any one of them), as GitHub documents them."""
    level = "read" if method == "GET" else "write"
    return {
        "issue_comments": (("issues", level), ("pull_requests", level)),
        "comment": (("issues", level), ("pull_requests", level)),
        "issues": (("issues", level),),
        "issue": (("issues", level),),
        "labels": (("issues", level), ("pull_requests", level)),
        "label": (("issues", level), ("pull_requests", level)),
        "pulls": (("pull_requests", level),),
        "pull": (("pull_requests", level),),
        "commit_pulls": (("pull_requests", "read"), ("contents", "read")),
        "workflow_runs": (("actions", "read"),),
        "run": (("actions", "read"),),
        "run_artifacts": (("actions", "read"),),
        "artifact_zip": (("actions", "read"),),
    }.get(route, ())


def _json_body(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise _error(400, "Problems parsing JSON") from None


def _edit(issue: Issue, raw: str, resource: str) -> None:
    """PATCH of an issue or a pull request: body, title, labels, state."""
    data = _json_body(raw)
    if not isinstance(data, dict):
        raise _error(400, "Problems parsing JSON")
    if "body" in data:
        _check_length(data["body"] or "", resource)
        issue.body = data["body"] or ""
    if "title" in data:
        issue.title = data["title"]
    if "labels" in data:
        issue.labels = [str(x) for x in data["labels"]]
    if data.get("state") in ("open", "closed") and data["state"] != issue.state:
        issue.state = data["state"]
        issue.closed_at = _now() if issue.state == "closed" else None
        issue.state_reason = data.get("state_reason") or ("completed" if issue.state == "closed" else "reopened")
    issue.updated_at = _now()


def _check_length(body: str, resource: str) -> None:
    if len(body) > MAX_BODY:
        raise _error(422, "Validation Failed", errors=[{
            "resource": resource, "code": "custom", "field": "body",
            "message": "Body is too long (maximum is 65536 characters)"}])


def _text_field(raw: str, name: str, resource: str) -> str:
    payload = _json_body(raw)
    value = payload.get(name) if isinstance(payload, dict) else None
    if not isinstance(value, str):
        raise _error(422, f"Invalid request.\n\n\"{name}\" wasn't supplied.")
    _check_length(value, resource)
    return value


def jwt_keypair() -> tuple[str, str]:
    """A fresh RSA key pair (private, public PEM) for a test GitHub App."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public
