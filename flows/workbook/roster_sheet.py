"""The office's roster sheet, edited in place: our cells appended to its rows, the column
widths, the frozen header, the filter and the letter links, each inserted where the schema
orders it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from flows.ooxml import (
    ATTRS_PATTERN,
    NS_DOC_REL,
    REL,
    REL_HYPERLINK,
    Element,
    Rels,
    StyleBook,
    UnsupportedWorkbook,
    attrs,
    check_plain,
    children,
    column_letter,
    content_span,
    namespace_prefix,
    overlaps,
    range_bounds,
    root_info,
    set_attr,
    split_ref,
)
from flows.workbook.content import (
    ANNOTATION_HEADERS,
    ANNOTATION_WIDTHS,
    FORMULA_TRIGGERS,
    HEADER_HEIGHT,
    MAX_HYPERLINKS,
    AnnotationContent,
    Cell,
    RowAnnotation,
    cell,
)
from flows.workbook.xml_parts import (
    CELL_REF,
    PAGE_SETUP,
    PAGE_SETUP_ATTRS,
    ROW_NUMBER,
    SPANS,
    CellWriter,
    Edit,
    apply_edits,
    insertion,
    row_height_attrs,
)


@dataclass
class AnnotatedRoster:
    """What annotating the roster sheet produced, for the workbook-level edits."""

    chunks: list[bytes]
    start: int
    end: int
    last_row: int
    filter_ref: str | None  # the range the sheet filter now covers; None when a table filters



def _last_cell_column(body: bytes, prefix: bytes) -> int:
    """Return the column of a row's last cell (cells are in column order), 0 if none."""
    needle = b"<" + prefix + b"c"
    pos = len(body)
    while True:
        pos = body.rfind(needle, 0, pos)
        if pos < 0:
            return 0
        follow = body[pos + len(needle) : pos + len(needle) + 1]
        if follow in (b" ", b"\t", b"\n", b"\r", b">", b"/"):
            ref = CELL_REF.search(body, pos, body.find(b">", pos) + 1)
            if ref is None:
                raise UnsupportedWorkbook("a cell without a reference")
            return split_ref(ref.group(1))[0]


