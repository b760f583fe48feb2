"""Check the built sdist and wheel in DIST (default dist/): the version, the entry point, and the data
files gftune needs at run time (schemas, the example repository, the built-in policies `gftune init`
copies, the simulator's scenarios). Run by ./scripts/test after `python -m build` and `twine check`.

Usage: python scripts/check_dist.py [DIST]
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gftune import __version__  # noqa: E402  (the tree being released, not an installed copy)


def required_files() -> list[str]:
    """Package-relative paths both archives must hold, from what the tree has."""
    names = [f"gftune/schemas/{p.name}" for p in (ROOT / "gftune" / "schemas").glob("*.json")]
    names.append("gftune/examples/gftune.yaml")
    for folder, pattern in (("pipelines", "*.yaml"), ("policies", "*.yaml"), ("scenarios", "*.yaml"),
                            ("scenarios/pipelines", "*.yaml")):
        names += [f"gftune/examples/{folder}/{p.name}" for p in (ROOT / folder).glob(pattern)]
    workflows = ROOT / "gftune" / "examples" / "workflows"
    if workflows.is_dir():
        names += [f"gftune/examples/workflows/{p.name}" for p in workflows.glob("*.yml")]
    return sorted(names)


def main(argv: list[str]) -> int:
    dist = Path(argv[1]) if len(argv) > 1 else ROOT / "dist"
    wheel = dist / f"gftune-{__version__}-py3-none-any.whl"
    sdist = dist / f"gftune-{__version__}.tar.gz"
    problems = [f"missing {path.name} (gftune.__version__ is {__version__})" for path in (wheel, sdist)
                if not path.is_file()]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    required = required_files()
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        info = f"gftune-{__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    with tarfile.open(sdist) as archive:
        prefix = f"gftune-{__version__}/"
        in_sdist = {name.removeprefix(prefix) for name in archive.getnames()}
    problems += [f"{wheel.name}: no {name}" for name in required if name not in in_wheel]
    problems += [f"{sdist.name}: no {name}" for name in required if name not in in_sdist]
    if f"Version: {__version__}\n" not in metadata:
        problems.append(f"{wheel.name}: METADATA does not say Version: {__version__}")
    if "gftune = gftune.cli:main" not in entry_points:
        problems.append(f"{wheel.name}: no `gftune` console script")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"{wheel.name} and {sdist.name}: version {__version__}, the gftune command, "
          f"{len(required)} data files each")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
