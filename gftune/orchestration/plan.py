"""The plan step of ``plan``, ``apply --auto-approve``, ``drift`` and ``tune``: read the live state of
the pipelines in scope (in a background thread while the repository loads), select what a branch
changed (``--changed-since``), check that every secret reference resolves, evaluate the policies
against metric readings, build the plan — the I/O edge around the pure
:func:`gftune.plan.model.build_plan` — and say why each change is in it (git history, provenance).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from gftune import gitrepo
from gftune.client import ApiError, GlassFlowClient
from gftune.desired import paths, secrets
from gftune.desired.config import Config, load_config
from gftune.desired.problems import Problem
from gftune.desired.repo import PIPELINES_DIR, POLICIES_DIR, DesiredState, display_path, yaml_files
from gftune.gitrepo import changed_files, git_info
from gftune.glassflow.rules import json_path
from gftune.live import LiveState, list_live, read_live
from gftune.plan import tags, why
from gftune.plan.build import PlanOptions, Timeouts, build_plan
from gftune.plan.changes import ChangedFile, Selection, select_changed
from gftune.plan.model import Plan, Scope, in_shard, parse_shard, select_scope

_ENV_NAME_IN = re.compile(r"environment variable (\w+) is not set")


class LiveProgress(Protocol):
    """Progress of reading the live state (a spinner on a terminal, a line in a log, or nothing)."""

    def update(self, done: int, total: int) -> None: ...

    async def tick(self) -> None: ...

    def stop(self) -> None: ...


class PlanUi(Protocol):
    """What the plan step shows while it waits: supplied by the command (:mod:`gftune.commands.common`)."""

    def reading(self, what: str, total: int) -> LiveProgress | None: ...

    def metrics_wait(self, config: Config, *, has_policies: bool) -> AbstractContextManager[Callable[[str], None]]: ...


class QuietUi:
    """Shows nothing (tests, benchmarks, library use)."""

    def reading(self, what: str, total: int) -> LiveProgress | None:
        return None

    def metrics_wait(self, config: Config, *, has_policies: bool) -> AbstractContextManager[Callable[[str], None]]:
        return nullcontext(lambda message: None)


QUIET = QuietUi()


@dataclass
class PlanRun:
    """A plan with what it was made from (``drift`` and ``apply`` need the live state too)."""

    plan: Plan
    live: dict[str, LiveState]
    scope: Scope
    listed: list[dict[str, Any]] | None = None
    outcomes: dict[str, Any] = field(default_factory=dict)


def plan_options(state: DesiredState, *, allow_delete: bool, env: Mapping[str, str]) -> PlanOptions:
    config = state.config
    return PlanOptions(
        allow_delete=allow_delete, resolver=state.resolver(env),
        restart_estimate_s=config.scaled(config.restart_estimate),
        timeouts=Timeouts.of(config),
    )


def metrics_source(config: Any) -> str | None:
    if config.prometheus_url:
        return f"Prometheus {config.prometheus_url}"
    if config.scrape_url:
        return f"scrape {config.scrape_url}"
    return None


def _evaluate_policies(state: DesiredState, scope: Scope, live: dict[str, LiveState], plan_kw: dict[str, Any],
                       now: datetime, ui: PlanUi) -> dict[str, Any]:
    """Policy outcomes per pipeline in scope (only when the repository has policies)."""
    config = state.config
    source = metrics_source(config)
    plan_kw["metrics"] = {"source": source, "naming": config.metric_naming, "notes": []} if source else None
    if not state.policies:
        return {}
    # The policy engine and the metric sources are imported only by a plan that evaluates policies:
    # ~70 modules a plan of a repository without policies would load for nothing, on every run.
    from gftune.orchestration.policies import plan_policies

    in_scope = dataclasses.replace(state, pipelines={pid: state.pipelines[pid] for pid in scope.desired})
    try:
        # A direct scrape waits a whole metrics window between its two scrapes (5 minutes in
        # production): always say so at once on stderr, whatever the output format, and count down.
        with ui.metrics_wait(config, has_policies=bool(state.policies)) as wait:
            report = plan_policies(in_scope, live, config, now, progress=wait)
    except Exception as exc:  # must not hide the git changes, nor pass for "no proposals": an error
        plan_kw.setdefault("policy_failures", []).append(
            f"policies could not be evaluated ({type(exc).__name__}: {exc}); the plan is incomplete")
        return {}
    if report.source_description is None:
        return {}  # the plan says once that no metrics source is configured
    plan_kw["metrics"] = {"source": report.source_description, "naming": config.metric_naming,
                          "notes": list(report.notes)}
    plan_kw["policies_evaluated"] = True
    return dict(report.outcomes)


def unresolved_references(state: DesiredState, ids: Iterable[str], env: Mapping[str, str]) -> list[Problem]:
    """Every ``${env:..}``/``${file:..}`` reference of the pipelines ``ids`` that cannot be resolved now,
    located in its file. The repository's resolver reads the values (sandboxed: a ${file:} outside the
    repository is refused, not read) and registers none of them with the masker."""
    problems: list[Problem] = []
    resolve = state.resolver(env)
    for pipeline_id in ids:
        pipeline = state.pipelines[pipeline_id]
        for location, value in paths.leaves(pipeline.spec):
            if not secrets.is_reference(value):
                continue
            try:
                resolve(value)
            except secrets.SecretError as exc:
                line, col = pipeline.locate(location)
                problems.append(Problem(pipeline.file, line, col, json_path(("spec", *location)), str(exc)))
    return problems


class UnresolvedReferences(Exception):
    """Raised by :func:`produce_plan` before it reads any metrics: the plan would fail on these anyway."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} reference(s) cannot be resolved")

    def hint(self) -> str:
        names = sorted({m.group(1) for p in self.problems if (m := _ENV_NAME_IN.search(p.message))})
        what = f"set {', '.join(names)} in the environment" if names else "fix the references"
        return (f"{what} (values never go into git), then plan again; nothing was planned and no metrics "
                "were read")


