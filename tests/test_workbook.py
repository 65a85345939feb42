"""The annotated workbook: the office's file kept whole, annotated, summarised, read by cell."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from dataclasses import replace
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from defusedxml import ElementTree
from openpyxl.worksheet.table import Table

import flows.workbook.annotate as workbook_module
from flows.errors import AdvisingError, RosterError
from flows.intake.roster import Roster
from flows.ooxml import UnsupportedWorkbook
from flows.workbook.annotate import ANNOTATION_HEADERS, annotated_path, write_annotated
from flows.workbook.content import LEVEL_FILLS, unique_sheet_title
from residency_rules.records import (
    StudentRecord,
)
from tests.support.workbooks import (
    COL,
    FIRST,
    LEVELS,
    evaluation,
    make_office_workbook,
    make_run,
)


def _force_openpyxl(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise UnsupportedWorkbook("forced by the test")

    monkeypatch.setattr(workbook_module, "write_with_xml", refuse)


@pytest.fixture(params=["xml-shared", "xml-inline", "openpyxl-shared", "openpyxl-inline"])
def annotated(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> tuple[Path, Path]:
    """Write the annotated workbook (fast or fallback writer, Excel or openpyxl text storage).

    Returns (the office's workbook, the annotated one).
    """
    return _annotate(request.param, tmp_path, monkeypatch)


def _annotate(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    writer, storage = variant.split("-")
    source = tmp_path / "class2027.xlsx"
    make_office_workbook(source, shared_strings=storage == "shared")
    if writer == "openpyxl":
        _force_openpyxl(monkeypatch)
    out = tmp_path / "out" / "class2027-annotated.xlsx"
    write_annotated(*make_run(source), out, levels=LEVELS)
    return source, out


def _sheet_xml(path: Path, title: str) -> bytes:
    """Return the raw XML of a sheet by title (to check what no openpyxl reading can show)."""
    with zipfile.ZipFile(path) as zf:
        wb = zf.read("xl/workbook.xml").decode()
        rels = zf.read("xl/_rels/workbook.xml.rels").decode()
        rel_id = re.search(rf'<sheet [^>]*name="{re.escape(title)}"[^>]*r:id="([^"]+)"', wb)
        assert rel_id is not None
        target = re.search(rf'Id="{rel_id.group(1)}"[^>]*Target="([^"]+)"', rels) or re.search(
            rf'Target="([^"]+)"[^>]*Id="{rel_id.group(1)}"', rels)
        assert target is not None
        name = target.group(1).lstrip("/")
        return zf.read(name if name.startswith("xl/") else "xl/" + name)


# --- the office's workbook is kept ------------------------------------------------------------


def test_every_office_cell_is_kept_with_its_value_and_type(annotated: tuple[Path, Path]) -> None:
    """Every cell of every office sheet reads back the same, formulas and text alike."""
    source, out = annotated
    before = openpyxl.load_workbook(source)
    after = openpyxl.load_workbook(out)
    for ws in before.worksheets:
        kept = after[ws.title]
        for row in ws.iter_rows():
            for c in row:
                other = kept[c.coordinate]
                assert other.value == c.value, c.coordinate
                if c.value is not None:  # an empty cell may come back typed differently
                    assert other.data_type == c.data_type, c.coordinate
    assert after["Roster"]["H4"].value == "=LEN(B4)"  # the office's own formula, still live
    assert after["Roster"]["H4"].data_type == "f"


def test_hidden_sheet_names_comments_validation_image_widths_and_merges_are_kept(
    annotated: tuple[Path, Path],
) -> None:
    """Hidden sheets, defined names, comments, validations, images, widths and merges survive."""
    _, out = annotated
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames[:2] == ["Roster", "Lists"]
    assert wb["Lists"].sheet_state == "hidden"
    assert wb.defined_names["Step1Results"].attr_text == "Lists!$A$1:$A$3"
    ws = wb["Roster"]
    assert ws["A4"].comment is not None
    assert ws["A4"].comment.text == "Transferred in from another school"
    assert [str(dv.sqref) for dv in ws.data_validations.dataValidation] == ["D4:D8"]
    assert ws.column_dimensions["B"].width == 31
    assert len(ws._images) == 1
    assert "A1:D1" in {str(r) for r in ws.merged_cells.ranges}
    assert ws["A3"].font.b and ws["A3"].fill.fgColor.rgb.endswith("1F4E78")
    assert ws["A1"].value == "Class of 2027: Step 2 CK tracker"
    assert ws["C4"].hyperlink.target == "mailto:s4@school.edu"


# --- the annotation columns -------------------------------------------------------------------


def test_annotation_headers_follow_the_office_columns(annotated: tuple[Path, Path]) -> None:
    """The nine headers sit on the header row right after the office's last column."""
    ws = openpyxl.load_workbook(annotated[1])["Roster"]
    headers = [ws.cell(row=3, column=FIRST + i).value for i in range(len(ANNOTATION_HEADERS))]
    assert headers == list(ANNOTATION_HEADERS) == [
        "Tier", "Step 2 CK band", "Step 1 status", "Outlook level", "Outlook",
        "Step 2 CK impact (of 100)", "Next steps", "Letter", "Problems",
    ]
    assert ws.cell(row=3, column=FIRST - 1).value == "Check"
    assert ws.cell(row=3, column=FIRST + len(ANNOTATION_HEADERS)).value is None


def test_each_student_row_shows_the_evaluation(annotated: tuple[Path, Path]) -> None:
    """Tier, band, Step 1 status, level (a number), label, impact and next steps, per row."""
    ws = openpyxl.load_workbook(annotated[1])["Roster"]

    def row(r: int) -> dict[str, object]:
        return {name: ws.cell(row=r, column=COL[name]).value for name in ANNOTATION_HEADERS}

    marginal = row(7)
    assert marginal["Tier"] == "least competitive"
    assert marginal["Step 2 CK band"] == "solid (score alone: borderline)"
    assert marginal["Step 1 status"] == "clean (marginal)"
    assert marginal["Outlook level"] == 3 and isinstance(marginal["Outlook level"], int)
    assert marginal["Outlook"] == "Competitive at community programs"
    assert marginal["Step 2 CK impact (of 100)"] == 80
    assert marginal["Problems"] == "Email: Email is not in the school's domains"
    steps = str(marginal["Next steps"]).split("\n")
    assert steps[0] == "• Aim for 240-250 on Step 2 CK."
    assert len(steps) == 3 and steps[1].endswith("…") and len(steps[1]) <= 92
    assert row(8)["Step 1 status"] == "failure" and row(8)["Step 2 CK impact (of 100)"] == 60
    assert row(4)["Step 2 CK band"] == "pending"


def test_a_held_row_shows_its_problem_and_no_outlook(annotated: tuple[Path, Path]) -> None:
    """A row held back has no outlook, its letter says held, and the problem is on the row."""
    ws = openpyxl.load_workbook(annotated[1])["Roster"]
    assert ws.cell(row=6, column=COL["Outlook level"]).value is None
    assert ws.cell(row=6, column=COL["Tier"]).value is None
    assert ws.cell(row=6, column=COL["Letter"]).value == "Held: see Problems"
    assert ws.cell(row=6, column=COL["Problems"]).value == (
        "Step 1: Step 1 is not Pass, Fail or Not taken")


def test_the_letter_links_to_its_file_by_a_relative_path(annotated: tuple[Path, Path]) -> None:
    """The Letter cell shows the status and links to letters/<id>.html, movable with the folder."""
    ws = openpyxl.load_workbook(annotated[1])["Roster"]
    sent = ws.cell(row=4, column=COL["Letter"])
    assert sent.value == "Sent"
    assert sent.hyperlink is not None and sent.hyperlink.target == "letters/000123.html"
    assert ws.cell(row=5, column=COL["Letter"]).value == "Unchanged (sent 2026-11-20)"
    failed = ws.cell(row=8, column=COL["Letter"])
    assert failed.value == "Failed: 550 mailbox unavailable"
    assert failed.hyperlink.target == "letters/000127.html"
    no_file = ws.cell(row=7, column=COL["Letter"])
    assert no_file.value == "No email address" and no_file.hyperlink is None


def test_levels_are_coloured_and_the_view_is_ready_to_filter(annotated: tuple[Path, Path]) -> None:
    """Each level has its fill; the header is frozen, filtered, and long text wraps."""
    ws = openpyxl.load_workbook(annotated[1])["Roster"]
    for r, level in ((4, 1), (5, 5), (7, 3), (8, 2)):
        for name in ("Outlook level", "Outlook"):
            fill = ws.cell(row=r, column=COL[name]).fill
            assert fill.fill_type == "solid" and fill.fgColor.rgb.endswith(LEVEL_FILLS[level])
    assert ws.freeze_panes == "A4"
    last = openpyxl.utils.get_column_letter(COL["Problems"])
    assert ws.auto_filter.ref == f"A3:{last}8"
    assert ws.cell(row=4, column=COL["Next steps"]).alignment.wrap_text
    assert ws.cell(row=7, column=COL["Problems"]).alignment.wrap_text
    widths = [ws.column_dimensions[openpyxl.utils.get_column_letter(c)].width
              for c in COL.values()]
    assert all(w and w >= 9 for w in widths) and widths[6] == 60
    assert ws.cell(row=3, column=FIRST).font.b


# --- no formula from input --------------------------------------------------------------------


def test_no_value_from_input_becomes_a_formula(annotated: tuple[Path, Path]) -> None:
    """Text starting with = + - @ stays text with quotePrefix, in our cells and the office's."""
    source, out = annotated
    wb = openpyxl.load_workbook(out)
    roster = wb["Roster"]
    for coordinate in ("B5", "G7", "D6"):
        c = roster[coordinate]
        assert c.data_type == "s" and c.value.startswith("="), coordinate
        assert c.quotePrefix, coordinate
    assert roster["A7"].value == "+000126" and roster["A7"].quotePrefix
    assert roster["G8"].value == "-" and roster["G8"].quotePrefix
    hidden = wb["Lists"]["A4"]
    assert hidden.value == "=not a formula" and hidden.data_type == "s" and hidden.quotePrefix
    problems = wb["Problems"]
    value = next(c for c in problems["D"] if c.value == "=cmd|' /C calc'!A0")
    assert value.data_type == "s" and value.quotePrefix
    listed_id = next(c for c in problems["B"] if c.value == "+000126")
    assert listed_id.data_type == "s" and listed_id.quotePrefix
    # In the file itself: formulas only where the office had them (column H of the roster).
    office_formulas = _sheet_xml(source, "Roster").count(b"<f>")
    assert _sheet_xml(out, "Roster").count(b"<f>") == office_formulas == 5
    for title in ("Summary", "Problems", "Lists"):
        assert b"<f>" not in _sheet_xml(out, title) and b"<f " not in _sheet_xml(out, title)


# --- Summary and Problems ---------------------------------------------------------------------


def _find(ws: openpyxl.worksheet.worksheet.Worksheet, text: str) -> tuple[int, int]:
    for row in ws.iter_rows():
        for c in row:
            if c.value == text:
                return c.row, c.column
    raise AssertionError(f"{text!r} not on {ws.title}")


def test_summary_counts_outlook_levels_by_specialty(annotated: tuple[Path, Path]) -> None:
    """The Summary has totals, the level legend, and counts per specialty and level."""
    ws = openpyxl.load_workbook(annotated[1])["Summary"]
    r, c = _find(ws, "Students in the roster")
    totals = {ws.cell(row=i, column=c).value: ws.cell(row=i, column=c + 1).value
              for i in range(r, r + 14)}
    assert totals["Students in the roster"] == 5
    assert totals["Evaluated"] == 4
    assert totals["Rows held back (see Problems)"] == 1
    assert totals["Problems listed"] == 3
    # The pending student with a late date is at risk too (docs/rules.md, Pending scores and
    # timing).
    assert totals["At risk (level 1-2, or pending at risk)"] == 2
    assert totals["Without a Step 2 CK score"] == 1
    assert totals["Step 2 CK date too late"] == 1
    assert totals["Exam date passed, no score"] == 0
    assert totals["Few interview invitations"] == 0
    assert totals["Letters: Sent"] == 1 and totals["Letters: Failed"] == 1
    r, c = _find(ws, "Specialty")
    header = [ws.cell(row=r, column=c + i).value for i in range(8)]
    assert header == ["Specialty", "Tier", "Level 1", "Level 2", "Level 3", "Level 4", "Level 5",
                      "Total"]
    table = {ws.cell(row=i, column=1).value: [ws.cell(row=i, column=j).value for j in range(2, 9)]
             for i in range(r + 1, r + 5)}
    assert table["Internal Medicine"] == ["least competitive", 0, 0, 1, 0, 1, 2]
    assert table["Emergency Medicine"] == ["moderately competitive", 0, 1, 0, 0, 0, 1]
    assert table["General Surgery"] == ["highly competitive", 1, 0, 0, 0, 0, 1]
    assert table["Total"][1:] == [1, 1, 1, 0, 1, 4]
    legend_row, _ = _find(ws, "Level")
    first = ws.cell(row=legend_row + 1, column=1)
    assert first.value == 1 and first.fill.fgColor.rgb.endswith(LEVEL_FILLS[1])


def test_summary_has_native_charts_of_levels_and_scores(annotated: tuple[Path, Path]) -> None:
    """A stacked bar chart of levels per specialty and a chart of scores against tier marks."""
    ws = openpyxl.load_workbook(annotated[1])["Summary"]
    assert len(ws._charts) == 2
    levels, scores = ws._charts
    assert levels.tagname == "barChart" and levels.grouping == "stacked"
    assert levels.overlap == 100 and levels.type == "bar"
    assert len(levels.series) == 5
    refs = [s.val.numRef.f for s in levels.series]
    assert refs[0].startswith("'Summary'!$C$") and refs[4].startswith("'Summary'!$G$")
    assert scores.tagname == "barChart" and len(scores.series) == 3
    r, _ = _find(ws, "Step 2 CK scores by tier")
    r += 1
    marks = {ws.cell(row=i, column=1).value: (ws.cell(row=i, column=5).value,
                                              ws.cell(row=i, column=7).value,
                                              ws.cell(row=i, column=8).value)
             for i in range(r + 1, r + 4)}
    assert marks["least competitive"] == (254, 240, 250)  # median of 262 and 246
    assert marks["highly competitive"] == (None, 250, 260)  # nobody in the tier has a score yet


def test_summary_lists_students_at_risk_without_a_score_and_late(
    annotated: tuple[Path, Path],
) -> None:
    """At-risk, no-score and late lists give ID, specialty and outlook; rows link to the roster."""
    ws = openpyxl.load_workbook(annotated[1])["Summary"]

    def listed(heading: str) -> list[list[object]]:
        r, _ = _find(ws, heading)
        rows = []
        i = r + 2
        while ws.cell(row=i, column=1).value:
            rows.append([ws.cell(row=i, column=j).value for j in range(1, 6)])
            i += 1
        return rows

    r, _ = _find(ws, "At risk (level 1-2, or pending with a late date or a failure): 2")
    assert [c.value for c in ws[r + 1]][:7] == [
        "Name", "Level", "Student ID", "Specialty", "Advisor", "Outlook", "Row"]
    at_risk = [[ws.cell(row=i, column=j).value for j in range(1, 8)] for i in (r + 2, r + 3)]
    assert at_risk == [  # level first, then specialty: the morning's call list
        ["Ana Lima", 1, "000123", "General Surgery", "Dr. Okafor",
         "At risk: plan a parallel specialty", 4],
        ["Li Wei", 2, "000127", "Emergency Medicine", None, "Reach", 8],
    ]
    for i, row in ((r + 2, 4), (r + 3, 8)):  # the name and the row number open the roster row
        for col in (1, 7):
            link = ws.cell(row=i, column=col).hyperlink
            assert link is not None and link.location == f"'Roster'!A{row}"
    no_score = listed("Without a Step 2 CK score: 1")
    assert [r[:3] for r in no_score] == [["General Surgery", "000123", 4]]
    assert no_score[0][3].date() == date(2026, 10, 15) and no_score[0][4] == "yes"
    late = listed("Step 2 CK date too late: 1")
    assert [r[:3] for r in late] == [["General Surgery", "000123", 4]]


def test_problems_sheet_says_what_is_wrong_and_what_to_do(annotated: tuple[Path, Path]) -> None:
    """One row per problem: row, student, column, value, what is wrong, what to do."""
    ws = openpyxl.load_workbook(annotated[1])["Problems"]
    rows = [[c.value for c in row] for row in ws.iter_rows(max_col=7)]
    assert rows[0] == ["Row", "Student ID", "Column", "Value", "What is wrong", "What to do",
                       "Effect"]
    assert rows[1] == [None, None, None, None, "Column 'Advisor' is missing",
                       "Add an Advisor column to sign the letters", "Warning"]
    assert rows[2] == [6, "000125", "Step 1", "=cmd|' /C calc'!A0",
                       "Step 1 is not Pass, Fail or Not taken", "Type Pass, Fail or Not taken",
                       "Row held: no letter"]
    assert rows[3][:3] == [7, "+000126", "Email"] and rows[3][6] == "Warning only"
    assert ws["A3"].hyperlink.location == "'Roster'!A6"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:I4"


def test_the_fast_writer_keeps_the_rules_excel_enforces(annotated: tuple[Path, Path]) -> None:
    """Excel repairs (and warns about) files LibreOffice accepts: check its rules part by part."""
    _, out = annotated
    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    with zipfile.ZipFile(out) as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    trees = {name: ElementTree.fromstring(data) for name, data in parts.items()
             if name.endswith((".xml", ".rels"))}  # every part is well-formed
    sst = trees["xl/sharedStrings.xml"] if "xl/sharedStrings.xml" in trees else None
    if sst is not None:
        assert int(sst.get("uniqueCount", len(sst))) == len(sst)
    styles = trees["xl/styles.xml"]
    for block in ("fonts", "fills", "cellXfs"):
        element = styles.find(main + block)
        assert int(element.get("count", len(element))) == len(element), block
    xfs = len(styles.find(main + "cellXfs"))
    for name, tree in trees.items():
        if not name.startswith("xl/worksheets/sheet"):
            continue
        previous_row = 0
        for row in tree.iter(main + "row"):
            assert int(row.get("r")) > previous_row, name
            previous_row = int(row.get("r"))
            previous_col = 0
            for c in row.findall(main + "c"):
                col = openpyxl.utils.column_index_from_string(re.sub(r"\d", "", c.get("r")))
                assert col > previous_col and c.get("r").endswith(row.get("r")), (name, c.get("r"))
                previous_col = col
                assert int(c.get("s", "0")) < xfs, (name, c.get("r"))
        spans = sorted((int(c.get("min")), int(c.get("max"))) for c in tree.iter(main + "col"))
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False)), name
    types = parts["[Content_Types].xml"].decode()
    for name in parts:
        if name.startswith(("xl/worksheets/sheet", "xl/charts/", "xl/drawings/drawing")):
            assert f'PartName="/{name}"' in types, name


