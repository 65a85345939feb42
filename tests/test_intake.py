"""Intake: real workbooks in tests/data, each named for the Excel reality it exercises."""

from __future__ import annotations

import hashlib
import logging
import shutil
import zipfile
from datetime import date
from pathlib import Path

import pytest

from flows.errors import RosterError
from flows.intake.read import ingest
from flows.intake.roster import Roster
from flows.settings import Settings
from residency_rules import schema
from residency_rules.records import Problem, StudentRecord
from residency_rules.specialties import SpecialtyTable

DATA = Path(__file__).parent / "data"


def read(name: str, settings: Settings, table: SpecialtyTable) -> Roster:
    return ingest(DATA / name, settings, table)


# ---------------------------------------------------------------------------------------------
# Where the roster is: sheet, header row, columns
# ---------------------------------------------------------------------------------------------


def test_header_under_merged_title_rows_is_found(settings: Settings, table: SpecialtyTable) -> None:
    """It skips merged title rows and a group label, and maps the header through aliases."""
    roster = read("merged_title_rows.xlsx", settings, table)
    assert roster.sheet == "Advising"
    assert roster.header_row == 5
    assert roster.headers == {
        "student_id": "Student ID", "name": "Name", "email": "E-mail Address",
        "step1_result": "USMLE Step 1", "step2_score": "Step 2 CK",
        "clerkship_im": "IM Clerkship", "clerkship_surgery": "Surgery Clerkship",
        "specialty": "Target Specialty",
    }
    assert roster.column_index == {
        "student_id": 1, "name": 2, "email": 3, "step1_result": 4, "step2_score": 5,
        "clerkship_im": 6, "clerkship_surgery": 7, "specialty": 8,
    }
    assert roster.last_column == 9  # the office's Notes column passes through, untouched
    assert roster.row_ids == {6: "S101", 7: "S102", 8: "S103"}
    assert roster.problems == []
    first = roster.records[0]
    assert (first.row, first.specialty, first.clerkships) == (
        6, "Internal Medicine", (("Internal Medicine", "H"), ("Surgery", "HP")),
    )
    assert [r.specialty for r in roster.records] == [
        "Internal Medicine", "Emergency Medicine", "Psychiatry",
    ]


def test_every_roster_field_is_filled(settings: Settings, table: SpecialtyTable) -> None:
    """It fills source, sha256 of the file bytes, sheet, positions, row IDs, records, problems."""
    path = DATA / "merged_title_rows.xlsx"
    roster = ingest(path, settings, table)
    assert roster.source == path
    assert roster.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(roster.records) == 3


def test_hidden_sheet_is_skipped(settings: Settings, table: SpecialtyTable) -> None:
    """It reads the first visible sheet with a header, not a hidden old roster before it."""
    roster = read("hidden_sheet.xlsx", settings, table)
    assert roster.sheet == "Class of 2027"
    assert list(roster.row_ids.values()) == ["S001", "S002", "S003"]


def test_roster_only_on_a_hidden_sheet_is_rejected_with_a_hint(
    settings: Settings, table: SpecialtyTable
) -> None:
    """It tells the office to unhide the sheet rather than guessing."""
    with pytest.raises(RosterError, match="hidden sheet 'Data'; unhide it"):
        read("hidden_only.xlsx", settings, table)


def test_sheet_named_roster_wins(tmp_path: Path, settings: Settings, table: SpecialtyTable
                                 ) -> None:
    """A filled template has Roster as a later sheet after others; Roster is the one read."""
    from openpyxl import load_workbook

    path = tmp_path / "two.xlsx"
    shutil.copy(DATA / "hidden_sheet.xlsx", path)
    wb = load_workbook(path)
    wb["Old roster"].sheet_state = "visible"
    wb["Class of 2027"].title = "ROSTER "
    wb.save(path)
    roster = ingest(path, settings, table)
    assert roster.sheet == "ROSTER "


# ---------------------------------------------------------------------------------------------
# Excel realities in the values
# ---------------------------------------------------------------------------------------------


