"""Progress lines for long runs: a line per stage with its count and time, and on a terminal a
running count of letters and deliveries.

A 20,000-student run with a relay takes about a minute; silent until its summary, it looks hung
to IT. The lines go to stderr (the summary stays alone on stdout), for a roster of
PROGRESS_FROM students or more, or whenever stderr is a terminal. IDs and counts only.
No library: the letters come in batches of thousands, so a count rewritten in place on the
terminal line says as much as a bar would; a deployed run's lines reach the journal.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

PROGRESS_FROM = 1000


@dataclass
class Progress:
    """The progress of one roster's run."""

    roster: str
    students: int
    live: bool = False  # stderr is a terminal: counts rewritten in place

    @classmethod
    def start(cls, roster: str, students: int) -> Progress:
        return cls(roster, students, live=sys.stderr.isatty())

    @property
    def shown(self) -> bool:
        """Say whether this run prints progress (a long roster, or a terminal)."""
        return self.live or self.students >= PROGRESS_FROM

    def stage(self, stage: str, seconds: float, what: str = "") -> None:
        """One line per finished stage: `class-2027.xlsx: validated 5,000 rows in 1.2 s`."""
        if self.shown:
            self._end_live()
            detail = f" ({what})" if what else ""
            print(f"{self.roster}: {stage} in {seconds:.1f} s{detail}", file=sys.stderr,
                  flush=True)

    def count(self, letters: int, delivered: int, total: int | None = None) -> None:
        """The running count of letters written (of total: the rows not held) and delivered."""
        if not self.shown:
            return
        text = (f"{self.roster}: letters {letters:,}/{total or self.students:,}, "
                f"delivered {delivered:,}")
        if self.live:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
            self._open = True
        else:
            print(text, file=sys.stderr, flush=True)

    _open: bool = False

    def _end_live(self) -> None:
        if self._open:
            print(file=sys.stderr, flush=True)
            self._open = False
