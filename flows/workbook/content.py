"""What the annotated workbook shows, decided once; the two writers only lay it out.

The fast writer (`workbook_xml`) and the fallback writer (`workbook_openpyxl`) both render the
records built here, so the office sees the same columns, styles and sheets whichever one ran.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from enum import IntEnum
from functools import lru_cache
from urllib.parse import quote

from openpyxl.chart._chart import ChartBase
from openpyxl.utils import get_column_letter, quote_sheetname

from flows.intake.roster import Roster
from flows.outcome import HELD, LetterOutcome, LetterStatus
from residency_rules.records import AdviceItem, Evaluation, Problem, StudentRecord
from residency_rules.rulebook import TIER_NAMES, Level


@dataclass(frozen=True)
class LetterCell:
    """What happened to a student's letter, and where its file is, for the Letter column."""

    outcome: LetterOutcome
    path: str | None  # relative to the workbook's folder, e.g. "letters/000123.html"


# The word the Letter column starts with, and the kind the Summary counts, for each status.
LETTER_WORDS: dict[LetterStatus, str] = {
    LetterStatus.WRITTEN: "Written",
    LetterStatus.OUTBOX: "Written to outbox",
    LetterStatus.SENT: "Sent",
    LetterStatus.UNCHANGED: "Unchanged",
    LetterStatus.HELD: "Held",
    LetterStatus.NO_ADDRESS: "No email address",
    LetterStatus.BAD_ADDRESS: "Address not valid",
    LetterStatus.OUTSIDE_DOMAINS: "Address outside allowed domains",
    LetterStatus.FAILED: "Failed",
    LetterStatus.UNCERTAIN: "Failed",  # to the office, a letter to look into like any failed one
    LetterStatus.WAITING: "Waiting for approval",
}


def letter_text(outcome: LetterOutcome) -> str:
    """Say in the Letter column what became of the letter: the one place it turns to words."""
    status, word = outcome.status, LETTER_WORDS[outcome.status]
    if status is LetterStatus.UNCHANGED:
        return f"{word} (sent {outcome.when})"
    if status is LetterStatus.HELD:  # a problem, or a reason of its own (#23: after the Match)
        return f"{word}: {outcome.detail or 'see Problems'}"
    if status is LetterStatus.UNCERTAIN:
        # Found by this run (the relay's reply is known) or by an earlier one (its day is).
        told = (f"since {outcome.when} (Message-ID {outcome.message_id})" if outcome.when
                else f"({outcome.detail}; Message-ID {outcome.message_id})")
        return (f"{word}: delivery uncertain {told}; not re-sent to avoid a duplicate: "
                "check the relay's log")
    if status is LetterStatus.FAILED or status is LetterStatus.WAITING:
        return f"{word}: {outcome.detail}" if outcome.detail else word
    return word


ANNOTATION_HEADERS: tuple[str, ...] = (
    "Tier",
    "Step 2 CK band",
    "Step 1 status",
    "Outlook level",
    "Outlook",
    "Step 2 CK impact (of 100)",
    "Next steps",
    "Letter",
    "Problems",
)


class Column(IntEnum):
    """The annotation columns by name, in the order of ANNOTATION_HEADERS."""

    TIER = 0
    BAND = 1
    STEP1 = 2
    LEVEL = 3
    OUTLOOK = 4
    IMPACT = 5
    NEXT_STEPS = 6
    LETTER = 7
    PROBLEMS = 8


# Column widths in Excel character units, in the order of ANNOTATION_HEADERS.
ANNOTATION_WIDTHS: tuple[float, ...] = (10, 22, 17, 9, 36, 10, 60, 26, 50)

# Light fills, red to green, dark text stays readable on each; level 1 is "at risk".
LEVEL_FILLS: dict[int, str] = {
    1: "F4A6A6",
    2: "F9CB9C",
    3: "FFE699",
    4: "C6E0B4",
    5: "8FCB6B",
}
HEADER_FILL = "DDEBF7"  # light blue: tells the office which columns we added

# Excel and LibreOffice treat a cell typed with these first characters as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@")
EXCEL_MAX_TEXT = 32767
# Excel keeps at most this many hyperlinks per sheet; past it the cell shows its text only.
MAX_HYPERLINKS = 65530
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_URL_SAFE = re.compile(r"[A-Za-z0-9/._~-]+")
_SHEET_TITLE_BAD = re.compile(r"[\[\]:*?/\\]")

