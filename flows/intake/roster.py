"""A roster as intake read it: where its rows sit in the office's sheet, and what came out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from residency_rules.records import Problem, StudentRecord


@dataclass
class Roster:
    """One input workbook after intake and validation; the workbook writer uses the positions."""

    source: Path
    sha256: str
    sheet: str  # title of the roster sheet
    header_row: int  # 1-based Excel row of the header
    # canonical field -> header text as the office wrote it / its 1-based column number.
    headers: dict[str, str] = field(default_factory=dict)
    column_index: dict[str, int] = field(default_factory=dict)
    last_column: int = 0  # last used column of the roster sheet; annotations go after it
    # Header cells that fed no field (1-based column -> header as written): kept as they are.
    unread: dict[int, str] = field(default_factory=dict)
    mapped: frozenset[str] = frozenset()  # fields found through ADVISING_COLUMN_MAP
    # Every student row found (Excel row numbers), in sheet order, with the ID as read ("" if none).
    row_ids: dict[int, str] = field(default_factory=dict)
    records: list[StudentRecord] = field(default_factory=list)  # rows that can be evaluated
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Return the roster's stem, which names its output folder."""
        return self.source.stem

    def held_rows(self) -> set[int]:
        """Return the Excel rows held back by a problem (no letter, no email)."""
        return {p.row for p in self.problems if p.holds_row and p.row is not None}
