"""Options and helpers shared by the CLI verbs.

Every command that talks to servers takes the same flags (design.md §3)::

    @click.command()
    @server_options
    @format_option("text", "json", "markdown")
    def command(opts: ServerOptions, fmt: str) -> None:
        state = opts.load_state()          # DesiredState, overrides applied; exits 1 on load errors
        ...
        finish(code)                       # or: fail(problems, fmt=fmt)

Everything printed goes through :func:`echo`, which masks every known secret.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click

import gftune
from gftune import exitcodes
from gftune.desired.config import Config, load_config
from gftune.desired.problems import Problem, sorted_problems
from gftune.desired.repo import DesiredState
from gftune.desired.secrets import masker
from gftune.formatting import duration
from gftune.gitrepo import GitError
from gftune.orchestration.desired import load_desired
from gftune.orchestration.plan import PlanRun, Prefetch, UnresolvedReferences, produce_plan
from gftune.plan.model import ShardError, parse_shard

FORMAT_VERSION = "1"


def echo(message: Any = "", *, err: bool = False, nl: bool = True, masked: bool = False) -> None:
    """``click.echo`` with every known secret value replaced by ``***`` (``masked``: the caller masked
    it already, as JSON is, string by string before encoding)."""
    click.echo(str(message) if masked else masker.mask(str(message)), err=err, nl=nl)


def echo_json(data: Any) -> None:
    echo(masker.dumps(data, indent=2, sort_keys=False), masked=True)


def render_problems(problems: Iterable[Problem]) -> list[str]:
    return [masker.mask(p.render()) for p in sorted_problems(problems)]


def problems_json(problems: Iterable[Problem]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in sorted_problems(problems)]


def finish(code: int) -> NoReturn:
    """Leave with an exit code from :mod:`gftune.exitcodes`."""
    sys.stdout.flush()
    raise SystemExit(code)


def fail(problems: Iterable[Problem], *, fmt: str = "text", code: int = exitcodes.ERROR) -> NoReturn:
    """Print problems (to stderr as text, or a JSON document on stdout) and exit with ``code``."""
    problems = list(problems)
    if fmt == "json":
        echo_json({"format_version": FORMAT_VERSION, "ok": False, "problems": problems_json(problems)})
    else:
        for line in render_problems(problems):
            echo(line, err=True)
    finish(code)


@dataclass
class ServerOptions:
    """The shared flags, as given (None = not given)."""

    repo: Path
    api: str | None = None
    prometheus: str | None = None
    scrape: str | None = None
    metric_namespace: str | None = None

    def overrides(self) -> dict[str, Any]:
        """Config overrides for :func:`gftune.desired.config.load_config` (flags beat env and file)."""
        return {"api_url": self.api, "prometheus_url": self.prometheus, "scrape_url": self.scrape,
                "metric_namespace": self.metric_namespace}

    def load_state(self, *, validate: bool = True, fmt: str = "text", exit_on_errors: bool = True,
                   extra: dict[str, Any] | None = None) -> DesiredState:
        """The desired state with overrides applied; exits 1 (printing the problems) if it has errors.

        ``extra`` adds command-specific config overrides, e.g. ``{"time_scale": 60}`` from a flag.
        """
        state = load_desired(self.repo, overrides={**self.overrides(), **(extra or {})}, validate=validate)
        if exit_on_errors and not state.valid:
            fail(state.problems, fmt=fmt)
        return state

    def load_config(self, *, fmt: str = "text", extra: dict[str, Any] | None = None) -> Config:
        """Only the configuration (for commands that do not need pipelines); exits 1 on errors."""
        config, problems = load_config(self.repo, overrides={**self.overrides(), **(extra or {})})
        if any(p.is_error for p in problems):
            fail(problems, fmt=fmt)
        return config


def repo_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--repo", "repo", default=".", show_default=True, metavar="DIR",
                        type=click.Path(path_type=Path),
                        help="Repository with gftune.yaml, pipelines/ and policies/.")(f)


api_option = click.option("--api", metavar="URL", default=None,
                          help="GlassFlow API base URL (env GFTUNE_API; default http://localhost:8081).")


def server_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --repo, --api, --prometheus, --scrape and --metric-namespace as one ``opts`` argument."""

    @wraps(f)
    def wrapper(*args: Any, repo: Path, api: str | None, prometheus: str | None, scrape: str | None,
                metric_namespace: str | None, **kwargs: Any) -> Any:
        opts = ServerOptions(repo=repo, api=api, prometheus=prometheus, scrape=scrape,
                             metric_namespace=metric_namespace)
        return f(*args, opts=opts, **kwargs)

    options = [
        click.option("--metric-namespace", metavar="NS", default=None,
                     help="Metric name prefix <NS>_gfm_* (env GFTUNE_METRIC_NAMESPACE; default glassflow)."),
        click.option("--scrape", metavar="URL", default=None,
                     help="Scrape this /metrics endpoint directly instead of asking Prometheus (env GFTUNE_SCRAPE)."),
        click.option("--prometheus", metavar="URL", default=None,
                     help="Prometheus base URL (env GFTUNE_PROMETHEUS)."),
        api_option,
    ]
    decorated: Callable[..., Any] = wrapper
    for option in options:
        decorated = option(decorated)
    return repo_option(decorated)


