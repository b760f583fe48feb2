"""A small GitHub Actions runner for the end-to-end test: it reads the shipped workflow and action
files and runs them the way GitHub does, so the test fails when a workflow drifts from what it tests.
(One module over ~500 lines on purpose: the expressions, steps and jobs of a run share one context.)

* ``run:`` steps run as written: bash as ``bash --noprofile --norc -eo pipefail``, ``shell: python``
  with the Python on PATH; ``${{ }}`` expressions are substituted first; ``env:`` of the workflow, job
  and step; ``$GITHUB_ENV``, ``$GITHUB_OUTPUT``, ``$GITHUB_PATH`` and ``$GITHUB_STEP_SUMMARY`` files
  per step; ``steps.<id>.outputs``; ``if:`` with GitHub's status functions (``success()`` is implied).
* ``uses:``: ``actions/checkout`` clones the test's bare "GitHub" repository (``ref``, ``path``,
  ``fetch-depth``; branches check out as a branch, SHAs and ``refs/pull/N/...`` detached);
  ``actions/upload-artifact`` zips the files into the GitHub stand-in's artifact store of this run
  (``if-no-files-found``, ``include-hidden-files``, ``overwrite``); ``./`` (and ``<owner>/gftune@v1``)
  runs the repository's composite ``action.yml`` with its ``inputs``; ``actions/setup-python`` is
  provided by the test's environment. Steps whose ``id`` the runner is told it provides (gftune's own
  ``install``: the test's gftune is already on PATH) are recorded, not run.
* Expressions: literals, property access (``a.b``, ``a['b']``), ``! == != < <= > >= && ||`` with
  GitHub's coercions (strings compare case-insensitively), and ``contains``, ``startsWith``,
  ``endsWith``, ``format``, ``join``, ``toJSON``, ``fromJSON``, ``success``, ``failure``, ``always``,
  ``cancelled``. Anything else raises :class:`RunnerError`: a workflow may not use what this runner
  cannot honour without the test saying so.

The GitHub side (runs, artifacts, comments, issues) is the stand-in server; each workflow run is
registered there (``in_progress``, then ``completed`` with its conclusion) like GitHub records it, and
each job gets its own ``GITHUB_TOKEN`` (github-actions[bot]) with exactly the workflow's
``permissions:``, so a workflow that forgets one fails here as it would on GitHub.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.github_standin import GitHubStandIn


class RunnerError(Exception):
    """The workflow uses something this runner does not implement (or is malformed)."""


# --- expressions ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\],.])
                        |(?P<name>[A-Za-z_][A-Za-z0-9_-]*|\*))""", re.X)
_FUNCTIONS = {"contains", "startswith", "endswith", "format", "join", "tojson", "fromjson", "success", "failure",
              "always", "cancelled"}
_STATUS_FUNCTIONS = ("success(", "failure(", "always(", "cancelled(")


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise RunnerError(f"cannot parse expression {text!r} at {text[pos:]!r}")
        pos = m.end()
        if m["num"] is not None:
            out.append(("lit", float(m["num"])))
        elif m["str"] is not None:
            out.append(("lit", m["str"][1:-1].replace("''", "'")))
        elif m["op"] is not None:
            out.append(("op", m["op"]))
        else:
            word = m["name"]
            lowered = word.lower()
            out.append(("lit", {"true": True, "false": False, "null": None}[lowered])
                       if lowered in ("true", "false", "null") else ("name", word))
    return out


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, float | int) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip()) if value.strip() else 0.0
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or (isinstance(a, int | float) and isinstance(b, int | float)
                              and not isinstance(a, bool) and not isinstance(b, bool)):
        return a == b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return a is b
    return _number(a) == _number(b)


def to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2)
    return str(value)