class RosterSheet:
    """The roster sheet's XML, parsed just enough to append cells and set its view."""

    def __init__(self, xml: bytes, part: str) -> None:
        check_plain(xml, part)
        self.xml = xml
        self.prefix, self.root_end, self.root_tag = root_info(xml)
        p = re.escape(self.prefix)
        self.p = p
        self.root_close = xml.rfind(b"</")
        sheet_data = re.compile(b"<" + p + rb"sheetData\b" + ATTRS_PATTERN + rb"(/?)>")
        m = sheet_data.search(xml, self.root_end)
        if m is None:
            raise UnsupportedWorkbook(f"{part} has no sheetData")
        self.sd_start = m.start()
        if m.group(2):
            self.data_start = self.data_end = self.sd_end = m.end()
            self.sd_open = m.group(0)[:-2] + b">"
            self.self_closing = True
        else:
            close = b"</" + self.prefix + b"sheetData>"
            self.data_start = m.end()
            self.data_end = xml.find(close, self.data_start)
            if self.data_end < 0:
                raise UnsupportedWorkbook(f"{part} sheetData is not closed")
            self.sd_end = self.data_end + len(close)
            self.sd_open = m.group(0)
            self.self_closing = False
        self.head = children(xml, self.root_end, self.sd_start)
        self.tail = children(xml, self.sd_end, self.root_close)
        row_open = re.compile(b"<" + p + rb"row\b" + ATTRS_PATTERN + rb"(/?)>")
        row_close = b"</" + self.prefix + b"row>"
        # (row number, start, end of start tag, end of content, end, attributes) per <row>.
        self.rows: list[tuple[int, int, int, int, int, bytes]] = []
        previous, pos = 0, self.data_start
        while True:
            m = row_open.search(xml, pos, self.data_end)
            if m is None:
                break
            number = ROW_NUMBER.search(m.group(1))
            if number is None:
                raise UnsupportedWorkbook("a row without a number")
            n = int(number.group(1))
            if n <= previous:
                raise UnsupportedWorkbook("rows out of order")
            previous = n
            if m.group(2):
                body_end = end = m.end()
            else:
                body_end = xml.find(row_close, m.end(), self.data_end)
                if body_end < 0:
                    raise UnsupportedWorkbook("a row is not closed")
                end = body_end + len(row_close)
            self.rows.append((n, m.start(), m.end(), body_end, end, m.group(1)))
            pos = end

    def child(self, name: str, tail: bool = True) -> Element | None:
        """Return a top-level element of the sheet by local name."""
        return next((e for e in (self.tail if tail else self.head) if e.name == name), None)

    def occupied_column(self, rows: set[int], known_last: int) -> int:
        """Return the last column holding a value or a merge in the given rows."""
        last = 0
        cell = re.compile(
            b"<" + self.p + rb"c(?=[\s/>])" + ATTRS_PATTERN + rb"(?:/>|>(.*?)</" + self.p + rb"c>)",
            re.S,
        )
        has_value = re.compile(b"<" + self.p + rb"(?:v|f|is)[\s/>]")
        for n, _, body_start, body_end, _, _ in self.rows:
            if n not in rows:
                continue
            body = self.xml[body_start:body_end]
            if _last_cell_column(body, self.prefix) <= max(known_last, last):
                continue
            for c in cell.finditer(body):
                ref = CELL_REF.search(c.group(1))
                if ref is None:
                    raise UnsupportedWorkbook("a cell without a reference")
                col = split_ref(ref.group(1))[0]
                if col > last and has_value.search(c.group(2) or b""):
                    last = col
        merges = self.child("mergeCells")
        if merges is not None:
            for merge in children(self.xml, *content_span(self.xml, merges)):
                span = attrs(self.xml[merge.start : merge.open_end]).get("ref", "")
                if not span:
                    continue
                c1, r1, c2, r2 = range_bounds(span)
                if any(r1 <= r <= r2 for r in rows):
                    last = max(last, c2)
        return last

    def row_without_cells_from(self, body: bytes, start: int, end: int) -> tuple[bytes, bytes]:
        """Split a row's cells around our columns, dropping the office's empty cells in them."""
        cell = re.compile(
            b"<" + self.p + rb"c(?=[\s/>])" + ATTRS_PATTERN + rb"(?:/>|>(.*?)</" + self.p + rb"c>)",
            re.S,
        )
        before: list[bytes] = []
        after: list[bytes] = []
        for c in cell.finditer(body):
            ref = CELL_REF.search(c.group(1))
            if ref is None:
                raise UnsupportedWorkbook("a cell without a reference")
            col = split_ref(ref.group(1))[0]
            if col < start:
                before.append(c.group(0))
            elif col > end:
                after.append(c.group(0))
        return b"".join(before), b"".join(after)


def _cols_edit(sheet: RosterSheet, start: int, widths: Iterable[float]) -> Edit:
    """Return the edit setting our column widths, splitting any office range that covers them."""
    xml, q = sheet.xml, sheet.prefix
    ours = list(widths)
    end = start + len(ours) - 1
    new: list[tuple[int, bytes]] = []
    cols = sheet.child("cols", tail=False)
    if cols is not None:
        for col in children(xml, *content_span(xml, cols)):
            tag = xml[col.start : col.end]
            found = attrs(tag)
            lo, hi = int(found.get("min", "0")), int(found.get("max", found.get("min", "0")))
            if hi < start or lo > end:
                new.append((lo, tag))
                continue
            if lo < start:
                new.append((lo, set_attr(tag, "max", str(start - 1))))
            if hi > end:
                new.append((end + 1, set_attr(tag, "min", str(end + 1))))
    for i, width in enumerate(ours):
        n = str(start + i).encode()
        new.append((start + i, b"<" + q + b'col min="' + n + b'" max="' + n + b'" width="'
                    + f"{width:g}".encode() + b'" customWidth="1"/>'))
    body = b"".join(tag for _, tag in sorted(new, key=lambda item: item[0]))
    element = b"<" + q + b"cols>" + body + b"</" + q + b"cols>"
    if cols is not None:
        return Edit(cols.start, cols.end, [element])
    return insertion(sheet.head, "cols", sheet.sd_start, [element])


