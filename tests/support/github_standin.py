"""A local stand-in for the GitHub REST endpoints gftune uses: a real HTTP server on loopback.

Endpoints (as documented by GitHub's REST API):

* ``GET    /repos/{owner}/{repo}/issues/{number}/comments`` with ``per_page`` (default 30, max 100)
  and ``page``, and a ``Link`` header (``rel="next"``, ``rel="last"``);
* ``POST   /repos/{owner}/{repo}/issues/{number}/comments`` → 201;
* ``GET|PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}``;
* ``GET    /repos/{owner}/{repo}/commits/{sha}/pulls`` (the PRs a commit belongs to; set with
  :meth:`GitHubStandIn.merge`).

Like GitHub it checks the token (``Authorization: Bearer|token <t>``, else 401 "Bad credentials"),
refuses a body over 65,536 characters with 422 "Body is too long (maximum is 65536 characters)",
and refuses a missing body with 422. Every request is recorded (method, path, query, body text, and
whether the token matched) so that tests can assert on what gftune sent.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 65_536
DOCS = "https://docs.github.com/rest/issues/comments"

_LIST_OR_CREATE = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/(?P<number>\d+)/comments$")
_PULLS = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/commits/(?P<sha>[0-9a-fA-F]+)/pulls$")
_ONE = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/comments/(?P<id>\d+)$")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: str
    authorized: bool
    status: int = 0


@dataclass
class Comment:
    id: int
    repository: str
    number: int
    body: str
    user: str
    created_at: str
    updated_at: str

    def as_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id, "node_id": f"IC_{self.id}",
            "url": f"{base_url}/repos/{self.repository}/issues/comments/{self.id}",
            "html_url": f"https://github.invalid/{self.repository}/pull/{self.number}#issuecomment-{self.id}",
            "issue_url": f"{base_url}/repos/{self.repository}/issues/{self.number}",
            "body": self.body, "user": {"login": self.user, "type": "Bot" if "[bot]" in self.user else "User"},
            "created_at": self.created_at, "updated_at": self.updated_at,
            "author_association": "NONE",
        }


@dataclass
class GitHubStandIn:
    token: str = "ghs_standin_token_0123456789"
    user: str = "github-actions[bot]"
    comments: dict[int, Comment] = field(default_factory=dict)
    merged: dict[tuple[str, str], int] = field(default_factory=dict)  # (repository, sha) -> PR number
    requests: list[Recorded] = field(default_factory=list)
    _next_id: int = 1000
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> GitHubStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                standin._handle(self, "GET")

            def do_POST(self) -> None:
                standin._handle(self, "POST")

            def do_PATCH(self) -> None:
                standin._handle(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="github-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test helpers ------------------------------------------------------------------------------
    def seed(self, repository: str, number: int, body: str, user: str = "someone") -> Comment:
        with self._lock:
            return self._add(repository, number, body, user)

    def merge(self, repository: str, sha: str, number: int) -> None:
        """Record that commit ``sha`` came from pull request ``number`` (for ``commits/{sha}/pulls``)."""
        with self._lock:
            self.merged[(repository, sha)] = number

    def comments_on(self, repository: str, number: int) -> list[Comment]:
        with self._lock:
            return sorted((c for c in self.comments.values()
                           if c.repository == repository and c.number == number), key=lambda c: c.id)

    def bodies_sent(self) -> list[str]:
        return [r.body for r in self.requests if r.body]

    # -- internals ---------------------------------------------------------------------------------
    def _add(self, repository: str, number: int, body: str, user: str) -> Comment:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        comment = Comment(self._next_id, repository, number, body, user, now, now)
        self.comments[comment.id] = comment
        self._next_id += 1
        return comment

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        return scheme.lower() in ("bearer", "token") and value == self.token

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8") if length else ""
        record = Recorded(method, parts.path, parse_qs(parts.query), raw,
                          self._authorized(handler.headers.get("Authorization")))
        with self._lock:
            self.requests.append(record)
            status, payload, headers = self._route(method, parts.path, record.query, raw, record.authorized,
                                                   handler.headers.get("Host", ""))
            record.status = status
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: str, authorized: bool,
               host: str) -> tuple[int, Any, dict[str, str]]:
        base = f"http://{host}"
        if not authorized:
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                         "status": "401"}, {}
        if m := _LIST_OR_CREATE.match(path):
            repository, number = f"{m['owner']}/{m['repo']}", int(m["number"])
            if method == "GET":
                return self._list(repository, number, query, base, path)
            if method == "POST":
                if error := _body_error(raw):
                    return error[0], error[1], {}
                comment = self._add(repository, number, json.loads(raw)["body"], self.user)
                return 201, comment.as_json(base), {"Location": comment.as_json(base)["url"]}
        elif (m := _PULLS.match(path)) and method == "GET":
            number = self.merged.get((f"{m['owner']}/{m['repo']}", m["sha"]))
            pulls = [] if number is None else [{"number": number, "state": "closed",
                                                "merge_commit_sha": m["sha"],
                                                "html_url": f"https://github.invalid/{m['owner']}/{m['repo']}/pull/{number}"}]
            return 200, pulls, {}
        elif m := _ONE.match(path):
            comment = self.comments.get(int(m["id"]))
            if comment is None or comment.repository != f"{m['owner']}/{m['repo']}":
                return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {}
            if method == "GET":
                return 200, comment.as_json(base), {}
            if method == "PATCH":
                if error := _body_error(raw):
                    return error[0], error[1], {}
                comment.body = json.loads(raw)["body"]
                comment.updated_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                return 200, comment.as_json(base), {}
        else:
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {}
        return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {}

    def _list(self, repository: str, number: int, query: dict[str, list[str]], base: str,
              path: str) -> tuple[int, Any, dict[str, str]]:
        per_page = min(max(int(query.get("per_page", ["30"])[0]), 1), 100)
        page = max(int(query.get("page", ["1"])[0]), 1)
        items = sorted((c for c in self.comments.values() if c.repository == repository and c.number == number),
                       key=lambda c: c.id)
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []
        if page < last:
            links.append(f'<{base}{path}?per_page={per_page}&page={page + 1}>; rel="next"')
            links.append(f'<{base}{path}?per_page={per_page}&page={last}>; rel="last"')
        if page > 1:
            links.append(f'<{base}{path}?per_page={per_page}&page={page - 1}>; rel="prev"')
            links.append(f'<{base}{path}?per_page={per_page}&page=1>; rel="first"')
        return 200, [c.as_json(base) for c in chunk], ({"Link": ", ".join(links)} if links else {})


def _body_error(raw: str) -> tuple[int, dict[str, Any]] | None:
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS, "status": "400"}
    body = payload.get("body") if isinstance(payload, dict) else None
    if not isinstance(body, str):
        return 422, {"message": "Invalid request.\n\n\"body\" wasn't supplied.", "documentation_url": DOCS,
                     "status": "422"}
    if len(body) > MAX_BODY:
        return 422, {"message": "Validation Failed",
                     "errors": [{"resource": "IssueComment", "code": "custom", "field": "body",
                                 "message": "Body is too long (maximum is 65536 characters)"}],
                     "documentation_url": DOCS, "status": "422"}
    return None
