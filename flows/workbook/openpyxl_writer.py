"""The fallback writer: load the office's workbook with openpyxl, annotate it, save it.

Slow on big rosters (a full load and save of every cell) and openpyxl drops what it does not
model (shapes, slicers, sparklines), so `workbook_xml` is preferred; this one runs when that
writer meets XML it does not handle, and in the tests as the reference it must agree with.
"""

from __future__ import annotations

import re
import zipfile
from copy import copy
from dataclasses import replace
from pathlib import Path

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import Cell as XlCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import column_index_from_string, get_column_letter, range_boundaries
from openpyxl.worksheet.dimensions import ColumnDimension
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.pagebreak import Break
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.views import Selection
from openpyxl.worksheet.worksheet import Worksheet

from flows.ooxml import (
    CT_SHARED_STRINGS,
    FONT_ORDER,
    NS_MAIN,
    REL_SHARED_STRINGS,
    XML_DECLARATION,
    Rels,
    add_content_types,
    app_with_sheets,
    children,
    overlaps,
)
from flows.workbook.content import (
    ANNOTATION_HEADERS,
    ANNOTATION_WIDTHS,
    HEADER_HEIGHT,
    MAX_HYPERLINKS,
    AnnotationContent,
    Cell,
    SheetSpec,
    cell,
    needs_quote,
    style_spec,
    unique_sheet_title,
)
from flows.workbook.summary import SheetTitles, build_columns, build_problems, build_summary

LINK_COLOUR = "0563C1"


class _Styles:
    """Build each style key once as an openpyxl StyleArray and copy it onto cells (fast path)."""

    def __init__(self, wb: Workbook, ws: Worksheet) -> None:
        self._wb = wb
        self._scratch = XlCell(ws)
        self._cache: dict[str, StyleArray] = {}
        base = wb._fonts[0] if len(wb._fonts) else Font()
        self._base_font: Font = copy(base)

    def array(self, key: str) -> StyleArray:
        """Return the style array for a key, registering its font, fill and alignment once."""
        found = self._cache.get(key)
        if found is not None:
            return found
        spec = style_spec(key)
        scratch = self._scratch
        scratch._style = StyleArray()
        if spec.bold or spec.size or spec.link:
            font = copy(self._base_font)
            if spec.bold:
                font.b = True
            if spec.size:
                font.sz = spec.size
            if spec.link:
                font.u = "single"
                font.color = LINK_COLOUR
            scratch.font = font
        if spec.fill:
            scratch.fill = PatternFill("solid", fgColor=spec.fill)
        if spec.wrap or spec.horizontal or spec.vertical:
            scratch.alignment = Alignment(
                wrap_text=spec.wrap or None, horizontal=spec.horizontal, vertical=spec.vertical
            )
        if spec.number_format:
            scratch.number_format = "mm-dd-yy" if spec.number_format == 14 else "General"
        if spec.quote:
            scratch.quotePrefix = True
        self._cache[key] = scratch._style
        return scratch._style


def _set(ws: Worksheet, row: int, col: int, value: Cell, styles: _Styles) -> XlCell:
    """Write a value as a literal (never a formula) with its shared style."""
    target = ws.cell(row=row, column=col)
    target.value = value.value
    if isinstance(value.value, str):
        target.data_type = "s"  # openpyxl would turn a leading "=" into a formula
    target._style = copy(styles.array(value.style))
    return target


def occupied_column(ws: Worksheet, rows: set[int]) -> int:
    """Return the last column holding a value or a merge in the given rows (0 if none)."""
    last = 0
    for (row, col), existing in ws._cells.items():
        if row in rows and col > last and existing.value not in (None, ""):
            last = col
    for merged in ws.merged_cells.ranges:
        if any(merged.min_row <= r <= merged.max_row for r in rows):
            last = max(last, merged.max_col)
    return last


def quote_office_text(wb: Workbook) -> int:
    """Set quotePrefix on the office's text cells that start like a formula; return how many."""
    count = 0
    for ws in wb.worksheets:
        for existing in ws._cells.values():
            if existing.data_type == "s" and needs_quote(str(existing.value)):
                if not existing.quotePrefix:
                    existing.quotePrefix = True
                    count += 1
    return count


def _clear_widths(ws: Worksheet, start: int, end: int) -> None:
    """Split the office's column ranges around ours so no two <col> ranges overlap."""
    for key, dim in list(ws.column_dimensions.items()):
        lo = dim.min or column_index_from_string(key)
        hi = dim.max or lo
        if hi < start or lo > end:
            continue
        if hi > end:
            tail = copy(dim)
            tail.index = get_column_letter(end + 1)
            tail.min, tail.max = end + 1, hi
            ws.column_dimensions[tail.index] = tail
        if lo < start:
            dim.max = start - 1
        else:
            del ws.column_dimensions[key]