def test_text_numbers_ids_dates_and_shorthands_are_normalised(
    settings: Settings, table: SpecialtyTable
) -> None:
    """Numbers stored as text, numeric IDs, serial and text dates, P/F and H/HP all read."""
    roster = read("text_numbers.xlsx", settings, table)
    assert roster.problems == []
    assert roster.row_ids == {2: "00123", 3: "4567", 4: "890", 5: "000077", 6: "S0005"}
    by_id = {r.student_id: r for r in roster.records}
    assert by_id["00123"] == StudentRecord(
        student_id="00123", name="Ana Lima", email="ana.lima@school.edu",
        step1_result="pass", step1_attempts=1, specialty="Internal Medicine",
        step1_margin="marginal", step2_score=245, step2_date=date(2026, 7, 15),
        clerkships=(("Internal Medicine", "HP"), ("Obstetrics and Gynecology", "P"),
                    ("Psychiatry", None)),
        conditional_pass=("Obstetrics and Gynecology",), research_count=3, letters="strong",
        row=2,
    )
    bo = by_id["4567"]
    assert (bo.step1_attempts, bo.step2_score, bo.step2_date, bo.letters, bo.step1_margin) == (
        2, 250, date(2026, 7, 15), "average", "comfortable",
    )
    cy = by_id["890"]  # a numeric ID cell 890.0 reads as "890"
    assert (cy.step1_result, cy.step1_attempts, cy.specialty, cy.letters) == (
        "fail", 1, "Obstetrics and Gynecology", "weak",
    )
    assert cy.clerkships == (
        ("Internal Medicine", "H"), ("Obstetrics and Gynecology", "HP"), ("Psychiatry", "F"),
    )
    dee = by_id["000077"]
    assert (dee.step1_result, dee.step1_attempts, dee.specialty) == ("not taken", 0, "Pediatrics")
    assert dee.clerkships == (
        ("Internal Medicine", None), ("Obstetrics and Gynecology", None), ("Psychiatry", None),
    )
    eli = by_id["S0005"]
    assert (eli.step1_score, eli.step2_score, eli.research_count, eli.specialty) == (
        231, 262, 1024, "General Surgery",
    )


def test_blank_rows_are_skipped_and_ragged_rows_read(
    settings: Settings, table: SpecialtyTable
) -> None:
    """Blank, spaces-only and note-only rows are not students; a short row is still read."""
    roster = read("blank_and_ragged_rows.xlsx", settings, table)
    assert roster.row_ids == {2: "S001", 5: "S002", 7: "S004", 10: "S003"}
    assert [r.row for r in roster.records] == [2, 5, 7, 10]
    assert roster.records[2].specialty == ""  # the ragged row ends before Specialty


def test_first_and_last_name_columns_make_the_name(
    settings: Settings, table: SpecialtyTable
) -> None:
    """First + Last become the name, in any script; a missing last name leaves the first."""
    roster = read("first_last_names.xlsx", settings, table)
    assert [r.name for r in roster.records] == [
        "José Núñez", "Thảo Nguyễn", "李 小龙", "ليلى حداد", "Madonna",
    ]
    assert roster.headers["first_name"] == "First Name"
    assert roster.column_index["last_name"] == 3


def test_formulas_are_read_from_cached_values(settings: Settings, table: SpecialtyTable) -> None:
    """A formula counts as the value Excel last calculated; one never calculated is not read
    as a blank: its row is held with a problem saying what to do (issue 15)."""
    roster = read("formulas.xlsx", settings, table)
    assert roster.row_ids == {2: "00321", 3: "S002"}
    assert [(r.step2_score, r.research_count) for r in roster.records] == [(245, 2)]
    [problem] = roster.problems
    assert (problem.row, problem.column, problem.holds_row) == (3, "Research Items", True)
    assert problem.what == "The Research Items cell holds a formula Excel has not calculated"
    assert problem.fix == "Open the roster in Excel, save it, and drop it again"


def test_macro_enabled_workbook_reads_and_nothing_runs(
    settings: Settings, table: SpecialtyTable
) -> None:
    """An .xlsm with a VBA project reads like an .xlsx: values only, macros never run."""
    path = DATA / "macro_enabled.xlsm"
    with zipfile.ZipFile(path) as archive:
        assert "xl/vbaProject.bin" in archive.namelist()
    roster = ingest(path, settings, table)
    assert [r.student_id for r in roster.records] == ["S001", "S002", "S003"]


