"""Every static check of the project in one command: `python -m tests.checks`.

mypy --strict on both packages, ruff on the whole tree, and the import-linter contracts of
pyproject.toml (the layers, the pure domain, the stages apart). README's test command runs it
before pytest, and so does CI (.ci/run runs that command). Exit status 0 when all pass; each
tool's own output otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

CHECKS: tuple[tuple[str, list[str]], ...] = (
    ("mypy --strict", ["mypy", "residency_rules", "flows"]),
    ("ruff", ["ruff", "check", "."]),
    ("import-linter", ["lint-imports", "--no-cache"]),
)


def _tool(name: str) -> str | None:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name)


def main() -> int:
    """Run each check; say which passed, and print what a failing one said."""
    failed = []
    for label, (name, *args) in CHECKS:
        tool = _tool(name)
        if tool is None:
            print(f"{label}: {name} is not installed; install the test extras "
                  "(pip install -e '.[test]')")
            failed.append(label)
            continue
        start = time.perf_counter()
        proc = subprocess.run([tool, *args], cwd=ROOT, capture_output=True, text=True)
        took = time.perf_counter() - start
        if proc.returncode == 0:
            print(f"{label}: passed ({took:.1f} s)")
        else:
            print(f"{label}: FAILED ({took:.1f} s)\n{proc.stdout}{proc.stderr}")
            failed.append(label)
    if failed:
        print(f"checks failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
