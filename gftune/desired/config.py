"""``gftune.yaml`` -> :class:`Config`.

Precedence, highest first: overrides (command-line flags) > ``GFTUNE_*`` environment variables >
``gftune.yaml`` > ``GITHUB_REPOSITORY`` / ``GITHUB_API_URL`` (set by GitHub Actions) > defaults.

The file (schema: ``gftune schema config``)::

    apiVersion: gftune/v1
    kind: Config
    api: {url: http://localhost:8081, timeout: 10s, concurrency: 16, retries: 3}
    metrics: {prometheus: URL, scrape: URL, namespace: glassflow, naming: auto, window: 5m,
              clickhouse: {match: {job: clickhouse}, scrape: URL}}   # optional: ClickHouse's own /metrics
    apply: {max_plan_age: 1h, lock_ttl: 30m, stop_timeout: 5m, running_timeout: 15m, restart_estimate: 60s}
    verify: {settle: 1m, window: 5m, tolerance: 0.1}
    github: {api: https://api.github.com, repository: owner/name}
    files: {allow: [/run/secrets]}    # outside the repository, what ${file:} and symlinks may reach
    secrets: {fields: [sink.connection_params.username]}   # more fields to treat as secret
    time_scale: 1

Durations are Go-style strings (``10s``, ``5m``, ``1h30m``, ``1d``) or numbers of seconds; in
:class:`Config` they are seconds (float). Every field has an environment variable
``GFTUNE_<FIELD>`` (``GFTUNE_API_TIMEOUT=30s``, ``GFTUNE_VERIFY_WINDOW=2m``), plus the short forms
``GFTUNE_API``, ``GFTUNE_PROMETHEUS`` and ``GFTUNE_SCRAPE``. Lists (``files.allow``,
``secrets.fields``) are separated by ``os.pathsep`` (``:``) in the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gftune.desired import paths
from gftune.desired.problems import Problem
from gftune.desired.schemas import schema_problems
from gftune.desired.yamlio import LocationIndex, YamlError, load_yaml
from gftune.glassflow.durations import DurationError, to_seconds

CONFIG_FILES = ("gftune.yaml", "gftune.yml")
NAMING_MODES = ("auto", "documented", "collector")


@dataclass
class Config:
    """Endpoints and defaults; all durations in seconds."""

    api_url: str = "http://localhost:8081"
    api_timeout: float = 10.0
    api_concurrency: int = 16
    api_retries: int = 3
    prometheus_url: str | None = None
    scrape_url: str | None = None
    metric_namespace: str = "glassflow"
    metric_naming: str = "auto"  # auto | documented | collector
    metrics_window: float = 300.0
    # The ClickHouse server's own Prometheus endpoint (optional): the labels of its series in Prometheus,
    # and/or its /metrics URL (scraped in direct-scrape mode). Neither: the ClickHouse signals are unknown.
    clickhouse_match: tuple[tuple[str, str], ...] | None = None
    clickhouse_scrape: str | None = None
    time_scale: float = 1.0
    max_plan_age: float = 3600.0
    lock_ttl: float = 1800.0
    stop_timeout: float = 300.0
    running_timeout: float = 900.0
    restart_estimate: float = 60.0
    verify_settle: float = 60.0
    verify_window: float = 300.0
    verify_tolerance: float = 0.1
    github_api: str = "https://api.github.com"
    github_repository: str | None = None
    files_allow: tuple[str, ...] = ()  # absolute directories outside the repository gftune may read from
    secret_fields: tuple[str, ...] = ()  # gftune.paths field paths treated as secret beyond the built-in ones

    def scaled(self, seconds: float) -> float:
        """A wait or window as the clock sees it: ``seconds / time_scale``."""
        return seconds / self.time_scale

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Invalid(ValueError):
    pass


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise _Invalid("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = to_seconds(text, allow_days=True)
            except DurationError:
                raise _Invalid(f'invalid duration "{text}": use a Go duration such as 30s, 5m or 1h30m') from None
    if seconds < 0 or seconds != seconds:
        raise _Invalid("must not be negative")
    return seconds


def _positive_duration(value: Any) -> float:
    """A wait, timeout, window or age: 0 would make a lock expire at once, a timeout fire before
    the first poll, a window hold no samples."""
    seconds = _duration(value)
    if seconds <= 0:
        raise _Invalid("must be greater than 0")
    return seconds


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Invalid("expected an integer")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise _Invalid("expected an integer") from None
    if number < 0:
        raise _Invalid("must not be negative")
    return number


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise _Invalid("must be at least 1")
    return number


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Invalid("expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid("expected a number") from None
    if number < 0 or number != number:
        raise _Invalid("must not be negative")
    return number


def _time_scale(value: Any) -> float:
    number = _float(value)
    if number <= 0 or number == float("inf"):
        raise _Invalid("must be a positive number")
    return number


def _url(value: Any) -> str:
    text = str(value).strip()
    if not text.startswith(("http://", "https://")):
        raise _Invalid("must be an http:// or https:// URL")
    return text.rstrip("/")


def _naming(value: Any) -> str:
    text = str(value).strip()
    if text not in NAMING_MODES:
        raise _Invalid("must be one of: " + ", ".join(NAMING_MODES))
    return text


def _labels(value: Any) -> tuple[tuple[str, str], ...]:
    """Label matchers: a mapping in gftune.yaml, ``job=clickhouse,instance=ch:9363`` in the environment."""
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise _Invalid("expected label=value pairs separated by commas")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict) or not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                                              for v in value.values()):
        raise _Invalid("expected a mapping of label names to values")
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _list(value: Any) -> list[str]:
    items = value.split(os.pathsep) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise _Invalid("expected a list of strings")
    return [item.strip() for item in items if item.strip()]


REPOSITORY_ONLY = "none"  # GFTUNE_FILES_ALLOW=none: a CI job pins reads to the repository, whatever gftune.yaml says


def _directories(value: Any) -> tuple[str, ...]:
    """Absolute directories: a relative one would depend on where gftune runs. ``none`` is the empty list,
    so that the environment can override a list in gftune.yaml (which a pull request may edit) with nothing."""
    if isinstance(value, str) and value.strip() == REPOSITORY_ONLY:
        return ()
    found = _list(value)
    for item in found:
        if not os.path.isabs(os.path.expanduser(item)):
            raise _Invalid(f'"{item}" is not an absolute directory')
    return tuple(os.path.expanduser(item) for item in found)


def _field_paths(value: Any) -> tuple[str, ...]:
    found = _list(value)
    for item in found:
        try:
            paths.parse(item)
        except paths.PathError as exc:
            raise _Invalid(str(exc)) from None
    return tuple(found)


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise _Invalid("must not be empty")
    return text


# field -> (path in gftune.yaml, converter, extra environment variable names)
FIELDS: dict[str, tuple[tuple[str, ...], Callable[[Any], Any], tuple[str, ...]]] = {
    "api_url": (("api", "url"), _url, ("GFTUNE_API",)),
    "api_timeout": (("api", "timeout"), _positive_duration, ()),
    "api_concurrency": (("api", "concurrency"), _positive_int, ()),
    "api_retries": (("api", "retries"), _int, ()),
    "prometheus_url": (("metrics", "prometheus"), _url, ("GFTUNE_PROMETHEUS",)),
    "scrape_url": (("metrics", "scrape"), _url, ("GFTUNE_SCRAPE",)),
    "metric_namespace": (("metrics", "namespace"), _text, ()),
    "metric_naming": (("metrics", "naming"), _naming, ()),
    "metrics_window": (("metrics", "window"), _positive_duration, ()),
    "clickhouse_match": (("metrics", "clickhouse", "match"), _labels, ()),
    "clickhouse_scrape": (("metrics", "clickhouse", "scrape"), _url, ()),
    "time_scale": (("time_scale",), _time_scale, ()),
    "max_plan_age": (("apply", "max_plan_age"), _positive_duration, ()),
    "lock_ttl": (("apply", "lock_ttl"), _positive_duration, ()),
    "stop_timeout": (("apply", "stop_timeout"), _positive_duration, ()),
    "running_timeout": (("apply", "running_timeout"), _positive_duration, ()),
    "restart_estimate": (("apply", "restart_estimate"), _duration, ()),
    "verify_settle": (("verify", "settle"), _duration, ()),
    "verify_window": (("verify", "window"), _positive_duration, ()),
    "verify_tolerance": (("verify", "tolerance"), _float, ()),
    "github_api": (("github", "api"), _url, ()),
    "github_repository": (("github", "repository"), _text, ()),
    "files_allow": (("files", "allow"), _directories, ()),
    "secret_fields": (("secrets", "fields"), _field_paths, ()),
}
_GITHUB_ENV = {"github_repository": "GITHUB_REPOSITORY", "github_api": "GITHUB_API_URL"}
_SCHEMA_TYPES = {_duration: (str, int, float), _positive_duration: (str, int, float), _url: (str,), _text: (str,),
                 _naming: (str,), _labels: (dict,),
                 _int: (int,), _positive_int: (int,), _float: (int, float), _time_scale: (int, float),
                 _directories: (list,), _field_paths: (list,)}


def env_names(field: str) -> tuple[str, ...]:
    """The environment variables that set ``field``, most specific first."""
    return (f"GFTUNE_{field.upper()}", *FIELDS[field][2])


def config_path(repo: Path) -> Path | None:
    for name in CONFIG_FILES:
        if (repo / name).is_file():
            return repo / name
    return None


def readable_roots(repo: Path, config: Config) -> list[Path]:
    """Where files named by the repository may resolve to: the repository itself (symlinks resolved)
    and the directories the user allowed (``files.allow``)."""
    return [Path(os.path.realpath(directory)) for directory in (repo, *config.files_allow)]


def load_config(repo: Path, *, env: Mapping[str, str] | None = None,
                overrides: dict[str, Any] | None = None) -> tuple[Config, list[Problem]]:
    """Build the effective :class:`Config` for ``repo``; problems say what was wrong and where."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    problems: list[Problem] = []

    for field, name in _GITHUB_ENV.items():
        if env.get(name):
            values[field] = env[name].rstrip("/") if field == "github_api" else env[name]

    path = config_path(Path(repo))
    if path is not None:
        # gftune.yaml itself may only be reached through the directories the environment or the command
        # line allow: the file cannot widen what it is read from
        early = Config(files_allow=_early_value("files_allow", env, overrides) or ())
        problems += _from_file(path, values, readable_roots(Path(repo), early))

    for field in FIELDS:
        for name in env_names(field):
            if name in env and env[name] != "":
                try:
                    values[field] = FIELDS[field][1](env[name])
                except _Invalid as exc:
                    problems.append(Problem("environment", None, None, name, str(exc)))
                break

    for field, value in (overrides or {}).items():
        if field not in FIELDS:
            raise ValueError(f"unknown config override {field!r}")
        if value is None:
            continue
        try:
            values[field] = FIELDS[field][1](value)
        except _Invalid as exc:
            flag = "--" + field.removesuffix("_url").replace("_", "-")
            problems.append(Problem("command line", None, None, flag, str(exc)))
    return Config(**values), problems