def test_unreadable_cells_hold_their_row(settings: Settings, table: SpecialtyTable) -> None:
    """A cell that cannot be its field gives a Problem with row, header, value, what and fix."""
    roster = read("unparseable_values.xlsx", settings, table)
    assert [r.row for r in roster.records] == [2]
    assert roster.problems[0] == Problem(
        file="unparseable_values.xlsx", sheet="Roster", row=3, column="Step 2 CK Score",
        value="abc", what="Step 2 CK score 'abc' is not a number",
        fix="Type the Step 2 CK score as digits (for example 245), or leave the cell blank.",
        student_id="V03",
    )
    assert [(p.row, p.column, p.value) for p in roster.problems] == [
        (3, "Step 2 CK Score", "abc"),
        (4, "Step 2 CK Date", "soon"),
        (5, "Surgery Clerkship", "Excellent"),
        (6, "Research Items", "1.5"),
        (7, "Step 1 Result", "Maybe"),
        (8, "Step 1 Result", ""),
        (8, "Letters", "Great"),
    ]
    assert all(p.holds_row for p in roster.problems)
    assert roster.problems[5].what == "The Step 1 result is blank"


# ---------------------------------------------------------------------------------------------
# Headers that are nearly right
# ---------------------------------------------------------------------------------------------


def test_near_miss_headers_get_a_did_you_mean_warning(
    settings: Settings, table: SpecialtyTable
) -> None:
    """A typo in a header is a warning naming the header it probably meant; no row is held."""
    roster = read("near_miss_header.xlsx", settings, table)
    warnings = {p.column: p for p in roster.problems if p.row == 1}
    assert warnings["Emial"].fix == "Did you mean 'Email'? If so, rename the header to 'Email'."
    assert warnings["Step 2 CK Scroe"].fix.startswith("Did you mean 'Step 2 CK Score'?")
    assert warnings["AAMC ID"].what == (
        "Column 'AAMC ID' names the same thing as column 'Student ID'; only 'Student ID' was read"
    )
    assert not any(p.holds_row for p in roster.problems)
    assert [r.row for r in roster.records] == [2, 3]
    # Without a recognised email column nobody is held, and the office is told once.
    (whole_file,) = [p for p in roster.problems if p.row is None]
    assert whole_file.what.startswith("The roster has no email column")


def test_missing_required_columns_are_all_named(settings: Settings, table: SpecialtyTable) -> None:
    """The RosterError lists every missing column, with a near-miss header when there is one."""
    with pytest.raises(RosterError) as caught:
        read("missing_columns.xlsx", settings, table)
    assert str(caught.value) == (
        "missing_columns.xlsx, sheet 'Roster': required column(s) missing from the header row "
        "(row 1): Step 1 Result, Specialty; add them and save the roster again"
    )
    first, second = caught.value.problems
    assert "no Step 1 Result column in the header row (row 1)" in first
    assert "The column 'Step1 Reslt' looks close: rename it to 'Step 1 Result' if so." in first
    assert "no Specialty column" in second and "'Preferred Specialty'" in second


# ---------------------------------------------------------------------------------------------
# Files that are not rosters at all
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_a_zip.xlsx", "not_a_zip.xlsx is a text (CSV) file, not an .xlsx workbook"),
        ("encrypted.xlsx", "encrypted.xlsx is protected with a password (encrypted)"),
        ("huge_ratio.xlsx", "the shape of a zip bomb"),
        ("~$roster.xlsx", "~$roster.xlsx is the lock file Excel keeps while roster.xlsx is open"),
        ("entity_expansion.xlsx", "declares XML entities, which Excel never writes"),
        ("no_header.xlsx", "no sheet has a header row we recognise (looked at 'Sheet1')"),
    ],
)
def test_unreadable_files_raise_roster_error(
    name: str, message: str, settings: Settings, table: SpecialtyTable
) -> None:
    """It raises RosterError whose message and problem lines say what is wrong in plain words."""
    with pytest.raises(RosterError) as caught:
        read(name, settings, table)
    assert message in str(caught.value)
    assert caught.value.problems and all(name in line for line in caught.value.problems)