def annotate_roster(ws: Worksheet, content: AnnotationContent, styles: _Styles, start: int) -> None:
    """Write the annotation header and cells, letter links, widths, frozen header and filter."""
    roster = content.roster
    header_row = roster.header_row
    for i, name in enumerate(ANNOTATION_HEADERS):
        _set(ws, header_row, start + i, cell(name, "header"), styles)
    budget = MAX_HYPERLINKS - sum(1 for c in ws._cells.values() if c.hyperlink)
    for ann in content.rows:
        for i, value in enumerate(ann.cells):
            if value is not None and value.value is not None:
                target = _set(ws, ann.row, start + i, value, styles)
                if i == 7 and ann.link and budget > 0:
                    target.hyperlink = ann.link
                    budget -= 1
    end = start + len(ANNOTATION_HEADERS) - 1
    heights = {a.row: a.height for a in content.rows if a.height}
    if HEADER_HEIGHT:
        heights[header_row] = HEADER_HEIGHT
    for row, height in heights.items():  # an office's taller row is kept
        dim = ws.row_dimensions[row]
        if dim.height is None or dim.height < height:
            dim.height = height
    _print_setup(ws)
    ws.print_title_rows = ws.print_title_rows or f"{header_row}:{header_row}"
    _clear_widths(ws, start, end)
    for i, width in enumerate(ANNOTATION_WIDTHS):
        letter = get_column_letter(start + i)
        ws.column_dimensions[letter] = ColumnDimension(ws, index=letter, width=width)
    x_split = 0
    if ws.freeze_panes:
        x_split = range_boundaries(ws.freeze_panes)[0] - 1
    # openpyxl appends a selection per pane to the ones the sheet had: Excel allows four.
    ws.sheet_view.selection = [Selection()]
    ws.freeze_panes = f"{get_column_letter(x_split + 1)}{header_row + 1}"
    last_row = max([header_row, *(a.row for a in content.rows)])
    ours = (1, header_row, end, last_row)
    if any(overlaps(range_boundaries(t.ref), ours) for t in ws.tables.values()):
        return  # an Excel table already filters its columns; a sheet filter over it is corrupt
    first_col = 1
    if ws.auto_filter.ref:
        min_col, min_row, _, _ = range_boundaries(ws.auto_filter.ref)
        if min_row == header_row:
            first_col = min_col
        else:
            ws.auto_filter.filterColumn = []
            ws.auto_filter.sortState = None
    first, last = get_column_letter(first_col), get_column_letter(end)
    ws.auto_filter.ref = f"{first}{header_row}:{last}{last_row}"


def _print_setup(ws: Worksheet) -> None:
    """Print landscape, one page wide, as many pages down as it takes."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)


def render_sheet(wb: Workbook, spec: SheetSpec, styles: _Styles) -> Worksheet:
    """Add one of our sheets (Summary, Problems) from its description."""
    ws = wb.create_sheet(spec.title)
    for (row, col), value in sorted(spec.cells.items()):
        target = _set(ws, row, col, value, styles)
        location = spec.links.get((row, col))
        if location:
            target.hyperlink = Hyperlink(ref=target.coordinate, location=location)
    for col, width in spec.widths.items():
        ws.column_dimensions[get_column_letter(col)].width = width
    if spec.freeze_row:
        ws.freeze_panes = f"A{spec.freeze_row + 1}"
    if spec.autofilter:
        min_col, min_row, max_col, max_row = spec.autofilter
        ws.auto_filter.ref = (
            f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{max_row}"
        )
    if spec.tab_color:
        ws.sheet_properties.tabColor = spec.tab_color
    for row, height in spec.heights().items():
        ws.row_dimensions[row].height = height
    _print_setup(ws)
    if spec.print_rows:
        ws.print_title_rows = f"{spec.print_rows[0]}:{spec.print_rows[1]}"
    if spec.print_break:
        ws.row_breaks.append(Break(id=spec.print_break))
    for chart in spec.charts:
        chart.chart.width = chart.width_cm
        chart.chart.height = chart.height_cm
        ws.add_chart(chart.chart, f"{get_column_letter(chart.col)}{chart.row}")
    return ws


def write_with_openpyxl(content: AnnotationContent, dest: Path) -> None:
    """Annotate the office's workbook through openpyxl and save it to dest."""
    roster = content.roster
    # Read from an open file: by name, openpyxl refuses `...xlsx` (it sees no extension).
    with roster.source.open("rb") as fh:
        wb = load_workbook(fh, keep_vba=roster.source.suffix.lower() == ".xlsm", rich_text=True)
    ws = wb[roster.sheet]
    existing = list(wb.sheetnames)
    summary_title = unique_sheet_title("Summary", existing)
    titles = SheetTitles(
        roster=ws.title,
        summary=summary_title,
        problems=unique_sheet_title("Problems", [*existing, summary_title]),
    )
    titles = replace(titles, columns=unique_sheet_title(
        "Columns", [*existing, titles.summary, titles.problems]))
    rows = {roster.header_row, *(a.row for a in content.rows)}
    start = max(roster.last_column, occupied_column(ws, rows)) + 1
    quote_office_text(wb)
    styles = _Styles(wb, ws)
    annotate_roster(ws, content, styles, start)
    render_sheet(wb, build_summary(content, titles), styles)
    render_sheet(wb, build_problems(content, titles), styles)
    render_sheet(wb, build_columns(content, titles), styles)
    wb.save(dest)
    store_as_excel_does(dest, [w.title for w in wb.worksheets if isinstance(w, Worksheet)])