def _view_edit(sheet: RosterSheet, header_row: int) -> Edit:
    """Return the edit freezing the rows down to the header (keeping frozen columns)."""
    xml, q = sheet.xml, sheet.prefix
    views = sheet.child("sheetViews", tail=False)
    x_split = 0
    view_tag = b"<" + q + b'sheetView workbookViewId="0">'
    rest = b""
    if views is not None:
        inner = children(xml, *content_span(xml, views))
        if inner:
            first = inner[0]
            view_tag = set_attr(xml[first.start : first.open_end], "topLeftCell", None)
            if view_tag.endswith(b"/>"):
                view_tag = view_tag[:-2].rstrip() + b">"
            for part in children(xml, *content_span(xml, first)):
                found = attrs(xml[part.start : part.open_end])
                if part.name == "pane" and found.get("state", "").startswith("frozen"):
                    x_split = int(float(found.get("xSplit", "0") or 0))
                elif part.name == "extLst":
                    rest = xml[part.start : part.end]
    top_left = f"{column_letter(x_split + 1)}{header_row + 1}".encode()
    active = b"bottomRight" if x_split else b"bottomLeft"
    pane = b"<" + q + b"pane"
    if x_split:
        pane += b' xSplit="' + str(x_split).encode() + b'"'
    pane += (b' ySplit="' + str(header_row).encode() + b'" topLeftCell="' + top_left
             + b'" activePane="' + active + b'" state="frozen"/>')
    selection = (b"<" + q + b'selection pane="' + active + b'" activeCell="' + top_left
                 + b'" sqref="' + top_left + b'"/>')
    view = view_tag + pane + selection + rest + b"</" + q + b"sheetView>"
    if views is not None:
        inner = children(xml, *content_span(xml, views))
        if inner:
            return Edit(inner[0].start, inner[0].end, [view])
        return Edit(views.start, views.end, [b"<" + q + b"sheetViews>" + view + b"</" + q
                                              + b"sheetViews>"])
    return insertion(sheet.head, "sheetViews", sheet.sd_start,
                     [b"<" + q + b"sheetViews>" + view + b"</" + q + b"sheetViews>"])


def _dimension_edit(sheet: RosterSheet, end_col: int, last_row: int) -> Edit | None:
    """Return the edit widening the sheet's used range to our columns."""
    dim = sheet.child("dimension", tail=False)
    if dim is None:
        return None
    tag = sheet.xml[dim.start : dim.end]
    ref = attrs(tag).get("ref", "")
    try:
        c1, r1, c2, r2 = range_bounds(ref)
    except UnsupportedWorkbook:
        return None
    new = f"{column_letter(c1)}{r1}:{column_letter(max(c2, end_col))}{max(r2, last_row)}"
    return Edit(dim.start, dim.end, [set_attr(tag, "ref", new)])