def test_the_two_writers_produce_the_same_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    """The fast writer and the openpyxl fallback agree on every value, fill and link."""
    source = tmp_path / "class2027.xlsx"
    make_office_workbook(source)
    fast, slow = tmp_path / "fast" / "a.xlsx", tmp_path / "slow" / "a.xlsx"
    write_annotated(*make_run(source), fast, levels=LEVELS)
    _force_openpyxl(monkeypatch)
    write_annotated(*make_run(source), slow, levels=LEVELS)
    a, b = openpyxl.load_workbook(fast), openpyxl.load_workbook(slow)
    assert a.sheetnames == b.sheetnames
    for title in a.sheetnames:
        x, y = a[title], b[title]
        assert (x.max_row, x.max_column) == (y.max_row, y.max_column), title
        for row in x.iter_rows():
            for c in row:
                d = y[c.coordinate]
                assert (c.value, c.quotePrefix) == (d.value, d.quotePrefix), c.coordinate
                if c.value is not None:
                    assert c.data_type == d.data_type, c.coordinate
                assert str(c.fill.fgColor.rgb)[-6:] == str(d.fill.fgColor.rgb)[-6:], c.coordinate
                assert c.font.b == d.font.b, c.coordinate
                assert bool(c.hyperlink) == bool(d.hyperlink), c.coordinate


