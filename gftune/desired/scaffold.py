"""The files of a new gftune repository for a real cluster (``gftune init``), as text. No I/O here: the
command asks the questions, reads the built-in policies and workflows, and writes what these return.

Helm facts used for the suggestions (github.com/glassflow/charts at bfc42e4, chart glassflow-etl 0.5.18,
docs/upstream.md): the API's Service is ``<release>-api`` on port 8081
(``charts/glassflow-etl/templates/service.yaml:21-33``, ``values.yaml`` ``api.service.port``); the OTel
collector serves Prometheus metrics on ``<release>-otel-collector:9090`` with the release's namespace as
the metric name prefix (``templates/otel-collector-service.yaml:16-20``,
``templates/otel-collector-configmap.yaml:59-62``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_API = "http://localhost:8081"
DEFAULT_NAMESPACE = "glassflow"
GITIGNORE_LINES = (".gftune/",)  # run journals and saved PR bodies: local state, never reviewed
README_MARKER = "<!-- gftune:next-steps -->"
_COMMENT_COLUMN = 40

_NEEDS_QUOTES = re.compile(r"(^[^A-Za-z0-9/])|(\s#)|(:\s)|(\s$)")


@dataclass(frozen=True)
class InitSettings:
    """What ``gftune init`` was told (asked, or from flags)."""

    api_url: str = DEFAULT_API
    prometheus_url: str | None = None
    scrape_url: str | None = None
    metric_namespace: str = DEFAULT_NAMESPACE
    workflows: bool = False
    action: str | None = None  # OWNER/REPO@REF of gftune's GitHub Action, for the workflows' `uses:`
    policies: tuple[str, ...] = field(default_factory=tuple)  # the built-in policies' names, for the README

    @property
    def metrics_source(self) -> str:
        if self.prometheus_url:
            return f"Prometheus {self.prometheus_url}"
        if self.scrape_url:
            return f"direct scrape of {self.scrape_url}"
        return "none (policies are not evaluated until metrics.prometheus or metrics.scrape is set)"


def suggested_urls(release: str = "glassflow", namespace: str = DEFAULT_NAMESPACE) -> dict[str, str]:
    """In-cluster addresses of a Helm install of chart glassflow-etl (release and namespace as installed)."""
    return {"api": f"http://{release}-api.{namespace}.svc:8081",
            "scrape": f"http://{release}-otel-collector.{namespace}.svc:9090/metrics"}


def _scalar(text: str) -> str:
    return json.dumps(text) if _NEEDS_QUOTES.search(text) else text


def _commented(line: str, comment: str) -> str:
    """``line`` with ``# comment`` in the comment column (lines longer than it get two spaces)."""
    return f"{line:<{_COMMENT_COLUMN}}# {comment}" if len(line) < _COMMENT_COLUMN else f"{line}  # {comment}"


def config_text(settings: InitSettings) -> str:
    """``gftune.yaml``: the answers, the defaults spelled out, and a comment on every choice a user makes."""
    urls = suggested_urls(namespace=settings.metric_namespace)
    lines = [
        "# gftune configuration: where the GlassFlow API and its metrics are, and the defaults of every",
        "# command. Schema: `gftune schema config`. Flags > GFTUNE_* environment variables > this file > defaults.",
        "apiVersion: gftune/v1",
        "kind: Config",
        "api:",
        _commented(f"  url: {_scalar(settings.api_url)}", f"in the cluster: {urls['api']}"),
        "  timeout: 10s",
        "  concurrency: 16",
        "  retries: 3",
        "metrics:",
    ]
    if settings.prometheus_url:
        lines.append(_commented(f"  prometheus: {_scalar(settings.prometheus_url)}",
                                "scrapes GlassFlow's OTel collector: policies see the whole of every `for:`"))
    elif settings.scrape_url:
        lines.append(_commented(f"  scrape: {_scalar(settings.scrape_url)}",
                                "the OTel collector read directly: each plan scrapes twice, one window apart"))
    else:
        lines += ["  # No metrics source yet: policies are not evaluated. One of:",
                  _commented("  # prometheus: http://prometheus.monitoring.svc:9090",
                             "a Prometheus that scrapes GlassFlow's OTel collector"),
                  _commented(f"  # scrape: {urls['scrape']}", "the collector itself")]
    lines += [
        _commented(f"  namespace: {_scalar(settings.metric_namespace)}",
                   "metric names are <namespace>_gfm_*: the Helm release's namespace"),
        _commented("  naming: auto", "auto | documented | collector"),
        _commented("  window: 5m", "rate window; a direct scrape waits this long between its two scrapes"),
        "apply:",
        "  max_plan_age: 1h",
        "  lock_ttl: 30m",
        "  stop_timeout: 5m",
        "  running_timeout: 15m",
        "  restart_estimate: 60s",
        "verify:",
        "  settle: 1m",
        "  window: 5m",
        "  tolerance: 0.1",
    ]
    return "\n".join(lines) + "\n"