def _filter_edit(sheet: RosterSheet, header_row: int, end_col: int, last_row: int,
                 tables: list[tuple[int, int, int, int]]) -> tuple[Edit | None, str | None]:
    """Return the edit putting filter buttons on the header, and the range it covers."""
    if any(overlaps(t, (1, header_row, end_col, last_row)) for t in tables):
        return None, None  # an Excel table filters itself; a sheet filter over it is corrupt
    xml, q = sheet.xml, sheet.prefix
    existing = sheet.child("autoFilter")
    first_col = 1
    keep = b""
    if existing is not None:
        ref = attrs(xml[existing.start : existing.open_end]).get("ref", "")
        try:
            c1, r1, _, _ = range_bounds(ref)
        except UnsupportedWorkbook:
            c1, r1 = 1, 0
        if r1 == header_row:
            first_col = c1
            keep = xml[existing.open_end : existing.end]
            keep = keep[: keep.rfind(b"</")] if existing.open_end != existing.end else b""
    ref = f"{column_letter(first_col)}{header_row}:{column_letter(end_col)}{last_row}"
    element = b"<" + q + b'autoFilter ref="' + ref.encode() + b'"'
    element += (b">" + keep + b"</" + q + b"autoFilter>") if keep else b"/>"
    if existing is not None:
        return Edit(existing.start, existing.end, [element]), ref
    return insertion(sheet.tail, "autoFilter", sheet.root_close, [element]), ref


def _hyperlinks_edit(sheet: RosterSheet, links: list[bytes]) -> Edit | None:
    """Return the edit adding the letter links to the sheet's hyperlinks."""
    if not links:
        return None
    q = sheet.prefix
    existing = sheet.child("hyperlinks")
    if existing is not None and existing.open_end != existing.end:
        close = sheet.xml.rfind(b"</", existing.start, existing.end)
        return Edit(close, close, links)
    element = [b"<" + q + b"hyperlinks>", *links, b"</" + q + b"hyperlinks>"]
    if existing is not None:  # <hyperlinks/>
        return Edit(existing.start, existing.end, element)
    return insertion(sheet.tail, "hyperlinks", sheet.root_close, element)


def _print_edits(sheet: RosterSheet) -> list[Edit]:
    """Return the edits printing the sheet landscape, one page wide (the header repeats by the
    workbook's Print_Titles name); the office's paper size, margins and printer are kept."""
    xml, q = sheet.xml, sheet.prefix
    edits: list[Edit] = []
    fit = b"<" + q + b'pageSetUpPr fitToPage="1"/>'
    pr = sheet.child("sheetPr", tail=False)
    if pr is None:
        edits.append(insertion(sheet.head, "sheetPr", sheet.sd_start,
                               [b"<" + q + b"sheetPr>" + fit + b"</" + q + b"sheetPr>"]))
    elif pr.open_end == pr.end:  # <sheetPr .../>
        tag = xml[pr.start : pr.end]
        edits.append(Edit(pr.start, pr.end, [tag[:-2].rstrip() + b">" + fit + b"</" + q
                                             + b"sheetPr>"]))
    else:
        inner = children(xml, *content_span(xml, pr))
        setup = next((e for e in inner if e.name == "pageSetUpPr"), None)
        if setup is None:  # last in sheetPr's sequence
            close = xml.rfind(b"</", pr.start, pr.end)
            edits.append(Edit(close, close, [fit]))
        else:
            tag = set_attr(xml[setup.start : setup.open_end], "fitToPage", "1")
            edits.append(Edit(setup.start, setup.open_end, [tag]))
    page = sheet.child("pageSetup")
    if page is None:
        edits.append(insertion(sheet.tail, "pageSetup", sheet.root_close,
                               [PAGE_SETUP.replace(b"<", b"<" + q, 1)]))
    else:
        tag = xml[page.start : page.open_end]
        for name, value in PAGE_SETUP_ATTRS.items():
            tag = set_attr(tag, name, value)
        edits.append(Edit(page.start, page.open_end, [tag]))
    return edits