CellValue = str | int | float | date | None


@dataclass(frozen=True, slots=True)
class StyleSpec:
    """A cell look both writers can build: fonts and fills stay few so styles are shared."""

    bold: bool = False
    size: float | None = None  # font size in points; None keeps the workbook's default
    link: bool = False  # blue and underlined
    fill: str | None = None  # RRGGBB solid fill
    wrap: bool = False
    horizontal: str | None = None
    # None: Excel's default, the bottom of the cell, as the office's own cells sit; in a row
    # made tall for "Next steps", a top-aligned Tier would read as the row above's.
    vertical: str | None = None
    number_format: int = 0  # a built-in format id: 0 General, 14 short date
    quote: bool = False  # quotePrefix: a typed "=..." stays text when the office edits it


def _styles() -> dict[str, StyleSpec]:
    styles = {
        "text": StyleSpec(),
        "wrap": StyleSpec(wrap=True),
        "number": StyleSpec(horizontal="center"),
        "count": StyleSpec(),
        "date": StyleSpec(number_format=14, horizontal="left"),
        "link": StyleSpec(link=True),
        "header": StyleSpec(bold=True, fill=HEADER_FILL, wrap=True),
        "title": StyleSpec(bold=True, size=14, vertical=None),
        "subtitle": StyleSpec(vertical=None),
        "section": StyleSpec(bold=True, size=12, vertical=None),
        "total": StyleSpec(bold=True),
    }
    for level, fill in LEVEL_FILLS.items():
        styles[f"level{level}"] = StyleSpec(fill=fill, horizontal="center")
        styles[f"outlook{level}"] = StyleSpec(fill=fill, wrap=True)
    return styles


STYLES: dict[str, StyleSpec] = _styles()


def style_spec(key: str) -> StyleSpec:
    """Return the look for a style key; a key ending in '+q' is the quotePrefix variant."""
    if key.endswith("+q"):
        return replace(STYLES[key[:-2]], quote=True)
    return STYLES[key]


def clean_text(value: str) -> str:
    """Return text Excel can store: no XML-illegal characters, CR folded, within the cell limit."""
    text = _ILLEGAL_XML.sub("", value)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text[:EXCEL_MAX_TEXT]


def needs_quote(value: object) -> bool:
    """Say whether a text value would read as a formula if the office retyped it."""
    return isinstance(value, str) and value.startswith(FORMULA_TRIGGERS)


@dataclass(frozen=True, slots=True)
class Cell:
    """One value we write, with its style key (already the quotePrefix variant when needed)."""

    value: CellValue
    style: str


def cell(value: CellValue, style: str = "text") -> Cell:
    """Make a cell, cleaning text and quoting any text that starts like a formula."""
    if isinstance(value, str):
        return _text_cell(value, style)
    return Cell(value, style)


@lru_cache(maxsize=1 << 16)
def _text_cell(value: str, style: str) -> Cell:
    """Build a text cell once: tiers, bands, labels and advice repeat across thousands of rows."""
    value = clean_text(value)
    return Cell(value, style + "+q" if needs_quote(value) else style)


@dataclass(frozen=True, slots=True)
class RowAnnotation:
    """The annotation cells of one roster row, and the letter file its Letter cell links to."""

    row: int
    cells: tuple[Cell | None, ...]  # one per ANNOTATION_HEADERS entry; None leaves it blank
    link: str | None = None  # relative URL of the letter
    height: float | None = None  # points, when wrapped text needs more than one line


@dataclass
class ChartSpec:
    """A native Excel chart and where it sits: anchor cell (1-based) and size in cm."""

    chart: ChartBase
    col: int
    row: int
    width_cm: float
    height_cm: float