@dataclass
class LiveRead:
    listed: list[dict[str, Any]] | None  # GET /pipeline rows; None when the list could not be read
    live: dict[str, LiveState]
    errors: list[str] = field(default_factory=list)
    unreachable: str | None = None  # the API did not answer at all


async def read_state(config: Any, ids: Iterable[str], *, ui: PlanUi = QUIET,
                     listed: list[dict[str, Any]] | None = None) -> LiveRead:
    """List the live pipelines (unless ``listed`` is given) and read ``ids`` concurrently."""
    ids = list(ids)
    reporter = ui.reading(f"reading live state from {config.api_url}", len(ids))
    ticker = asyncio.create_task(reporter.tick()) if reporter else None
    errors: list[str] = []
    try:
        async with GlassFlowClient.from_config(config) as client:
            if listed is None:
                try:
                    listed = await list_live(client)
                except ApiError as exc:
                    errors.append(f"cannot list live pipelines, so deletions and unmanaged pipelines are unknown: "
                                  f"{exc}")
                    if exc.transport:  # nobody answers: do not retry three GETs per pipeline as well
                        return LiveRead(listed=None, errors=errors, live=_unreachable(ids, str(exc)),
                                        unreachable=str(exc))
            live = await read_live(client, ids, progress=reporter.update if reporter else None)
    finally:
        if ticker is not None:
            ticker.cancel()
        if reporter is not None:
            reporter.stop()
    return LiveRead(listed=listed, live=live, errors=errors)


def _unreachable(ids: Iterable[str], reason: str) -> dict[str, LiveState]:
    return {pid: LiveState(pid, exists=False, error=f"API unreachable: {reason}") for pid in ids}


