"""The architecture holds at import time: every module of gftune imports on its own, in a fresh import of
the package, with its module-level imports only (an import circle fails here with "partially
initialized module"); the contract in pyproject.toml ([tool.importlinter]) is checked by lint-imports in
./scripts/test."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import gftune

# One interpreter for all modules (starting ~180 would cost a minute): before each module, every
# gftune module is dropped from sys.modules, so that it is imported first, as it would be on its own.
SCRIPT = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "gftune" or m.startswith("gftune.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=3)
print(json.dumps(failures))
"""


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(gftune.__path__, "gftune.")
                  if not info.name.endswith("__main__"))


def test_every_module_imports_first_and_alone():
    modules = _modules()
    assert len(modules) > 100  # the walk found the tree, not an empty directory
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(modules)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    failures = json.loads(proc.stdout.splitlines()[-1])
    assert failures == {}, "\n".join(f"{name}:\n{text}" for name, text in failures.items())
