"""The blank roster template: headers, dropdowns, instructions; a filled copy reads clean."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.datavalidation import DataValidation

from flows.intake.template import LISTS_SHEET, TEMPLATE_FIELDS, write_template
from flows.intake.validation import check_file
from flows.settings import Settings
from residency_rules import schema
from residency_rules.specialties import SpecialtyTable
from tests.conftest import RUN_DATE


@pytest.fixture
def template(tmp_path: Path, table: SpecialtyTable) -> Path:
    path = tmp_path / "roster-template.xlsx"
    write_template(path, table, RUN_DATE)
    return path


def _validations(path: Path) -> dict[str, DataValidation]:
    """Map each header of the Roster sheet to the data validation covering its column."""
    ws = load_workbook(path)["Roster"]
    by_column: dict[str, DataValidation] = {}
    for dv in ws.data_validations.dataValidation:
        for rng in dv.sqref.ranges:
            header = ws.cell(row=1, column=rng.min_col).value
            assert isinstance(header, str)
            by_column[header] = dv
    return by_column


def test_template_has_the_friendly_headers(template: Path) -> None:
    wb = load_workbook(template)
    assert wb.sheetnames == ["Roster", LISTS_SHEET, "Instructions"]
    assert wb.active is not None and wb.active.title == "Roster"
    headers = [c.value for c in wb["Roster"][1]]
    assert headers == [schema.FIELD_BY_NAME[n].label for n in TEMPLATE_FIELDS]
    assert headers[:4] == ["Student ID", "Name", "Email", "Step 1 Result"]
    assert "Internal Medicine Clerkship" in headers
    assert wb["Roster"].freeze_panes == "C2"


def test_dropdowns_offer_the_values_intake_accepts(template: Path) -> None:
    dvs = _validations(template)
    assert dvs["Step 1 Result"].formula1 == '"Pass,Fail,Not taken"'
    assert dvs["Step 1 Margin"].formula1 == '"Marginal,Comfortable"'
    assert dvs["Letters"].formula1 == '"Strong,Average,Weak"'
    for clerkship in schema.CLERKSHIP_FIELDS:
        label = schema.FIELD_BY_NAME[clerkship].label
        assert dvs[label].formula1 == '"Honors,High Pass,Pass,Fail,Conditional Pass,IP"'
    assert (dvs["Step 1 Attempts"].type, dvs["Step 1 Attempts"].formula1,
            dvs["Step 1 Attempts"].formula2) == ("whole", "1", "6")
    assert (dvs["Step 2 CK Score"].formula1, dvs["Step 2 CK Score"].formula2) == ("1", "300")
    assert (dvs["Step 2 CK Attempts"].type, dvs["Step 2 CK Attempts"].formula1,
            dvs["Step 2 CK Attempts"].formula2) == ("whole", "1", "6")
    assert dvs["Step 2 CK Date"].type == "date"


def test_specialty_dropdown_reads_a_hidden_list_of_every_specialty(
    template: Path, table: SpecialtyTable
) -> None:
    """The specialty list is too long for an inline dropdown, so it lives on a hidden sheet."""
    wb = load_workbook(template)
    lists = wb[LISTS_SHEET]
    assert lists.sheet_state == "hidden"
    names = tuple(lists.cell(row=r, column=1).value for r in range(2, len(table.names()) + 2))
    assert names == table.names()
    assert _validations(template)["Specialty"].formula1 == (
        f"'{LISTS_SHEET}'!$A$2:$A${len(table.names()) + 1}"
    )


def test_every_dropdown_value_reads_back(table: SpecialtyTable) -> None:
    for value in schema.DROPDOWNS["step1_result"]:
        assert not isinstance(schema.norm_step1_result(value), schema.Invalid)
    for value in schema.DROPDOWNS["clerkship"]:
        assert not isinstance(schema.norm_grade(value), schema.Invalid)
    for value in schema.DROPDOWNS["letters"]:
        assert schema.norm_letters(value) is not None
    for value in schema.DROPDOWNS["step1_margin"]:
        assert schema.norm_margin(value) is not None
    for name in table.names():
        assert table.resolve(name) is not None


def test_instructions_sheet_explains_every_column(template: Path) -> None:
    ws = load_workbook(template)["Instructions"]
    text = [c.value for c in ws["A"] if c.value]
    assert text[0] == "Residency advising roster: how to fill it in"
    for name in TEMPLATE_FIELDS:
        assert schema.FIELD_BY_NAME[name].label in text


def test_student_id_column_is_formatted_as_text(template: Path) -> None:
    """So Excel keeps the leading zeros the office types."""
    ws = load_workbook(template)["Roster"]
    assert ws.column_dimensions["A"].number_format == "@"


def test_filled_template_validates_clean(template: Path, workdir: Path,
                                         table: SpecialtyTable) -> None:
    """A template filled from its own dropdowns reads and validates without one problem."""
    wb = load_workbook(template)
    ws = wb["Roster"]
    rows = [
        ["00123", "Ana Lima", "ana.lima@school.edu", "Pass", None, None, "Marginal", 252,
         date(2026, 7, 1), None, "Emergency Medicine", "Honors", "High Pass", "Pass",
         "Conditional Pass", "IP", None, "Pass", 2, "Strong", "Dr. Rivera", "rivera@school.edu",
         9],
        ["00124", "Bo Chen", "bo.chen@school.edu", "Fail", 1, None, None, None, None, None,
         "Family Medicine", "Pass", "Pass", None, None, None, None, None, 0, "Average", None,
         None, None],
        ["00125", "Cy Diaz", "cy.diaz@school.edu", "Not taken", None, None, None, None, None,
         None, "Dermatology", None, None, None, None, None, None, None, None, None, None, None,
         None],
        ["00126", "Dee Eve", "dee.eve@school.edu", "Pass", 2, 231, "Comfortable", 261,
         date(2026, 5, 2), 2, "Orthopaedic Surgery", "High Pass", "Honors", "Fail", "Pass", "Pass",
         "Pass", "Honors", 4, "Weak", "Dr. Rivera", "rivera@school.edu", 0],
    ]
    for r, row in enumerate(rows, start=2):
        for c, value in enumerate(row, start=1):
            ws.cell(row=r, column=c, value=value)
    wb.save(template)
    settings = Settings(allowed_email_domains=("school.edu",), today=RUN_DATE)
    roster = check_file(template, settings, table)
    assert roster.problems == []
    assert roster.sheet == "Roster" and roster.header_row == 1
    assert roster.row_ids == {2: "00123", 3: "00124", 4: "00125", 5: "00126"}
    ana = roster.records[0]
    assert [r.interviews for r in roster.records] == [9, None, None, 0]
    assert (ana.specialty, ana.step1_attempts, ana.step2_date, ana.conditional_pass) == (
        "Emergency Medicine", 1, date(2026, 7, 1), ("Obstetrics and Gynecology",),
    )
    assert dict(ana.clerkships)["Psychiatry"] is None
    assert (roster.records[2].step1_result, roster.records[2].step1_attempts) == ("not taken", 0)
    assert roster.records[3].clerkships[2] == ("Pediatrics", "F")
    assert [r.step2_attempts for r in roster.records] == [None, None, None, 2]
