"""Load the desired state kept in git: ``gftune.yaml``, ``pipelines/*.yaml``, ``policies/*.yaml``.

This is the first step of every command (load desired -> read live -> plan -> apply -> report).
Loading never raises for bad input: every file that cannot be read or does not pass the checks of
:mod:`gftune.desired.validate` adds located problems to :attr:`DesiredState.problems`. A pipeline file
that is broken beyond use (YAML error, no ``spec`` object) is left out of ``pipelines``; one that
loads but has problems is kept with ``valid = False`` so that ``plan`` can refuse to touch it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gftune.desired import paths, secrets
from gftune.desired.config import Config, config_path, load_config, readable_roots
from gftune.desired.problems import Problem, has_errors, sorted_problems
from gftune.desired.validate import check_pipeline, check_policy, internal_error_problem
from gftune.desired.yamlio import LocationIndex, YamlError, load_yaml

PIPELINES_DIR = "pipelines"
POLICIES_DIR = "policies"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class DesiredPipeline:
    pipeline_id: str
    path: Path
    labels: dict[str, str]
    spec: dict[str, Any]  # the v3 document exactly as in git (references unresolved; may hold resources.join)
    constraints: dict[str, Any]  # tuning.constraints: max_replicas, memory_ceiling, storage_ceiling, partitions
    locations: LocationIndex  # paths from the file root, e.g. ("spec", "sink", "max_batch_size")
    file: str = ""  # the path as shown in problems (relative to the repository root)
    valid: bool = True  # False when the file has error problems
    drift: dict[str, Any] = field(default_factory=dict)  # tuning.drift: ignore rules and tolerance bands

    def locate(self, spec_path: tuple[str | int, ...]) -> tuple[int, int]:
        """Line and column of a path inside ``spec``."""
        return self.locations.locate(("spec", *spec_path))

    def locate_field(self, field_path: str) -> tuple[int, int]:
        """Line and column of a :mod:`gftune.desired.paths` field path (``resources.sources[orders].replicas``),
        or of its nearest existing parent, so that plan and tune findings can point into the file."""
        positional: list[str | int] = []
        node: Any = self.spec
        try:
            steps = paths.parse(field_path)
        except paths.PathError:
            steps = ()
        for step in steps:
            if isinstance(step, paths.Key):
                if not isinstance(node, dict) or step.name not in node:
                    break
                positional.append(step.name)
                node = node[step.name]
                continue
            items = node if isinstance(node, list) else []
            position = next((i for i, item in enumerate(items) if step.matches(i, item)), None)
            if position is None:
                break
            positional.append(position)
            node = items[position]
        return self.locate(tuple(positional))


@dataclass
class PolicyFile:
    name: str
    path: Path
    doc: Any  # interpreted by gftune.policy.language
    locations: LocationIndex
    file: str = ""
    valid: bool = True
    parsed: Any = None  # the gftune.policy.language.Policy, once gftune.policy.files.check_policies parsed it


@dataclass
class DesiredState:
    root: Path
    config: Config
    pipelines: dict[str, DesiredPipeline]
    policies: list[PolicyFile]
    problems: list[Problem]
    files: list[str] = field(default_factory=list)  # every file read, as shown in problems

    @property
    def valid(self) -> bool:
        return not has_errors(self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def problems_for(self, file: str) -> list[Problem]:
        return [p for p in self.problems if p.file == file]

    def resolver(self, env: Mapping[str, str]) -> secrets.Resolver:
        """The secret resolver for this repository: ``${file:}`` relative to it, sandboxed to it and to
        the directories gftune.yaml allows (``files.allow``)."""
        return secrets.Resolver(env, base_dir=self.root, roots=readable_roots(self.root, self.config))


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the repository root when it is inside it, as given otherwise."""
    try:  # abspath, not resolve: the examples reach pipelines/ through a symlink
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return str(path)


def yaml_files(directory: Path) -> list[Path]:
    """YAML files below ``directory`` (recursively, hidden entries skipped), in a stable order."""
    if not directory.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if f.endswith(YAML_SUFFIXES) and not f.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def _register_literal_secrets(spec: Any) -> None:
    """A literal secret found in git must not leak through any later message either."""
    for _, _, value in secrets.iter_secret_locations(spec):
        if secrets.is_literal_secret(value):
            secrets.masker.add(value)


def _strings_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str | int | float | bool)}