def annotate_roster_sheet(
    sheet: RosterSheet,
    content: AnnotationContent,
    writer: CellWriter,
    rels: Rels,
    tables: list[tuple[int, int, int, int]],
) -> AnnotatedRoster:
    """Append the annotation cells to the header and student rows, with widths, view and filter."""
    roster = content.roster
    q = sheet.prefix
    header_row = roster.header_row
    targets: dict[int, RowAnnotation | None] = {a.row: a for a in content.rows}
    targets[header_row] = None
    start = max(roster.last_column, sheet.occupied_column(set(targets), roster.last_column)) + 1
    end = start + len(ANNOTATION_HEADERS) - 1
    letters = [column_letter(start + i).encode() for i in range(len(ANNOTATION_HEADERS))]
    header = [cell(name, "header") for name in ANNOTATION_HEADERS]
    edits: list[Edit] = []
    rel_prefix = namespace_prefix(sheet.root_tag, NS_DOC_REL)
    if rel_prefix is None:
        rel_prefix = b"rwb:"
        root_tag = set_attr(sheet.root_tag, "xmlns:rwb", REL)
        edits.append(Edit(sheet.root_end - len(sheet.root_tag), sheet.root_end, [root_tag]))
    links: list[bytes] = []
    existing_links = sheet.child("hyperlinks")
    link_budget = MAX_HYPERLINKS
    if existing_links is not None:
        link_budget -= len(children(sheet.xml, *content_span(sheet.xml, existing_links)))

    # Rows repeat: the same tier, band, label and advice for many students. Each distinct set of
    # cells becomes one template with the row number left blank, filled in with one % per row.
    templates: dict[tuple[Cell | None, ...], tuple[bytes, int]] = {}

    def template(cells: tuple[Cell | None, ...]) -> tuple[bytes, int]:
        found = templates.get(cells)
        if found is None:
            parts, texts = [], 0
            for i, c in enumerate(cells):
                if c is None:
                    continue
                element = writer.cell(letters[i] + b"%(n)s", c)
                if element:
                    parts.append(element.replace(b"%", b"%%").replace(b"%%(n)s", b"%(n)s"))
                    texts += isinstance(c.value, str)
            writer.strings.refs -= texts  # counted per row below
            found = (b"".join(parts), texts)
            if len(templates) < 100_000:
                templates[cells] = found
        return found

    def ours(n: int) -> bytes:
        ann = targets[n]
        number = str(n).encode()
        row_template, texts = template(tuple(header) if ann is None else ann.cells)
        writer.strings.refs += texts
        out = row_template % {b"n": number}
        if ann is None:
            return out
        if ann.link and ann.cells[7] is not None and len(links) < link_budget:
            rel_id = rels.add(REL_HYPERLINK, ann.link, external=True)
            links.append(b"<" + q + b'hyperlink ref="' + letters[7] + number + b'" '
                         + rel_prefix + b'id="' + rel_id.encode() + b'"/>')
        return out

    row_open = b"<" + q + b"row"
    row_close = b"</" + q + b"row>"
    heights = {a.row: a.height for a in content.rows if a.height}
    if HEADER_HEIGHT:
        heights[header_row] = HEADER_HEIGHT

    def with_height(n: int, row_attrs: bytes) -> bytes:
        """Return a row's attributes with the height our wrapped text needs (an office's
        taller row is kept)."""
        height = heights.get(n)
        if height is None:
            return row_attrs
        if b"ht" in row_attrs:
            tag = b"<row" + row_attrs + b">"
            found = attrs(tag)
            if "ht" in found:
                if float(found["ht"] or 0) >= height:
                    return row_attrs
                tag = set_attr(set_attr(tag, "ht", f"{height:g}"), "customHeight", "1")
                return tag[4:-1]
        return row_attrs + row_height_attrs(height)

    pending = sorted(targets)
    k = 0
    body: list[bytes] = []
    pos = sheet.data_start
    xml = sheet.xml
    for n, row_start, body_start, body_end, row_end, row_attrs in sheet.rows:
        while k < len(pending) and pending[k] < n:  # a student row with no <row>: add one
            body.append(xml[pos:row_start])
            pos = row_start
            body.append(row_open + with_height(pending[k], b' r="%d"' % pending[k]) + b">"
                        + ours(pending[k]) + row_close)
            k += 1
        if k < len(pending) and pending[k] == n:
            k += 1
            body.append(xml[pos:row_start])
            inner = xml[body_start:body_end]
            tail = b""
            if _last_cell_column(inner, q) >= start:
                inner, tail = sheet.row_without_cells_from(inner, start, end)
            if b"spans" in row_attrs:
                row_attrs = SPANS.sub(b"", row_attrs)
            row_attrs = with_height(n, row_attrs)
            body.append(row_open + row_attrs + b">" + inner + ours(n) + tail + row_close)
            pos = row_end
    body.append(xml[pos : sheet.data_end])
    for n in pending[k:]:
        body.append(row_open + with_height(n, b' r="%d"' % n) + b">" + ours(n) + row_close)
    if sheet.self_closing:
        body = [sheet.sd_open, *body, b"</" + q + b"sheetData>"]
        edits.append(Edit(sheet.sd_start, sheet.sd_end, body))
    else:
        edits.append(Edit(sheet.data_start, sheet.data_end, body))

    last_row = max(targets)
    edits.append(_cols_edit(sheet, start, ANNOTATION_WIDTHS))
    edits.append(_view_edit(sheet, header_row))
    for optional in (_dimension_edit(sheet, end, last_row), _hyperlinks_edit(sheet, links)):
        if optional is not None:
            edits.append(optional)
    edits += _print_edits(sheet)
    filter_edit, filter_ref = _filter_edit(sheet, header_row, end, last_row, tables)
    if filter_edit is not None:
        edits.append(filter_edit)
    return AnnotatedRoster(apply_edits(sheet.xml, edits), start, end, last_row, filter_ref)