class Prefetch:
    """Reads live state in a background thread while the main thread loads the repository.

    Loading and validating 1,000 pipeline files is CPU work; reading 3,000 API answers is mostly
    waiting on the API. The ids are the pipeline files' names (the loader insists that
    ``pipeline_id`` equals the file name); :func:`produce_plan` reads whatever the guess missed and
    drops what is not in scope.
    """

    def __init__(self, config: Any, ids: list[str], *, ui: PlanUi = QUIET) -> None:
        self.ids = ids
        self._result: LiveRead | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(config, ui), name="gftune-live-read",
                                        daemon=True)
        self._thread.start()

    def _run(self, config: Any, ui: PlanUi) -> None:
        try:
            self._result = asyncio.run(read_state(config, self.ids, ui=ui))
        except BaseException as exc:  # handed to the main thread by result()
            self._error = exc

    def result(self) -> LiveRead:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @classmethod
    def start(cls, repo: Path, overrides: dict[str, Any], *, targets: Iterable[str] = (), shard: str | None = None,
              ui: PlanUi = QUIET) -> Prefetch | None:
        """Guess the ids from ``pipelines/**/*.yaml`` and start; None when the config is not usable."""
        config, problems = load_config(repo, overrides=overrides)
        if any(p.is_error for p in problems):
            return None
        targets = list(targets)
        shard_range = parse_shard(shard) if shard else None
        ids = [p.stem for p in yaml_files(Path(repo) / PIPELINES_DIR)]
        ids = [i for i in dict.fromkeys(ids) if (not targets or i in targets) and in_shard(i, shard_range)]
        return cls(config, ids, ui=ui)


def changed_selection(state: DesiredState, ref: str) -> Selection:
    """``--changed-since REF``: the pipelines this branch changed (files, and policies that select
    them), the pipeline files it deleted, and the rest, left alone. Raises GitError."""
    from gftune.policy.language import parse_policy  # the policy language, only where policies changed

    found = changed_files(state.root, ref)
    selectors: dict[str, list[Any]] = {}
    current = {display_path(p.path, state.root): p for p in state.policies}
    for change in found.files:
        if not change.path.startswith("policies/"):
            continue
        docs = [current[change.path].doc] if change.path in current else []
        if change.old_text is not None:
            with contextlib.suppress(yaml.YAMLError):
                docs.append(yaml.safe_load(change.old_text))
        for doc in docs:
            with contextlib.suppress(Exception):  # an unreadable old version selects nothing
                selectors.setdefault(change.path, []).append(parse_policy(doc).selects)
    pipelines = {pid: (p.file or display_path(p.path, state.root), p.labels) for pid, p in state.pipelines.items()}
    return select_changed(ref, found.base, [ChangedFile(f.path, f.status) for f in found.files], pipelines,
                          selectors)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def source_digests(state: DesiredState, deleted: Iterable[str]) -> dict[str, str | None]:
    """sha256 of the files a plan is made from besides the pipeline documents (the plan's digest
    covers those): the policies and gftune.yaml, and None for each pipeline whose deletion is
    planned (its file must stay gone)."""
    out: dict[str, str | None] = {}
    for pid in deleted:
        out[f"{PIPELINES_DIR}/{pid}.yaml"] = None
    for policy in state.policies:
        out[display_path(policy.path, state.root)] = _digest(policy.path)
    out["gftune.yaml"] = _digest(state.root / "gftune.yaml")
    return dict(sorted(out.items()))


def sources_now(root: Path, recorded: Iterable[str]) -> dict[str, str | None]:
    """The same digests for the repository as it is now: the files a plan recorded, every policy
    file there is now (a new one may change what a pipeline's plan would be) and gftune.yaml."""
    root = Path(root)
    paths = set(recorded) | {"gftune.yaml"}
    paths |= {display_path(p, root) for p in yaml_files(root / POLICIES_DIR)}
    return {path: _digest(root / path) for path in sorted(paths)}