class _Parser:
    def __init__(self, text: str, context: dict[str, Any], status: dict[str, bool]) -> None:
        self.tokens, self.i, self.context, self.status, self.text = _tokens(text), 0, context, status, text

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, op: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (op is not None and token != ("op", op)):
            raise RunnerError(f"expected {op or 'more'} in {self.text!r}")
        self.i += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise RunnerError(f"unexpected {self.peek()} in {self.text!r}")
        return value

    def or_(self) -> Any:
        left = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            left = left if truthy(left) else right
        return left

    def and_(self) -> Any:
        left = self.cmp()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.cmp()
            left = right if truthy(left) else left
        return left

    def cmp(self) -> Any:
        left = self.unary()
        while self.peek() in (("op", o) for o in ("==", "!=", "<", "<=", ">", ">=")):
            op = self.take()[1]
            right = self.unary()
            if op == "==":
                left = _equal(left, right)
            elif op == "!=":
                left = not _equal(left, right)
            else:
                a, b = _number(left), _number(right)
                left = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return left

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "lit":
            return value
        if kind == "op" and value == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "name":
            if self.peek() == ("op", "("):
                return self.call(value)
            if value not in self.context:
                raise RunnerError(f"unknown context {value!r} in {self.text!r}")
            return self.context[value]
        raise RunnerError(f"unexpected {value!r} in {self.text!r}")

    def postfix(self, value: Any) -> Any:
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name":
                    raise RunnerError(f"bad property access in {self.text!r}")
                value = _get(value, name)
            else:
                key = self.or_()
                self.take("]")
                value = _get(value, key)
        return value

    def call(self, name: str) -> Any:
        fn = name.lower()
        if fn not in _FUNCTIONS:
            raise RunnerError(f"function {name}() is not supported by the test runner ({self.text!r})")
        self.take("(")
        args = []
        while self.peek() != ("op", ")"):
            args.append(self.or_())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        if fn == "success":
            return not self.status["failed"] and not self.status["cancelled"]
        if fn == "failure":
            return self.status["failed"]
        if fn == "always":
            return True
        if fn == "cancelled":
            return self.status["cancelled"]
        if fn == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_equal(item, needle) for item in haystack)
            return to_string(needle).lower() in to_string(haystack).lower()
        if fn == "startswith":
            return to_string(args[0]).lower().startswith(to_string(args[1]).lower())
        if fn == "endswith":
            return to_string(args[0]).lower().endswith(to_string(args[1]).lower())
        if fn == "format":
            return re.sub(r"\{(\d+)\}", lambda m: to_string(args[1 + int(m[1])]), to_string(args[0]))
        if fn == "join":
            return (to_string(args[1]) if len(args) > 1 else ",").join(to_string(x) for x in args[0] or [])
        if fn == "tojson":
            return json.dumps(args[0], indent=2)
        return json.loads(args[0])  # fromJSON


def _get(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        if isinstance(key, str):
            lowered = {str(k).lower(): v for k, v in value.items()}
            return lowered.get(key.lower())
        return None
    if isinstance(value, list) and isinstance(key, float | int) and not isinstance(key, bool):
        index = int(key)
        return value[index] if 0 <= index < len(value) else None
    return None


def evaluate(text: str, context: dict[str, Any], status: dict[str, bool] | None = None) -> Any:
    return _Parser(text, context, status or {"failed": False, "cancelled": False}).parse()


def interpolate(text: Any, context: dict[str, Any]) -> Any:
    """``${{ expr }}`` substituted in a string (a whole-string expression keeps its type, as in ``with:``)."""
    if not isinstance(text, str):
        return text
    whole = re.fullmatch(r"\s*\$\{\{(.*?)\}\}\s*", text, re.S)
    if whole:
        return evaluate(whole.group(1), context)
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: to_string(evaluate(m.group(1), context)), text, flags=re.S)


def condition(text: Any, context: dict[str, Any], status: dict[str, bool], *, default: str = "success()") -> bool:
    if text is None or text == "":
        text = default
    if isinstance(text, bool):
        return text and evaluate("success()", context, status)
    body = str(text).strip()
    if body.startswith("${{") and body.endswith("}}"):
        body = body[3:-2]
    if not any(f in body.replace(" ", "") for f in _STATUS_FUNCTIONS):
        body = f"success() && ({body})"
    return truthy(evaluate(body, context, status))


# --- running --------------------------------------------------------------------------------------