def _early_value(field: str, env: Mapping[str, str], overrides: dict[str, Any] | None) -> Any:
    """A field's value from the command line or the environment alone (None when unset or invalid)."""
    for raw in ((overrides or {}).get(field), *(env.get(name) for name in env_names(field))):
        if raw is not None and raw != "":
            try:
                return FIELDS[field][1](raw)
            except _Invalid:
                return None
    return None


def _from_file(path: Path, values: dict[str, Any], roots: list[Path]) -> list[Problem]:
    display = path.name
    try:
        doc, locations = load_yaml(path, display=display, roots=roots)
    except YamlError as exc:
        return exc.problems
    if doc is None:
        return []
    problems = schema_problems("config", doc, locations, display)
    if not isinstance(doc, dict):
        return problems
    reported = {problem.json_path for problem in problems}
    for field, (file_path, convert, _) in FIELDS.items():
        present, raw = _lookup(doc, file_path)
        if not present or raw is None:
            continue
        if not isinstance(raw, _SCHEMA_TYPES[convert]) or isinstance(raw, bool) or ".".join(file_path) in reported:
            continue  # the schema already reported it
        try:
            values[field] = convert(raw)
        except _Invalid as exc:
            problems.append(_located(display, locations, file_path, str(exc)))
    return problems


def _lookup(doc: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _located(display: str, locations: LocationIndex, path: tuple[str, ...], message: str) -> Problem:
    line, col = locations.locate(path)
    return Problem(display, line, col, ".".join(path), message)
