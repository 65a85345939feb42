"""Classify the inputs the matrix reads: Step 2 CK band, Step 1 status, clerkship strength."""

from __future__ import annotations

import datetime as _dt

from residency_rules.records import (
    Band,
    ClerkshipStrength,
    Grade,
    Specialty,
    Step1Status,
    StudentRecord,
)
from residency_rules.rulebook import Rules

# One step down the bands the matrix reads; `below` has nowhere lower to go.
BAND_DOWN: dict[Band, Band] = {
    "excellent": "solid",
    "solid": "borderline",
    "borderline": "below",
    "below": "below",
}
_GOOD_GRADES: frozenset[Grade | None] = frozenset(("H", "HP"))


def passing_score(step2_date: _dt.date | None, rules: Rules) -> int:
    """Return the Step 2 CK passing score for an exam on this date (today's when unknown)."""
    if step2_date is not None and step2_date < rules.failing_score_since:
        return rules.failing_score_before
    return rules.failing_score


def step2_band(
    score: int | None, step2_date: _dt.date | None, spec: Specialty, rules: Rules
) -> Band:
    """Place a Step 2 CK score against the specialty's solid and excellent marks."""
    if score is None:
        return "pending"
    if score < passing_score(step2_date, rules):
        return "failing"
    if score >= spec.excellent:
        return "excellent"
    if score >= spec.solid:
        return "solid"
    if score >= spec.solid - rules.borderline_below_solid:
        return "borderline"
    return "below"


def step1_status(record: StudentRecord, rules: Rules) -> tuple[Step1Status, bool, int]:
    """Return the Step 1 status, whether the pass was marginal, and the failed attempts."""
    result = record.step1_result
    if result == "pass":
        failed = max(record.step1_attempts - 1, 0)
        score = record.step1_score
        marginal = record.step1_margin == "marginal" or (
            score is not None and score < rules.marginal_step1_below
        )
        return ("failure" if failed else "clean"), marginal, failed
    if result == "fail":
        return "not passed", False, max(record.step1_attempts, 1)
    return "not taken", False, 0


def clerkship_strength(
    clerkships: tuple[tuple[str, Grade | None], ...],
) -> tuple[ClerkshipStrength, bool]:
    """Return strong / neutral / weak for the graded core clerkships, and whether one failed."""
    graded = 0
    good = 0
    failed = False
    for _, grade in clerkships:
        if grade is None:
            continue
        graded += 1
        if grade in _GOOD_GRADES:
            good += 1
        elif grade == "F":
            failed = True
    if failed:
        return "weak", True
    if graded and 2 * good >= graded:
        return "strong", False
    if graded >= 3 and good == 0:
        return "weak", False
    return "neutral", False


def step2_failed_before(attempts: int | None, raw: Band) -> bool:
    """Say whether a failed Step 2 CK attempt is on the record, where programs will see it.

    `attempts` counts the sittings, the one whose score is on file (or awaited) included: a
    pass or a pending score after two or more sittings follows a failure. A failing score is a
    failed attempt itself, so a later pass will follow one too.
    """
    if raw == "failing":
        return True
    return attempts is not None and attempts >= 2


def matrix_row(status: Step1Status, step2_failed: bool) -> Step1Status:
    """Return the Step 1 status whose matrix row applies: a Step 2 CK failure reads like a
    Step 1 failure (docs/rules.md, Modifiers)."""
    if status == "clean" and step2_failed:
        return "failure"
    return status
