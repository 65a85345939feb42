"""The game plan for the letter's date: the phase picks the items, their order and their days.

Rules the plan keeps (docs/rules.md, The application calendar):
- no instruction is dated before the letter's date: a date is written into an item only when
  it is today or later, and each item's day is counted from today;
- an exam date already past with no score becomes "send the office your score";
- a student who has not passed Step 1 gets no application advice for this cycle;
- causal order: what must come first comes first (the program list before applying), and the
  days never go back; facts (a score already in) are statements in the why, not tasks;
- every item keeps its source: an article section, the application calendar or the NRMP.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from functools import lru_cache

from residency_rules import advice
from residency_rules.calendar import Cycle, Phase
from residency_rules.explain import join, plural, when
from residency_rules.records import AdviceItem, Band, ProgramMix, Step1Status, Tier

CALENDAR = "The application calendar (ERAS and NRMP dates)"
NRMP = "NRMP Main Match: rank order list and Match Week (SOAP)"
PLAN_WEEKS_DAYS = 28  # the plan covers the next four weeks

# The day (from the letter's date) each kind of item is due at the earliest; the plan keeps
# the causal order and never lets a day go back, so a later item may come later still.
_BASE_DAY: dict[str, int] = {
    "qbank": 0,
    "interviews": 0,
    "send": 2,
    "target": 2,
    "step1": 7,
    "schedule": 5,
    "letters": 14,
    "weak_letters": 14,
    "statement": 14,
    "explain": 7,
    "package": 21,
    "mix": 14,
    "parallel": 21,
    "add": 7,
    "apply": 28,
    "rank": 14,
    "soap": 7,
    "match_day": 14,
    "next_cycle": 21,
    "advisor": 7,
}
# Habits start today and run on: they take no part in the order of the deadlines.
_HABITS = frozenset(("qbank", "interviews"))


@dataclass(frozen=True, slots=True)
class Situation:
    """What the plan reads about one student on one day; every field plain and hashable."""

    today: _dt.date
    phase: Phase
    cycle: Cycle
    cycle_over: bool  # Match Day is behind: the next cycle's dates are not known
    cutoff: _dt.date  # the last exam date whose score posts before programs start reading
    specialty: str
    tier: Tier
    solid: int
    excellent: int
    step1: Step1Status
    step2_failed: bool  # a failed Step 2 CK attempt is on the record (programs see it)
    raw: Band
    score: int | None
    exam: _dt.date | None
    late: bool  # the score will not be there when programs start reading
    overdue: bool  # the exam date is past and no score is on file
    upward: bool
    level: int
    mix: ProgramMix
    parallel: tuple[str, ...]
    missing: tuple[str, ...]
    weak_letters: bool
    interviews: int | None
    interviews_target: int
    interviews_low: bool


def build(s: Situation) -> tuple[tuple[AdviceItem, ...], tuple[int, ...]]:
    """Return the plan's items in causal order and the day each is due (from today)."""
    items: list[AdviceItem] = []
    deadlines: dict[str, _dt.date] = {}
    passed_step1 = s.step1 == "clean" or s.step1 == "failure"
    if s.mix.meet_advisor:  # at risk: the plan is gone through together first
        items.append(advice.ADVISOR_ITEM)
    if not passed_step1:
        items.append(advice.STEP1_RETAKE if s.step1 == "not passed" else advice.STEP1_TAKE)
        if s.overdue:
            items.append(_send_score())
        elif s.score is None or s.raw == "failing":  # a passed Step 2 CK cannot be retaken
            items.append(advice.target(s.specialty, s.solid, s.excellent, "step1", 0))
        items.append(_next_cycle(s.step1))
    else:
        items.extend(_exam_items(s, deadlines))
        items.extend(_phase_items(s, deadlines))
    days = _days(tuple(i.key for i in items), tuple(
        (deadlines[i.key] - s.today).days if i.key in deadlines else PLAN_WEEKS_DAYS
        for i in items
    ))
    return tuple(items), days


@lru_cache(maxsize=4096)
def _days(keys: tuple[str, ...], caps: tuple[int, ...]) -> tuple[int, ...]:
    """Give each item its day: the kind's base day, never before the item above it, never
    after its own deadline (and so never after a later item's deadline either)."""
    days: list[int] = []
    previous = 0
    for key, cap in zip(keys, caps, strict=True):
        if key in _HABITS:
            days.append(0)
            continue
        day = max(_BASE_DAY.get(key, PLAN_WEEKS_DAYS), previous)
        days.append(min(day, PLAN_WEEKS_DAYS, max(cap, 0)))
        previous = days[-1]
    later = PLAN_WEEKS_DAYS
    for i in range(len(days) - 1, -1, -1):  # a deadline below pulls the items above it in
        if keys[i] not in _HABITS:
            days[i] = later = min(days[i], later)
    return tuple(days)


