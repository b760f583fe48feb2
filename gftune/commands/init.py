"""``gftune init [DIR]``: a new gftune repository for a real GlassFlow cluster.

Writes ``gftune.yaml`` (the API and the metrics: asked on a terminal, or from flags; never asked in CI or
with ``--yes``), the built-in tuning policies under ``policies/`` (copies, yours to edit), ``pipelines/``,
``.gitignore``, a README section of next steps and, with ``--github-workflows``, the GitHub Actions
workflows. The texts come from :mod:`gftune.desired.scaffold`; this module asks, reads and writes.
Nothing is written when a file exists with other content (unless ``--force``); ``.gitignore`` and
``README.md`` are added to, never replaced.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import httpx

from gftune import __version__, exitcodes
from gftune.commands.common import echo, examples_dir, finish
from gftune.desired import scaffold


def _url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "":
        return value
    text = value.strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r}: must be an http:// or https:// URL", ctx=ctx, param=param)
    return text


def _action(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not scaffold.ACTION_REF.match(value.strip()):
        raise click.BadParameter(f"{value!r}: expected OWNER/REPO@REF, e.g. acme/gftune@v{__version__}",
                                 ctx=ctx, param=param)
    return value.strip() if value else None


def interactive(yes: bool) -> bool:
    """Questions only for a person at a terminal: never in CI (``CI`` is set by GitHub Actions and most
    others), never with ``--yes``, never when stdin is not a terminal."""
    return not yes and not os.environ.get("CI") and sys.stdin.isatty()


def ask_url(question: str, default: str) -> str | None:
    while True:
        answer = click.prompt(question, default=default, show_default=bool(default)).strip()
        if not answer:
            return None
        if answer.startswith(("http://", "https://")):
            return answer.rstrip("/")
        echo("  an http:// or https:// URL, please (or Enter to skip)")


def ask(settings: scaffold.InitSettings, *, given: set[str], workflows_available: bool) -> scaffold.InitSettings:
    """Fill in what the flags did not give, asking one question at a time."""
    urls = scaffold.suggested_urls()
    api_url, prometheus, scrape = settings.api_url, settings.prometheus_url, settings.scrape_url
    namespace, workflows = settings.metric_namespace, settings.workflows
    if "api" not in given:
        echo(f"The GlassFlow API: in the cluster {urls['api']} (Helm chart glassflow-etl, release "
             "\"glassflow\"); from your machine, `kubectl port-forward svc/glassflow-api 8081:8081`.")
        api_url = ask_url("GlassFlow API URL", scaffold.DEFAULT_API) or scaffold.DEFAULT_API
    if not given & {"prometheus", "scrape"}:
        echo("Metrics: a Prometheus that scrapes GlassFlow's OTel collector is best (a policy's `for:` is checked "
             "over its whole length); without one gftune reads the collector's /metrics itself, twice, a metrics "
             "window (5m) apart, on every plan.")
        prometheus = ask_url("Prometheus URL (Enter: none)", "")
        if not prometheus:
            scrape = ask_url("OTel collector /metrics URL (Enter: no metrics for now)", urls["scrape"])
    if "metric_namespace" not in given:
        namespace = click.prompt("Metric namespace (the Helm release's namespace: names are <namespace>_gfm_*)",
                                 default=namespace).strip() or namespace
    if "workflows" not in given and workflows_available:
        workflows = click.confirm("Add GitHub Actions workflows (plan on pull requests, apply on merge, nightly "
                                  "drift and tune)?", default=False)
    action = settings.action
    while workflows and not action:
        answer = click.prompt("Where the workflows get gftune's GitHub Action (OWNER/REPO@REF, e.g. "
                              f"acme/gftune@v{__version__})").strip()
        if scaffold.ACTION_REF.match(answer):
            action = answer
        else:
            echo("  OWNER/REPO@REF, please: the gftune repository you install from, at a release tag")
    return scaffold.InitSettings(api_url=api_url, prometheus_url=prometheus, scrape_url=scrape,
                                 metric_namespace=namespace, workflows=workflows, action=action,
                                 policies=settings.policies)


def builtin_policies() -> dict[str, str]:
    directory = examples_dir() / "policies"
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.yaml"))}


def builtin_workflows() -> dict[str, str]:
    """The GitHub Actions workflows shipped with gftune (repository path -> text); empty when not packaged."""
    directory = examples_dir() / "workflows"
    return {f".github/workflows/{p.name}": p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.yml"))}


def check_api(url: str) -> str:
    """One line on whether the API answers (``GET /api/v1/platform``, ``GET /api/v1/pipeline``) and how many
    pipelines it runs; init goes on either way."""
    try:
        response = httpx.get(f"{url}/api/v1/platform", timeout=3.0)
        response.raise_for_status()
        orchestrator = (response.json() or {}).get("orchestrator")
        rows = httpx.get(f"{url}/api/v1/pipeline", timeout=3.0).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        return (f"warning: the GlassFlow API at {url} does not answer ({type(exc).__name__}); check the URL, or "
                "reach it with `kubectl port-forward` before `gftune import`")
    count = len(rows) if isinstance(rows, list) else 0
    where = f" (orchestrator: {orchestrator})" if orchestrator else ""
    return f"the GlassFlow API at {url} answers{where}: {count} pipeline(s) for `gftune import`"


def in_git_work_tree(path: Path) -> bool:
    import git

    try:
        git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return False
    return True


@click.command(name="init")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--api", "api_url", metavar="URL", callback=_url, help="GlassFlow API URL (asked when not given).")
@click.option("--prometheus", metavar="URL", callback=_url,
              help="Prometheus that scrapes GlassFlow's OTel collector.")
@click.option("--scrape", metavar="URL", callback=_url,
              help="The OTel collector's /metrics, read directly (no Prometheus).")
@click.option("--metric-namespace", metavar="NS", help="Metric name prefix <NS>_gfm_* (the Helm release's namespace).")
@click.option("--github-workflows/--no-github-workflows", "workflows", default=None,
              help="Add the GitHub Actions workflows (.github/workflows/).")
@click.option("--github-action", "action", metavar="OWNER/REPO@REF", callback=_action,
              help="Where the workflows get gftune's GitHub Action: the gftune repository you install from, at a "
                   "release tag (e.g. acme/gftune@v0.1.0).")
@click.option("--yes", "-y", is_flag=True,
              help="Ask nothing: flags and defaults only (so it is in CI and without a terminal).")
@click.option("--force", is_flag=True, help="Overwrite files that exist with other content.")
def command(directory: Path, api_url: str | None, prometheus: str | None, scrape: str | None,
            metric_namespace: str | None, workflows: bool | None, action: str | None, yes: bool,
            force: bool) -> None:
    """Start a gftune repository in DIRECTORY (default: here) for a real GlassFlow cluster.

    Exit 0 written, 1 nothing written (a file exists with other content, or bad input)."""
    if prometheus and scrape:
        raise click.UsageError("give --prometheus or --scrape, not both (Prometheus would win)")
    policies = builtin_policies()
    given = {name for name, value in (("api", api_url), ("prometheus", prometheus), ("scrape", scrape),
                                      ("metric_namespace", metric_namespace), ("workflows", workflows))
             if value is not None}
    settings = scaffold.InitSettings(api_url=api_url or scaffold.DEFAULT_API, prometheus_url=prometheus or None,
                                     scrape_url=scrape or None,
                                     metric_namespace=metric_namespace or scaffold.DEFAULT_NAMESPACE,
                                     workflows=bool(workflows) or action is not None, action=action,
                                     policies=tuple(Path(n).stem for n in policies))
    shipped = builtin_workflows()
    if interactive(yes):
        settings = ask(settings, given=given, workflows_available=bool(shipped))
    if settings.workflows and not shipped:
        echo("warning: this gftune has no GitHub workflows to copy; see docs/github.md", err=True)
    elif settings.workflows and not settings.action:
        raise click.UsageError("--github-workflows needs --github-action OWNER/REPO@REF: where the workflows get "
                               f"gftune's GitHub Action (the gftune repository you install from, e.g. "
                               f"acme/gftune@v{__version__})")

    root = directory
    existing = {name: (root / name).read_text(encoding="utf-8") if (root / name).is_file() else None
                for name in scaffold.MERGED_FILES}
    title = root.resolve().name or "GlassFlow pipelines"
    files = scaffold.repository_files(settings, policies=policies, workflows=shipped, existing=existing, title=title)
    conflicts = [name for name, text in files.items() if name not in scaffold.MERGED_FILES
                 and (root / name).is_file() and (root / name).read_text(encoding="utf-8") != text]
    if conflicts and not force:
        for name in conflicts:
            echo(f"error: {root / name} exists with other content; --force overwrites it", err=True)
        echo("nothing written", err=True)
        finish(exitcodes.ERROR)

    written, unchanged = [], []
    for name, text in files.items():
        path = root / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            unchanged.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(name)
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    new_git = not in_git_work_tree(root)
    if new_git:
        import git

        git.Repo.init(root, initial_branch="main")

    echo(f"gftune repository in {root}:")
    echo(f"  gftune.yaml   API {settings.api_url}; metrics: {settings.metrics_source}")
    echo(f"  policies/     {len(policies)} built-in tuning policies, yours to edit")
    echo("  pipelines/    empty: `gftune import` fills it")
    others = [n for n in written if n not in ("gftune.yaml",) and not n.startswith("policies/")]
    if others:
        echo(f"  also wrote    {', '.join(others)}")
    if unchanged:
        echo(f"  unchanged     {len(unchanged)} file(s) already as init would write them")
    if new_git:
        echo("  git           initialised a repository (branch main)")
    echo(check_api(settings.api_url))
    echo("")
    echo("Next (also in README.md):")
    where = f"cd {directory} && " if directory != Path(".") else ""
    echo(f"  {where}gftune import       # the live pipelines -> pipelines/<id>.yaml; it lists the secrets to export")
    echo("  gftune validate && gftune plan   # no changes for what was imported; policies propose from the metrics")
    finish(exitcodes.OK)