def gitignore_text(existing: str | None) -> str:
    """``.gitignore`` with gftune's local state ignored; an existing file keeps everything it has."""
    text = existing or ""
    present = {line.strip() for line in text.splitlines()}
    missing = [line for line in GITIGNORE_LINES if line not in present]
    if not missing:
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "# gftune: run journals and saved PR bodies (local state)\n" + "\n".join(missing) + "\n"


def readme_section(settings: InitSettings) -> str:
    """The "next steps" section of the repository's README."""
    metrics = settings.metrics_source
    lines = [
        README_MARKER,
        "## GlassFlow pipelines with gftune",
        "",
        "This repository holds the GlassFlow pipelines of one cluster as code, and the policies that tune",
        "them; gftune plans, applies and verifies every change from it (`gftune --help`).",
        "",
        f"- `gftune.yaml`: the GlassFlow API ({settings.api_url}) and the metrics ({metrics}).",
        "- `pipelines/<pipeline_id>.yaml`: one pipeline per file; secrets are `${env:NAME}` references.",
        "- `policies/`: the built-in tuning policies, copied here so that you can edit them"
        + (f" ({', '.join(settings.policies)})." if settings.policies else "."),
    ]
    if settings.workflows:
        lines.append("- `.github/workflows/`: plan on every pull request, apply on merge, nightly drift and tune.")
    lines += [
        "",
        "### Next steps",
        "",
        "1. Bring the running pipelines under gftune: `gftune import` writes `pipelines/<id>.yaml` for each and",
        "   lists the environment variables that hold their secrets (for example `CLICKHOUSE_PASSWORD`); export them.",
        "2. `gftune validate`, then `gftune plan`: the imported pipelines show no changes; a policy that sees a",
        "   problem in the metrics proposes a bounded change with its evidence.",
        "3. Commit: `git add -A && git commit -m \"GlassFlow pipelines under gftune\"`.",
        "4. Change a pipeline by editing its file in a pull request; `gftune plan --out plan.json` shows the",
        "   lifecycle and the downtime, `gftune apply plan.json` carries out exactly that plan and verifies it.",
        "5. Let the policies propose: `gftune tune --write` commits their proposals on a branch for review.",
    ]
    if settings.workflows:
        lines += [
            "6. In GitHub, add the secrets the workflows read (the same names as the environment variables above)",
            "   and make the GlassFlow API and metrics reachable from the runners.",
        ]
    return "\n".join(lines) + "\n"


def readme_text(existing: str | None, settings: InitSettings, title: str) -> str:
    """A new README, or the existing one with the section appended (once: the marker says it is there)."""
    if existing is not None and README_MARKER in existing:
        return existing
    section = readme_section(settings)
    if not existing:
        return f"# {title}\n\n{section}"
    return existing.rstrip("\n") + "\n\n" + section


_LOCAL_ACTION = re.compile(r"^(?P<indent>\s*-?\s*uses:\s*)\./(?:\s+#.*)?$", re.M)
ACTION_REF = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_./-]+)?@[A-Za-z0-9_./-]+$")


def workflow_text(text: str, action: str) -> str:
    """A workflow of gftune's own repository for the user's: its ``uses: ./`` (gftune's action, from the
    repository it lives in) becomes ``uses: OWNER/REPO@REF``, where the user's workflows get the action."""
    return _LOCAL_ACTION.sub(lambda m: f"{m['indent']}{action}", text)


def repository_files(settings: InitSettings, *, policies: Mapping[str, str], workflows: Mapping[str, str],
                     existing: Mapping[str, str | None], title: str) -> dict[str, str]:
    """Every file of the new repository (path relative to its root -> text). ``existing`` holds the current
    text of the files that are merged rather than replaced (``.gitignore``, ``README.md``; None if absent)."""
    files = {"gftune.yaml": config_text(settings)}
    files.update({f"policies/{name}": text for name, text in sorted(policies.items())})
    if settings.workflows and settings.action:
        files.update({name: workflow_text(text, settings.action) for name, text in sorted(workflows.items())})
    files[".gitignore"] = gitignore_text(existing.get(".gitignore"))
    files["README.md"] = readme_text(existing.get("README.md"), settings, title)
    return files


MERGED_FILES = (".gitignore", "README.md")