def _exam_items(s: Situation, deadlines: dict[str, _dt.date]) -> list[AdviceItem]:
    """Step 2 CK still to pass: the score to send, or the target, the question bank and a date."""
    if s.raw == "pending" and s.overdue:
        return [_send_score()]
    if s.raw != "pending" and s.raw != "failing":
        return []
    situation = "pending" if s.raw == "pending" else "retake"
    items = [advice.target(s.specialty, s.solid, s.excellent, situation, 0), advice.QBANK]
    exam = s.exam if s.raw == "pending" else None  # a retake: the old date says nothing
    if s.cutoff >= s.today and not s.cycle_over and s.phase in ("preparing", "applying"):
        deadlines["schedule"] = s.cutoff
    # A retake's date is still to be set: it is late once the cutoff has passed.
    late = s.late if s.raw == "pending" else s.today > s.cutoff
    items.append(_schedule(s.phase, s.cycle_over, late, exam, s.cutoff, s.today, s.cycle,
                           s.raw == "failing"))
    return items


def _phase_items(s: Situation, deadlines: dict[str, _dt.date]) -> list[AdviceItem]:
    """What the phase of the letter's date asks of a student who has passed Step 1."""
    items: list[AdviceItem] = []
    step1_failure = s.step1 == "failure"
    # The failure a student writes and answers for; a failing score on file is the retake's.
    step2_failure = s.step2_failed and s.raw != "failing"
    low = s.level <= 2 or s.mix.parallel_plan
    if s.phase == "preparing" or s.phase == "applying":
        if s.upward:
            items.append(advice.LETTERS_ITEM)
        # After a failure (either exam) no package lifts the level.
        package = s.tier == "hyper" and s.step1 == "clean" and not s.step2_failed
        if s.weak_letters and not package:  # the package names strong letters already
            items.append(WEAK_LETTERS)
        if package:
            items.append(advice.package(s.specialty, s.missing))
        items.extend(advice.failure_statement(step1_failure, step2_failure))
        items.append(advice.mix(s.mix) if s.phase == "applying" else _start_list(s.mix))
        if low:
            items.append(advice.parallel(s.parallel, s.tier == "less"))
        if s.phase == "applying":
            items.append(_apply(s.cycle.review_start, s.raw == "pending"))
            deadlines["apply"] = s.cycle.review_start - _dt.timedelta(days=1)
        return items
    if s.phase == "interviewing":
        items.append(INTERVIEWS)
        if step1_failure or step2_failure:
            items.append(_explain_failure(step1_failure, step2_failure))
        if s.weak_letters:  # a letter can still be added to the application
            items.append(WEAK_LETTERS)
        if s.interviews_low or (s.interviews is None and low):
            items.append(_add_programs(s.interviews, s.interviews_target, bool(s.parallel),
                                       s.today >= s.cycle.mid_season))
        if low and s.parallel:
            items.append(_parallel_now(s.parallel))
        return items
    if s.phase == "ranking":
        items.append(_rank(s.cycle.rank_deadline, bool(s.parallel) and low))
        deadlines["rank"] = s.cycle.rank_deadline
        if low:
            items.append(_soap(s.cycle.soap_from, s.today, before=True))
        return items
    # match week
    if low or s.raw == "pending" or s.raw == "failing":
        items.append(_soap(s.cycle.soap_from, s.today, before=False))
    else:
        items.append(_match_day(s.cycle.match_day))
    return items


INTERVIEWS = AdviceItem(
    "interviews",
    "Prepare for each interview: know why this specialty and this program, and have two "
    "patient stories from your clerkships ready.",
    CALENDAR,
)

@lru_cache(maxsize=4)
def _explain_failure(step1: bool, step2: bool) -> AdviceItem:
    """Ask the student to answer for the failure on record in one or two sentences."""
    which = (
        "Step 1 and Step 2 CK failures" if step1 and step2
        else "Step 1 failure" if step1 else "Step 2 CK failure"
    )
    then = (
        "your Step 2 CK and clerkships" if not step2
        else "your clerkships and what you did since"
    )
    return AdviceItem(
        "explain",
        f"When an interviewer asks about your {which}, answer in one or two sentences: what "
        f"happened and what you changed. Then move on to {then}.",
        advice.STATEMENT,
    )

WEAK_LETTERS = AdviceItem(
    "weak_letters",
    "Replace a weak letter of recommendation: ask an attending who saw your best work, and "
    "give them your CV and a few lines on what you did together.",
    advice.LETTERS,
)


@lru_cache(maxsize=64)
def _next_cycle(step1: Step1Status) -> AdviceItem:
    """A student without a Step 1 pass applies in a later cycle, not this one."""
    return AdviceItem(
        "next_cycle",
        "Do not apply this cycle. Once Step 1 is passed, set the timeline for Step 2 CK and "
        "the next application cycle with your advisor.",
        advice.STEP1_FAILED if step1 == "not passed" else advice.STEP1_SCREEN,
    )


@lru_cache(maxsize=1)
def _send_score() -> AdviceItem:
    return AdviceItem(
        "send",
        "Send the office your Step 2 CK score as soon as it posts: we will rewrite your plan "
        "with it.",
        advice.TIMING,
    )


