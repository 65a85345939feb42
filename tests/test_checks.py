"""The project's own checks, so the one test command runs every one of them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import COMMANDS, build_parser
from flows.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    which = shutil.which(name)
    if which is None:
        pytest.fail(f"{name} is not installed: install the test extras (pip install -e '.[test]')")
    return which


def test_the_code_passes_mypy_strict() -> None:
    """residency_rules and flows type-check under mypy --strict (configured in pyproject.toml)."""
    proc = subprocess.run([_tool("mypy"), "residency_rules", "flows"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_code_passes_ruff() -> None:
    """Every Python file passes the linter."""
    proc = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_domain_package_does_no_io() -> None:
    """residency_rules imports no Prefect, Great Expectations, network or file-writing module."""
    banned = re.compile(
        r"^\s*(from|import)\s+(prefect|great_expectations|openpyxl|smtplib|socket|requests|"
        r"urllib|httpx|sqlite3|subprocess|flows)\b",
        re.M,
    )
    offenders = [
        p.name for p in (ROOT / "residency_rules").glob("*.py") if banned.search(p.read_text())
    ]
    assert offenders == []


def test_every_command_is_documented_in_the_readme() -> None:
    """Each `advising` subcommand appears in README.md, so none is a secret."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in COMMANDS if f"advising {name}" not in readme]
    assert missing == []


def test_every_setting_is_documented_in_the_readme() -> None:
    """Each Settings field appears in README.md as its ADVISING_ variable, so none is a secret;
    SSL_CERT_FILE too, the one the school's own CA needs (#16)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = [f"ADVISING_{field.upper()}" for field in Settings.model_fields]
    missing = [name for name in [*names, "SSL_CERT_FILE"] if f"`{name}`" not in readme]
    assert missing == []


def test_every_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """`advising COMMAND --help` prints a usage line and a description of what it does."""
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: advising {name}")
        description = out.split("\n\n")[1]
        assert len(description.split()) >= 12, f"`advising {name} --help` says too little"


def test_the_layers_hold() -> None:
    """import-linter's contracts (pyproject.toml) hold: the domain is pure, stages stay apart."""
    proc = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
