"""Validation: a real Great Expectations suite over real workbooks, failures as exact Problems."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from flows.intake import validation
from flows.intake.read import ingest
from flows.intake.validation import check_file, format_problems, validate
from flows.settings import Settings
from residency_rules.records import Problem
from residency_rules.specialties import SpecialtyTable
from tests.conftest import RUN_DATE

DATA = Path(__file__).parent / "data"


def _problem(row: int, column: str, value: str, what: str, fix: str, student_id: str,
             holds_row: bool = True) -> Problem:
    return Problem(file="out_of_range.xlsx", sheet="Roster", row=row, column=column,
                   value=value, what=what, fix=fix, student_id=student_id, holds_row=holds_row)


def test_suite_rejects_each_bad_value_with_an_exact_problem(
    settings: Settings, table: SpecialtyTable
) -> None:
    """Each broken rule gives the Excel row, the header as written, the value, what and fix."""
    roster = check_file(DATA / "out_of_range.xlsx", settings, table)
    assert roster.problems == [
        _problem(3, "Step 2 CK Score", "320", "Step 2 CK score 320 is outside 1-300",
                 "Correct the score, or leave the cell blank if it is not reported yet.", "R03"),
        _problem(4, "Step 1 Attempts", "9", "Step 1 attempts 9 is outside 1-6",
                 "Enter how many times the student sat Step 1 (leave blank if passed the first "
                 "time).", "R04"),
        _problem(5, "Email", "dee.eve@gmail.com",
                 "Email dee.eve@gmail.com is not a school address (school.edu)",
                 "Use the student's school address (@school.edu); letters go to school "
                 "addresses only.", "R05"),
        _problem(6, "Specialty", "Emergancy Medicine",
                 "Specialty 'Emergancy Medicine' is not in the specialty table: did you mean "
                 "Emergency Medicine?",
                 "Write 'Emergency Medicine' if that is it, or ask for 'Emergancy Medicine' to be "
                 "added to the specialty table as an alias.", "R06"),
        _problem(7, "Step 1 Attempts", "2",
                 "Step 1 is marked Not taken but the attempts cell says 2",
                 "Correct the Step 1 result (Pass or Fail), or clear the attempts cell.", "R07"),
        _problem(8, "Research Items", "-1", "Research items -1 is below 0",
                 "Enter the number of research items as a whole number, 0 or more.", "R08"),
        _problem(9, "Email", "hal ito at school", "'hal ito at school' is not one email address",
                 "Enter one address such as jane.doe@school.edu (no names, spaces or second "
                 "address).", "R09"),
        _problem(10, "Email", "", "No email address: the letter is written but not sent",
                 "Add the student's school email address so the letter can be sent.", "R10",
                 holds_row=False),
        _problem(11, "Step 2 CK Date", "1900-09-01",
                 "Step 2 CK date 1900-09-01 is not a likely exam date (2010-2029)",
                 "Correct the date (for example 7/15/2026), or leave it blank if not scheduled.",
                 "R11"),
    ]


def test_held_rows_lose_their_records_and_the_rest_go_on(
    settings: Settings, table: SpecialtyTable
) -> None:
    """A row with a holding problem gets no record; a missing email only warns."""
    roster = check_file(DATA / "out_of_range.xlsx", settings, table)
    assert [r.row for r in roster.records] == [2, 10]
    assert roster.held_rows() == {3, 4, 5, 6, 7, 8, 9, 11}
    assert len(roster.row_ids) == 10


def test_duplicate_ids_hold_every_copy(settings: Settings, table: SpecialtyTable) -> None:
    roster = check_file(DATA / "duplicate_ids.xlsx", settings, table)
    assert [(p.row, p.column, p.value, p.what) for p in roster.problems] == [
        (2, "Student ID", "001", "Student ID 001 is on more than one row (rows 2, 4)"),
        (4, "Student ID", "001", "Student ID 001 is on more than one row (rows 2, 4)"),
    ]
    assert [r.student_id for r in roster.records] == ["002", "003"]


def test_ids_that_differ_only_in_capitals_are_one_student(
    tmp_path: Path, settings: Settings, table: SpecialtyTable
) -> None:
    """AB12 and ab12 would share their letter files on a Windows or Mac share: both are held."""
    from openpyxl import load_workbook

    path = tmp_path / "case.xlsx"
    shutil.copy(DATA / "duplicate_ids.xlsx", path)
    wb = load_workbook(path)
    ws = wb["Roster"]
    ws["A2"], ws["A3"], ws["A4"], ws["A5"] = "ab12", "AB12", "CD34", "EF56"
    wb.save(path)
    roster = check_file(path, settings, table)
    expected = ("Student ID {} is on more than one row (rows 2, 3), written AB12 and ab12: IDs "
                "that differ only in capitals are taken as one student")
    assert [(p.row, p.value, p.what) for p in roster.problems] == [
        (2, "ab12", expected.format("ab12")),
        (3, "AB12", expected.format("AB12")),
    ]
    assert [r.student_id for r in roster.records] == ["CD34", "EF56"]


def test_no_allowed_domains_means_any_domain(workdir: Path, table: SpecialtyTable) -> None:
    """With ALLOWED_EMAIL_DOMAINS blank a gmail address is fine (its shape is still checked)."""
    roster = check_file(DATA / "out_of_range.xlsx", Settings(today=RUN_DATE), table)
    assert 5 not in roster.held_rows()
    assert 9 in roster.held_rows()


def test_subdomains_of_an_allowed_domain_pass(tmp_path: Path, workdir: Path,
                                              table: SpecialtyTable) -> None:
    from openpyxl import load_workbook

    path = tmp_path / "sub.xlsx"
    shutil.copy(DATA / "duplicate_ids.xlsx", path)
    wb = load_workbook(path)
    wb["Roster"]["C3"] = "bo.chen@med.school.edu"
    wb["Roster"]["C5"] = "dee@notschool.edu"
    wb.save(path)
    roster = check_file(path, Settings(allowed_email_domains=("school.edu",)), table)
    assert {p.row for p in roster.problems if p.column == "Email"} == {5}


def test_unparseable_rows_still_count_for_duplicate_ids(
    settings: Settings, table: SpecialtyTable
) -> None:
    """Intake problems and suite problems come together, sorted by row then column."""
    roster = check_file(DATA / "unparseable_values.xlsx", settings, table)
    rows = [p.row for p in roster.problems]
    assert rows == sorted(rows)
    assert [r.row for r in roster.records] == [2]


def test_cross_field_and_required_value_rules(tmp_path: Path, settings: Settings,
                                             table: SpecialtyTable) -> None:
    """Not taken with a score, a blank ID, name or specialty, a bad advisor address: all held."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Roster"
    ws.append(["Student ID", "Name", "Email", "Step 1 Result", "Step 1 Score", "Specialty",
               "Advisor Email", "Step 1 Margin"])
    ws.append(["C2", "Ana Lima", "ana@school.edu", "Not taken", 230, "IM", None, None])
    ws.append([None, "Bo Chen", "bo@school.edu", "Pass", None, "IM", None, None])
    ws.append(["C4", None, "cy@school.edu", "Pass", None, "IM", None, None])
    ws.append(["C5", "Dee Eve", "dee@school.edu", "Pass", None, None, None, None])
    ws.append(["C6", "Eli Fox", "eli@school.edu", "Pass", 0, "IM", "adv at school", None])
    ws.append(["C7", "Fay Gil", "fay@school.edu", "Fail", 188, "IM", "adv@school.edu", "M"])
    path = tmp_path / "cross_field.xlsx"
    wb.save(path)
    roster = check_file(path, settings, table)
    assert [(p.row, p.column, p.value, p.what) for p in roster.problems] == [
        (2, "Step 1 Score", "230", "Step 1 is marked Not taken but has a score (230)"),
        (3, "Student ID", "", "The student ID is blank"),
        (4, "Name", "", "The student's name is blank"),
        (5, "Specialty", "", "No specialty is given"),
        (6, "Step 1 Score", "0", "Step 1 score 0 is outside 1-300"),
        (6, "Advisor Email", "adv at school", "Advisor email 'adv at school' is not one email "
         "address"),
    ]
    assert [r.row for r in roster.records] == [7]
    assert roster.records[0].step1_margin == "marginal"


