"""What a rendered letter is, for the stages after rendering: delivery and its ledger.

Kept apart from rendering (Jinja2, CSS inlining) so delivery needs none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class LetterSummary:
    """The outlook a letter told the student, kept in the ledger to say what changed next time."""

    level: int
    label: str
    band: str
    score: int | None
    specialty: str
    sent_on: date | None = None


@dataclass(frozen=True)
class Letter:
    """One student's rendered letter, ready for the outbox or the relay."""

    student_id: str
    to: str | None
    reply_to: str | None
    subject: str
    html: str
    text: str
    content_hash: str
    changes: tuple[str, ...]
    # What this letter says about the outlook; the ledger stores it when the letter goes out.
    summary: LetterSummary | None = None