# --- robustness -------------------------------------------------------------------------------


def test_sheet_titles_are_valid_and_never_clash() -> None:
    """Titles lose forbidden characters, stay within 31 characters and get a suffix on a clash."""
    assert unique_sheet_title("Summary", ["Roster"]) == "Summary"
    assert unique_sheet_title("Summary", ["summary"]) == "Summary (2)"
    assert unique_sheet_title("Summary", ["Summary", "Summary (2)"]) == "Summary (3)"
    assert unique_sheet_title("a/b:c*d?[e]\\f", []) == "a b c d  e  f"
    long = unique_sheet_title("x" * 40, ["x" * 31])
    assert len(long) == 31 and long.endswith(" (2)")


@pytest.mark.parametrize("writer", ["xml", "openpyxl"])
def test_office_sheets_named_summary_or_problems_are_kept(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our sheets take a suffix when the office already has a Summary or Problems sheet."""
    source = tmp_path / "r.xlsx"
    make_office_workbook(source, extra_sheets=("Summary", "problems", "Columns"))
    if writer == "openpyxl":
        _force_openpyxl(monkeypatch)
    out = tmp_path / "o" / "r-annotated.xlsx"
    write_annotated(*make_run(source), out, levels=LEVELS)
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Roster", "Lists", "Summary", "problems", "Columns",
                             "Summary (2)", "Problems (2)", "Columns (2)"]
    assert wb["Summary"]["A1"].value == "the office's own Summary sheet"
    assert wb["Summary (2)"]["A1"].value == "Summary: r"
    assert wb["Problems (2)"]["A1"].value == "Row"
    assert wb["Summary (2)"]._charts[0].series[0].val.numRef.f.startswith("'Summary (2)'!")


def _make_xlsm(source: Path, target: Path) -> bytes:
    """Turn a workbook into a macro-enabled one with a (fake) VBA project; return its bytes."""
    vba = b"\xd0\xcf\x11\xe0 fake VBA project " + bytes(range(256))
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "[Content_Types].xml":
                data = data.replace(
                    b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                    b"application/vnd.ms-excel.sheet.macroEnabled.main+xml",
                ).replace(b"</Types>", b'<Default Extension="bin" '
                          b'ContentType="application/vnd.ms-office.vbaProject"/></Types>')
            if item.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", b'<Relationship Id="rIdVba" Type="http://'
                                    b'schemas.microsoft.com/office/2006/relationships/vbaProject"'
                                    b' Target="vbaProject.bin"/></Relationships>')
            zout.writestr(item.filename, data)
        zout.writestr("xl/vbaProject.bin", vba)
    return vba


@pytest.mark.parametrize("writer", ["xml", "openpyxl"])
def test_a_macro_workbook_keeps_its_macros(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An .xlsm roster comes back as .xlsm with its VBA project byte for byte."""
    plain = tmp_path / "plain.xlsx"
    make_office_workbook(plain)
    source = tmp_path / "macros.xlsm"
    vba = _make_xlsm(plain, source)
    if writer == "openpyxl":
        _force_openpyxl(monkeypatch)
    roster, evaluations, letters = make_run(source)
    out = annotated_path(roster.source, tmp_path / "out")
    assert out.name == "macros-annotated.xlsm"
    write_annotated(roster, evaluations, letters, out, levels=LEVELS)
    with zipfile.ZipFile(out) as zf:
        assert zf.read("xl/vbaProject.bin") == vba
        assert b"macroEnabled.main+xml" in zf.read("[Content_Types].xml")
    ws = openpyxl.load_workbook(out, keep_vba=True)["Roster"]
    assert ws.cell(row=3, column=FIRST).value == "Tier"


def test_a_macro_workbook_is_not_written_under_an_xlsx_name(tmp_path: Path) -> None:
    """Excel refuses an .xlsx that holds macros, so a mismatched suffix is refused up front."""
    plain = tmp_path / "plain.xlsx"
    make_office_workbook(plain)
    source = tmp_path / "macros.xlsm"
    _make_xlsm(plain, source)
    with pytest.raises(ValueError, match="suffix"):
        write_annotated(*make_run(source), tmp_path / "macros-annotated.xlsx", levels=LEVELS)


def test_a_crash_leaves_no_half_written_workbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    """A writer that fails midway leaves the previous workbook as it was and no temporary file."""
    source = tmp_path / "r.xlsx"
    make_office_workbook(source)
    out = tmp_path / "out" / "r-annotated.xlsx"
    out.parent.mkdir()
    out.write_bytes(b"yesterday's workbook")

    def crash(_: object, dest: Path) -> None:
        dest.write_bytes(b"half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(workbook_module, "write_with_xml", crash)
    with pytest.raises(AdvisingError, match=r"r-annotated\.xlsx: cannot write it \(disk full\)"):
        write_annotated(*make_run(source), out, levels=LEVELS)
    assert out.read_bytes() == b"yesterday's workbook"
    assert [p.name for p in out.parent.iterdir()] == ["r-annotated.xlsx"]


def test_a_roster_changed_since_intake_is_not_annotated(tmp_path: Path) -> None:
    """Rows may have moved in an edited file, so the annotations would land on the wrong student."""
    source = tmp_path / "r.xlsx"
    make_office_workbook(source)
    roster, evaluations, letters = make_run(source)
    wb = openpyxl.load_workbook(source)
    wb["Roster"].insert_rows(4)
    wb.save(source)
    with pytest.raises(RosterError, match="changed while it was being processed"):
        write_annotated(roster, evaluations, letters, tmp_path / "o.xlsx", levels=LEVELS)
    assert not (tmp_path / "o.xlsx").exists()


def test_office_data_beyond_the_reported_last_column_is_not_overwritten(tmp_path: Path) -> None:
    """If a row holds data past Roster.last_column, the annotations start after it."""
    source = tmp_path / "r.xlsx"
    make_office_workbook(source)
    wb = openpyxl.load_workbook(source)
    wb["Roster"]["K5"] = "advisor's note"
    wb["Roster"]["J9"] = "below the roster: not a student row"
    wb.save(source)
    roster, evaluations, letters = make_run(source)
    out = tmp_path / "o" / "r.xlsx"
    write_annotated(roster, evaluations, letters, out, levels=LEVELS)
    ws = openpyxl.load_workbook(out)["Roster"]
    assert ws["K5"].value == "advisor's note"
    assert ws.cell(row=3, column=12).value == "Tier"  # L: after column K
    assert ws["J9"].value == "below the roster: not a student row"


def _rewrite_sheet(path: Path, change: callable) -> None:  # type: ignore[valid-type]
    """Rewrite the roster sheet's XML in place (to make the odd files other tools write)."""
    data = {}
    with zipfile.ZipFile(path) as zf:
        for item in zf.infolist():
            data[item.filename] = zf.read(item.filename)
    data["xl/worksheets/sheet1.xml"] = change(data["xl/worksheets/sheet1.xml"])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in data.items():
            zf.writestr(name, content)


def test_a_sheet_written_with_a_namespace_prefix_is_annotated_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some tools write <x:row>, <x:c>: the fast writer keeps their prefix and needs no fallback."""
    source = tmp_path / "r.xlsx"
    make_office_workbook(source)

    def prefixed(xml: bytes) -> bytes:
        xml = re.sub(rb"<(/?)(?!\?)([A-Za-z]+)", rb"<\1x:\2", xml)
        return xml.replace(b'xmlns="http://schemas', b'xmlns:x="http://schemas', 1)

    _rewrite_sheet(source, prefixed)
    monkeypatch.setattr(workbook_module, "write_with_openpyxl", None)  # must not be needed
    out = tmp_path / "o" / "r.xlsx"
    write_annotated(*make_run(source), out, levels=LEVELS)
    assert b"<x:row" in _sheet_xml(out, "Roster")
    ws = openpyxl.load_workbook(out)["Roster"]
    assert ws.cell(row=3, column=FIRST).value == "Tier"
    assert ws.cell(row=5, column=COL["Outlook"]).value == "Very competitive"
    assert ws["B5"].value.startswith("=HYPERLINK") and ws["B5"].data_type == "s"
    assert ws.freeze_panes == "A4"


def test_rows_without_references_fall_back_to_openpyxl(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Cells whose position is implicit (no r attribute) are written through openpyxl instead."""
    source = tmp_path / "r.xlsx"
    make_office_workbook(source)
    _rewrite_sheet(source, lambda xml: re.sub(rb'(<c) r="[A-Z]+\d+"', rb"\1", xml))
    out = tmp_path / "o" / "r.xlsx"
    with caplog.at_level("INFO", logger="flows.workbook.annotate"):
        write_annotated(*make_run(source), out, levels=LEVELS)
    assert "writing through openpyxl" in caplog.text
    ws = openpyxl.load_workbook(out)["Roster"]
    assert ws.cell(row=3, column=FIRST).value == "Tier"
    assert ws.cell(row=4, column=COL["Outlook level"]).value == 1


def test_an_office_column_range_over_our_columns_is_split(tmp_path: Path) -> None:
    """A <col> range covering the annotation columns is split so no two ranges overlap."""
    source = tmp_path / "r.xlsx"
    make_office_workbook(source)
    _rewrite_sheet(source, lambda xml: re.sub(
        rb"<cols>.*?</cols>", b'<cols><col min="2" max="30" width="14" customWidth="1"/></cols>',
        xml, flags=re.S))
    out = tmp_path / "o" / "r.xlsx"
    write_annotated(*make_run(source), out, levels=LEVELS)
    spans = []
    for tag in re.findall(rb"<col [^>]*>", _sheet_xml(out, "Roster")):
        found = dict(re.findall(rb'(\w+)="([^"]*)"', tag))
        spans.append((int(found[b"min"]), int(found[b"max"]), float(found[b"width"])))
    spans.sort()
    assert spans[0] == (2, FIRST - 1, 14)
    assert spans[-1] == (FIRST + len(ANNOTATION_HEADERS), 30, 14)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize("writer", ["xml", "openpyxl"])
@pytest.mark.parametrize(("table", "filtered"), [("A1:C2", None), ("A5:B6", "A1:L2")])
def test_an_excel_table_under_the_roster_gets_no_second_filter(
    writer: str, table: str, filtered: str | None, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the roster is an Excel table its own filter stays: a sheet filter over it is corrupt."""
    source = tmp_path / "r.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Roster"
    ws.append(["Student ID", "Name", "Specialty"])
    ws.append(["000123", "Ana", "General Surgery"])
    ws["A5"], ws["B5"], ws["A6"], ws["B6"] = "Lookup", "Value", "x", "y"  # a table below
    ws.add_table(Table(displayName="Students", ref=table))
    wb.save(source)
    if writer == "openpyxl":
        _force_openpyxl(monkeypatch)
    record = StudentRecord(student_id="000123", name="Ana", email=None, step1_result="pass",
                           step1_attempts=1, specialty="General Surgery", row=2)
    roster = Roster(source=source, sha256="", sheet="Roster", header_row=1, last_column=3,
                    row_ids={2: "000123"}, records=[record])
    out = tmp_path / "o" / "r.xlsx"
    write_annotated(roster, {"000123": evaluation("000123", "General Surgery", 4, "Competitive",
                                                  262)}, {}, out, levels=LEVELS)
    ws = openpyxl.load_workbook(out)["Roster"]
    assert ws.auto_filter.ref == filtered
    assert ws.tables["Students"].ref == table
    assert ws["D1"].value == "Tier" and ws["G2"].value == 4


@pytest.mark.parametrize("writer", ["xml", "openpyxl"])
def test_frozen_columns_and_an_office_filter_are_extended(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The office's frozen ID column stays frozen; their filter grows to cover our columns."""
    source = tmp_path / "r.xlsx"
    make_office_workbook(source)
    wb = openpyxl.load_workbook(source)
    wb["Roster"].freeze_panes = "B2"
    wb["Roster"].auto_filter.ref = "A3:H8"
    wb.save(source)
    if writer == "openpyxl":
        _force_openpyxl(monkeypatch)
    out = tmp_path / "o" / "r.xlsx"
    write_annotated(*make_run(source), out, levels=LEVELS)
    ws = openpyxl.load_workbook(out)["Roster"]
    assert ws.freeze_panes == "B4"
    assert ws.auto_filter.ref == f"A3:{openpyxl.utils.get_column_letter(COL['Problems'])}8"


@pytest.mark.parametrize("writer", ["xml", "openpyxl"])
def test_a_roster_with_no_students_still_gets_its_sheets(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header-only roster gets the annotation headers, an empty Summary and the Problems sheet."""
    source = tmp_path / "r.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "Roster"
    wb.active.append(["Student ID", "Name"])
    wb.save(source)
    if writer == "openpyxl":
        _force_openpyxl(monkeypatch)
    roster = Roster(source=source, sha256="", sheet="Roster", header_row=1, last_column=2)
    out = tmp_path / "o" / "r.xlsx"
    write_annotated(roster, {}, {}, out, levels=LEVELS)
    wb = openpyxl.load_workbook(out)
    assert wb["Roster"]["C1"].value == "Tier"
    assert wb["Summary"]._charts == []
    assert _find(wb["Summary"], "At risk (level 1-2, or pending with a late date or a failure): 0")
    assert wb["Problems"]["A2"].value == "No problems found."


# --- LibreOffice ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
@pytest.mark.parametrize("variant", ["xml-shared", "openpyxl-inline"])
def test_libreoffice_opens_the_workbook(variant: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """LibreOffice converts the workbook to PDF, and reads our columns and sheets back."""
    _, out = _annotate(variant, tmp_path, monkeypatch)
    profile = f"-env:UserInstallation=file://{tmp_path / 'lo-profile'}"
    for fmt in ("pdf", "xlsx"):
        target = tmp_path / fmt
        done = subprocess.run(
            ["soffice", profile, "--headless", "--convert-to", fmt, "--outdir", str(target),
             str(out)],
            capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stderr
        converted = target / f"{out.stem}.{fmt}"
        assert converted.exists() and converted.stat().st_size > 0, done.stdout + done.stderr
    wb = openpyxl.load_workbook(tmp_path / "xlsx" / f"{out.stem}.xlsx")
    assert {"Roster", "Lists", "Summary", "Problems"} <= set(wb.sheetnames)
    ws = wb["Roster"]
    assert ws.cell(row=3, column=FIRST).value == "Tier"
    assert ws.cell(row=5, column=COL["Outlook"]).value == "Very competitive"
    assert ws["B5"].value.startswith("=HYPERLINK") and ws["B5"].data_type == "s"
    assert len(wb["Summary"]._charts) == 2


def test_the_step1_column_names_a_step2_failure_on_the_record() -> None:
    """The office sees why a first-try Step 1 pass reads the failure row (#14)."""
    from flows.workbook.content import step1_text

    ev = evaluation("A1", "Psychiatry", 3, "Matchable, with explanation", 255)
    assert step1_text(ev) == "clean"
    flagged = replace(ev, step2_failed_before=True, step1_marginal=True)
    assert step1_text(flagged) == "clean (marginal); a Step 2 CK failure on record"


# --- the office's morning: rows that fit, pages that print, the sheet list -------------------


def test_wrapped_cells_get_a_row_height_that_fits(annotated: tuple[Path, Path]) -> None:
    """Three "Next steps" lines print on top of each other unless the row says its height."""
    wb = openpyxl.load_workbook(annotated[1])
    ws = wb["Roster"]
    steps = ws.cell(row=5, column=COL["Next steps"])
    lines = steps.value.count("\n") + 1
    assert lines >= 2 and steps.alignment.wrap_text
    assert ws.row_dimensions[5].height >= lines * 15
    assert ws.row_dimensions[3].height >= 30  # "Step 2 CK impact" wraps in its header
    summary = wb["Summary"]
    r, _ = _find(summary, "At risk (level 1-2, or pending with a late date or a failure): 2")
    outlook = summary.cell(row=r + 2, column=6)  # a long outlook label in its column
    assert outlook.alignment.wrap_text and summary.row_dimensions[r + 2].height >= 30


def test_roster_summary_and_problems_print_landscape_one_page_wide(
    annotated: tuple[Path, Path],
) -> None:
    wb = openpyxl.load_workbook(annotated[1])
    for title in ("Roster", "Summary", "Problems"):
        ws = wb[title]
        assert ws.page_setup.orientation == "landscape", title
        assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0), title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, title
    assert wb["Roster"].print_title_rows == "$3:$3"  # the header row repeats on every page
    assert wb["Problems"].print_title_rows == "$1:$1"
    summary = wb["Summary"]
    r, _ = _find(summary, "At risk (level 1-2, or pending with a late date or a failure): 2")
    # The lists start a new page, so the tables and their charts print whole above them.
    assert [b.id for b in summary.row_breaks.brk] == [r - 1]
    assert all(chart.anchor._from.row + 1 < r - 1 for chart in summary._charts)


def test_app_xml_lists_every_sheet(annotated: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(annotated[1]) as zf:
        app = ElementTree.fromstring(zf.read("docProps/app.xml"))
    vt = "{http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes}"
    ep = "{http://schemas.openxmlformats.org/officeDocument/2006/extended-properties}"
    titles = [e.text for e in app.iter(f"{vt}lpstr") if e.text]
    listed = app.find(f"{ep}TitlesOfParts")
    assert listed is not None
    names = [e.text for e in listed.iter(f"{vt}lpstr")]
    assert names == ["Roster", "Lists", "Summary", "Problems", "Columns"], titles
    pairs = [e.text for e in app.find(f"{ep}HeadingPairs").iter() if e.text]
    assert pairs[:2] == ["Worksheets", "5"]


def test_the_named_annotation_columns_are_the_headers_in_order() -> None:
    """Code addresses a column by name (Column.LETTER), never by a number that could drift."""
    from flows.workbook.content import ANNOTATION_HEADERS, ANNOTATION_WIDTHS, Column

    assert len(Column) == len(ANNOTATION_HEADERS) == len(ANNOTATION_WIDTHS)
    assert {c.name: ANNOTATION_HEADERS[c] for c in Column} == {
        "TIER": "Tier", "BAND": "Step 2 CK band", "STEP1": "Step 1 status",
        "LEVEL": "Outlook level", "OUTLOOK": "Outlook", "IMPACT": "Step 2 CK impact (of 100)",
        "NEXT_STEPS": "Next steps", "LETTER": "Letter", "PROBLEMS": "Problems",
    }
