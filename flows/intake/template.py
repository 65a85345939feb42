"""Write a blank roster the office can fill in: the right headers, dropdowns, and instructions.

Every header is the friendly label from `residency_rules.schema`, so a filled template reads back
through intake without a single alias; dropdowns keep values to those the normalisers accept.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from residency_rules.schema import (
    ATTEMPTS_RANGE,
    CLERKSHIP_FIELDS,
    DROPDOWNS,
    EXCEL_EPOCH,
    FIELD_BY_NAME,
    SCORE_RANGE,
    step2_date_range,
)
from residency_rules.specialties import SpecialtyTable

ROSTER_SHEET = "Roster"
LISTS_SHEET = "Lists"
INSTRUCTIONS_SHEET = "Instructions"
# Dropdowns and formats cover this many student rows; more rows still read, unchecked by Excel.
TEMPLATE_ROWS = 5000
TEMPLATE_FIELDS: tuple[str, ...] = (
    "student_id", "name", "email", "step1_result", "step1_attempts", "step1_score",
    "step1_margin", "step2_score", "step2_date", "step2_attempts", "specialty", *CLERKSHIP_FIELDS,
    "research_count", "letters", "advisor", "advisor_email", "interviews", "match_result",
)
_HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
_REQUIRED_FILL = PatternFill("solid", fgColor="833C0B")
_WIDTHS = {"name": 26, "email": 30, "specialty": 28, "advisor": 22, "advisor_email": 30}


def write_template(path: Path, table: SpecialtyTable, today: date) -> None:
    """Write the blank roster workbook to path (the `advising template PATH` command).

    today bounds the Step 2 CK dates its dropdown accepts, as validation does.
    """
    wb = Workbook()
    roster = wb.worksheets[0]
    roster.title = ROSTER_SHEET
    _roster_sheet(roster)
    lists = wb.create_sheet(LISTS_SHEET)
    specialty_range = _lists_sheet(lists, table)
    wb.defined_names["Specialties"] = DefinedName("Specialties", attr_text=specialty_range)
    _dropdowns(roster, specialty_range, today)
    _instructions(wb.create_sheet(INSTRUCTIONS_SHEET), table)
    lists.sheet_state = "hidden"
    wb.active = 0
    wb.properties.title = "Residency advising roster"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def _column(name: str) -> str:
    return str(get_column_letter(TEMPLATE_FIELDS.index(name) + 1))


def _span(name: str) -> str:
    col = _column(name)
    return f"{col}2:{col}{TEMPLATE_ROWS + 1}"


def _roster_sheet(ws: Worksheet) -> None:
    for index, name in enumerate(TEMPLATE_FIELDS, start=1):
        field = FIELD_BY_NAME[name]
        cell = ws.cell(row=1, column=index, value=field.label)
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = _REQUIRED_FILL if field.required else _HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        letter = get_column_letter(index)
        ws.column_dimensions[letter].width = _WIDTHS.get(name, max(12, len(field.label) + 2))
    # Column formats (Excel gives them to new cells): text keeps IDs' leading zeros.
    ws.column_dimensions[_column("student_id")].number_format = "@"
    ws.column_dimensions[_column("step2_date")].number_format = "m/d/yyyy"
    ws.row_dimensions[1].height = 32
    ws.freeze_panes = "C2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(TEMPLATE_FIELDS))}1"


def _lists_sheet(ws: Worksheet, table: SpecialtyTable) -> str:
    """Write the specialty names (too long for an inline list) and return their range."""
    ws["A1"] = "Specialty"
    ws["A1"].font = Font(bold=True)
    names = table.names()
    for row, name in enumerate(names, start=2):
        ws.cell(row=row, column=1, value=name)
    ws.column_dimensions["A"].width = 40
    return f"{quote_sheetname(ws.title)!s}!$A$2:$A${len(names) + 1}"


def _list(values: tuple[str, ...], prompt: str, title: str) -> DataValidation:
    return DataValidation(
        type="list", formula1='"' + ",".join(values) + '"', allow_blank=True,
        showErrorMessage=True, errorStyle="stop", errorTitle=title,
        error=f"Choose one of: {', '.join(values)} (or leave blank).",
        showInputMessage=True, promptTitle=title[:32], prompt=prompt[:255],
    )


def _whole(low: int, high: int | None, title: str, prompt: str) -> DataValidation:
    dv = DataValidation(
        type="whole", operator="between" if high is not None else "greaterThanOrEqual",
        formula1=str(low), formula2=str(high) if high is not None else None, allow_blank=True,
        showErrorMessage=True, errorTitle=title[:32],
        error=(f"Enter a whole number from {low} to {high}." if high is not None
               else f"Enter a whole number, {low} or more."),
        showInputMessage=True, promptTitle=title[:32], prompt=prompt[:255],
    )
    return dv


def _dropdowns(ws: Worksheet, specialty_range: str, today: date) -> None:
    checks: list[tuple[DataValidation, list[str]]] = [
        (_list(DROPDOWNS["step1_result"], FIELD_BY_NAME["step1_result"].help, "Step 1 result"),
         ["step1_result"]),
        (_list(DROPDOWNS["step1_margin"], FIELD_BY_NAME["step1_margin"].help, "Step 1 margin"),
         ["step1_margin"]),
        (_list(DROPDOWNS["letters"], FIELD_BY_NAME["letters"].help, "Letters"), ["letters"]),
        (_list(DROPDOWNS["match_result"], FIELD_BY_NAME["match_result"].help, "Match result"),
         ["match_result"]),
        (_list(DROPDOWNS["clerkship"], FIELD_BY_NAME["clerkship_im"].help, "Clerkship grade"),
         list(CLERKSHIP_FIELDS)),
        (_whole(*ATTEMPTS_RANGE, "Step 1 attempts", FIELD_BY_NAME["step1_attempts"].help),
         ["step1_attempts"]),
        (_whole(*ATTEMPTS_RANGE, "Step 2 CK attempts", FIELD_BY_NAME["step2_attempts"].help),
         ["step2_attempts"]),
        (_whole(*SCORE_RANGE, "Score", FIELD_BY_NAME["step2_score"].help),
         ["step1_score", "step2_score"]),
        (_whole(0, None, "Research items", FIELD_BY_NAME["research_count"].help),
         ["research_count"]),
        (_whole(0, None, "Interviews", FIELD_BY_NAME["interviews"].help), ["interviews"]),
    ]
    specialty = DataValidation(
        type="list", formula1=specialty_range, allow_blank=True, showErrorMessage=True,
        errorStyle="warning", errorTitle="Specialty",
        error="Not in the specialty list; an alias (IM, EM, OB/GYN) still works. Keep it?",
        showInputMessage=True, promptTitle="Specialty", prompt=FIELD_BY_NAME["specialty"].help,
    )
    checks.append((specialty, ["specialty"]))
    first, last = ((day - EXCEL_EPOCH).days for day in step2_date_range(today))
    when = DataValidation(
        type="date", operator="between", formula1=str(first), formula2=str(last),
        allow_blank=True, showErrorMessage=True, errorTitle="Step 2 CK date",
        error="Enter a date such as 7/15/2026.", showInputMessage=True,
        promptTitle="Step 2 CK date", prompt=FIELD_BY_NAME["step2_date"].help,
    )
    checks.append((when, ["step2_date"]))
    for dv, names in checks:
        for name in names:
            dv.add(_span(name))
        ws.add_data_validation(dv)


def _instructions(ws: Worksheet, table: SpecialtyTable) -> None:
    lines = [
        ("Residency advising roster: how to fill it in", None),
        ("", None),
        ("1. One row per student on the Roster sheet; keep the header row as it is.", None),
        ("2. Columns with a brown header are required; the others may stay blank.", None),
        ("3. Pick values from the dropdowns where there is one. Extra columns of your own are "
         "fine: they are kept and ignored.", None),
        ("4. Save as .xlsx and drop the file into the input folder; rows with a problem are "
         "listed on the Problems sheet of the annotated workbook and get no letter until fixed.",
         None),
        ("5. `advising check FILE` lists problems without sending anything, and which of your "
         "columns fed which field (the annotated workbook's Columns sheet shows it too).", None),
        ("6. Your own header names work for most columns (e.g. AAMC ID, Pubs/Posters). If one "
         "is not read, rename it, or ask IT to map it once in ADVISING_COLUMN_MAP (a small "
         'file with lines such as research_count = "Scholarly Work").', None),
        ("", None),
        ("Column", "What to enter"),
    ]
    lines += [(FIELD_BY_NAME[name].label, FIELD_BY_NAME[name].help) for name in TEMPLATE_FIELDS]
    lines += [
        ("", None),
        (f"Specialty table version {table.version}: {len(table.specialties)} specialties "
         "(see the dropdown).", None),
    ]
    for row, (a, b) in enumerate(lines, start=1):
        ws.cell(row=row, column=1, value=a)
        if b is not None:
            ws.cell(row=row, column=2, value=b)
    ws["A1"].font = Font(bold=True, size=14)
    header_row = next(i for i, (a, _) in enumerate(lines, start=1) if a == "Column")
    ws.cell(row=header_row, column=1).font = Font(bold=True)
    ws.cell(row=header_row, column=2).font = Font(bold=True)
    ws.column_dimensions["A"].width = 30
    ws.column_dimensions["B"].width = 90
