"""Golden files that can only be rewritten on purpose: a rewrite is a failure to review.

With UPDATE_GOLDEN=1 a differing golden file is rewritten and the test still fails, naming
the file, so a golden test never passes merely because the variable is set: read the diff
(`git diff tests/golden/`), then run again without it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest


def check_golden(*files: tuple[Path, str]) -> None:
    """Assert each body equals its reviewed golden file; under UPDATE_GOLDEN rewrite every one
    that differs, then fail naming them."""
    rewritten: list[str] = []
    problems: list[str] = []
    for path, body in files:
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == body:
            continue
        if os.environ.get("UPDATE_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
            rewritten.append(str(path))
        elif old is None:
            problems.append(f"no golden file {path}: run with UPDATE_GOLDEN=1, then review it")
        else:
            diff = "".join(difflib.unified_diff(
                old.splitlines(keepends=True), body.splitlines(keepends=True),
                fromfile=f"{path.name} (reviewed)", tofile=f"{path.name} (now)", n=1,
            ))
            problems.append(f"{path.name} differs from the reviewed golden file:\n{diff[:4000]}")
    if rewritten:
        pytest.fail(
            f"rewritten (UPDATE_GOLDEN is set): {', '.join(rewritten)}: review `git diff "
            "tests/golden/`, then run the test again without UPDATE_GOLDEN"
        )
    if problems:
        pytest.fail("\n".join(problems))
