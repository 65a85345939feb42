"""What was read from the office's columns: each field and the header that fed it, each column
not read, each optional field not found with what the letters do without it (#25).

Silent misreading is the worst failure the product can have: a research column headed in the
office's own words and skipped makes every letter wrong and nobody knows. `advising check`,
the run's console lines and the workbook's Columns sheet all say it, from this one account.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.intake.roster import Roster
from flows.ooxml import column_letter
from residency_rules.schema import FIELDS


@dataclass(frozen=True, slots=True)
class ColumnRead:
    """One field and the office's column that fed it."""

    field: str  # the field's friendly name, e.g. "Research Items"
    header: str  # the header as the office wrote it
    column: int  # 1-based
    mapped: bool  # found through ADVISING_COLUMN_MAP, not by the product's own names

    @property
    def letter(self) -> str:
        """Return the column's letter as Excel shows it (B, AA)."""
        return column_letter(self.column)


@dataclass(frozen=True, slots=True)
class ColumnsRead:
    """The whole account of one roster's header row."""

    read: tuple[ColumnRead, ...]
    unread: tuple[tuple[str, str], ...]  # (column letter, header) kept in the workbook as is
    absent: tuple[tuple[str, str], ...]  # (field, what the letters do without it)


def columns_read(roster: Roster) -> ColumnsRead:
    """Account for every header cell and every field of one read roster."""
    read = tuple(sorted(
        (ColumnRead(f.label, roster.headers.get(f.name, f.label), roster.column_index[f.name],
                    f.name in roster.mapped)
         for f in FIELDS if f.name in roster.column_index),
        key=lambda c: c.column,
    ))
    have = set(roster.column_index)
    names = "name" in have or {"first_name", "last_name"} <= have
    absent = tuple(
        (f.label, f.absent) for f in FIELDS
        if f.name not in have and f.absent
        # The name comes whole or as first + last: neither half is "not found" then.
        and not (f.name in ("first_name", "last_name") and names)
    )
    unread = tuple((column_letter(col), text) for col, text in sorted(roster.unread.items()))
    return ColumnsRead(read, unread, absent)


def format_columns(account: ColumnsRead) -> str:
    """Lay the account out for a terminal: what fed what, what was not read, what was missing."""
    width = max((len(c.field) for c in account.read), default=0)
    lines = ["Columns read:"]
    for c in account.read:
        how = "  (your column map)" if c.mapped else ""
        lines.append(f"  {c.field:<{width}}  <- column {c.letter} \"{c.header}\"{how}")
    if account.unread:
        lines.append("Columns not read (kept in the workbook as they are; to use one, rename it "
                     "or map it in ADVISING_COLUMN_MAP):")
        lines.extend(f"  column {letter} \"{header}\"" for letter, header in account.unread)
    if account.absent:
        lines.append("Fields not found (optional):")
        lines.extend(f"  {field}: {effect}" for field, effect in account.absent)
    return "\n".join(lines)


def columns_line(account: ColumnsRead, limit: int = 4) -> str:
    """One console line for a run: the counts, and the columns not read by name."""
    text = f"columns: {len(account.read)} read"
    if account.unread:
        shown = ", ".join(f'"{h}"' for _, h in account.unread[:limit])
        more = f" and {len(account.unread) - limit} more" if len(account.unread) > limit else ""
        text += f", {len(account.unread)} not read ({shown}{more})"
    if account.absent:
        text += f", {len(account.absent)} optional fields not found"
    return text + " (the workbook's Columns sheet lists them)"