@dataclass
class SheetSpec:
    """A sheet we add (Summary, Problems), described once for both writers."""

    title: str
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)  # (row, col) -> cell
    widths: dict[int, float] = field(default_factory=dict)
    freeze_row: int = 0  # rows 1..freeze_row stay visible; 0 = no frozen rows
    autofilter: tuple[int, int, int, int] | None = None  # min_col, min_row, max_col, max_row
    links: dict[tuple[int, int], str] = field(default_factory=dict)  # in-workbook locations
    charts: list[ChartSpec] = field(default_factory=list)
    tab_color: str | None = None
    print_rows: tuple[int, int] | None = None  # rows repeated at the top of each printed page
    print_break: int = 0  # a page break after this row (0: none)

    def put(self, row: int, col: int, value: CellValue, style: str = "text") -> None:
        """Place a value; blanks are skipped so the sheet stays sparse."""
        if value is None or value == "":
            return
        self.cells[(row, col)] = cell(value, style)

    def put_link(self, row: int, col: int, value: CellValue, location: str) -> None:
        """Place a value that jumps to another place in the workbook when clicked."""
        if len(self.links) >= MAX_HYPERLINKS:
            self.put(row, col, value, "count")
            return
        self.put(row, col, value, "link")
        self.links[(row, col)] = location

    def max_row(self) -> int:
        """Return the last row holding a cell (1 for an empty sheet)."""
        return max((r for r, _ in self.cells), default=1)

    def max_col(self) -> int:
        """Return the last column holding a cell (1 for an empty sheet)."""
        return max((c for _, c in self.cells), default=1)

    def heights(self) -> dict[int, float]:
        """Return the height of each row whose wrapped text needs more than one line."""
        texts: dict[int, list[tuple[str, float]]] = {}
        for (r, c), value in self.cells.items():
            if isinstance(value.value, str) and style_spec(value.style).wrap:
                texts.setdefault(r, []).append((value.value, self.widths.get(c, 8.43)))
        out = {}
        for r, items in texts.items():
            height = wrapped_height(items)
            if height is not None:
                out[r] = height
        return out


LINE_POINTS = 15.0  # one line of 11 pt Calibri, Excel's default row height


