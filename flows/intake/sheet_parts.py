"""What the cached values alone do not say about the roster sheet: which rows are a table's
total area, and which cells hold a formula Excel never calculated.

calamine reads cached values, which is right for a workbook Excel saved. Two things read wrong
that way: an Excel table's total row ("Total", an average) looks like one more student, and a
formula with no cached value (written by a script or a web export, never opened in Excel)
reads as blank, so a Step 2 CK score would silently become "not taken yet". Both are found
here from the sheet's own XML, scanned for what matters without parsing every cell.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass, field

from flows.ooxml import (
    NS_DOC_REL,
    REL_OFFICE_DOCUMENT,
    REL_TABLE,
    REL_WORKSHEET,
    Rels,
    UnsupportedWorkbook,
    attrs,
    namespace_prefix,
    range_bounds,
    rels_name,
    resolve,
    root_info,
    split_ref,
)

logger = logging.getLogger(__name__)

_SHEET_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?sheet\b[^>]*>")
_REF = re.compile(rb"""\sr\s*=\s*["']([A-Za-z]{1,3}\d+)["']""")


@dataclass
class SheetParts:
    """Rows that are not students, and formula cells without a value, by 1-based position."""

    total_rows: set[int] = field(default_factory=set)
    uncalculated: set[tuple[int, int]] = field(default_factory=set)  # (row, column)


def sheet_parts(data: bytes, sheet: str, file: str) -> SheetParts:
    """Return the table total rows and uncalculated formula cells of one sheet of a workbook.

    A workbook this cannot follow (an unusual package layout) gives an empty answer with a
    warning in the log: the rows are then read from the cached values alone, as before.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return _sheet_parts(zf, sheet)
    except (UnsupportedWorkbook, KeyError, ValueError) as exc:
        logger.warning("%s: table totals and uncalculated formulas not checked (%s)", file,
                       type(exc).__name__)
        return SheetParts()


def _read(zf: zipfile.ZipFile, names: dict[str, str], part: str) -> bytes | None:
    name = names.get(part.lower())
    return zf.read(name) if name is not None else None


def _sheet_parts(zf: zipfile.ZipFile, sheet: str) -> SheetParts:
    names = {info.filename.lower(): info.filename for info in zf.infolist()}
    docs = Rels(_read(zf, names, "_rels/.rels")).of_type(REL_OFFICE_DOCUMENT)
    if len(docs) != 1:
        raise UnsupportedWorkbook("no single workbook part")
    wb_part = resolve("", docs[0].target)
    wb_xml = _read(zf, names, wb_part)
    if wb_xml is None:
        raise UnsupportedWorkbook("no workbook part")
    wb_rels = Rels(_read(zf, names, rels_name(wb_part)))
    root_rel = namespace_prefix(root_info(wb_xml)[2], NS_DOC_REL)
    sheet_part = None
    for m in _SHEET_TAG.finditer(wb_xml):
        tag = m.group(0)
        found = attrs(tag)
        if found.get("name") != sheet:
            continue
        prefix = root_rel if root_rel is not None else namespace_prefix(tag, NS_DOC_REL)
        rel = wb_rels.by_id(found.get((prefix or b"r:").decode() + "id", ""))
        if rel is not None and rel.type == REL_WORKSHEET:
            sheet_part = resolve(wb_part, rel.target)
        break
    if sheet_part is None:
        raise UnsupportedWorkbook("the sheet has no worksheet part")
    out = SheetParts()
    for rel in Rels(_read(zf, names, rels_name(sheet_part))).of_type(REL_TABLE):
        table = _read(zf, names, resolve(sheet_part, rel.target))
        if table is None:
            continue
        found = attrs(table[: root_info(table)[1]])
        count = int(found.get("totalsRowCount", "0") or 0)
        if count > 0 and found.get("ref"):
            _, _, _, last = range_bounds(found["ref"])
            out.total_rows.update(range(last - count + 1, last + 1))
    xml = _read(zf, names, sheet_part)
    if xml is not None:
        out.uncalculated = uncalculated_formulas(xml)
    return out


def uncalculated_formulas(xml: bytes) -> set[tuple[int, int]]:
    """Return the (row, column) of every cell with a formula and no cached value."""
    prefix = root_info(xml)[0]
    f_open = b"<" + prefix + b"f"
    c_open = b"<" + prefix + b"c"
    c_close = b"</" + prefix + b"c>"
    v_open = re.compile(b"<" + re.escape(prefix) + rb"v\s*>\s*[^<\s]")
    out: set[tuple[int, int]] = set()
    pos = xml.find(f_open)
    while pos >= 0:
        after = xml[pos + len(f_open) : pos + len(f_open) + 1]
        if after not in (b" ", b">", b"/", b"\t", b"\n", b"\r"):  # <family>, <fill> ...
            pos = xml.find(f_open, pos + 1)
            continue
        start = xml.rfind(c_open, 0, pos)
        end = xml.find(c_close, pos)
        if start < 0 or end < 0:
            raise UnsupportedWorkbook("a formula outside a cell")
        ref = _REF.search(xml, start, xml.find(b">", start))
        if ref is None:
            raise UnsupportedWorkbook("a formula cell without a reference")
        if v_open.search(xml, pos, end) is None:
            col, row = split_ref(ref.group(1))
            out.add((row, col))
        pos = xml.find(f_open, end)
    return out
