"""Pieces of SpreadsheetML the fast writer edits with: the schema's element order, edits on
a part's bytes, and our cells and sheets as XML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from flows.ooxml import (
    REL,
    XML_DECLARATION,
    Element,
    SharedStrings,
    StyleBook,
    UnsupportedWorkbook,
    column_letter,
    insert_position,
    xml_attr,
)
from flows.workbook.content import (
    Cell,
    SheetSpec,
    style_spec,
)

SHEET_ORDER = (
    "sheetPr", "dimension", "sheetViews", "sheetFormatPr", "cols", "sheetData", "sheetCalcPr",
    "sheetProtection", "protectedRanges", "scenarios", "autoFilter", "sortState",
    "dataConsolidate", "customSheetViews", "mergeCells", "phoneticPr", "conditionalFormatting",
    "dataValidations", "hyperlinks", "printOptions", "pageMargins", "pageSetup", "headerFooter",
    "rowBreaks", "colBreaks", "customProperties", "cellWatches", "ignoredErrors", "smartTags",
    "drawing", "legacyDrawing", "legacyDrawingHF", "drawingHF", "picture", "oleObjects",
    "controls", "webPublishItems", "tableParts", "extLst",
)
# Excel wraps controls and OLE objects in mc:AlternateContent at the end of a sheet.
SHEET_UNKNOWN = {"AlternateContent": "oleObjects"}
WORKBOOK_ORDER = (
    "fileVersion", "fileSharing", "workbookPr", "workbookProtection", "bookViews", "sheets",
    "functionGroups", "externalReferences", "definedNames", "calcPr", "oleSize",
    "customWorkbookViews", "pivotCaches", "smartTagPr", "smartTagTypes", "webPublishing",
    "fileRecoveryPr", "webPublishObjects", "extLst",
)
ROW_NUMBER = re.compile(rb"""\sr\s*=\s*["'](\d+)["']""")
CELL_REF = re.compile(rb"""\sr\s*=\s*["']([A-Za-z]{1,3}\d+)["']""")
SPANS = re.compile(rb"""\s+spans\s*=\s*(?:"[^"]*"|'[^']*')""")
_EMU_PER_CM = 360000


@dataclass
class Edit:
    """Replace xml[start:end] with data (a list of chunks, so big bodies are not joined).

    rank orders insertions that land on one spot: two new elements inserted before the same
    existing one (or at the end of the sheet) go in by their place in the schema, not by the
    order the edits were made in. Excel repairs a sheet with <hyperlinks> before <autoFilter>.
    """

    start: int
    end: int
    data: list[bytes]
    rank: int = 0


def insertion(found: Sequence[Element], name: str, fallback: int, data: list[bytes],
              order: Sequence[str] = SHEET_ORDER,
              unknown: dict[str, str] | None = None) -> Edit:
    """Return the edit inserting a new child `name` where the schema's order puts it.

    Ties with other insertions at the same spot are broken by the same order (Edit.rank).
    """
    unknown = SHEET_UNKNOWN if unknown is None and order is SHEET_ORDER else unknown
    at = insert_position(found, name, order, fallback, unknown)
    return Edit(at, at, data, order.index(name))


def apply_edits(xml: bytes, edits: list[Edit]) -> list[bytes]:
    """Return the part as chunks with non-overlapping edits applied."""
    out: list[bytes] = []
    pos = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end, e.rank)):
        if edit.start < pos:
            raise UnsupportedWorkbook("overlapping edits")
        out.append(xml[pos : edit.start])
        out.extend(edit.data)
        pos = edit.end
    out.append(xml[pos:])
    return out


def excel_serial(value: date, date1904: bool) -> float:
    """Return the serial number Excel stores for a date or datetime."""
    epoch = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    delta = value - epoch
    serial = delta.days + delta.seconds / 86400
    return int(serial) if serial == int(serial) else serial


class CellWriter:
    """Turn our cells into <c> elements: text through the shared strings, styles through xfs."""

    def __init__(self, prefix: bytes, styles: StyleBook, strings: SharedStrings,
                 date1904: bool) -> None:
        self.prefix = prefix
        self.styles = styles
        self.strings = strings
        self.date1904 = date1904
        self._xf: dict[str, int] = {}
        self._tails: dict[Cell, bytes] = {}

    def xf(self, key: str) -> int:
        """Return the xf index of a style key."""
        found = self._xf.get(key)
        if found is None:
            found = self._xf[key] = self.styles.xf(key, style_spec(key))
        return found

    def cell(self, ref: bytes, value: Cell) -> bytes:
        """Return one cell element (empty bytes for a blank)."""
        tail = self._tails.get(value)
        if tail is None:
            tail = self._tails[value] = self._tail(value)
        if not tail:
            return b""
        if isinstance(value.value, str):
            self.strings.refs += 1
        return b"<" + self.prefix + b'c r="' + ref + tail

    def _tail(self, value: Cell) -> bytes:
        """Return what follows the reference: style, type and value (the same on every row)."""
        p = self.prefix
        v = value.value
        s = self.xf(value.style)
        if isinstance(v, str):
            if v == "":
                return b""
            index = self.strings.index(v)
            self.strings.refs -= 1  # counted per use in cell()
            return b'" s="%d" t="s"><%sv>%d</%sv></%sc>' % (s, p, index, p, p)
        if isinstance(v, bool):
            return b'" s="%d" t="b"><%sv>%d</%sv></%sc>' % (s, p, v, p, p)
        if isinstance(v, int | float):
            if v != v or v in (float("inf"), float("-inf")):
                return b""
            return b'" s="%d"><%sv>%s</%sv></%sc>' % (s, p, repr(v).encode(), p, p)
        if isinstance(v, date):
            serial = repr(excel_serial(v, self.date1904)).encode()
            return b'" s="%d"><%sv>%s</%sv></%sc>' % (s, p, serial, p, p)
        return b""


