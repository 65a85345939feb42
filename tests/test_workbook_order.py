"""The roster sheet keeps the schema's element order whatever the office's sheet already holds.

Excel offers to repair a sheet whose children are out of order (`<hyperlinks>` before
`<autoFilter>` was the bug of issue 15), while LibreOffice and openpyxl accept it, so this is
checked on the XML itself, for every combination of the elements next to the ones we insert.
"""

from __future__ import annotations

import itertools
import re
import zipfile
from pathlib import Path

import pytest

from flows.ooxml import Rels, SharedStrings, StyleBook, children, root_info
from flows.workbook.content import build_content
from flows.workbook.roster_sheet import RosterSheet, annotate_roster_sheet
from flows.workbook.xml_parts import SHEET_ORDER, CellWriter, Edit, apply_edits
from tests.support.workbooks import LEVELS, make_office_workbook, make_run

# The elements before <sheetData> and after it that an office's sheet may hold, each in a small
# valid form. The writer inserts or edits sheetPr, sheetViews, cols, autoFilter, hyperlinks and
# pageSetup; the others are their neighbours in the schema.
HEAD = {
    "sheetPr": '<sheetPr><outlinePr summaryBelow="0"/></sheetPr>',
    "dimension": '<dimension ref="A1:H8"/>',
    "sheetViews": '<sheetViews><sheetView workbookViewId="0"/></sheetViews>',
    "sheetFormatPr": '<sheetFormatPr defaultRowHeight="15"/>',
    "cols": '<cols><col min="2" max="2" width="31" customWidth="1"/></cols>',
}
TAIL = {
    "sheetProtection": '<sheetProtection sheet="1"/>',
    "autoFilter": '<autoFilter ref="A3:H8"/>',
    "mergeCells": '<mergeCells count="1"><mergeCell ref="A1:D1"/></mergeCells>',
    "dataValidations": '<dataValidations count="1"><dataValidation type="list" sqref="D4:D8">'
                       '<formula1>"Pass,Fail"</formula1></dataValidation></dataValidations>',
    "hyperlinks": '<hyperlinks><hyperlink ref="C4" r:id="rId9"/></hyperlinks>',
    "printOptions": '<printOptions gridLines="1"/>',
    "pageMargins": '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" '
                   'footer="0.3"/>',
    "pageSetup": '<pageSetup orientation="portrait" paperSize="9"/>',
    "headerFooter": "<headerFooter><oddHeader>&amp;CRoster</oddHeader></headerFooter>",
    "drawing": '<drawing r:id="rId1"/>',
    "tableParts": '<tableParts count="1"><tablePart r:id="rId3"/></tableParts>',
    "extLst": '<extLst><ext uri="{78C0D931-6437-407d-A8EE-F0AAD7539E65}"/></extLst>',
}
ROWS = "".join(
    f'<row r="{r}">' + "".join(f'<c r="{c}{r}" t="inlineStr"><is><t>x</t></is></c>'
                               for c in "ABCDEFGH") + "</row>"
    for r in range(3, 9)
)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, bytes]:
    """The run's content for the office workbook of test_workbook, and its styles part."""
    source = tmp_path_factory.mktemp("order") / "r.xlsx"
    make_office_workbook(source)
    with zipfile.ZipFile(source) as zf:
        styles = zf.read("xl/styles.xml")
    return build_content(*make_run(source), levels=LEVELS), styles


def _annotated_children(head: tuple[str, ...], tail: tuple[str, ...],
                        parts: tuple[object, bytes]) -> list[str]:
    content, styles = parts
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org'
        '/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006'
        '/relationships">' + "".join(HEAD[n] for n in head) + "<sheetData>" + ROWS
        + "</sheetData>" + "".join(TAIL[n] for n in tail) + "</worksheet>"
    ).encode()
    sheet = RosterSheet(xml, "xl/worksheets/sheet1.xml")
    writer = CellWriter(b"", StyleBook(styles), SharedStrings(None), False)
    result = annotate_roster_sheet(sheet, content, writer, Rels(None), [])  # type: ignore[arg-type]
    out = b"".join(result.chunks)
    _, root_end, _ = root_info(out)
    return [e.name for e in children(out, root_end, out.rfind(b"</"))]


def _subsets(names: list[str]) -> list[tuple[str, ...]]:
    return [combo for k in range(len(names) + 1) for combo in itertools.combinations(names, k)]


def _check(found: list[str], head: tuple[str, ...], tail: tuple[str, ...]) -> None:
    ranks = [SHEET_ORDER.index(n) for n in found]
    assert ranks == sorted(ranks) and len(set(found)) == len(found), (head, tail, found)
    assert set(head) | set(tail) <= set(found), (head, tail, found)  # nothing of theirs lost
    assert {"sheetPr", "sheetViews", "cols", "sheetData", "autoFilter", "hyperlinks",
            "pageSetup"} <= set(found)


@pytest.mark.slow
def test_every_combination_of_the_sheets_own_elements_keeps_the_schema_order(
    parts: tuple[object, bytes],
) -> None:
    """All 4,096 combinations of the elements after sheetData, by turns with none and all of
    the elements before it (about 12 s)."""
    for i, tail in enumerate(_subsets(list(TAIL))):
        head = tuple(HEAD) if i % 2 else ()
        _check(_annotated_children(head, tail, parts), head, tail)


def test_every_combination_of_the_elements_before_the_rows_keeps_the_schema_order(
    parts: tuple[object, bytes],
) -> None:
    for head in _subsets(list(HEAD)):
        for tail in ((), tuple(TAIL)):
            _check(_annotated_children(head, tail, parts), head, tail)


def test_two_insertions_at_one_spot_follow_the_schema_not_the_order_they_were_made() -> None:
    xml = b"<worksheet><sheetData/><pageMargins/></worksheet>"
    at = xml.index(b"<pageMargins")
    made = [Edit(at, at, [b"<hyperlinks/>"], SHEET_ORDER.index("hyperlinks")),
            Edit(at, at, [b"<autoFilter/>"], SHEET_ORDER.index("autoFilter"))]
    out = b"".join(apply_edits(xml, made))
    assert re.findall(rb"<(\w+)", out) == [b"worksheet", b"sheetData", b"autoFilter",
                                            b"hyperlinks", b"pageMargins"]


def test_the_bug_of_issue_15_a_plain_sheet_gets_its_filter_before_its_links(
    tmp_path: Path, parts: tuple[object, bytes],
) -> None:
    """The project's own rosters had a filter or merges; a sheet with neither showed the bug."""
    found = _annotated_children(("dimension", "sheetViews"), ("pageMargins",), parts)
    assert found.index("autoFilter") < found.index("hyperlinks")
