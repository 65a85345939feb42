"""Letters held after Match Day: no Match result on the roster and ADVISING_AFTER_MATCH=hold.

One small function the render stage and the run's account both ask, so "held" means the same
in both: no letter is rendered or delivered for the student, and the run records the letter
as HELD with the reason (the workbook's Letter cell says it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flows.outcome import LetterOutcome, LetterStatus
from flows.settings import Settings
from residency_rules.records import Evaluation

# Why the letter is held: the workbook's Letter cell reads "Held: <this>".
HELD_AFTER_MATCH_DETAIL = "no Match result yet (ADVISING_AFTER_MATCH=hold)"
HELD_AFTER_MATCH = f"Held: {HELD_AFTER_MATCH_DETAIL}"


def held_after_match(evaluation: Evaluation, settings: Settings) -> str | None:
    """Return the workbook's letter cell for a letter held after the Match, or None.

    Only a student who applied (Step 1 passed) and whose match is over, with a blank Match
    result, is held; with ADVISING_AFTER_MATCH=letter (the default) the letter covers both
    branches instead.
    """
    if (
        settings.after_match == "hold"
        and evaluation.phase == "after match"
        and evaluation.match_result is None
        and evaluation.applies_this_cycle
    ):
        return HELD_AFTER_MATCH
    return None


def hold_after_match(
    letters: Mapping[str, LetterOutcome], evaluations: Iterable[Evaluation], settings: Settings
) -> dict[str, LetterOutcome]:
    """Record as HELD, with the reason, each letter held after the Match (none was rendered)."""
    held = {e.student_id for e in evaluations if held_after_match(e, settings)}
    return {
        sid: LetterOutcome(LetterStatus.HELD, HELD_AFTER_MATCH_DETAIL) if sid in held else outcome
        for sid, outcome in letters.items()
    }