_INLINE = re.compile(rb'<c\b([^>]*?)\st="inlineStr"([^>]*)>\s*<is>(.*?)</is>\s*</c>', re.S)
_FONT = re.compile(rb"<(font|rPr)>(.*?)</(?:font|rPr)>", re.S)
# openpyxl writes a picture's preset geometry list without its DrawingML prefix.
_BARE_AV_LIST = b"<avLst/>"
_AV_LIST = b'<a:avLst xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"/>'


def store_as_excel_does(path: Path, worksheets: list[str]) -> None:
    """Move openpyxl's inline strings to a shared-string table and put font children in
    Excel's order, and list every worksheet in docProps/app.xml, rewriting the zip in place.

    openpyxl writes every text inline and a font's name first; Excel stores text in
    sharedStrings.xml and rewrites a workbook without one on its next save, and validators
    flag the font order. The office's file came from Excel, so it goes back the way Excel keeps it.
    """
    with zipfile.ZipFile(path) as zf:
        parts = {info.filename: zf.read(info) for info in zf.infolist()}
    index: dict[bytes, int] = {}
    refs = 0

    def shared(m: re.Match[bytes]) -> bytes:
        nonlocal refs
        refs += 1
        n = index.setdefault(m.group(3), len(index))
        return b"<c" + m.group(1) + b' t="s"' + m.group(2) + b"><v>%d</v></c>" % n

    for name, body in parts.items():
        if (name.startswith("xl/worksheets/") and name.endswith(".xml") and b"inlineStr" in body
                and "xl/sharedStrings.xml" not in parts):  # openpyxl never writes one
            parts[name] = _INLINE.sub(shared, body)
        elif name.startswith("xl/drawings/") and _BARE_AV_LIST in body:
            parts[name] = body.replace(_BARE_AV_LIST, _AV_LIST)
    if index:
        parts["xl/sharedStrings.xml"] = (
            XML_DECLARATION + b'<sst xmlns="' + NS_MAIN + b'" count="%d" uniqueCount="%d">'
            % (refs, len(index)) + b"".join(b"<si>" + text + b"</si>" for text in index)
            + b"</sst>")
        rels = Rels(parts.get("xl/_rels/workbook.xml.rels"))
        rels.add(REL_SHARED_STRINGS, "sharedStrings.xml")
        parts["xl/_rels/workbook.xml.rels"] = rels.to_bytes()
        parts["[Content_Types].xml"] = add_content_types(
            parts["[Content_Types].xml"], {"xl/sharedStrings.xml": CT_SHARED_STRINGS})
    for name in ("xl/styles.xml", "xl/sharedStrings.xml"):
        if name in parts:
            parts[name] = _FONT.sub(_font_in_order, parts[name])
    app = parts.get("docProps/app.xml")
    listed = app_with_sheets(app, worksheets) if app is not None else None
    if listed is not None:
        parts["docProps/app.xml"] = listed
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, body in parts.items():
            out.writestr(name, body)


def _font_in_order(m: re.Match[bytes]) -> bytes:
    """Sort a <font> (styles) or <rPr> (rich text run) by Excel's order; rFont is a run's name."""
    tag, body = m.group(1), m.group(2)
    found = children(body, 0, len(body))
    found.sort(key=lambda e: FONT_ORDER.index("name" if e.name == "rFont" else e.name)
               if e.name in (*FONT_ORDER, "rFont") else len(FONT_ORDER))
    inner = b"".join(body[e.start : e.end] for e in found)
    return b"<" + tag + b">" + inner + b"</" + tag + b">"
