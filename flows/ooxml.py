"""Small, careful tools for editing SpreadsheetML parts as text without re-serialising them.

Re-serialising with an XML library renames namespace prefixes (breaking `mc:Ignorable`) and
drops what it does not model, so the fast writer edits the office's parts in place: it finds
elements with the patterns below and inserts or replaces only what it owns. Anything it cannot
read with certainty raises `UnsupportedWorkbook`, and the caller uses openpyxl instead.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Protocol
from xml.sax.saxutils import escape, unescape

from defusedxml import ElementTree

from flows.errors import AdvisingError

NS_MAIN = b"http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_DOC_REL = b"http://schemas.openxmlformats.org/officeDocument/2006/relationships"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
REL_OFFICE_DOCUMENT = REL + "/officeDocument"
REL_WORKSHEET = REL + "/worksheet"
REL_STYLES = REL + "/styles"
REL_SHARED_STRINGS = REL + "/sharedStrings"
REL_HYPERLINK = REL + "/hyperlink"
REL_DRAWING = REL + "/drawing"
REL_CHART = REL + "/chart"
REL_TABLE = REL + "/table"
CT_WORKSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
CT_SHARED_STRINGS = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
CT_DRAWING = "application/vnd.openxmlformats-officedocument.drawing+xml"
CT_CHART = "application/vnd.openxmlformats-officedocument.drawingml.chart+xml"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

# An attribute list that tolerates ">" inside quoted values (legal XML, rare but real).
ATTRS_PATTERN = rb"""((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*"""
_ATTR = re.compile(rb"""([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_TAG = re.compile(rb"<(/?)([\w.-]+:)?([\w.-]+)" + ATTRS_PATTERN + rb"(/?)>")
_UNSAFE = (b"<!--", b"<![CDATA[", b"<!DOCTYPE", b"<!ENTITY")


class StyleLike(Protocol):
    """The look of a cell, as `workbook_model.StyleSpec` gives it."""

    @property
    def bold(self) -> bool: ...
    @property
    def size(self) -> float | None: ...
    @property
    def link(self) -> bool: ...
    @property
    def fill(self) -> str | None: ...
    @property
    def wrap(self) -> bool: ...
    @property
    def horizontal(self) -> str | None: ...
    @property
    def vertical(self) -> str | None: ...
    @property
    def number_format(self) -> int: ...
    @property
    def quote(self) -> bool: ...


class UnsupportedWorkbook(AdvisingError):
    """The fast writer cannot edit this workbook with certainty; use the openpyxl writer."""


def check_plain(xml: bytes, part: str) -> None:
    """Refuse parts with comments, CDATA or DTDs, which the text patterns here do not skip."""
    for marker in _UNSAFE:
        if marker in xml:
            raise UnsupportedWorkbook(f"{part} holds {marker.decode()}")


def attrs(tag: bytes) -> dict[str, str]:
    """Return the attributes of one start tag, names as written (prefix included), unescaped."""
    out: dict[str, str] = {}
    for m in _ATTR.finditer(tag):
        raw = m.group(2) if m.group(2) is not None else m.group(3)
        out[m.group(1).decode()] = unescape(raw.decode(), {"&quot;": '"', "&apos;": "'"})
    return out


def set_attr(tag: bytes, name: str, value: str | None) -> bytes:
    """Return a start tag with one attribute replaced, added, or removed (value None)."""
    quoted = rb"""\s*=\s*(?:"[^"]*"|'[^']*')"""
    pattern = re.compile(rb"\s+" + re.escape(name.encode()) + quoted)
    tag = pattern.sub(b"", tag, count=1)
    if value is None:
        return tag
    close = 2 if tag.endswith(b"/>") else 1
    return tag[:-close] + b" " + name.encode() + b'="' + xml_attr(value) + b'"' + tag[-close:]


def xml_text(text: str) -> bytes:
    """Escape text for element content."""
    return escape(text).encode()


def xml_attr(text: str) -> bytes:
    """Escape text for a double-quoted attribute value (newlines kept as character references)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace('"', "&quot;")
    if "\n" in text or "\r" in text or "\t" in text:
        text = text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return text.encode()


@dataclass(frozen=True)
class Element:
    """A top-level child found by `children`: its local name and byte span in the part."""

    name: str
    start: int
    end: int
    open_end: int  # end of the start tag (== end for an empty element)


def root_info(xml: bytes) -> tuple[bytes, int, bytes]:
    """Return (element prefix such as b'x:' or b'', end of the root start tag, the start tag)."""
    m = _TAG.search(xml)  # the declaration "<?xml" and comments never match _TAG
    if m is None or m.group(1):
        raise UnsupportedWorkbook("no root element")
    return m.group(2) or b"", m.end(), m.group(0)


def namespace_prefix(root_tag: bytes, namespace: bytes) -> bytes | None:
    """Return the prefix (b'r:') the root start tag binds to a namespace, b'' if default."""
    for m in _ATTR.finditer(root_tag):
        name, value = m.group(1), m.group(2) or m.group(3) or b""
        if value == namespace:
            if name == b"xmlns":
                return b""
            if name.startswith(b"xmlns:"):
                return name[6:] + b":"
    return None


def children(xml: bytes, start: int, end: int) -> list[Element]:
    """List the elements directly inside xml[start:end] (a parent's content), in order."""
    out: list[Element] = []
    depth = 0
    current: tuple[str, int, int] | None = None
    pos = start
    while True:
        m = _TAG.search(xml, pos, end)
        if m is None:
            break
        pos = m.end()
        closing, empty = bool(m.group(1)), bool(m.group(5))
        if closing:
            depth -= 1
            if depth == 0 and current is not None:
                out.append(Element(current[0], current[1], m.end(), current[2]))
                current = None
            if depth < 0:
                raise UnsupportedWorkbook("unbalanced XML")
        elif empty:
            if depth == 0:
                out.append(Element(m.group(3).decode(), m.start(), m.end(), m.end()))
        else:
            if depth == 0:
                current = (m.group(3).decode(), m.start(), m.end())
            depth += 1
    if depth != 0:
        raise UnsupportedWorkbook("unbalanced XML")
    return out


def content_span(xml: bytes, element: Element) -> tuple[int, int]:
    """Return the span of an element's content (empty span at its end for an empty element)."""
    if element.open_end == element.end:
        return element.end, element.end
    close = xml.rfind(b"</", element.start, element.end)
    return element.open_end, close


def insert_position(found: Sequence[Element], name: str, order: Sequence[str], fallback: int,
                    unknown_rank: dict[str, str] | None = None) -> int:
    """Return where a new child `name` goes so the children keep the schema's order."""
    rank = order.index(name)
    for child in found:
        child_name = (unknown_rank or {}).get(child.name, child.name)
        if child_name in order and order.index(child_name) > rank:
            return child.start
    return fallback


def resolve(base_part: str, target: str) -> str:
    """Return the zip name a relationship target points to, relative to its source part."""
    if target.startswith("/"):
        return posixpath.normpath(target.lstrip("/"))
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_part), target))


def relative(from_part: str, to_part: str) -> str:
    """Return a relationship target from one part to another."""
    return posixpath.relpath(to_part, posixpath.dirname(from_part) or ".")


def rels_name(part: str) -> str:
    """Return the relationships part of a part: xl/workbook.xml -> xl/_rels/workbook.xml.rels."""
    folder, base = posixpath.split(part)
    return posixpath.join(folder, "_rels", base + ".rels")


@dataclass
class Relationship:
    """One relationship of a part."""

    id: str
    type: str
    target: str
    external: bool = False


class Rels:
    """A part's relationships: read once, new ones appended as text so the rest is kept."""

    def __init__(self, xml: bytes | None) -> None:
        self.xml = xml
        self.items: list[Relationship] = []
        self._new: list[bytes] = []
        if xml:
            root = ElementTree.fromstring(xml)
            for rel in root:
                self.items.append(Relationship(
                    rel.get("Id", ""), rel.get("Type", ""), rel.get("Target", ""),
                    rel.get("TargetMode", "") == "External",
                ))
        numbers = [int(r.id[3:]) for r in self.items if re.fullmatch(r"rId\d+", r.id)]
        self._next = max(numbers, default=0) + 1
        self._ids = {r.id for r in self.items}

    def by_id(self, rel_id: str) -> Relationship | None:
        """Return the relationship with this id, if any."""
        return next((r for r in self.items if r.id == rel_id), None)

    def of_type(self, rel_type: str) -> list[Relationship]:
        """Return the relationships of one type (transitional namespace)."""
        return [r for r in self.items if r.type == rel_type]

    def add(self, rel_type: str, target: str, external: bool = False) -> str:
        """Append a relationship and return its new, unused id."""
        while f"rId{self._next}" in self._ids:
            self._next += 1
        rel_id = f"rId{self._next}"
        self._next += 1
        self._ids.add(rel_id)
        mode = b' TargetMode="External"' if external else b""
        self._new.append(
            b'<Relationship Id="' + rel_id.encode() + b'" Type="' + _type_attr(rel_type)
            + b'" Target="' + xml_attr(target) + b'"' + mode + b"/>"
        )
        self.items.append(Relationship(rel_id, rel_type, target, external))
        return rel_id

    @property
    def changed(self) -> bool:
        """Say whether a relationship was added."""
        return bool(self._new)

    def to_bytes(self) -> bytes:
        """Return the part with the new relationships appended."""
        new = b"".join(self._new)
        if self.xml:
            close = self.xml.rfind(b"</")
            if close < 0:  # <Relationships/> with no children
                end = self.xml.rfind(b"/>")
                return self.xml[:end] + b">" + new + b"</Relationships>" + self.xml[end + 2 :]
            return self.xml[:close] + new + self.xml[close:]
        return (XML_DECLARATION + b'<Relationships xmlns="' + PKG_REL.encode() + b'">' + new
                + b"</Relationships>")


@lru_cache(maxsize=32)
def _type_attr(rel_type: str) -> bytes:
    return xml_attr(rel_type)


def add_content_types(xml: bytes, overrides: dict[str, str]) -> bytes:
    """Return [Content_Types].xml with an Override per new part (part name -> content type)."""
    new = b"".join(
        b'<Override PartName="/' + xml_attr(part) + b'" ContentType="' + xml_attr(ctype) + b'"/>'
        for part, ctype in overrides.items()
    )
    close = xml.rfind(b"</")
    if close < 0:
        raise UnsupportedWorkbook("[Content_Types].xml has no content")
    return xml[:close] + new + xml[close:]


@cache
def column_letter(index: int) -> str:
    """Return the column letters of a 1-based column index."""
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


_COLUMN_CACHE: dict[bytes, int] = {}


def column_index(letters: bytes) -> int:
    """Return the 1-based column index of column letters (cached: called once per cell ref)."""
    found = _COLUMN_CACHE.get(letters)
    if found is None:
        found = 0
        for ch in letters.upper():
            found = found * 26 + ch - 64
        _COLUMN_CACHE[letters] = found
    return found


_REF = re.compile(rb"([A-Za-z]{1,3})(\d+)")


def split_ref(ref: bytes) -> tuple[int, int]:
    """Return (column, row) of a cell reference such as b'AB12'."""
    m = _REF.fullmatch(ref)
    if m is None:
        raise UnsupportedWorkbook(f"cell reference {ref[:20]!r}")
    return column_index(m.group(1)), int(m.group(2))


def range_bounds(ref: str) -> tuple[int, int, int, int]:
    """Return (min_col, min_row, max_col, max_row) of 'A1:C9' or 'B4'."""
    first, _, last = ref.partition(":")
    c1, r1 = split_ref(first.replace("$", "").encode())
    c2, r2 = split_ref(last.replace("$", "").encode()) if last else (c1, r1)
    return c1, r1, c2, r2


def text_element(prefix: bytes, text: str) -> bytes:
    """Return a <t> element for a string, keeping leading/trailing spaces and line breaks."""
    body = xml_text(text)
    if text != text.strip() or "\n" in text:
        return b"<" + prefix + b't xml:space="preserve">' + body + b"</" + prefix + b"t>"
    return b"<" + prefix + b"t>" + body + b"</" + prefix + b"t>"


class SharedStrings:
    """The shared-string table: the office's strings kept as they are, ours appended once each."""

    def __init__(self, xml: bytes | None) -> None:
        self.xml = xml
        self.prefix = b""
        self.base = 0
        if xml:
            check_plain(xml, "sharedStrings.xml")
            self.prefix = root_info(xml)[0]
            self.base = len(re.findall(b"<" + re.escape(self.prefix) + rb"si[\s/>]", xml))
        self._index: dict[str, int] = {}
        self._new: list[bytes] = []
        self.refs = 0

    def index(self, text: str) -> int:
        """Return the index of a string, appending it on first use."""
        self.refs += 1
        found = self._index.get(text)
        if found is None:
            found = self.base + len(self._new)
            self._index[text] = found
            p = self.prefix
            self._new.append(b"<" + p + b"si>" + text_element(p, text) + b"</" + p + b"si>")
        return found

    def risky(self, triggers: tuple[str, ...]) -> set[int]:
        """Return the indexes of the office's strings that start like a formula."""
        if not self.xml:
            return set()
        p = re.escape(self.prefix)
        first = b"".join(re.escape(t.encode()) for t in triggers)
        if not re.search(b"<" + p + rb"t(?:\s[^>]*)?>[" + first + b"&]", self.xml):
            return set()
        si = re.compile(b"<" + p + rb"si\b[^>]*?(?:/>|>(.*?)</" + p + b"si>)", re.S)
        phonetic = re.compile(b"<" + p + rb"rPh\b.*?</" + p + b"rPh>", re.S)
        text = re.compile(b"<" + p + rb"t(?:\s[^>]*)?>([^<]*)<", re.S)
        out: set[int] = set()
        for i, m in enumerate(si.finditer(self.xml)):
            body = phonetic.sub(b"", m.group(1) or b"")
            for t in text.finditer(body):
                if t.group(1):
                    if unescape(t.group(1)[:12].decode("utf-8", "replace")).startswith(triggers):
                        out.add(i)
                    break
        return out

    @property
    def changed(self) -> bool:
        """Say whether a string was added."""
        return bool(self._new)

    def to_bytes(self) -> bytes:
        """Return the table with our strings appended and its counts updated."""
        new = b"".join(self._new)
        if not self.xml:
            return (XML_DECLARATION + b'<sst xmlns="' + NS_MAIN + b'" count="'
                    + str(self.refs).encode() + b'" uniqueCount="' + str(len(self._new)).encode()
                    + b'">' + new + b"</sst>")
        _, root_end, root_tag = root_info(self.xml)
        tag = root_tag
        found = attrs(root_tag)
        if "count" in found and found["count"].isdigit():
            tag = set_attr(tag, "count", str(int(found["count"]) + self.refs))
        if "uniqueCount" in found:
            tag = set_attr(tag, "uniqueCount", str(self.base + len(self._new)))
        start = root_end - len(root_tag)
        if tag.endswith(b"/>"):
            close_tag = b"</" + self.prefix + b"sst>"
            return self.xml[:start] + tag[:-2] + b">" + new + close_tag + self.xml[root_end:]
        close = self.xml.rfind(b"</")
        return self.xml[:start] + tag + self.xml[root_end:close] + new + self.xml[close:]


FONT_ORDER = ("b", "i", "strike", "condense", "extend", "outline", "shadow", "u", "vertAlign",
              "sz", "color", "name", "family", "charset", "scheme")


class StyleBook:
    """The office's styles.xml, with our few fonts, fills and cell formats appended."""

    def __init__(self, xml: bytes) -> None:
        check_plain(xml, "styles.xml")
        self.xml = xml
        self.prefix, root_end, _ = root_info(xml)
        self.blocks = {e.name: e for e in children(xml, root_end, xml.rfind(b"</"))}
        for name in ("fonts", "fills", "borders", "cellStyleXfs", "cellXfs"):
            block = self.blocks.get(name)
            if block is None or block.open_end == block.end:
                raise UnsupportedWorkbook(f"styles.xml has no {name}")
        self._fonts = children(xml, *content_span(xml, self.blocks["fonts"]))
        self._fills = children(xml, *content_span(xml, self.blocks["fills"]))
        self._xfs = children(xml, *content_span(xml, self.blocks["cellXfs"]))
        if not self._fonts or not self._xfs:
            raise UnsupportedWorkbook("styles.xml has no font or cell format")
        self._new: dict[str, list[bytes]] = {"fonts": [], "fills": [], "cellXfs": []}
        self._font_ids: dict[tuple[bool, float | None, bool], int] = {}
        self._fill_ids: dict[str, int] = {}
        self._xf_ids: dict[str, int] = {}
        self._quoted_ids: dict[int, int] = {}

    def _add(self, block: str, element: bytes) -> int:
        existing = {"fonts": self._fonts, "fills": self._fills, "cellXfs": self._xfs}[block]
        self._new[block].append(element)
        return len(existing) + len(self._new[block]) - 1

    def font(self, bold: bool, size: float | None, link: bool) -> int:
        """Return a font like the workbook's default one, made bold, resized or a link."""
        key = (bold, size, link)
        if not bold and size is None and not link:
            return 0
        if key in self._font_ids:
            return self._font_ids[key]
        base = self._fonts[0]
        q = self.prefix
        drop = ({"b"} if bold else set()) | ({"sz"} if size is not None else set()) \
            | ({"u", "color"} if link else set())
        parts = [(e.name, self.xml[e.start : e.end])
                 for e in children(self.xml, *content_span(self.xml, base)) if e.name not in drop]
        if bold:
            parts.append(("b", b"<" + q + b"b/>"))
        if size is not None:
            parts.append(("sz", b"<" + q + b'sz val="' + f"{size:g}".encode() + b'"/>'))
        if link:
            parts += [("u", b"<" + q + b"u/>"), ("color", b"<" + q + b'color rgb="FF0563C1"/>')]
        # Excel's own order; validators (and older readers) expect it.
        parts.sort(key=lambda item: FONT_ORDER.index(item[0]) if item[0] in FONT_ORDER
                   else len(FONT_ORDER))
        head, body = b"", b"".join(tag for _, tag in parts)
        element = b"<" + q + b"font>" + head + body + b"</" + q + b"font>"
        self._font_ids[key] = found = self._add("fonts", element)
        return found

    def fill(self, rgb: str) -> int:
        """Return a solid fill of one colour (RRGGBB)."""
        if rgb not in self._fill_ids:
            q = self.prefix
            element = (b"<" + q + b"fill><" + q + b'patternFill patternType="solid"><' + q
                       + b'fgColor rgb="FF' + rgb.encode() + b'"/><' + q
                       + b'bgColor indexed="64"/></' + q + b"patternFill></" + q + b"fill>")
            self._fill_ids[rgb] = self._add("fills", element)
        return self._fill_ids[rgb]

    def xf(self, key: str, spec: StyleLike) -> int:
        """Return the cell format index of one of our style keys, adding it on first use."""
        if key in self._xf_ids:
            return self._xf_ids[key]
        q = self.prefix
        font = self.font(spec.bold, spec.size, spec.link)
        fill = self.fill(spec.fill) if spec.fill else 0
        tag = (b"<" + q + b'xf numFmtId="' + str(spec.number_format).encode() + b'" fontId="'
               + str(font).encode() + b'" fillId="' + str(fill).encode()
               + b'" borderId="0" xfId="0"')
        if spec.number_format:
            tag += b' applyNumberFormat="1"'
        if font:
            tag += b' applyFont="1"'
        if fill:
            tag += b' applyFill="1"'
        if spec.quote:
            tag += b' quotePrefix="1"'
        align = b""
        if spec.wrap:
            align += b' wrapText="1"'
        if spec.horizontal:
            align += b' horizontal="' + spec.horizontal.encode() + b'"'
        if spec.vertical:
            align += b' vertical="' + spec.vertical.encode() + b'"'
        if align:
            element = (tag + b' applyAlignment="1"><' + q + b"alignment" + align + b"/></" + q
                       + b"xf>")
        else:
            element = tag + b"/>"
        self._xf_ids[key] = found = self._add("cellXfs", element)
        return found

    def quoted(self, xf_id: int) -> int:
        """Return a copy of one of the office's cell formats with quotePrefix set."""
        if xf_id in self._quoted_ids:
            return self._quoted_ids[xf_id]
        source = self._xfs[xf_id] if 0 <= xf_id < len(self._xfs) else self._xfs[0]
        if attrs(self.xml[source.start : source.open_end]).get("quotePrefix") in ("1", "true"):
            self._quoted_ids[xf_id] = xf_id
            return xf_id
        tag = set_attr(self.xml[source.start : source.open_end], "quotePrefix", "1")
        element = tag + self.xml[source.open_end : source.end]
        self._quoted_ids[xf_id] = found = self._add("cellXfs", element)
        return found

    @property
    def changed(self) -> bool:
        """Say whether a font, fill or cell format was added."""
        return any(self._new.values())

    def to_bytes(self) -> bytes:
        """Return styles.xml with the new entries appended to their lists and counts updated."""
        xml = self.xml
        counts = {"fonts": len(self._fonts), "fills": len(self._fills), "cellXfs": len(self._xfs)}
        for name in sorted(self._new, key=lambda n: self.blocks[n].start, reverse=True):
            added = self._new[name]
            if not added:
                continue
            block = self.blocks[name]
            close = xml.rfind(b"</", block.start, block.end)
            tag = xml[block.start : block.open_end]
            if "count" in attrs(tag):
                tag = set_attr(tag, "count", str(counts[name] + len(added)))
            xml = (xml[: block.start] + tag + xml[block.open_end : close] + b"".join(added)
                   + xml[close:])
        return xml


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Say whether two ranges (min_col, min_row, max_col, max_row) share a cell."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


NS_VT = b"http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"
_VARIANT = re.compile(rb"<(?:\w+:)?(lpstr|i4)>([^<]*)</(?:\w+:)?(?:lpstr|i4)>")


def app_with_sheets(xml: bytes, worksheets: list[str]) -> bytes | None:
    """Return docProps/app.xml listing these worksheets (Excel's sheet list in File > Info and
    in the file browser's preview), other groups (chart sheets, named ranges) kept; None when
    the part is not laid out as Excel writes it."""
    prefix, root_end, root_tag = root_info(xml)
    if prefix:
        return None
    kids = {e.name: e for e in children(xml, root_end, xml.rfind(b"</"))}
    pairs: list[tuple[str, int]] = []
    titles: list[str] = []
    if "HeadingPairs" in kids and "TitlesOfParts" in kids:
        found = _VARIANT.findall(xml, kids["HeadingPairs"].start, kids["HeadingPairs"].end)
        if len(found) % 2 or any(kind != b"lpstr" for kind, _ in found[::2]) \
                or any(kind != b"i4" for kind, _ in found[1::2]):
            return None
        pairs = [(unescape(found[i][1].decode()), int(found[i + 1][1]))
                 for i in range(0, len(found), 2)]
        titles = [unescape(t.decode()) for kind, t in _VARIANT.findall(
            xml, kids["TitlesOfParts"].start, kids["TitlesOfParts"].end)]
        if sum(n for _, n in pairs) != len(titles):
            return None
    groups: list[tuple[str, list[str]]] = []
    pos = 0
    for name, n in pairs:
        groups.append((name, titles[pos : pos + n]))
        pos += n
    if any(name == "Worksheets" for name, _ in groups):
        groups = [(n, worksheets if n == "Worksheets" else items) for n, items in groups]
    else:
        groups.insert(0, ("Worksheets", worksheets))
    vt = namespace_prefix(root_tag, NS_VT)
    declare = b""
    if vt is None or vt == b"":
        vt, declare = b"vt:", b' xmlns:vt="' + NS_VT + b'"'
    heading = b"".join(
        b"<" + vt + b"variant><" + vt + b"lpstr>" + xml_text(name) + b"</" + vt + b"lpstr></"
        + vt + b"variant><" + vt + b"variant><" + vt + b"i4>%d</" % len(items) + vt + b"i4></"
        + vt + b"variant>" for name, items in groups)
    listed = b"".join(b"<" + vt + b"lpstr>" + xml_text(t) + b"</" + vt + b"lpstr>"
                      for _, items in groups for t in items)
    block = (b"<HeadingPairs" + declare + b"><" + vt + b'vector size="%d" baseType="variant">'
             % (2 * len(groups)) + heading + b"</" + vt + b"vector></HeadingPairs><TitlesOfParts"
             + declare + b"><" + vt + b'vector size="%d" baseType="lpstr">'
             % sum(len(items) for _, items in groups) + listed + b"</" + vt
             + b"vector></TitlesOfParts>")
    if "HeadingPairs" in kids and "TitlesOfParts" in kids:
        a, b = sorted((kids["HeadingPairs"], kids["TitlesOfParts"]), key=lambda e: e.start)
        return xml[: a.start] + block + xml[a.end : b.start] + xml[b.end :]
    after = [kids[n].end for n in ("Application", "DocSecurity", "ScaleCrop") if n in kids]
    at = max(after) if after else xml.rfind(b"</")
    return xml[:at] + block + xml[at:]
