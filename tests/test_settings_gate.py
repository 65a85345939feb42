"""The settings gate (#26): every wrong setting is caught at start, nothing is ignored in silence.

Fast: load_settings and `advising check` in-process, no flow run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from flows.settings import unknown_settings


def test_a_misspelt_setting_in_dot_env_is_named_with_the_one_meant(workdir: Path) -> None:
    """The issue's case: ADVISING_DELIVER=smtp in .env ran in outbox mode without a word."""
    (workdir / ".env").write_text("ADVISING_DELIVER=smtp\nadvising_smtp_host=relay\n"
                                  "ADVISING_SCHOOL_NAME=North\n", encoding="utf-8")
    assert unknown_settings() == [
        "ADVISING_DELIVER (in .env) is not a setting of this version and is ignored; did you "
        "mean ADVISING_DELIVERY?",
    ]


def test_names_are_compared_ignoring_case_as_settings_reads_them() -> None:
    said = unknown_settings({"advising_delivery": "outbox", "Advising_Smtp_Hots": "x",
                             "ADVISING_TEST_ANYTHING": "1", "advising_test_other": "1"})
    assert said == ["Advising_Smtp_Hots is not a setting of this version and is ignored; "
                    "did you mean ADVISING_SMTP_HOST?"]


def test_check_warns_of_an_unknown_setting_and_still_checks_the_roster(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A warning, never an error: the command goes on (here to say the file is missing)."""
    monkeypatch.setenv("ADVISING_OUTPUT_DIRECTORY", "elsewhere")
    assert main(["check", str(workdir / "none.xlsx")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "advising check: warning: ADVISING_OUTPUT_DIRECTORY is not a setting of this version "
        "and is ignored; did you mean ADVISING_OUTPUT_DIR?",
        f"advising check: {workdir / 'none.xlsx'}: no such file; give the path of a roster "
        "workbook (.xlsx)",
    ]
