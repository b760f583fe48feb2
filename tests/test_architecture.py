"""The architecture holds at import time: every module of gftune imports first and alone, in a fresh
interpreter, with its module-level imports only (an import circle fails here with "partially
initialized module"); the contract in pyproject.toml ([tool.importlinter]) is checked by lint-imports in
./scripts/test, and it names every module."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import gftune

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# Starting ~190 interpreters would cost a minute of this 2-core machine. Instead one interpreter that
# has imported nothing of gftune loads the other packages gftune imports at module level (they cannot
# hide a circle of gftune's), then forks a child per module: each child is a fresh interpreter as far
# as gftune is concerned (no module of it loaded, no state any of them left behind) and imports that
# one module.
SCRIPT = """
import ast, importlib, json, os, pathlib, sys, traceback
names, root = json.loads(sys.argv[1]), pathlib.Path(sys.argv[2])
for path in root.rglob("*.py"):
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.Import):
            others = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            others = [node.module]
        else:
            continue
        for other in others:
            if other.split(".")[0] != "gftune":
                try:
                    importlib.import_module(other)
                except Exception:
                    pass  # the child that needs it says why
loaded = [m for m in sys.modules if m == "gftune" or m.startswith("gftune.")]
assert not loaded, loaded
failures = {}
for name in names:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            text = ""
        except BaseException:
            text = traceback.format_exc(limit=3)
        os.write(write, text.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    if text or status:
        failures[name] = text or f"the child importing {name} ended with status {status}"
print(json.dumps(failures))
"""


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(gftune.__path__, "gftune.")
                  if not info.name.endswith("__main__"))


def test_every_module_imports_first_and_alone():
    modules = _modules()
    assert len(modules) > 100  # the walk found the tree, not an empty directory
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(modules), str(Path(gftune.__file__).parent)],
                          capture_output=True, text=True, timeout=300, cwd=PYPROJECT.parent)
    assert proc.returncode == 0, proc.stderr
    failures = json.loads(proc.stdout.splitlines()[-1])
    assert failures == {}, "\n".join(f"{name}:\n{text}" for name, text in failures.items())


def test_the_contract_names_every_module_on_one_side_of_the_simulator_line():
    """Contracts 2 and 3 list the reconciler's modules by name: a new top-level module or package
    must be added to both (or be the simulator, glassflow/ or the package's own files)."""
    contracts = {c["name"]: c for c in tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]}
    [sim_side] = [c for c in contracts.values() if c.get("source_modules") == ["gftune.sim"]]
    [reconciler] = [c for c in contracts.values() if c.get("forbidden_modules") == ["gftune.sim"]]
    top = {f"gftune.{info.name}" for info in pkgutil.iter_modules(gftune.__path__)} - {
        "gftune.sim", "gftune.glassflow", "gftune.__main__"}
    assert top == set(sim_side["forbidden_modules"])
    assert top == set(reconciler["source_modules"])
