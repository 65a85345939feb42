"""Builders for the workbook tests: an office's roster shaped like a real one, and its run.

make_office_workbook writes the file; make_run gives what intake, the rules and delivery would
hand the workbook for it; evaluation builds one Evaluation as the rules engine would.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import replace
from datetime import date
from pathlib import Path

import openpyxl
from openpyxl.comments import Comment
from openpyxl.drawing.image import Image
from openpyxl.styles import Font, PatternFill
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation
from PIL import Image as PILImage

from flows.intake.roster import Roster
from flows.outcome import LetterOutcome, LetterStatus
from flows.workbook.annotate import ANNOTATION_HEADERS, LetterCell
from residency_rules.records import (
    AdviceItem,
    Evaluation,
    Problem,
    ProgramMix,
    Reason,
    StudentRecord,
)
from residency_rules.specialties import load_default_table

OFFICE_HEADERS = [
    "Student ID", "Name", "Email", "Step 1", "Step 2 CK", "Specialty", "Notes", "Check",
]
FIRST = len(OFFICE_HEADERS) + 1  # column I: the first annotation column
COL = {name: FIRST + i for i, name in enumerate(ANNOTATION_HEADERS)}
STUDENTS = [
    # row, ID, name, step 1, step 2, specialty, notes
    (4, "000123", "Ana Lima", "Pass", None, "General Surgery", ""),
    (5, "000124", '=HYPERLINK("http://example.com","x")', "Pass", 262, "Internal Medicine", ""),
    (6, "000125", "Held Student", "=cmd|' /C calc'!A0", 250, "Psychiatry", ""),
    (7, "+000126", "Zoë Ångström", "Pass", 246, "Internal Medicine", "=1+1"),
    (8, "000127", "Li Wei", "Pass", 238, "Emergency Medicine", "-"),
]
# What each level means and which are at risk: the shipped table's [levels].
LEVELS = load_default_table().rules.levels

SPECIALTIES = {
    "General Surgery": ("high", 250, 260),
    "Internal Medicine": ("less", 240, 250),
    "Psychiatry": ("less", 240, 250),
    "Emergency Medicine": ("moderate", 245, 255),
}


def _png() -> io.BytesIO:
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def make_office_workbook(
    path: Path, extra_sheets: tuple[str, ...] = (), shared_strings: bool = False
) -> None:
    """Write a small roster shaped like a real office's: title rows, hidden sheet, notes, names.

    openpyxl writes text inline; Excel writes it to the shared-string table (shared_strings).
    """
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Roster"
    ws["A1"] = "Class of 2027: Step 2 CK tracker"
    ws["A1"].font = Font(bold=True, size=16)
    ws.merge_cells("A1:D1")
    for col, name in enumerate(OFFICE_HEADERS, start=1):
        c = ws.cell(row=3, column=col, value=name)
        c.font = Font(bold=True, color="FFFFFF")
        c.fill = PatternFill("solid", fgColor="1F4E78")
    for row, sid, name, step1, step2, specialty, notes in STUDENTS:
        values = [sid, name, f"s{row}@school.edu", step1, step2, specialty, notes]
        for col, value in enumerate(values, start=1):
            c = ws.cell(row=row, column=col)
            c.value = value
            if isinstance(value, str) and value.startswith(("=", "+", "-")):
                c.data_type = "s"  # text typed by the office, not a formula
                c.quotePrefix = col == 2  # Excel sets it when typed as '=...; imports do not
        ws.cell(row=row, column=8, value=f"=LEN(B{row})")  # the office's own formula
    ws["A4"].comment = Comment("Transferred in from another school", "Registrar")
    ws["C4"].hyperlink = "mailto:s4@school.edu"
    validation = DataValidation(type="list", formula1='"Pass,Fail,Not taken"', allow_blank=True)
    ws.add_data_validation(validation)
    validation.add("D4:D8")
    ws.column_dimensions["B"].width = 31
    ws.add_image(Image(_png()), "F1")
    lists = wb.create_sheet("Lists")
    lists.sheet_state = "hidden"
    for i, value in enumerate(["Pass", "Fail", "Not taken", "=not a formula"], start=1):
        c = lists.cell(row=i, column=1, value=value)
        c.data_type = "s"
    wb.defined_names["Step1Results"] = DefinedName("Step1Results", attr_text="Lists!$A$1:$A$3")
    for title in extra_sheets:
        extra = wb.create_sheet(title)
        extra["A1"] = f"the office's own {title} sheet"
    wb.save(path)
    if shared_strings:
        _use_shared_strings(path)


def _use_shared_strings(path: Path) -> None:
    """Move every inline string into a shared-string table, as Excel stores text."""
    inline = re.compile(rb'<c ([^>]*?)t="inlineStr"><is><t(?: [^>]*)?>(.*?)</t></is></c>', re.S)
    strings: dict[bytes, int] = {}
    refs = 0

    def shared(m: re.Match[bytes]) -> bytes:
        nonlocal refs
        refs += 1
        index = strings.setdefault(m.group(2), len(strings))
        return b"<c " + m.group(1) + b't="s"><v>' + str(index).encode() + b"</v></c>"

    with zipfile.ZipFile(path) as zf:
        parts = {item.filename: zf.read(item.filename) for item in zf.infolist()}
    for name in parts:
        if name.startswith("xl/worksheets/sheet"):
            parts[name] = inline.sub(shared, parts[name])
    sst = b"".join(b'<si><t xml:space="preserve">' + text + b"</t></si>" for text in strings)
    parts["xl/sharedStrings.xml"] = (
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="'
        + str(refs).encode() + b'" uniqueCount="' + str(len(strings)).encode() + b'">' + sst
        + b"</sst>")
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>", b'<Relationship Id="rIdSst" Type="http://schemas.openxmlformats.org/'
        b'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
        b"</Relationships>")
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
        b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)


def evaluation(
    student_id: str,
    specialty: str,
    level: int,
    label: str,
    score: int | None,
    **changes: object,
) -> Evaluation:
    """Build an Evaluation as the rules engine would, for the outputs to render."""
    tier, solid, excellent = SPECIALTIES[specialty]
    ev = Evaluation(
        student_id=student_id,
        specialty=specialty,
        tier=tier,  # type: ignore[arg-type]
        solid=solid,
        excellent=excellent,
        step1_status="clean",
        step1_marginal=False,
        raw_band="pending" if score is None else "solid",
        band="pending" if score is None else "solid",
        clerkships="neutral",
        level=level,
        label=label,
        impact=80,
        trend=None,
        timing_late=False,
        reasons=(Reason("band", "Your score sits at the solid mark."),),
        advice=(
            AdviceItem("target", f"Aim for {solid}-{excellent} on Step 2 CK. Programs read it.",
                       "s1"),
            AdviceItem("qbank", "Do two passes of a question bank in mixed, timed blocks of "
                       "forty questions, then take NBME forms until they predict your range.",
                       "s2"),
            AdviceItem("mix", "Apply to 20% reach, 50% solid, 30% safety programs.", "s3"),
            AdviceItem("extra", "A fourth item that the roster does not show.", "s4"),
        ),
        mix=ProgramMix(20, 50, 30, False, False),
        rules_version="2026.1",
        step2_score=score,
    )
    ev = replace(ev, **changes)  # type: ignore[arg-type]
    # At risk as the rules decide it: an at-risk level of [levels], or pending at risk.
    return replace(ev, at_risk=LEVELS[ev.level].at_risk or ev.pending_at_risk)


def make_run(path: Path) -> tuple[Roster, dict[str, Evaluation], dict[str, LetterCell]]:
    """Return the roster intake gives for make_office_workbook, with evaluations and letters."""
    records = []
    for row, sid, name, _, step2, specialty, _ in STUDENTS:
        if row == 6:
            continue
        records.append(StudentRecord(
            student_id=sid, name=name, email=f"s{row}@school.edu", step1_result="pass",
            step1_attempts=1, specialty=specialty, step2_score=step2,
            advisor="Dr. Okafor" if row == 4 else None,
            step2_date=date(2026, 10, 15) if step2 is None else None, row=row,
        ))
    problems = [
        Problem(file=path.name, sheet="Roster", row=6, column="Step 1",
                value="=cmd|' /C calc'!A0", what="Step 1 is not Pass, Fail or Not taken",
                fix="Type Pass, Fail or Not taken", student_id="000125"),
        Problem(file=path.name, sheet="Roster", row=7, column="Email", value="s7@school.edu",
                what="Email is not in the school's domains", fix="Use the school address",
                student_id="+000126", holds_row=False),
        Problem(file=path.name, what="Column 'Advisor' is missing",
                fix="Add an Advisor column to sign the letters", holds_row=False),
    ]
    roster = Roster(
        source=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        sheet="Roster",
        header_row=3,
        last_column=len(OFFICE_HEADERS),
        row_ids={row: sid for row, sid, *_ in STUDENTS},
        records=records,
        problems=problems,
    )
    evaluations = {
        "000123": evaluation("000123", "General Surgery", 1, "At risk: plan a parallel specialty",
                             None, timing_late=True),
        "000124": evaluation("000124", "Internal Medicine", 5, "Very competitive", 262,
                             band="excellent", raw_band="excellent"),
        "+000126": evaluation("+000126", "Internal Medicine", 3,
                              "Competitive at community programs", 246, step1_marginal=True,
                              raw_band="borderline"),
        "000127": evaluation("000127", "Emergency Medicine", 2, "Reach", 238, band="below",
                             raw_band="below", step1_status="failure", impact=60),
    }
    letters = {
        "000123": LetterCell(LetterOutcome(LetterStatus.SENT), "letters/000123.html"),
        "000124": LetterCell(LetterOutcome(LetterStatus.UNCHANGED, when="2026-11-20"),
                             "letters/000124.html"),
        "000125": LetterCell(LetterOutcome(LetterStatus.HELD), None),
        "+000126": LetterCell(LetterOutcome(LetterStatus.NO_ADDRESS), None),
        "000127": LetterCell(LetterOutcome(LetterStatus.FAILED, "550 mailbox unavailable"),
                             "letters/000127.html"),
    }
    return roster, evaluations, letters