async def produce_plan(state: DesiredState, *, targets: Iterable[str] = (), shard: str | None = None,
                       allow_delete: bool = False, policies: bool = True, env: Mapping[str, str] | None = None,
                       ui: PlanUi = QUIET, prefetched: Prefetch | None = None, changed_since: str | None = None,
                       clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> PlanRun:
    """Read live state for the pipelines in scope, evaluate policies, build the plan.

    ``changed_since``: only the pipelines the branch changed since that ref (raises GitError).
    ``clock`` says when the metrics are read and when the plan is made (this machine's, by default)."""
    config = state.config
    shard_range = parse_shard(shard) if shard else None
    targets = list(dict.fromkeys(targets))
    info = git_info(state.root)
    selection = changed_selection(state, changed_since) if changed_since else None
    plan_kw: dict[str, Any] = {"git": info.to_dict() if info else None, "api_url": config.api_url,
                               "targets": targets, "shard": shard, "warnings": [],
                               "selection": selection.to_dict() if selection else None}
    if prefetched is not None:
        read = await asyncio.to_thread(prefetched.result)
    else:
        read = await read_state(config, [], ui=ui)
    if selection is not None:
        wanted = [t for t in selection.ids if not targets or t in targets]
        scope = select_scope(state.pipelines, read.listed, targets=wanted, shard=shard_range) if wanted else \
            Scope(desired=[], orphans=[], unmanaged=[], unknown_targets=[])
        scope.unknown_targets = [t for t in scope.unknown_targets if t not in selection.deleted]
    else:
        scope = select_scope(state.pipelines, read.listed, targets=targets, shard=shard_range)
    plan_kw["sources"] = source_digests(state, scope.orphans if allow_delete else [])
    # Before any metrics are read (a direct scrape waits minutes): every reference the plan will resolve.
    unresolved = unresolved_references(state, scope.desired, os.environ if env is None else env)
    if unresolved:
        raise UnresolvedReferences(unresolved)
    ids = scope.desired + (scope.orphans if allow_delete else [])
    missing = [i for i in ids if i not in read.live]
    if missing and read.unreachable is not None:
        read.live.update(_unreachable(missing, read.unreachable))
    elif missing:
        more = await read_state(config, missing, ui=ui, listed=read.listed or [])
        read.live.update(more.live)
    live = {i: read.live[i] for i in ids}
    outcomes = _evaluate_policies(state, scope, live, plan_kw, clock(), ui) if policies else {}
    if not policies:
        plan_kw["metrics"] = None
    errors = [*read.errors, *plan_kw.pop("policy_failures", [])]
    plan = build_plan(state.pipelines, live, plan_options(state, allow_delete=allow_delete,
                                                          env=os.environ if env is None else env),
                      scope=scope, plan_id=str(uuid.uuid4()), now=clock(), outcomes=outcomes, errors=errors,
                      **plan_kw)
    return PlanRun(plan=plan, live=live, scope=scope, listed=read.listed, outcomes=outcomes)


def explain_changes(run: PlanRun, state: DesiredState, env: Mapping[str, str]) -> None:
    """Say why each change is in the plan (``Change.why``): the commit and author that set git's value
    (the pipeline file's history), or the edit outside gftune it undoes (drift's attribution from the
    live pipeline's provenance tag, and its last change from ``GET .../health``)."""
    head = (run.plan.git or {}).get("commit")
    resolver = state.resolver(env)

    def commit_info(shas: Iterable[str]) -> dict[str, why.CommitInfo]:
        return {sha: why.CommitInfo(sha, *fields) for sha, fields in gitrepo.commit_summaries(state.root, shas).items()}

    for entry in run.plan.pipelines:
        desired, live = state.pipelines.get(entry.pipeline_id), run.live.get(entry.pipeline_id)
        if not entry.changes or desired is None or live is None or not live.exists or live.error:
            continue
        applied = tags.provenance_commit(live.tags)
        try:
            whys = why.explain(
                [c.path for c in entry.changes], live_doc=live.pipeline or {}, live_resources=live.resources,
                live_changed_at=(live.health or {}).get("updated_at"), head=head, applied_commit=applied,
                applied_spec=gitrepo.spec_at(state.root, desired.path, applied, head, desired.spec),
                desired_spec=desired.spec,
                history=lambda file=desired.path: gitrepo.iter_spec_history(state.root, file),
                resolver=resolver, commit_info=commit_info)
        except secrets.SecretError:
            continue  # a reference that cannot be resolved is already the entry's error
        for change in entry.changes:
            change.why = whys.get(change.path)
