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

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click

import gftune
from gftune import exitcodes
from gftune.desired.config import Config, load_config
from gftune.desired.problems import Problem, sorted_problems
from gftune.desired.repo import DesiredState, load_repo
from gftune.desired.secrets import masker

FORMAT_VERSION = "1"


def echo(message: Any = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` with every known secret value replaced by ``***``."""
    click.echo(masker.mask(str(message)), err=err, nl=nl)


def echo_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, sort_keys=False, default=str))


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
        state = load_repo(self.repo, overrides={**self.overrides(), **(extra or {})}, validate=validate)
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
