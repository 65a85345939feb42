"""The student's situation on the letter's day: the phase of their match, the exam, Step 1.

Every item of a letter is chosen from this (docs/rules.md, The situation on the day): an item
that cannot be done on that day, or no longer counts, is never offered. Pure: `today` is a
parameter.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from residency_rules.calendar import Cycle, MatchSystem, Phase, phase
from residency_rules.records import Band, ExamState, MatchResult, Step1Status
from residency_rules.rulebook import Rules


@dataclass(frozen=True, slots=True)
class Exam:
    """Step 2 CK on the day: its state, its date, the weeks left, when a score should post."""

    state: ExamState
    day: _dt.date | None = None
    weeks_left: int | None = None  # scheduled: whole weeks from today to the exam
    posts_from: _dt.date | None = None  # sat: the score should post from this day ...
    posts_by: _dt.date | None = None  # ... and by this one

    @property
    def to_come(self) -> bool:
        """Say whether a Step 2 CK sitting is still ahead (booked, to book, or a retake)."""
        return self.state in ("scheduled", "unscheduled", "failing")


def retake_after_lists(raw: str, season: str) -> bool:
    """Say whether a failed Step 2 CK's retake would post only after this cycle's lists close
    (ranking, Match Week): its score bands no longer count, only a pass before residency."""
    return raw == "failing" and season in ("ranking", "match week")


def exam(score: int | None, raw: Band, day: _dt.date | None, today: _dt.date,
         rules: Rules) -> Exam:
    """Read the exam's state: a score in, a failing one, booked, sat and awaited, or neither.

    A date today or later is booked; a date before today with no score was sat, and its score
    should post `score_posts_from_weeks` to `score_posts_by_weeks` after it (USMLE): past that,
    it is overdue. A failing score's old date says nothing about the retake.
    """
    if score is not None:
        return Exam("failing" if raw == "failing" else "in", day)
    if day is None:
        return Exam("unscheduled")
    if day >= today:
        return Exam("scheduled", day, weeks_left=(day - today).days // 7)
    posts_from = day + _dt.timedelta(weeks=rules.score_posts_from_weeks)
    posts_by = day + _dt.timedelta(weeks=rules.score_posts_by_weeks)
    state: ExamState = "overdue" if today > posts_by else "sat"
    return Exam(state, day, posts_from=posts_from, posts_by=posts_by)


@dataclass(frozen=True, slots=True)
class Step1:
    """Step 1 on the record: the status, the attempts, the failures counted."""

    status: Step1Status
    attempts: int
    failures: int  # failed attempts: for a pass, attempts - 1; for a fail, every attempt
    marginal: bool
    attempts_left: int | None  # not passed: attempts the USMLE still allows (None: passed)

    @property
    def passed(self) -> bool:
        """Say whether Step 1 is passed (first try or after failures)."""
        return self.status in ("clean", "failure")


def step1(status: Step1Status, marginal: bool, failed: int, attempts: int,
          rules: Rules) -> Step1:
    """Count Step 1's attempts and failures, and what the USMLE's limit leaves."""
    failures = failed if status != "not taken" else 0
    left = max(rules.max_attempts - attempts, 0) if status == "not passed" else None
    return Step1(status, attempts, failures, marginal, left)


@dataclass(frozen=True, slots=True)
class Day:
    """Where the student's own match stands on the letter's day."""

    today: _dt.date
    phase: Phase
    match: MatchSystem
    cycle: Cycle
    # The ERAS part of the calendar is this cycle's (not one whose Match Day is behind).
    ready: bool  # from 1 May: the plan names the day ERAS opens and what to have ready
    submitting: bool  # ERAS takes submissions today
    result: MatchResult | None  # the Match result, when the office has entered it

    @property
    def nrmp(self) -> bool:
        """Say whether the student's match is the NRMP Main Match (SOAP, rank order list)."""
        return self.match.key == "nrmp"


def day(today: _dt.date, cycle: Cycle, match_key: str, result: MatchResult | None) -> Day:
    """Place the letter's day in the student's own match.

    A Match result on the roster means the match happened: the letter is about it, whatever
    the dates (a student who matched is not asked to prepare again). A student who did not
    match gets the next cycle's preparing letter once the office has set its dates.
    """
    match = cycle.system(match_key)
    cycle = cycle.for_match(match_key)  # the student's own application service's dates
    found = phase(today, cycle, match)
    if result in ("matched", "matched in SOAP"):
        found = "after match"
    elif result == "did not match" and found in ("ranking", "match week") and not (
        match.soap and found == "match week"
    ):
        # The office knows before our dates say so; in the NRMP's Match Week the student who
        # did not match is in SOAP, and the letter says so.
        found = "after match"
    return Day(
        today=today,
        phase=found,
        match=match,
        cycle=cycle,
        ready=cycle.ready <= today < cycle.season,
        submitting=cycle.submissions <= today < cycle.review_start,
        result=result,
    )