@lru_cache(maxsize=4096)
def _schedule(
    phase: Phase,
    cycle_over: bool,
    late: bool,
    exam: _dt.date | None,
    cutoff: _dt.date,
    today: _dt.date,
    cycle: Cycle,
    retake: bool,
) -> AdviceItem:
    """Say when to sit the exam, in the words of the phase; no date before today."""
    what = "your retake" if retake else "your exam"
    reading = f"programs start reading applications on {when(cycle.review_start)}"
    if cycle_over:
        text = (
            f"Book {what} so the score posts at least four weeks before programs start reading "
            "applications in your cycle; the office will confirm that date."
        )
    elif phase == "preparing" or phase == "applying":
        if not late and exam is not None:
            text = f"Keep your exam on {when(exam)}: the score should post before {reading}."
        elif not late:
            text = (
                f"Book {what} for {when(cutoff)} or earlier, so the score posts before "
                f"{reading}."
            )
        elif exam is not None and cutoff >= today:
            text = (
                f"Move your exam to {when(cutoff)} or earlier if you can, so the score posts "
                f"before {reading}; if not, still apply on time."
            )
        elif exam is not None:
            text = (
                f"Keep your exam on {when(exam)} and apply on time: {reading}, and your score "
                "will follow your application."
            )
        else:
            text = (
                f"Book {what} as soon as you are ready and apply on time: {reading}, and your "
                "score will follow your application."
            )
    elif phase == "interviewing":
        deadline = when(cycle.rank_deadline)
        if exam is not None and exam >= today:
            text = (
                f"Keep your exam on {when(exam)}: programs will want the score before they "
                f"rank (rank lists close on {deadline})."
            )
        else:
            text = (
                f"Book {what} as soon as you are ready: programs will want a passing score "
                f"before they rank (rank lists close on {deadline})."
            )
    else:
        text = (
            f"Plan {what} with your advisor: you need a passing Step 2 CK score before you "
            "can start residency."
        )
    return AdviceItem("schedule", text, advice.TIMING)


@lru_cache(maxsize=64)
def _start_list(share: ProgramMix) -> AdviceItem:
    return AdviceItem(
        "mix",
        f"Start your program list: about {share.reach}% reach, {share.solid}% solid and "
        f"{share.safety}% safety programs.",
        advice.GAME_PLAN,
    )


@lru_cache(maxsize=64)
def _apply(review_start: _dt.date, pending: bool) -> AdviceItem:
    wait = " Do not wait for your score." if pending else ""
    return AdviceItem(
        "apply",
        f"Submit your application (ERAS) with that list before programs start reading on "
        f"{when(review_start)}.{wait}",
        CALENDAR,
    )


@lru_cache(maxsize=256)
def _add_programs(
    interviews: int | None, target: int, has_parallel: bool, mid_season: bool
) -> AdviceItem:
    also = ", and to your parallel specialty" if has_parallel else ""
    if interviews is not None:
        text = (
            f"With {plural(interviews, 'interview invitation')} so far "
            f"(we look for about {target} by now), apply to more programs now, mostly safety "
            f"programs{also}."
        )
    elif mid_season:
        text = (
            f"If you have fewer than {target} interview invitations, apply to more programs "
            f"now, mostly safety programs{also}, and tell your advisor how many you have."
        )
    else:
        text = (
            f"Tell your advisor how many interview invitations you have; with fewer than "
            f"{target} by mid-season, apply to more programs{also}."
        )
    return AdviceItem("add", text, advice.PARALLEL)


@lru_cache(maxsize=4096)
def _parallel_now(names: tuple[str, ...]) -> AdviceItem:
    return AdviceItem(
        "parallel",
        f"If you have not yet, apply to a parallel specialty now: your score is already solid "
        f"for {join(names)}.",
        advice.PARALLEL,
    )


@lru_cache(maxsize=64)
def _rank(deadline: _dt.date, parallel: bool) -> AdviceItem:
    also = ", parallel programs included" if parallel else ""
    return AdviceItem(
        "rank",
        f"Certify your rank order list by {when(deadline)}: every program you would accept, in "
        f"your true order of preference{also}.",
        NRMP,
    )


@lru_cache(maxsize=256)
def _soap(soap_from: _dt.date, today: _dt.date, before: bool) -> AdviceItem:
    week = f"Match Week (from {when(soap_from)})" if soap_from >= today else "Match Week"
    if before:
        text = (
            f"Plan {week} with your advisor now: if you do not match, SOAP offers the positions "
            "left open, and it moves fast."
        )
    else:
        text = (
            f"Be ready for SOAP in {week} with your advisor: keep the week free and your "
            "documents at hand."
        )
    return AdviceItem("soap", text, NRMP)


@lru_cache(maxsize=64)
def _match_day(match_day: _dt.date) -> AdviceItem:
    return AdviceItem(
        "match_day",
        f"Nothing more to submit: Match Day is {when(match_day)}. Your advisor is there if you "
        "want to talk before then.",
        NRMP,
    )