def test_file_over_the_size_limit_is_not_opened(workdir: Path, table: SpecialtyTable) -> None:
    """The size guard rejects a file before reading it (ADVISING_MAX_ROSTER_MB)."""
    small = Settings(max_roster_mb=0.001)
    with pytest.raises(RosterError, match=r"over the 0.001 MB limit"):
        ingest(DATA / "text_numbers.xlsx", small, table)


def test_file_unpacking_over_the_limit_is_not_opened(workdir: Path, table: SpecialtyTable
                                                     ) -> None:
    """The zip directory's total uncompressed size is checked before any XML is parsed."""
    small = Settings(max_uncompressed_mb=0.005)
    with pytest.raises(RosterError, match=r"would unpack to .* over the 0.005 MB limit"):
        ingest(DATA / "text_numbers.xlsx", small, table)


def test_missing_file_raises_roster_error(settings: Settings, table: SpecialtyTable) -> None:
    with pytest.raises(RosterError, match="no such file"):
        read("does_not_exist.xlsx", settings, table)


def test_openpyxl_uses_defusedxml() -> None:
    """defusedxml is installed, so openpyxl (used by the writers) refuses entity expansion too."""
    from openpyxl.xml import DEFUSEDXML

    assert DEFUSEDXML is True


# ---------------------------------------------------------------------------------------------
# Hygiene: the office's file and the logs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["text_numbers.xlsx", "macro_enabled.xlsm", "formulas.xlsx"])
def test_input_file_is_never_modified(
    name: str, tmp_path: Path, settings: Settings, table: SpecialtyTable
) -> None:
    """Reading leaves the workbook's bytes and modification time exactly as they were."""
    path = tmp_path / name
    shutil.copy2(DATA / name, path)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    ingest(path, settings, table)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_logs_carry_no_names_scores_or_grades(
    settings: Settings, table: SpecialtyTable, caplog: pytest.LogCaptureFixture
) -> None:
    """Log lines name the file and counts only."""
    caplog.set_level(logging.DEBUG)
    read("text_numbers.xlsx", settings, table)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "text_numbers.xlsx" in logged
    for secret in ("Ana", "Lima", "245", "HP", "Honors"):
        assert secret not in logged


# ---------------------------------------------------------------------------------------------
# The schema: header aliases and value normalisers (pure)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("USMLE Step 2 CK Score", "step2_score"), ("Step2CK", "step2_score"),
        ("Step 2 CK", "step2_score"), ("step 2 ck (3-digit)", "step2_score"),
        ("AAMC ID", "student_id"), ("Student ID", "student_id"), ("Student #", "student_id"),
        ("E-mail Address", "email"), ("Preferred Specialty", "specialty"),
        ("Target Specialty", "specialty"), ("Internal Medicine Clerkship", "clerkship_im"),
        ("IM Clerkship", "clerkship_im"), ("OB/GYN", "clerkship_obgyn"),
        ("Obstetrics & Gynecology Clerkship", "clerkship_obgyn"),
        ("Family Medicine", "clerkship_family_medicine"), ("Research Items", "research_count"),
        ("Publications", "research_count"), ("# Publications", "research_count"),
        ("LOR Strength", "letters"), ("Letters", "letters"), ("First Name", "first_name"),
        ("Last Name", "last_name"), ("  step 1\nresult ", "step1_result"),
        ("Advisor E-mail", "advisor_email"),
    ],
)
def test_headers_match_through_aliases(header: str, field: str) -> None:
    assert schema.match_header(header) == field


@pytest.mark.parametrize("header", ["Notes", "Comments", "Phone", "Class Year", "Step 3"])
def test_unrelated_headers_match_nothing_and_suggest_nothing(header: str) -> None:
    assert schema.match_header(header) is None
    assert schema.suggest_header(header) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" 245 ", 245), (245.0, 245), ("245.0", 245), ("250\u00a0", 250), ("1,024", 1024),
     ("N/A", None), ("", None), (None, None), (7, 7)],
)
def test_whole_numbers_read_from_numbers_and_text(value: schema.Cell, expected: int | None
                                                  ) -> None:
    assert schema.norm_whole(value, "score") == expected


