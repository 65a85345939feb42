"""Checks on the project itself that read as behaviour: a pure domain, documented commands.

The tools (mypy, ruff, import-linter) run in `python -m tests.checks`, beside pytest.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.cli import COMMANDS, build_parser
from flows.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


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


def test_version_names_the_product_and_its_rules(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from flows.cli import main
    from residency_rules.specialties import load_default_table

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    said = capsys.readouterr().out.strip()
    assert said == (f"advising {version('residency-advising')}, "
                    f"rules {load_default_table().version}")


def test_a_misspelt_setting_is_named_with_the_one_meant() -> None:
    from flows.settings import unknown_settings

    said = unknown_settings({"ADVISING_DELIVERY_MODE": "smtp", "ADVISING_DELIVERY": "outbox",
                             "ADVISING_TEST_POSTGRES_URL": "x", "ADVISING_ZZZ": "1",
                             "PATH": "/bin"})
    assert said == [
        "ADVISING_DELIVERY_MODE is not a setting of this version and is ignored; did you mean "
        "ADVISING_DELIVERY?",
        "ADVISING_ZZZ is not a setting of this version and is ignored (`advising docs readme` "
        "lists them)",
    ]
