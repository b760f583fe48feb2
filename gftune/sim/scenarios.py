"""Scenario files (``scenarios/*.yaml``): which pipelines exist, their load and model, faults, truth.

See ``docs/simulator.md`` for the format. Loading validates everything up front and reports
problems as ``file:line: path: message`` (YAML errors) or ``file: path: message``.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import gftune
from gftune.glassflow import resources as res
from gftune.sim import profiles
from gftune.sim.faults import FaultError, parse_fault
from gftune.sim.params import DEFAULT_PARAMS, deep_merge

Json = dict[str, Any]

TOP_KEYS = {"name", "description", "signature", "seed", "resource_defaults", "delays", "model", "pipelines",
            "faults", "notes"}
PIPELINE_KEYS = {"file", "spec", "pipeline_id", "running", "patch", "model", "truth"}
RESOURCE_DEFAULTS = {"helm": res.HELM_DEFAULTS, "code": res.CODE_DEFAULTS}


class ScenarioError(ValueError):
    pass


@dataclass
class PipelineSpec:
    pipeline_id: str
    doc: Json  # what is POSTed: the v3 document without gftune's ``resources.join``
    running: bool
    model: Json
    truth: Json
    join_resources: Json | None = None  # gftune's ``resources.join``, set as a PUT /resources would


@dataclass
class Scenario:
    name: str
    source: str
    description: str = ""
    signature: str = ""
    seed: int | None = None
    resource_defaults: str | None = None
    delays: Json = field(default_factory=dict)
    model: Json = field(default_factory=dict)
    pipelines: list[PipelineSpec] = field(default_factory=list)
    faults: list[Json] = field(default_factory=list)


# The scenarios shipped in the package (in a checkout, a symlink to the top-level scenarios/).
PACKAGED_SCENARIOS = Path(gftune.__file__).resolve().parent / "examples" / "scenarios"


def scenario_dirs() -> list[Path]:
    """Where scenario names are looked up: ``$GFTUNE_SCENARIOS``, ``./scenarios``, the packaged ones."""
    dirs = [Path(p) for p in os.environ.get("GFTUNE_SCENARIOS", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "scenarios")
    dirs.append(PACKAGED_SCENARIOS)
    return dirs


def find_scenario(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.exists():
            raise ScenarioError(f"{name}: no such scenario file")
        return path
    for directory in scenario_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{name}{suffix}"
            if candidate.exists():
                return candidate
    known = sorted({p.stem for d in scenario_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(known) or 'none'}")


def available() -> list[Path]:
    seen: dict[str, Path] = {}
    for directory in scenario_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                seen.setdefault(path.stem, path)
    return list(seen.values())


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ScenarioError(f"{where}: {getattr(exc, 'problem', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None


def load(item: str | os.PathLike[str] | Json) -> Scenario:
    """A scenario from a name (``healthy``), a path, or an already-parsed mapping."""
    if isinstance(item, dict):
        return parse(item, "<dict>", Path.cwd())
    path = find_scenario(str(item))
    return parse(_read_yaml(path), str(path), path.parent)


def check_model(model: Any, where: str) -> Json:
    """Validate model parameters against the known sections and keys (clear path in the error)."""
    if model is None:
        return {}
    if not isinstance(model, dict):
        raise ScenarioError(f"{where}: must be a mapping")
    for section, values in model.items():
        if section not in DEFAULT_PARAMS:
            raise ScenarioError(f"{where}.{section}: unknown model section; known: {', '.join(DEFAULT_PARAMS)}")
        if section == "sources":
            if not isinstance(values, dict):
                raise ScenarioError(f"{where}.sources: must map source_id to source parameters")
            for sid, sparams in values.items():
                _check_section(sparams, DEFAULT_PARAMS["source"], f"{where}.sources.{sid}")
            continue
        _check_section(values, DEFAULT_PARAMS[section], f"{where}.{section}")
    return model


def _check_section(values: Any, defaults: Json, where: str) -> None:
    if not isinstance(values, dict):
        raise ScenarioError(f"{where}: must be a mapping")
    for key, value in values.items():
        if key not in defaults:
            raise ScenarioError(f"{where}.{key}: unknown key; known: {', '.join(defaults)}")
        if key == "profile":
            if not isinstance(value, dict):
                raise ScenarioError(f"{where}.profile: must be a mapping")
            try:
                profiles.check_profile(value)
            except profiles.ProfileError as exc:
                raise ScenarioError(f"{where}.profile: {exc}") from None
        elif isinstance(defaults[key], int | float) and not isinstance(value, int | float):
            raise ScenarioError(f"{where}.{key}: must be a number, got {value!r}")


def merge_patch(base: Any, patch: Any) -> Any:
    """A scenario's ``patch:`` applied to a document: mappings are merged key by key, and a list of
    sources (mappings with a ``source_id``) item by item, matched by ``source_id``; anything else
    is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = merge_patch(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    if _keyed_by_source(base) and _keyed_by_source(patch):
        merged = copy.deepcopy(base)
        index = {item["source_id"]: i for i, item in enumerate(merged)}
        for item in patch:
            if item["source_id"] in index:
                merged[index[item["source_id"]]] = merge_patch(merged[index[item["source_id"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _keyed_by_source(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and "source_id" in v for v in value)


def _pipeline_doc(entry: Json, base_dir: Path, where: str) -> Json:
    if ("file" in entry) == ("spec" in entry):
        raise ScenarioError(f"{where}: give exactly one of 'file' (a pipeline file) or 'spec' (an inline v3 document)")
    if "file" in entry:
        path = (base_dir / entry["file"]).resolve()
        data = _read_yaml(path)
        if isinstance(data, dict) and data.get("kind") == "Pipeline":
            data = data.get("spec")
        if not isinstance(data, dict):
            raise ScenarioError(f"{where}.file: {path} holds no v3 pipeline document")
        doc = copy.deepcopy(data)
    else:
        if not isinstance(entry["spec"], dict):
            raise ScenarioError(f"{where}.spec: must be a v3 pipeline document (a mapping)")
        doc = copy.deepcopy(entry["spec"])
    if entry.get("patch"):
        doc = merge_patch(doc, entry["patch"])
    if entry.get("pipeline_id"):
        doc["pipeline_id"] = entry["pipeline_id"]
    if "pipeline_id" not in doc:
        raise ScenarioError(f"{where}: the document has no pipeline_id")
    return doc


def _split_join_resources(doc: Json) -> tuple[Json, Json | None]:
    """gftune's pipeline files may hold ``resources.join``, which the API's v3 document cannot carry
    (a create with it is a 422): split it off, to be set the way ``gftune apply`` sets it, by PUT."""
    resources = doc.get("resources")
    if not isinstance(resources, dict) or "join" not in resources:
        return doc, None
    doc = copy.deepcopy(doc)
    join = doc["resources"].pop("join")
    if not doc["resources"]:
        del doc["resources"]
    return doc, join


def parse(data: Any, source: str, base_dir: Path) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ScenarioError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name") or Path(source).stem
    scenario = Scenario(name=name, source=source, description=str(data.get("description") or ""),
                        signature=str(data.get("signature") or ""), seed=data.get("seed"))
    defaults = data.get("resource_defaults")
    if defaults is not None and defaults not in RESOURCE_DEFAULTS:
        raise ScenarioError(f"{source}: resource_defaults must be one of {', '.join(RESOURCE_DEFAULTS)}")
    scenario.resource_defaults = defaults
    scenario.delays = data.get("delays") or {}
    scenario.model = check_model(data.get("model"), f"{source}: model")
    for i, entry in enumerate(data.get("pipelines") or []):
        where = f"{source}: pipelines[{i}]"
        if not isinstance(entry, dict):
            raise ScenarioError(f"{where}: must be a mapping")
        extra = sorted(set(entry) - PIPELINE_KEYS)
        if extra:
            raise ScenarioError(f"{where}: unknown key(s) {', '.join(extra)}; "
                                f"known: {', '.join(sorted(PIPELINE_KEYS))}")
        doc, join_resources = _split_join_resources(_pipeline_doc(entry, base_dir, where))
        if join_resources is not None and not isinstance(join_resources, dict):
            raise ScenarioError(f"{where}: resources.join must be a mapping")
        model = check_model(entry.get("model"), f"{where}.model")
        scenario.pipelines.append(PipelineSpec(doc["pipeline_id"], doc, bool(entry.get("running", True)),
                                               deep_merge(scenario.model, model), dict(entry.get("truth") or {}),
                                               join_resources))
    for i, fault in enumerate(data.get("faults") or []):
        try:
            parse_fault(fault, 0, 0.0)
        except FaultError as exc:
            raise ScenarioError(f"{source}: faults[{i}]: {exc}") from None
        scenario.faults.append(fault)
    return scenario
