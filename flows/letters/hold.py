"""Letters held after Match Day: no Match result on the roster and ADVISING_AFTER_MATCH=hold.

One small function the render stage and the workbook both ask, so "held" means the same in
both: no letter is rendered or delivered for the student, and the workbook's letter cell
says why (the lead's typed letter status can take this reason as its own value).
"""

from __future__ import annotations

from flows.settings import Settings
from residency_rules.records import Evaluation

HELD_AFTER_MATCH = "Held: no Match result yet (ADVISING_AFTER_MATCH=hold)"


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