def api_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --repo and --api as one ``opts`` argument: for commands that talk to the API only (no metrics)."""

    @wraps(f)
    def wrapper(*args: Any, repo: Path, api: str | None, **kwargs: Any) -> Any:
        return f(*args, opts=ServerOptions(repo=repo, api=api), **kwargs)

    return repo_option(api_option(wrapper))


def examples_dir() -> Path:
    """The example repository shipped with gftune (the package's ``examples/``, else the checkout)."""
    packaged = Path(gftune.__file__).resolve().parent / "examples"
    if (packaged / "policies").is_dir():
        return packaged
    checkout = Path(gftune.__file__).resolve().parent.parent
    if (checkout / "policies").is_dir():
        return checkout
    raise click.ClickException("the example repository (gftune.yaml, policies/) is not installed with gftune")


def format_option(*choices: str, default: str = "text") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--format`` with the given choices, passed to the command as ``fmt``."""
    choices = choices or ("text", "json")

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        return click.option("--format", "fmt", type=click.Choice(choices), default=default, show_default=True,
                            help="Output format.")(f)

    return decorate


class ScrapeWait:
    """Says at once that reading metrics by direct scrape will wait a metrics window between its two
    scrapes (5 minutes unless configured otherwise), until when, and how to avoid it; then shows the
    time left while it waits: a countdown on a terminal; in a log, a line every fifth of the wait (at
    most every ``LOG_EVERY_S``).

    Use as the ``progress`` callback of policy evaluation, inside ``with``::

        with ScrapeWait(config) as wait:
            plan_policies(..., progress=wait)  # gftune.orchestration.policies
    """

    LOG_EVERY_S = 30.0

    def __init__(self, config: Config, *, has_policies: bool = True) -> None:
        direct = bool(config.scrape_url) and not config.prometheus_url
        self.url = config.scrape_url
        self.wait_s = config.scaled(config.metrics_window) if direct and has_policies else 0.0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ScrapeWait:
        if self.wait_s >= 1:
            until = datetime.now().astimezone() + timedelta(seconds=self.wait_s)
            echo(f"metrics: a direct scrape of {self.url} takes two scrapes {duration(self.wait_s)} apart "
                 f"to measure rates, so the policies are evaluated at about {until:%H:%M:%S} "
                 "(a Prometheus in gftune.yaml `metrics.prometheus` answers at once)", err=True)
        return self

    def __call__(self, message: str) -> None:
        echo(message, err=True)
        if self.wait_s >= 1 and self._thread is None:
            self._thread = threading.Thread(target=self._count_down, name="gftune-scrape-wait", daemon=True)
            self._thread.start()

    def _count_down(self) -> None:
        end = time.monotonic() + self.wait_s
        if sys.stderr.isatty():
            from rich.console import Console

            with Console(stderr=True).status("") as status:
                while not self._done.wait(1.0) and time.monotonic() < end:
                    status.update(f"waiting for the second scrape: {duration(end - time.monotonic())} left")
            return
        every = min(self.LOG_EVERY_S, max(1.0, self.wait_s / 5))
        while not self._done.wait(every):
            left = end - time.monotonic()
            if left < 1:
                return
            echo(f"  waiting for the second scrape: {duration(left)} left", err=True)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


# --- the plan step, as every command that plans shows it -------------------------------------------

PROGRESS_AFTER_S = 1.0


class LiveReadProgress:
    """Says what is going on when reading takes longer than a second (spinner on a terminal)."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.done = 0
        self.total = total
        self._status: Any = None
        self._announced = False
        self._started = time.monotonic()

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self._status is None and not self._announced and time.monotonic() - self._started > PROGRESS_AFTER_S:
            self._start()
        if self._status is not None:
            self._status.update(f"{self.what}: {done}/{total} pipelines")

    async def tick(self) -> None:
        await asyncio.sleep(PROGRESS_AFTER_S)
        if self._status is None and not self._announced:
            self._start()

    def _start(self) -> None:
        self._announced = True
        if sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status(f"{self.what}: {self.done}/{self.total} pipelines")
            self._status.start()
        else:
            echo(f"{self.what} ({self.total} pipelines)…", err=True)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class ConsoleUi:
    """What the plan step shows on stderr: reading live state (after a second, a spinner on a terminal)
    and the wait of a direct scrape (:class:`ScrapeWait`)."""

    def __init__(self, *, live_progress: bool = True) -> None:
        self.live_progress = live_progress

    def reading(self, what: str, total: int) -> LiveReadProgress | None:
        return LiveReadProgress(what, total) if self.live_progress else None

    def metrics_wait(self, config: Config, *, has_policies: bool) -> ScrapeWait:
        return ScrapeWait(config, has_policies=has_policies)


CONSOLE = ConsoleUi()


class UnresolvedReferencesError(click.ClickException):
    """References that cannot be resolved, found before anything was planned: each located, then what to do."""

    def __init__(self, problems: list[Problem], hint: str) -> None:
        self.problems = problems
        self.hint = hint
        super().__init__(f"{len(problems)} reference(s) cannot be resolved")

    def show(self, file: Any = None) -> None:
        for line in render_problems(self.problems):
            echo(f"error: {line}", err=True)
        echo(f"error: {self.hint}", err=True)


@contextmanager
def references_checked() -> Iterator[None]:
    """The plan step's :class:`~gftune.orchestration.plan.UnresolvedReferences` as a click error."""
    try:
        yield
    except UnresolvedReferences as exc:
        raise UnresolvedReferencesError(exc.problems, exc.hint()) from None


@contextmanager
def _plan_runtime() -> Iterator[None]:
    """Interpreter settings for one big plan, restored afterwards (docs/benchmarks.md):

    * fewer garbage collections while thousands of documents are alive: with the default gen-0
      threshold (700 allocations) every full collection re-scans the whole desired state (~10% of a
      1,000-pipeline plan);
    * a 1 ms GIL switch interval instead of 5 ms, so that the thread reading the API is not kept
      waiting by the thread loading the repository each time an answer arrives.
    """
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(100_000, 50, 50)
    sys.setswitchinterval(0.001)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)
        gc.unfreeze()


