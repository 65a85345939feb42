"""What changed since the student's last letter: the summary kept in the ledger, and the words.

A changed outlook, score or specialty, or a new season of the application calendar, is told in
the letter's "what changed" section; the date moving from night to night alone is not.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flows.letters.context import season_words
from flows.letters.model import LetterSummary
from residency_rules import calendar
from residency_rules.records import Evaluation

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

def summarize(evaluation: Evaluation) -> LetterSummary:
    """Return what a letter for this evaluation tells the student about the outlook."""
    return LetterSummary(
        level=evaluation.level,
        label=evaluation.label,
        band=evaluation.band,
        score=evaluation.step2_score,
        specialty=evaluation.specialty,
    )


def _said(summary: LetterSummary) -> str:
    """Quote an outlook with its level; no level number while a score is pending."""
    level = "" if summary.band == "pending" else f" (level {summary.level})"
    return f'"{summary.label}"{level}'


def describe_changes(previous: LetterSummary | None, current: LetterSummary) -> tuple[str, ...]:
    """Say in plain sentences what changed since the last letter; () for a first letter."""
    if previous is None or not previous.label:  # first letter, or nothing known about the last
        return ()
    lines: list[str] = []
    if previous.specialty != current.specialty:
        lines.append(
            f"Your specialty on file changed from {previous.specialty} to {current.specialty}."
        )
    if previous.level != current.level:
        way = "up" if current.level > previous.level else "down"
        if previous.band == "pending" or current.band == "pending":
            lines.append(f"Your outlook changed from {_said(previous)} to {_said(current)}.")
        else:
            lines.append(
                f"Your outlook moved {way} from {_said(previous)} to {_said(current)}."
            )
    elif previous.label != current.label:
        lines.append(f'Your outlook changed from "{previous.label}" to "{current.label}".')
    if previous.score != current.score:
        if previous.score is None:
            lines.append(f"Your Step 2 CK score is now on file: {current.score}.")
        elif current.score is None:
            lines.append(
                "We no longer have a Step 2 CK score on file for you; "
                "if that is a mistake, tell your advisor."
            )
        else:
            lines.append(
                f"Your Step 2 CK on file changed from {previous.score} to {current.score}."
            )
    elif previous.band != current.band and previous.specialty == current.specialty:
        lines.append(
            f"How programs are likely to read your score changed from {previous.band} "
            f"to {current.band} (see Why)."
        )
    return tuple(lines)



def season_change(
    previous: LetterSummary | None, cycle: calendar.Cycle, phase: str, match: str = "nrmp"
) -> tuple[str, ...]:
    """Say "a new season" when the last letter went out in another phase of the student's
    own match (SF Match and AUA students' seasons follow their match's dates)."""
    if previous is None or previous.sent_on is None:
        return ()
    if calendar.phase(previous.sent_on, cycle, cycle.system(match)) == phase:
        return ()
    return (f"A new season: your plan is now about {season_words(phase, match)}.",)