@pytest.mark.parametrize("value", ["abc", 245.5, True, "250+"])
def test_non_numbers_are_invalid(value: schema.Cell) -> None:
    assert isinstance(schema.norm_whole(value, "score"), schema.Invalid)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(46218, date(2026, 7, 15)), (46218.0, date(2026, 7, 15)), ("46218", date(2026, 7, 15)),
     ("7/15/2026", date(2026, 7, 15)), ("7/15/26", date(2026, 7, 15)),
     ("15/07/2026", date(2026, 7, 15)), ("2026-07-15", date(2026, 7, 15)),
     ("15 Jul 2026", date(2026, 7, 15)), ("July 15th, 2026", date(2026, 7, 15)),
     (date(2026, 7, 15), date(2026, 7, 15)), ("", None), ("TBD", None)],
)
def test_dates_read_from_serials_and_text(value: schema.Cell, expected: date | None) -> None:
    assert schema.norm_date(value, "date") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("H", ("H", False)), ("Honors", ("H", False)), ("hp", ("HP", False)),
     ("High Pass", ("HP", False)), ("P", ("P", False)), ("Fail", ("F", False)),
     ("IP", (None, False)), ("", (None, False)), (None, (None, False)),
     ("Conditional Pass", ("P", True))],
)
def test_grades_read_shorthands_and_words(value: schema.Cell, expected: schema.GradeCell
                                          ) -> None:
    assert schema.norm_grade(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("P", "pass"), ("Pass", "pass"), ("F", "fail"), ("failed", "fail"),
     ("Not taken", "not taken"), ("NT", "not taken")],
)
def test_step1_results(value: str, expected: str) -> None:
    assert schema.norm_step1_result(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(123.0, "123"), (123, "123"), ("00123", "00123"), (" 0042 ", "0042"), ("", None)],
)
def test_ids_keep_leading_zeros_and_lose_dot_zero(value: schema.Cell, expected: str | None
                                                  ) -> None:
    assert schema.norm_student_id(value) == expected


def test_aliases_are_unique_and_cover_every_field() -> None:
    """Each header names one field only, and the template labels match their own field."""
    assert set(schema.ALIAS_INDEX.values()) == {f.name for f in schema.FIELDS}
    for field in schema.FIELDS:
        assert schema.match_header(field.label) == field.name


def test_header_row_is_the_one_naming_most_fields() -> None:
    rows: list[list[schema.Cell]] = [
        ["Step 1 and Step 2 CK results", "", ""],
        ["", "", ""],
        ["Student ID", "Name", "Step 1", "Specialty", "Whatever"],
        ["S1", "Ana", "Pass", "IM", ""],
    ]
    found = schema.find_header(rows)
    assert found is not None
    assert (found.row, found.columns) == (
        2, {"student_id": 0, "name": 1, "step1_result": 2, "specialty": 3},
    )


def _one_student(path: Path, header: str) -> Path:
    """A roster of one Dermatology student with 6 research items under `header`."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK Score",
               "Preferred Specialty", header])
    ws.append(["0100001", "Ana Lima", "ana@school.edu", "Pass", 250, "Dermatology", 6])
    wb.save(path)
    return path


@pytest.mark.parametrize("header", [
    "Pubs/Posters", "Pubs & Posters", "Publications & Posters", "Publications and Posters",
    "# of Publications", "Research (n)",
])
def test_research_headed_as_offices_head_it_is_read(
    header: str, tmp_path: Path, settings: Settings, table: SpecialtyTable
) -> None:
    """#25: `Pubs/Posters` and its kin feed research_count (6 items read as 6, not unknown)."""
    roster = ingest(_one_student(tmp_path / "pubs.xlsx", header), settings, table)
    assert roster.headers["research_count"] == header
    assert [r.research_count for r in roster.records] == [6]
    assert not [p for p in roster.problems if p.column == header]


@pytest.mark.parametrize("header", ["Posters", "Abstracts (n)", "Papers submitted"])
def test_a_header_that_sounds_like_research_is_not_dropped_in_silence(
    header: str, tmp_path: Path, settings: Settings, table: SpecialtyTable
) -> None:
    """No alias matches, but its words say research: a warning naming the field and the fix."""
    roster = ingest(_one_student(tmp_path / "posters.xlsx", header), settings, table)
    (warning,) = [p for p in roster.problems if p.column == header]
    assert warning.fix == ("Did you mean 'Research Items'? If so, rename the header to "
                           "'Research Items'.")
    assert not warning.holds_row