def render_sheet(spec: SheetSpec, writer: CellWriter, drawing_rel: str | None) -> bytes:
    """Return the XML of one of our sheets (Summary, Problems)."""
    out = [XML_DECLARATION, b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
           b'2006/main" xmlns:r="' + REL.encode() + b'">']
    out.append(b"<sheetPr>")
    if spec.tab_color:
        out.append(b'<tabColor rgb="FF' + spec.tab_color.encode() + b'"/>')
    out.append(b'<pageSetUpPr fitToPage="1"/></sheetPr>')
    out.append(b'<dimension ref="A1:' + column_letter(spec.max_col()).encode()
               + str(spec.max_row()).encode() + b'"/>')
    out.append(b'<sheetViews><sheetView workbookViewId="0">')
    if spec.freeze_row:
        top = f"A{spec.freeze_row + 1}".encode()
        out.append(b'<pane ySplit="' + str(spec.freeze_row).encode() + b'" topLeftCell="' + top
                   + b'" activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft" '
                   b'activeCell="' + top + b'" sqref="' + top + b'"/>')
    out.append(b'</sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>')
    if spec.widths:
        out.append(b"<cols>")
        for col, width in sorted(spec.widths.items()):
            n = str(col).encode()
            out.append(b'<col min="' + n + b'" max="' + n + b'" width="' + f"{width:g}".encode()
                       + b'" customWidth="1"/>')
        out.append(b"</cols>")
    out.append(b"<sheetData>")
    current = 0
    number = b""
    letters = {c: column_letter(c).encode() for c in range(1, spec.max_col() + 1)}
    heights = spec.heights()
    for r, c in sorted(spec.cells):
        if r != current:
            if current:
                out.append(b"</row>")
            current, number = r, str(r).encode()
            height = heights.get(r)
            out.append(b'<row r="' + number + b'"' + (row_height_attrs(height) if height else b"")
                       + b">")
        out.append(writer.cell(letters[c] + number, spec.cells[(r, c)]))
    if current:
        out.append(b"</row>")
    out.append(b"</sheetData>")
    if spec.autofilter:
        c1, r1, c2, r2 = spec.autofilter
        out.append(b'<autoFilter ref="' + f"{column_letter(c1)}{r1}:{column_letter(c2)}{r2}"
                   .encode() + b'"/>')
    if spec.links:
        out.append(b"<hyperlinks>")
        for (r, c), location in sorted(spec.links.items()):
            out.append(b'<hyperlink ref="' + f"{column_letter(c)}{r}".encode() + b'" location="'
                       + xml_attr(location) + b'"/>')
        out.append(b"</hyperlinks>")
    out.append(b'<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" '
               b'footer="0.3"/>' + PAGE_SETUP)
    if spec.print_break:
        out.append(b'<rowBreaks count="1" manualBreakCount="1"><brk id="%d" max="16383" '
                   b'man="1"/></rowBreaks>' % spec.print_break)
    if drawing_rel:
        out.append(b'<drawing r:id="' + drawing_rel.encode() + b'"/>')
    out.append(b"</worksheet>")
    return b"".join(out)


# Landscape, as wide as the page, as many pages down as it takes (fitToPage in sheetPr).
PAGE_SETUP = b'<pageSetup orientation="landscape" fitToWidth="1" fitToHeight="0"/>'
PAGE_SETUP_ATTRS = {"orientation": "landscape", "fitToWidth": "1", "fitToHeight": "0"}


def row_height_attrs(height: float) -> bytes:
    """Return the attributes giving a row its height in points."""
    return b' ht="' + f"{height:g}".encode() + b'" customHeight="1"'


def drawing_xml(anchors: list[tuple[int, int, float, float, str]]) -> bytes:
    """Return a drawing part placing charts: (col, row, width cm, height cm, rel id) each."""
    out = [XML_DECLARATION, b'<xdr:wsDr xmlns:xdr="http://schemas.openxmlformats.org/drawingml/'
           b'2006/spreadsheetDrawing" xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/'
           b'main">']
    for i, (col, row, width, height, rel_id) in enumerate(anchors, start=1):
        out.append(
            b"<xdr:oneCellAnchor><xdr:from><xdr:col>%d</xdr:col><xdr:colOff>0</xdr:colOff>"
            b"<xdr:row>%d</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:from>"
            b'<xdr:ext cx="%d" cy="%d"/><xdr:graphicFrame macro=""><xdr:nvGraphicFramePr>'
            b'<xdr:cNvPr id="%d" name="Chart %d"/><xdr:cNvGraphicFramePr/></xdr:nvGraphicFramePr>'
            b'<xdr:xfrm><a:off x="0" y="0"/><a:ext cx="0" cy="0"/></xdr:xfrm><a:graphic>'
            b'<a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/chart">'
            b'<c:chart xmlns:c="http://schemas.openxmlformats.org/drawingml/2006/chart" '
            b'xmlns:r="%s" r:id="%s"/></a:graphicData></a:graphic></xdr:graphicFrame>'
            b"<xdr:clientData/></xdr:oneCellAnchor>"
            % (col - 1, row - 1, int(width * _EMU_PER_CM), int(height * _EMU_PER_CM), i + 1, i,
               REL.encode(), rel_id.encode())
        )
    out.append(b"</xdr:wsDr>")
    return b"".join(out)