def quote_office_cells(xml: bytes, part: str, risky: set[int], styles: StyleBook) -> bytes | None:
    """Set quotePrefix on the office's text cells that start like a formula; None if none do."""
    check_plain(xml, part)
    prefix = root_info(xml)[0]
    p = re.escape(prefix)
    hits: list[tuple[int, int]] = []  # (where a risky value starts, 0 shared / 1 inline)
    if risky:
        if len(risky) <= 400:
            numbers = b"|".join(str(i).encode() for i in sorted(risky))
            value = re.compile(b"<" + p + rb"v>\s*(?:" + numbers + rb")\s*</" + p + b"v>")
        else:
            value = re.compile(b"<" + p + rb"v>\s*(\d+)\s*</" + p + b"v>")
        for m in value.finditer(xml):
            if len(risky) > 400 and int(m.group(1)) not in risky:
                continue
            hits.append((m.start(), 0))
    text_open = re.compile(b"<" + p + rb"t[\s>]")
    if b"inlineStr" in xml:
        first = b"".join(re.escape(t.encode()) for t in FORMULA_TRIGGERS)
        risky_text = re.compile(b"<" + p + rb"t(?:\s[^>]*)?>[" + first + b"]")
        hits += [(m.start(), 1) for m in risky_text.finditer(xml)]
    if not hits:
        return None
    needle = b"<" + prefix + b"c"
    edits: list[Edit] = []
    seen: set[int] = set()
    for at, kind in hits:
        start = at
        while True:
            start = xml.rfind(needle, 0, start)
            if start < 0:
                raise UnsupportedWorkbook(f"{part}: a value outside a cell")
            if xml[start + len(needle) : start + len(needle) + 1] in (b" ", b"\t", b"\n", b"\r"):
                break
        if start in seen:
            continue
        seen.add(start)
        tag_end = xml.find(b">", start) + 1
        tag = xml[start:tag_end]
        found = attrs(tag)
        if (kind == 0 and found.get("t") != "s") or (kind == 1 and found.get("t") != "inlineStr"):
            continue
        if kind == 1:  # only the cell's first run decides how its text starts
            first_text = text_open.search(xml, tag_end)
            if first_text is None or first_text.start() != at:
                continue
        style = int(found.get("s", "0") or 0)
        edits.append(Edit(start, tag_end, [set_attr(tag, "s", str(styles.quoted(style)))]))
    if not edits:
        return None
    return b"".join(apply_edits(xml, edits))