def _read(path: Path, root: Path, problems: list[Problem], roots: list[Path]
          ) -> tuple[str, Any, LocationIndex] | None:
    display = display_path(path, root)
    try:
        doc, locations = load_yaml(path, display=display, roots=roots)
    except YamlError as exc:
        problems += exc.problems
        return None
    return display, doc, locations


def _load_pipeline(path: Path, root: Path, validate: bool, problems: list[Problem], roots: list[Path]
                   ) -> DesiredPipeline | None:
    if (read := _read(path, root, problems, roots)) is None:
        return None
    display, doc, locations = read
    spec = doc.get("spec") if isinstance(doc, dict) else None
    _register_literal_secrets(spec)
    found: list[Problem] = []
    if validate:
        def file_check(target: str) -> str | None:
            return secrets.file_reference_problem(target, base_dir=root, roots=roots)

        try:
            found = check_pipeline(doc, locations, display, stem=path.stem, file_check=file_check)
        except Exception as exc:  # a bug in a check must not hide the file or end in a traceback
            found = [internal_error_problem(display, exc)]
    problems += found
    if not isinstance(spec, dict):
        if not validate:
            problems.append(Problem(display, *locations.locate(("spec",)), "spec",
                                    "not a pipeline file: expected a spec object"))
        return None
    pipeline_id = spec.get("pipeline_id") if isinstance(spec.get("pipeline_id"), str) else path.stem
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    tuning = doc.get("tuning") if isinstance(doc.get("tuning"), dict) else {}
    constraints = tuning.get("constraints") if isinstance(tuning.get("constraints"), dict) else {}
    drift = tuning.get("drift") if isinstance(tuning.get("drift"), dict) else {}
    return DesiredPipeline(pipeline_id=pipeline_id, path=path, labels=_strings_dict(metadata.get("labels")),
                           spec=spec, constraints=dict(constraints), locations=locations, file=display,
                           valid=not has_errors(found), drift=dict(drift))


def _load_policy(path: Path, root: Path, validate: bool, problems: list[Problem], roots: list[Path]
                 ) -> PolicyFile | None:
    if (read := _read(path, root, problems, roots)) is None:
        return None
    display, doc, locations = read
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) and isinstance(metadata.get("name"), str) else path.stem
    policy = PolicyFile(name=name, path=path, doc=doc, locations=locations, file=display)
    if validate:
        try:
            found = check_policy(doc, locations, display, stem=path.stem)
        except Exception as exc:
            found = [internal_error_problem(display, exc)]
        problems += found
        policy.valid = not has_errors(found)
    return policy


def _collect(state: DesiredState, directory: Path, load: Callable[[Path], Any], label: str,
             key_path: tuple[str, ...]) -> dict[str, Any]:
    """Load every YAML file below ``directory``; the first file wins a duplicated key."""
    seen: dict[str, Any] = {}
    for path in yaml_files(directory):
        state.files.append(display_path(path, state.root))
        item = load(path)
        if item is None:
            continue
        key = item.pipeline_id if isinstance(item, DesiredPipeline) else item.name
        if key in seen:
            line, col = item.locations.locate(key_path)
            state.problems.append(Problem(item.file, line, col, ".".join(key_path),
                                          f'duplicate {label} "{key}": already defined in {seen[key].file}'))
            continue
        seen[key] = item
    return seen


def load_repo(root: Path, *, env: Mapping[str, str] | None = None, overrides: dict[str, Any] | None = None,
              validate: bool = True) -> DesiredState:
    """Load (and by default check) the repository at ``root``. Never raises for bad input."""
    root = Path(root)
    config, problems = load_config(root, env=env, overrides=overrides)
    state = DesiredState(root=root, config=config, pipelines={}, policies=[], problems=problems)
    if not root.is_dir():
        reason = "not a directory: --repo needs the repository's top directory" if root.exists() \
            else "repository directory does not exist"
        problems.append(Problem(str(root), None, None, "$", reason))
        return state
    if (cfg := config_path(root)) is not None:
        state.files.append(display_path(cfg, root))

    roots = readable_roots(root, config)
    state.pipelines = _collect(state, root / PIPELINES_DIR,
                               lambda p: _load_pipeline(p, root, validate, problems, roots),
                               "pipeline_id", ("spec", "pipeline_id"))
    state.policies = list(_collect(state, root / POLICIES_DIR,
                                   lambda p: _load_policy(p, root, validate, problems, roots),
                                   "policy name", ("metadata", "name")).values())
    state.problems = sorted_problems(problems)
    return state