def test_an_empty_roster_is_a_whole_file_warning(settings: Settings, table: SpecialtyTable
                                                 ) -> None:
    roster = check_file(DATA / "empty_roster.xlsx", settings, table)
    assert roster.problems == [Problem(
        file="empty_roster.xlsx", sheet="Roster",
        what="The roster has a header but no student rows under it",
        fix="Add one row per student under the header row.", holds_row=False,
    )]


def test_validate_returns_a_new_roster_and_leaves_the_input_alone(
    settings: Settings, table: SpecialtyTable
) -> None:
    read = ingest(DATA / "out_of_range.xlsx", settings, table)
    before = (list(read.records), list(read.problems))
    checked = validate(read, settings, table)
    assert (read.records, read.problems) == before
    assert checked is not read
    assert (checked.sheet, checked.header_row, checked.row_ids) == (
        read.sheet, read.header_row, read.row_ids,
    )


def test_clean_roster_has_no_problems(settings: Settings, table: SpecialtyTable) -> None:
    roster = check_file(DATA / "text_numbers.xlsx", settings, table)
    assert roster.problems == []
    assert len(roster.records) == 5


def test_data_docs_page_is_written(tmp_path: Path, settings: Settings, table: SpecialtyTable
                                   ) -> None:
    """The run's validation page, rendered from the GX result, goes into docs_dir."""
    docs = tmp_path / "output" / "roster" / "validation"
    roster = ingest(DATA / "out_of_range.xlsx", settings, table)
    validate(roster, settings, table, docs)
    page = (docs / "index.html").read_text(encoding="utf-8")
    assert "out_of_range.xlsx" in page
    assert "suite residency-roster" in page  # the suite's name, from the GX result
    assert "Step 2 CK Score is between 1 and 300" in page  # the check, under its header