@dataclass
class StepResult:
    name: str
    kind: str  # run | uses | provided | skipped
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    script: str = ""  # the run: text as executed (expressions substituted)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class JobResult:
    workflow: str
    job: str
    run_id: int
    status: str  # success | failure | skipped
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    workspace: Path | None = None

    def step(self, name: str) -> StepResult:
        found = [s for s in self.steps if name in s.name]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} steps named like {name!r} in {[s.name for s in self.steps]}")
        return found[0]

    @property
    def scripts(self) -> list[str]:
        return [s.script for s in self.steps if s.kind == "run"]

    def log(self) -> str:
        return "\n".join(f"--- {s.name} [{s.kind} {s.exit_code}]\n{s.script}\n{s.stdout}{s.stderr}" for s in self.steps)


@dataclass
class ActionsRunner:
    standin: GitHubStandIn
    repository: str  # owner/name
    origin: Path  # the bare git repository playing GitHub's
    action_dir: Path  # where action.yml lives (this repository: `uses: ./` and `<owner>/gftune@...`)
    tools: Path  # a directory with gftune and python (the test's venv bin)
    scratch: Path
    vars: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    provided: tuple[str, ...] = ("install",)  # step ids the environment provides (gftune is installed)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. git identity for the runner user
    _runs: int = 0

    def run(self, workflow_file: Path, *, event_name: str, event: dict[str, Any], sha: str, ref: str,
            inputs: dict[str, Any] | None = None) -> list[JobResult]:
        workflow = yaml.safe_load(workflow_file.read_text(encoding="utf-8"))
        name = workflow_file.name
        triggers = workflow.get(True) or workflow.get("on")  # YAML 1.1 reads `on:` as True
        if event_name not in (triggers if isinstance(triggers, dict | list) else [triggers]):
            raise RunnerError(f"{name} does not run on {event_name}")
        head_branch = event.get("pull_request", {}).get("head", {}).get("ref") if event_name == "pull_request" \
            else ref.removeprefix("refs/heads/")
        pulls = (event["pull_request"]["number"],) if event_name == "pull_request" else ()
        run = self.standin.add_run(self.repository, name, event=event_name, head_sha=event.get(
            "pull_request", {}).get("head", {}).get("sha", sha), head_branch=head_branch, conclusion=None,
            pull_requests=pulls)
        run.status = "in_progress"
        typed_inputs = dict(inputs or {})
        declared = ((triggers or {}).get("workflow_dispatch") or {}).get("inputs") or {} if isinstance(triggers, dict) \
            else {}
        for key, spec in declared.items():
            value = typed_inputs.get(key, (spec or {}).get("default"))
            if (spec or {}).get("type") == "boolean":
                value = value is True or str(value).lower() == "true"
            typed_inputs[key] = value
        self._runs += 1
        results = []
        for job_id, job in (workflow.get("jobs") or {}).items():
            results.append(self._job(name, workflow, job_id, job, run.id, event_name, event, sha, ref,
                                     typed_inputs if event_name == "workflow_dispatch" else {}))
        ran = [r for r in results if r.status != "skipped"]
        run.status = "completed"
        run.conclusion = "failure" if any(r.status == "failure" for r in ran) else "success" if ran else "skipped"
        return results

    # -- one job ---------------------------------------------------------------------------------
    def _job(self, workflow_name: str, workflow: dict[str, Any], job_id: str, job: dict[str, Any], run_id: int,
             event_name: str, event: dict[str, Any], sha: str, ref: str, inputs: dict[str, Any]) -> JobResult:
        workspace = self.scratch / f"run{self._runs}-{job_id}" / "workspace"
        temp = workspace.parent / "temp"
        workspace.mkdir(parents=True)
        temp.mkdir()
        event_path = temp / "event.json"
        event_path.write_text(json.dumps(event))
        # the job's GITHUB_TOKEN: github-actions[bot], with exactly the permissions the workflow grants
        granted = job.get("permissions", workflow.get("permissions"))
        token = self.standin.add_token(f"ghs_job_{run_id}_{job_id}", "github-actions[bot]", installation=True,
                                       permissions=granted if isinstance(granted, dict) else None)
        github_ctx = {
            "event_name": event_name, "event": event, "sha": sha, "ref": ref, "ref_name": ref.rsplit("/", 1)[-1],
            "repository": self.repository, "repository_owner": self.repository.split("/")[0],
            "token": token, "workspace": str(workspace), "run_id": str(run_id), "run_attempt": "1",
            "actor": "alice", "api_url": self.standin.url, "server_url": "https://github.invalid",
            "graphql_url": self.standin.graphql_url, "workflow": workflow.get("name", workflow_name),
            "job": job_id, "event_path": str(event_path),
            "base_ref": event.get("pull_request", {}).get("base", {}).get("ref", ""),
            "head_ref": event.get("pull_request", {}).get("head", {}).get("ref", ""),
        }
        context = {"github": github_ctx, "vars": dict(self.vars),
                   "secrets": {**self.secrets, "GITHUB_TOKEN": token}, "inputs": inputs,
                   "env": {}, "steps": {}, "runner": {"os": "Linux", "temp": str(temp)}, "job": {"status": "success"},
                   "matrix": {}, "needs": {}}
        result = JobResult(workflow_name, job_id, run_id, "success", workspace=workspace)
        if not condition(job.get("if"), context, {"failed": False, "cancelled": False}):
            result.status = "skipped"
            return result
        base_env = {
            "PATH": f"{self.tools}:/usr/local/bin:/usr/bin:/bin", "HOME": str(temp / "home"), "LANG": "C.UTF-8",
            "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_SHA": sha, "GITHUB_REF": ref, "GITHUB_REF_NAME": github_ctx["ref_name"],
            "GITHUB_REPOSITORY": self.repository, "GITHUB_REPOSITORY_OWNER": github_ctx["repository_owner"],
            "GITHUB_API_URL": self.standin.url, "GITHUB_GRAPHQL_URL": self.standin.graphql_url,
            "GITHUB_SERVER_URL": "https://github.invalid", "GITHUB_RUN_ID": str(run_id), "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_WORKFLOW": github_ctx["workflow"], "GITHUB_WORKFLOW_REF":
                f"{self.repository}/.github/workflows/{workflow_name}@{ref}",
            "GITHUB_JOB": job_id, "GITHUB_ACTOR": "alice", "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_BASE_REF": github_ctx["base_ref"], "GITHUB_HEAD_REF": github_ctx["head_ref"],
            "RUNNER_TEMP": str(temp), "RUNNER_OS": "Linux", **self.extra_env,
        }
        (temp / "home").mkdir()
        state = _JobState(env=dict(base_env), summary=temp / "summary.md", failed=False)
        scoped = {k: to_string(interpolate(v, context)) for k, v in {**(workflow.get("env") or {}),
                                                                      **(job.get("env") or {})}.items()}
        for index, step in enumerate(job.get("steps") or []):
            self._step(step, index, context, scoped, state, workspace, result, run_id, action_path=None)
        result.status = "failure" if state.failed else "success"
        result.summary = state.summary.read_text() if state.summary.exists() else ""
        return result

    def _step(self, step: dict[str, Any], index: int, context: dict[str, Any], scoped: dict[str, str],
              state: _JobState, workspace: Path, result: JobResult, run_id: int, action_path: Path | None) -> None:
        name = str(step.get("name") or step.get("id") or step.get("uses") or (step.get("run") or "").splitlines()[0])
        status = {"failed": state.failed, "cancelled": False}
        context = {**context, "env": {**state.exported, **scoped}}
        if not condition(step.get("if"), context, status):
            result.steps.append(StepResult(name, "skipped"))
            return
        env = {**scoped, **{k: to_string(interpolate(v, context)) for k, v in (step.get("env") or {}).items()}}
        step_id = step.get("id")
        if step_id in self.provided:
            outputs = {"version": _gftune_version(self.tools)} if step_id == "install" else {}
            result.steps.append(StepResult(name, "provided", script=str(step.get("run", "")), outputs=outputs))
            context["steps"][step_id] = {"outputs": outputs, "outcome": "success", "conclusion": "success"}
            return
        if "uses" in step:
            outcome = self._uses(step, name, context, env, state, workspace, result, run_id)
        elif "run" in step:
            outcome = self._run(step, name, context, env, state, workspace, result, action_path)
        else:
            raise RunnerError(f"step {name!r} has neither run nor uses")
        if step_id:
            context["steps"][step_id] = {"outputs": result.steps[-1].outputs, "outcome": outcome,
                                         "conclusion": outcome}
        if outcome == "failure":
            state.failed = True

    def _run(self, step: dict[str, Any], name: str, context: dict[str, Any], env: dict[str, str], state: _JobState,
             workspace: Path, result: JobResult, action_path: Path | None) -> str:
        script = interpolate(str(step["run"]), context)
        shell = step.get("shell", "bash")
        if action_path is not None and "shell" not in step:
            raise RunnerError(f"composite step {name!r} needs a shell")
        files = {k: workspace.parent / "temp" / f"{k.lower()}-{len(result.steps)}" for k in
                 ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH")}
        for path in files.values():
            path.write_text("")
        script_file = workspace.parent / "temp" / f"step-{len(result.steps)}"
        script_file.write_text(script)
        if shell == "bash":
            argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)]
        elif shell == "python":
            argv = ["python", str(script_file)]
        else:
            raise RunnerError(f"shell {shell!r} is not supported by the test runner")
        process_env = {**state.env, **state.exported, **env, **{k: str(v) for k, v in files.items()},
                       "GITHUB_STEP_SUMMARY": str(state.summary)}
        if state.paths:
            process_env["PATH"] = ":".join([*reversed(state.paths), process_env["PATH"]])
        if action_path is not None:
            process_env["GITHUB_ACTION_PATH"] = str(action_path)
        working = workspace / step["working-directory"] if step.get("working-directory") else workspace
        argv[0] = shutil.which(argv[0], path=process_env["PATH"]) or argv[0]
        proc = subprocess.run(argv, cwd=working, env=process_env, capture_output=True, text=True, timeout=900)
        outputs = _read_env_file(files["GITHUB_OUTPUT"].read_text())
        state.exported.update(_read_env_file(files["GITHUB_ENV"].read_text()))
        state.paths += [line for line in files["GITHUB_PATH"].read_text().splitlines() if line.strip()]
        result.steps.append(StepResult(name, "run", proc.returncode, proc.stdout, proc.stderr, script, outputs))
        return "success" if proc.returncode == 0 else "failure"

    def _uses(self, step: dict[str, Any], name: str, context: dict[str, Any], env: dict[str, str], state: _JobState,
              workspace: Path, result: JobResult, run_id: int) -> str:
        uses = str(step["uses"])
        with_ = {k: interpolate(v, context) for k, v in (step.get("with") or {}).items()}
        if uses.startswith("actions/checkout@"):
            return self._checkout(with_, context, workspace, result, name)
        if uses.startswith("actions/setup-python@"):
            result.steps.append(StepResult(name, "provided", outputs={"python-version": sys.version.split()[0]}))
            return "success"
        if uses.startswith("actions/upload-artifact@"):
            return self._upload(with_, workspace, result, run_id, name)
        if uses == "./" or re.fullmatch(r"[\w.-]+/gftune@[\w.-]+", uses):
            return self._composite(with_, context, env, state, workspace, result, run_id, name)
        raise RunnerError(f"{uses} is not supported by the test runner")

    def _checkout(self, with_: dict[str, Any], context: dict[str, Any], workspace: Path, result: JobResult,
                  name: str) -> str:
        github = context["github"]
        target = workspace / str(with_.get("path") or "")
        depth = int(float(with_.get("fetch-depth", 1) or 0))
        ref = str(with_.get("ref") or "") or (github["sha"] if github["event_name"] != "pull_request"
                                               else github["ref"])
        target.mkdir(parents=True, exist_ok=True)
        url = f"file://{self.origin}"
        clone = ["git", "clone", "-q", "--no-checkout", *(["--depth", str(depth)] if depth else []), url, str(target)]
        commands = [clone]
        if re.fullmatch(r"[0-9a-f]{40}", ref):
            commands.append(["git", "-C", str(target), "fetch", "-q", *(["--depth", str(depth)] if depth else []),
                             "origin", ref])
            commands.append(["git", "-C", str(target), "checkout", "-q", "--detach", ref])
            if github["event_name"] in ("push", "schedule", "workflow_dispatch") and ref == github["sha"] and \
                    github["ref"].startswith("refs/heads/"):
                branch = github["ref"].removeprefix("refs/heads/")
                commands.append(["git", "-C", str(target), "checkout", "-q", "-B", branch, ref])
        else:
            commands.append(["git", "-C", str(target), "fetch", "-q", *(["--depth", str(depth)] if depth else []),
                             "origin", f"+{ref}:refs/remotes/origin/checkout"])
            commands.append(["git", "-C", str(target), "checkout", "-q", "--detach", "refs/remotes/origin/checkout"])
        output = ""
        for argv in commands:
            proc = subprocess.run(argv, capture_output=True, text=True)
            output += proc.stdout + proc.stderr
            if proc.returncode != 0:
                result.steps.append(StepResult(name, "uses", proc.returncode, "", output))
                return "failure"
        result.steps.append(StepResult(name, "uses", 0, "", output))
        return "success"

    def _upload(self, with_: dict[str, Any], workspace: Path, result: JobResult, run_id: int, name: str) -> str:
        patterns = [line.strip() for line in str(with_.get("path", "")).splitlines() if line.strip()]
        hidden = with_.get("include-hidden-files") in (True, "true")
        found: list[Path] = []
        for pattern in patterns:
            path = workspace / pattern
            if path.is_file():
                found.append(path)
            elif path.is_dir():
                found += [p for p in sorted(path.rglob("*")) if p.is_file()
                          and (hidden or not any(part.startswith(".") for part in p.relative_to(path).parts))]
        if patterns and all(pattern.startswith(".") or "/." in pattern for pattern in patterns) and not hidden:
            found = []  # upload-artifact@v4 leaves hidden files and directories out unless told
        if not found:
            mode = with_.get("if-no-files-found", "warn")
            result.steps.append(StepResult(name, "uses", 1 if mode == "error" else 0, "", f"no files found ({mode})"))
            return "failure" if mode == "error" else "success"
        root = Path(os.path.commonpath([p.parent for p in found]))
        artifact_name = str(with_.get("name") or "artifact")
        existing = [a for a in self.standin.artifacts.values() if a.run_id == run_id and a.name == artifact_name]
        if existing and with_.get("overwrite") not in (True, "true"):
            result.steps.append(StepResult(name, "uses", 1, "", f"an artifact {artifact_name} exists in this run"))
            return "failure"
        for artifact in existing:
            del self.standin.artifacts[artifact.id]
        self.standin.add_artifact(run_id, artifact_name,
                                  {p.relative_to(root).as_posix(): p.read_bytes() for p in found})
        result.steps.append(StepResult(name, "uses", 0, f"uploaded {len(found)} file(s) as {artifact_name}"))
        return "success"

    def _composite(self, with_: dict[str, Any], context: dict[str, Any], env: dict[str, str], state: _JobState,
                   workspace: Path, result: JobResult, run_id: int, name: str) -> str:
        action = yaml.safe_load((self.action_dir / "action.yml").read_text(encoding="utf-8"))
        if (action.get("runs") or {}).get("using") != "composite":
            raise RunnerError("only composite actions are supported")
        declared = action.get("inputs") or {}
        unknown = set(with_) - set(declared)
        if unknown:
            raise RunnerError(f"action.yml has no input(s) {sorted(unknown)}")
        inputs = {k: to_string(with_[k]) if k in with_ else to_string(interpolate((spec or {}).get("default", ""),
                                                                                     context))
                  for k, spec in declared.items()}
        inner = {**context, "inputs": inputs, "steps": {},
                 "github": {**context["github"], "action_path": str(self.action_dir)}}
        failed_before = state.failed
        for index, step in enumerate(action["runs"]["steps"]):
            self._step(step, index, inner, env, state, workspace, result, run_id, action_path=self.action_dir)
        return "failure" if state.failed and not failed_before else "success"


@dataclass
class _JobState:
    env: dict[str, str]
    summary: Path
    failed: bool
    exported: dict[str, str] = field(default_factory=dict)  # $GITHUB_ENV
    paths: list[str] = field(default_factory=list)  # $GITHUB_PATH


def _read_env_file(text: str) -> dict[str, str]:
    """``NAME=value`` lines and ``NAME<<DELIMITER`` blocks, as GitHub reads $GITHUB_ENV/$GITHUB_OUTPUT."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            body = []
            i += 1
            while i < len(lines) and lines[i] != delimiter:
                body.append(lines[i])
                i += 1
            out[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
        i += 1
    return out


def _gftune_version(tools: Path) -> str:
    proc = subprocess.run([str(tools / "gftune"), "--version"], capture_output=True, text=True)
    return proc.stdout.strip().rsplit(" ", 1)[-1]


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()
