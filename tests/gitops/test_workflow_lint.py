"""The shipped workflows and action.yml pass actionlint and shellcheck, and the lint catches what it should."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.workflow_lint import AVAILABLE, MISSING, ROOT, lint

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING)


def test_shipped_workflows_and_action_are_clean():
    proc = lint()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("plan.yml", "apply.yml", "drift.yml", "tune.yml", "ci.yml", "action.yml"):
        assert name in proc.stderr  # every file was looked at


def test_findings_point_at_the_line_in_the_file(tmp_path):
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    text = (ROOT / ".github" / "workflows" / "plan.yml").read_text()
    text = text.replace("run: gftune validate", "run: gftune validate $UNQUOTED")
    text = text.replace("secrets: ${{ toJSON(secrets) }}", "secrets: ${{ toJSON(secret) }}")
    (workflows / "plan.yml").write_text(text)
    action = (ROOT / "action.yml").read_text().replace("${{ inputs.secrets }}", "${{ inputs.secretz }}")
    (tmp_path / "action.yml").write_text(action)
    proc = lint(workflows / "plan.yml", tmp_path / "action.yml", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()

    def line_of(path: Path, needle: str) -> int:
        return next(i + 1 for i, row in enumerate(path.read_text().splitlines()) if needle in row)

    shell_line = line_of(workflows / "plan.yml", "$UNQUOTED")
    assert any(x.startswith(f".github/workflows/plan.yml:{shell_line}:") and "SC2086" in x for x in lines), lines
    expr_line = line_of(workflows / "plan.yml", "toJSON(secret)")
    assert any(x.startswith(f".github/workflows/plan.yml:{expr_line}:") and "actionlint" in x for x in lines), lines
    action_line = line_of(tmp_path / "action.yml", "inputs.secretz")
    assert any(x.startswith(f"action.yml:{action_line}:") and "secretz" in x for x in lines), lines


def test_the_adoption_step_leaves_clean_copyable_workflows(tmp_path):
    """docs/github.md step 1: copy the four workflows and point `uses: ./` at a release of gftune."""
    import re

    target = tmp_path / ".github" / "workflows"
    target.mkdir(parents=True)
    for name in ("plan.yml", "apply.yml", "drift.yml", "tune.yml"):
        text = (ROOT / ".github" / "workflows" / name).read_text()
        assert re.search(r"uses: \./ # in your repository: <org>/gftune@v1", text), name
        (target / name).write_text(re.sub(r"uses: \./ .*", "uses: acme/gftune@v1", text))
        assert "uses: ./" not in (target / name).read_text()
    assert "sed -i 's#uses: \\./ .*#uses: <org>/gftune@v1#'" in (ROOT / "docs" / "github.md").read_text()
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    proc = lint(*sorted(target.glob("*.yml")), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