def test_gx_starts_once_per_process(settings: Settings, table: SpecialtyTable) -> None:
    check_file(DATA / "duplicate_ids.xlsx", settings, table)
    first = validation._gx()
    check_file(DATA / "duplicate_ids.xlsx", settings, table)
    assert validation._gx() is first


def test_validation_is_quiet(
    settings: Settings, table: SpecialtyTable, capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No progress bars or GX chatter on the terminal; logs carry counts, not names or scores."""
    validation._gx()
    capfd.readouterr()
    caplog.set_level(logging.INFO)
    check_file(DATA / "out_of_range.xlsx", settings, table)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("Bo Chen", "320", "gmail"):
        assert secret not in logged


def test_input_file_is_never_modified(tmp_path: Path, settings: Settings, table: SpecialtyTable
                                      ) -> None:
    path = tmp_path / "out_of_range.xlsx"
    shutil.copy2(DATA / "out_of_range.xlsx", path)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    check_file(path, settings, table)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_format_problems_lays_out_an_aligned_table() -> None:
    problems = [
        Problem(file="r.xlsx", what="No email column", fix="Add one.", holds_row=False),
        Problem(file="r.xlsx", what="Step 2 CK score 320 is outside 1-300", fix="Correct it.",
                row=12, column="Step 2 CK", value="320"),
    ]
    assert format_problems(problems).splitlines() == [
        "Row  Column     Value  What is wrong                         What to do",
        "---  ---------  -----  ------------------------------------  -----------",
        "-    -                 (warning) No email column             Add one.",
        "12   Step 2 CK  320    Step 2 CK score 320 is outside 1-300  Correct it.",
    ]


def test_format_problems_says_so_when_there_are_none() -> None:
    assert format_problems([]) == "No problems found."


@pytest.mark.parametrize("header", ["Step 2 CK Attempts", "Step2 CK Attempts", "Step 2 attempts"])
def test_step2_attempts_are_read_checked_and_reach_the_rules(
    tmp_path: Path, settings: Settings, table: SpecialtyTable, header: str
) -> None:
    """An optional column under any of its names: text numbers read, 1-6 checked by the suite,
    and a pass after a failed attempt puts the student on the failure row."""
    from openpyxl import Workbook, load_workbook

    from residency_rules.rules import evaluate

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Roster"
    ws.append(["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK Score", header,
               "Specialty"])
    ws.append(["A2", "Ana Lima", "ana@school.edu", "Pass", 255, 2, "FM"])
    ws.append(["A3", "Bo Chen", "bo@school.edu", "Pass", 255, "1 ", "FM"])
    ws.append(["A4", "Cy Dam", "cy@school.edu", "Pass", 255, None, "FM"])
    ws.append(["A5", "Dee Eve", "dee@school.edu", "Pass", 255, 7, "FM"])
    path = tmp_path / "step2_attempts.xlsx"
    wb.save(path)
    assert [c.value for c in load_workbook(path)["Roster"][1]][5] == header

    roster = check_file(path, settings, table)
    assert [(p.row, p.column, p.value, p.what, p.fix) for p in roster.problems] == [
        (5, header, "7", "Step 2 CK attempts 7 is outside 1-6",
         "Enter how many times the student sat Step 2 CK, this score included (leave blank if "
         "it is the first time)."),
    ]
    assert [(r.row, r.step2_attempts) for r in roster.records] == [(2, 2), (3, 1), (4, None)]
    labels = [
        evaluate(r, table, review_start=settings.review_start, today=RUN_DATE)
        for r in roster.records
    ]
    assert [(e.label, e.step2_failed_before) for e in labels] == [
        ("Matchable, with explanation", True),
        ("Very competitive", False),
        ("Very competitive", False),
    ]


def test_interview_invitations_are_read_through_an_alias_and_checked(
    tmp_path: Path, settings: Settings, table: SpecialtyTable
) -> None:
    """The optional `interviews` column (#13): a count 0 or more; anything else is named."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Roster"
    ws.append(["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK", "Specialty",
               "Interview Invites"])
    ws.append(["I01", "Ann One", "ann@school.edu", "Pass", 248, "EM", 6])
    ws.append(["I02", "Ben Two", "ben@school.edu", "Pass", 248, "EM", -2])
    ws.append(["I03", "Cy Three", "cy@school.edu", "Pass", 248, "EM", "many"])
    ws.append(["I04", "Di Four", "di@school.edu", "Pass", 248, "EM", None])
    path = tmp_path / "interviews.xlsx"
    wb.save(path)
    roster = check_file(path, settings, table)
    assert {r.student_id: r.interviews for r in roster.records} == {"I01": 6, "I04": None}
    found = {(p.row, p.column, p.value) for p in roster.problems}
    assert found == {(3, "Interview Invites", "-2"), (4, "Interview Invites", "many")}
    bad = next(p for p in roster.problems if p.row == 3)
    assert "interview invitations" in bad.fix.lower()


def test_great_expectations_starts_without_what_the_suite_never_runs(
    settings: Settings, table: SpecialtyTable
) -> None:
    """In a fresh process GX starts without scipy.stats (loaded lazily, in full the moment
    anything reads it) and without SQLAlchemy (hidden from GX's own import only): the suite
    still finds the same problems, and SQLAlchemy imports as usual afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from flows.intake.validation import check_file, import_gx\n"
        "from flows.settings import Settings\n"
        "import_gx()\n"
        "print('stats', 'scipy.stats._stats_py' in sys.modules)\n"
        "print('sqlalchemy', 'sqlalchemy' in sys.modules)\n"
        "from residency_rules.specialties import load_default_table\n"
        f"settings = Settings(allowed_email_domains=('school.edu',), today='{RUN_DATE}')\n"
        f"roster = check_file(Path({str(DATA / 'out_of_range.xlsx')!r}), settings,"
        " load_default_table())\n"
        "print('problems', len(roster.problems))\n"
        "from scipy import stats\n"
        "print('cdf', stats.norm.cdf(0.0))\n"
        "import sqlalchemy\n"
        "print('sqlalchemy_imports', hasattr(sqlalchemy, 'create_engine'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    said = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert said["stats"] == "False" and said["sqlalchemy"] == "False", out.stdout + out.stderr
    assert said["cdf"] == "0.5" and said["sqlalchemy_imports"] == "True"
    here = check_file(DATA / "out_of_range.xlsx", settings, table).problems
    assert int(said["problems"]) == len(here) > 5


def test_the_console_command_ends_with_its_status_and_everything_it_printed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`advising` ends its process without the interpreter's teardown (cli.entry): the exit
    status is main()'s and nothing it printed is lost, through a pipe as cron reads it."""
    import subprocess
    import sys

    from flows.cli import main

    monkeypatch.setenv("ADVISING_ALLOWED_EMAIL_DOMAINS", "school.edu")
    monkeypatch.setenv("ADVISING_TODAY", RUN_DATE.isoformat())
    roster = str(DATA / "out_of_range.xlsx")
    assert main(["check", roster]) == 1
    printed = capsys.readouterr().out
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # the console buffered, as usual
    child = subprocess.run([sys.executable, "-m", "flows.cli", "check", roster], cwd=workdir,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 1, child.stderr
    assert child.stdout == printed and printed.count("\n") > 15