def plan_from_options(opts: ServerOptions, *, fmt: str, targets: Iterable[str] = (), shard: str | None = None,
                      changed_since: str | None = None, **kwargs: Any) -> tuple[DesiredState, PlanRun]:
    """Load the repository (exits 1 on problems) while live state is read in the background; plan."""
    with _plan_runtime():
        # with --changed-since the ids are known only after the diff: read just those, afterwards
        prefetch = None if changed_since else Prefetch.start(opts.repo, opts.overrides(), targets=targets,
                                                              shard=shard, ui=CONSOLE)
        state = opts.load_state(fmt=fmt)
        gc.freeze()  # the desired state lives until the end: later collections need not scan it
        try:
            with references_checked():
                run = asyncio.run(produce_plan(state, targets=targets, shard=shard, prefetched=prefetch, ui=CONSOLE,
                                               changed_since=changed_since, **kwargs))
        except GitError as exc:
            echo(f"error: --changed-since {changed_since}: {exc}", err=True)
            finish(exitcodes.ERROR)
    return state, run


def changed_since_option(f: Any) -> Any:
    return click.option("--changed-since", metavar="REF", default=None,
                        help="Only the pipelines this branch changed since it left REF (their files, or a policy "
                             "that selects them); everything else is left alone. Deleted pipeline files are "
                             "planned as deletions only with --allow-delete.")(f)


def shard_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: reject a malformed ``--shard`` before anything is read."""
    if value:
        try:
            parse_shard(value)
        except ShardError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