def wrapped_height(texts: Iterable[tuple[str, float]]) -> float | None:
    """Return the row height (points) that shows every line of wrapped texts, each in a column
    of the given width (Excel character units); None when one line is enough.

    Excel and LibreOffice do not grow a row for wrapped text written by a program, so three
    "Next steps" lines print on top of each other unless the row says how tall it is. Letters
    are counted a little wide (proportional fonts vary), so the row errs on the tall side.
    """
    lines = 1
    for text, width in texts:
        per_line = max(1.0, width * 1.1 - 1)
        count = sum(max(1, -(-len(part) // int(per_line))) for part in text.split("\n"))
        lines = max(lines, count)
    return None if lines <= 1 else lines * LINE_POINTS + 2


def sheet_location(title: str, row: int, col: int = 1) -> str:
    """Return an in-workbook hyperlink location such as 'Roster'!A12."""
    return f"{_quoted_title(title)}!{get_column_letter(col)}{row}"


@lru_cache(maxsize=64)
def _quoted_title(title: str) -> str:
    return str(quote_sheetname(title))


def unique_sheet_title(wanted: str, existing: Iterable[str]) -> str:
    """Return a valid sheet title (31 chars, no []:*?/\\) that no existing sheet uses."""
    base = _SHEET_TITLE_BAD.sub(" ", wanted).strip().strip("'")[:31] or "Sheet"
    taken = {name.casefold() for name in existing}
    title, n = base, 2
    while title.casefold() in taken:
        suffix = f" ({n})"
        title = base[: 31 - len(suffix)] + suffix
        n += 1
    return title


def letter_url(path: str) -> str:
    """Return the letter's path as a relative URL (forward slashes, reserved characters escaped)."""
    path = path.replace("\\", "/")
    if _URL_SAFE.fullmatch(path):
        return path
    return quote(path, safe="/._-~")


def _shorten(text: str, limit: int = 90) -> str:
    """Return the first sentence of an advice text, cut at a word boundary within limit."""
    first = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]
    if len(first) <= limit:
        return first
    cut = first[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def step1_text(ev: Evaluation) -> str:
    """Return the Step 1 status as the office reads it, e.g. 'clean (marginal)', and a Step 2
    CK failure on the record, which puts the student on the failure row (#14)."""
    text = f"{ev.step1_status} (marginal)" if ev.step1_marginal else ev.step1_status
    return f"{text}; a Step 2 CK failure on record" if ev.step2_failed_before else text


def band_text(ev: Evaluation) -> str:
    """Return the band after modifiers, naming the score's own band when a modifier moved it."""
    if ev.raw_band != ev.band:
        return f"{ev.band} (score alone: {ev.raw_band})"
    return ev.band


def next_steps(ev: Evaluation, items: int = 3) -> str:
    """Return the first advice items, shortened, one per line."""
    return _next_steps(ev.advice[:items])


@lru_cache(maxsize=1 << 12)
def _next_steps(advice: tuple[AdviceItem, ...]) -> str:
    return "\n".join(f"• {_shorten(a.text)}" for a in advice)


def problem_text(problem: Problem) -> str:
    """Return a problem as one line for the roster's Problems column."""
    return f"{problem.column}: {problem.what}" if problem.column else problem.what


@lru_cache(maxsize=1 << 12)
def _row_height(wrapped: tuple[tuple[str, float], ...]) -> float | None:
    return wrapped_height(wrapped)


HEADER_HEIGHT = wrapped_height(zip(ANNOTATION_HEADERS, ANNOTATION_WIDTHS, strict=True))


@dataclass
class AnnotationContent:
    """Everything the writers need, computed from the run's results before any file is opened."""

    roster: Roster
    evaluations: Mapping[str, Evaluation]
    letters: Mapping[str, LetterCell]
    rows: list[RowAnnotation]
    record_by_row: dict[int, StudentRecord]
    evaluation_by_row: dict[int, Evaluation]
    problems_by_row: dict[int, list[Problem]]
    # What each level means and whether it is at risk ([levels] in the data file).
    levels: Mapping[int, Level]
    # A line for the office above the Summary's totals, e.g. the configured cycle is over.
    notice: str = ""


def build_content(
    roster: Roster,
    evaluations: Mapping[str, Evaluation],
    letters: Mapping[str, LetterCell],
    notice: str = "",
    *,
    levels: Mapping[int, Level],
) -> AnnotationContent:
    """Build one annotation row per student row of the roster, in sheet order."""
    record_by_row = {rec.row: rec for rec in roster.records}
    rows_by_id: dict[str, set[int]] = {}
    for rec in roster.records:
        rows_by_id.setdefault(rec.student_id, set()).add(rec.row)
    held = roster.held_rows()
    problems_by_row: dict[int, list[Problem]] = {}
    for problem in roster.problems:
        if problem.row is not None:
            problems_by_row.setdefault(problem.row, []).append(problem)

    evaluation_by_row: dict[int, Evaluation] = {}
    rows: list[RowAnnotation] = []
    for row in sorted(roster.row_ids):
        student_id = roster.row_ids[row]
        record = record_by_row.get(row)
        ev = evaluations.get(record.student_id) if record is not None else None
        cells: list[Cell | None] = [None] * len(ANNOTATION_HEADERS)
        if ev is not None:
            evaluation_by_row[row] = ev
            level = ev.level if ev.level in LEVEL_FILLS else None
            cells[Column.TIER] = cell(TIER_NAMES.get(ev.tier, ev.tier))
            cells[Column.BAND] = cell(band_text(ev))
            cells[Column.STEP1] = cell(step1_text(ev))
            cells[Column.LEVEL] = cell(ev.level, f"level{level}" if level else "number")
            cells[Column.OUTLOOK] = cell(ev.label, f"outlook{level}" if level else "text")
            cells[Column.IMPACT] = cell(ev.impact, "number")
            cells[Column.NEXT_STEPS] = cell(next_steps(ev), "wrap") if ev.advice else None
        letter = letters.get(student_id) if student_id else None
        if row in held and rows_by_id.get(student_id, {row}) != {row}:
            letter = None  # a duplicate ID: that letter belongs to the other row
        link = None
        if letter is not None:
            link = letter_url(letter.path) if letter.path else None
            cells[Column.LETTER] = cell(letter_text(letter.outcome), "link" if link else "text")
        elif row in held:
            cells[Column.LETTER] = cell(letter_text(HELD))
        texts = [problem_text(p) for p in problems_by_row.get(row, [])]
        if texts:
            cells[Column.PROBLEMS] = cell("\n".join(texts), "wrap")
        wrapped = [(c.value, ANNOTATION_WIDTHS[i]) for i, c in enumerate(cells)
                   if c is not None and isinstance(c.value, str) and STYLES[c.style.removesuffix(
                       "+q")].wrap]
        rows.append(RowAnnotation(row=row, cells=tuple(cells), link=link,
                                  height=_row_height(tuple(wrapped)) if wrapped else None))
    return AnnotationContent(
        roster=roster,
        evaluations=evaluations,
        letters=letters,
        rows=rows,
        record_by_row=record_by_row,
        evaluation_by_row=evaluation_by_row,
        problems_by_row=problems_by_row,
        levels=levels,
        notice=notice,
    )
