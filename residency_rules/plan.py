"""The game plan for the letter's date: the situation picks the items, their order and days.

Rules the plan keeps (docs/rules.md, The application calendar and The situation on the day):
- no instruction is dated before the letter's date: a date is written into an item only when
  it is today or later, and each item's day is counted from today;
- an item that cannot be done on the day, or no longer counts, is never offered: no "submit"
  before ERAS takes submissions, no "take the exam" once it was sat, no "two full passes" in
  the last weeks, no research, grades or new letters once programs review, no task of a cycle
  whose Match is over;
- a student who has not passed Step 1 gets a retake plan with the advisor, never a deadline to
  pass it, and no application advice for this cycle;
- each student hears their own match's dates and steps (NRMP, SF Match, AUA);
- causal order: what must come first comes first, and the days never go back;
- every item keeps its source: an article section, the application calendar or the match.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from functools import lru_cache

from residency_rules import advice
from residency_rules.calendar import Cycle, MatchSystem, Phase
from residency_rules.explain import join, plural, when
from residency_rules.records import AdviceItem, Band, MatchResult, ProgramMix, Tier
from residency_rules.rulebook import PlanRules
from residency_rules.situation import Day, Exam, Step1, retake_after_lists

CALENDAR = "The application calendar (ERAS and match dates)"


@dataclass(frozen=True, slots=True)
class Situation:
    """What the plan reads about one student on one day."""

    day: Day  # the phase of the student's match, the dates, the Match result
    cutoff: _dt.date  # the last exam date whose score posts before programs start reading
    specialty: str
    tier: Tier
    solid: int
    excellent: int
    step1: Step1
    step2_failed: bool  # a failed Step 2 CK attempt is on the record (programs see it)
    raw: Band
    exam: Exam
    late: bool  # the score will not be there when programs start reading
    upward: bool
    level: int
    mix: ProgramMix
    parallel: tuple[str, ...]
    missing: tuple[str, ...]
    weak_letters: bool  # the office's rating: it picks an instruction, never a sentence
    interviews: int | None
    interviews_target: int
    interviews_low: bool
    full_passes_weeks: int
    final_weeks: int
    max_attempts: int
    plan: PlanRules  # the plan's days ([plan] in the data file)
    best_level: int = 5  # the best outlook a score still to come could bring
    grades_to_come: bool = True  # a core clerkship still to be graded

    @property
    def today(self) -> _dt.date:
        """Return the letter's date."""
        return self.day.today

    @property
    def phase(self) -> Phase:
        """Return the phase of the student's own match."""
        return self.day.phase

    @property
    def cycle(self) -> Cycle:
        """Return the cycle the letter is written for."""
        return self.day.cycle

    @property
    def low(self) -> bool:
        """Say whether the outlook asks for a parallel plan ([mix] of the level says so)."""
        return self.mix.parallel_plan


def build(s: Situation) -> tuple[tuple[AdviceItem, ...], tuple[int, ...]]:
    """Return the plan's items in causal order and the day each is due (from today)."""
    items: list[AdviceItem] = []
    deadlines: dict[str, _dt.date] = {}
    floors: dict[str, _dt.date] = {}
    if not s.step1.passed:
        items.extend(_step1_items(s))
    elif s.phase == "after match":
        items.extend(_after_match(s, deadlines))
    else:
        # In SOAP (or in its days, when the student may be in it) the SOAP item is the meeting.
        in_soap = s.phase == "match week" and (
            s.day.result == "did not match" or (s.day.match.soap and s.today >= s.cycle.soap_from)
        )
        if s.mix.meet_advisor and not in_soap:  # at risk: the plan is gone through together
            items.append(advice.ADVISOR_ITEM)
        items.extend(_exam_items(s, deadlines))
        items.extend(_phase_items(s, deadlines, floors))
    days = _days(
        tuple(i.key for i in items),
        tuple((deadlines[i.key] - s.today).days if i.key in deadlines else s.plan.weeks_days
              for i in items),
        tuple((floors[i.key] - s.today).days if i.key in floors else 0 for i in items),
        s.plan,
    )
    return tuple(items), days


@lru_cache(maxsize=4096)
def _days(
    keys: tuple[str, ...], caps: tuple[int, ...], floors: tuple[int, ...], rules: PlanRules
) -> tuple[int, ...]:
    """Give each item its day: the kind's base day (or its floor, the first day it can be
    done), never before the item above it, never after its own deadline (and so never after a
    later item's deadline either)."""
    days: list[int] = []
    previous = 0
    for key, cap, floor in zip(keys, caps, floors, strict=True):
        if key in rules.habits:
            days.append(0)
            continue
        day = max(rules.due_day(key), previous, floor)
        days.append(min(day, rules.weeks_days, max(cap, 0)))
        previous = days[-1]
    later = rules.weeks_days
    for i in range(len(days) - 1, -1, -1):  # a deadline below pulls the items above it in
        if keys[i] not in rules.habits:
            days[i] = later = max(min(days[i], later), floors[i])
    return tuple(days)


# --- Step 1 not passed ------------------------------------------------------------------------


def _step1_items(s: Situation) -> list[AdviceItem]:
    """A retake (or a first sitting) planned with the advisor; no application this cycle."""
    items: list[AdviceItem] = []
    if s.step1.status == "not passed":
        items.append(advice.step1_retake(s.step1.failures, s.step1.attempts_left,
                                         s.max_attempts))
    else:
        items.append(advice.STEP1_TAKE)
    if s.exam.state in ("sat", "overdue"):
        items.append(_score_to_send(s))
    items.append(_next_cycle(s.step1.status == "not passed",
                             s.phase in ("preparing", "applying")))
    return items


@lru_cache(maxsize=8)
def _next_cycle(failed: bool, this_cycle_open: bool) -> AdviceItem:
    """A student without a Step 1 pass applies in a later cycle, not this one."""
    first = "Do not apply this cycle. " if this_cycle_open else ""
    return AdviceItem(
        "next_cycle",
        f"{first}Once Step 1 is passed, set the timeline for Step 2 CK and your application "
        "with your advisor.",
        advice.STEP1_FAILED if failed else advice.STEP1_SCREEN,
    )


# --- Step 2 CK ----------------------------------------------------------------------------------


def _exam_items(s: Situation, deadlines: dict[str, _dt.date]) -> list[AdviceItem]:
    """Step 2 CK still to pass: the score to send, or the target, the study plan and a date."""
    state = s.exam.state
    if state == "in":
        return []
    if state in ("sat", "overdue"):
        return [_send_score(s.exam, s.today)]
    retake = state == "failing"
    weeks = s.exam.weeks_left if state == "scheduled" else None
    near = weeks is not None and weeks < s.final_weeks
    items = []
    # In the last weeks the target is the score bands' to show, not a task; and where no
    # score would lift the outlook (a hyper tier after a failure), there is none to aim for.
    if retake_after_lists(s.raw, s.phase):
        # The lists close before a retake's score posts: this cycle's outlook cannot move,
        # and what counts is a pass before residency starts.
        items.append(advice.SAFE_PASS)
    elif not near and s.best_level > 1:
        kind = "retake" if retake else "pending"
        items.append(advice.target(s.specialty, s.solid, s.excellent, kind, 0))
    items.append(_study(s, weeks))
    if s.cutoff >= s.today and s.phase in ("preparing", "applying"):
        deadlines["schedule"] = s.cutoff
    # A retake's date is still to be set: it is late once the cutoff has passed.
    late = s.late if not retake else s.today > s.cutoff
    exam = s.exam.day if state == "scheduled" else None
    items.append(_schedule(s.phase, late, exam, s.cutoff, s.today, s.cycle, s.day.match,
                           retake))
    return items


def _study(s: Situation, weeks: int | None) -> AdviceItem:
    """The question-bank plan by the weeks left: two full passes only with time for them."""
    if weeks is None or weeks >= s.full_passes_weeks:
        return advice.QBANK
    if s.exam.day is not None and (s.exam.day - s.today).days <= s.plan.rest_days:
        return advice.QBANK_REST
    if weeks < s.final_weeks:
        return advice.QBANK_FINAL
    return advice.QBANK_FINISH


def _should_have_posted(exam: Exam, today: _dt.date) -> bool:
    return exam.state == "overdue" or exam.posts_by is None or exam.posts_by < today


def _score_to_send(s: Situation) -> AdviceItem:
    """The sat exam's score to send; after the Match, one long overdue is asked for now."""
    if s.phase == "after match" and _should_have_posted(s.exam, s.today):
        return SCORE_AFTER
    return _send_score(s.exam, s.today)


@lru_cache(maxsize=4096)
def _send_score(exam: Exam, today: _dt.date) -> AdviceItem:
    """The exam was sat: say when the score should post (never a date before today), and ask
    for it; never "take the exam"."""
    posts_by = exam.posts_by
    if posts_by is None or _should_have_posted(exam, today):
        # The callout says it should have posted: the item is what to do.
        text = "Send the office your Step 2 CK score: we will rewrite your plan with it."
    elif exam.posts_from is not None and exam.posts_from > today:
        text = (
            f"Your Step 2 CK score should post between {when(exam.posts_from)} and "
            f"{when(posts_by)} (about 3-4 weeks after the exam): send it to the office "
            "when it does, and we will rewrite your plan with it."
        )
    else:
        text = (
            f"Your Step 2 CK score should post any day now, by {when(posts_by)}: send it "
            "to the office when it does, and we will rewrite your plan with it."
        )
    return AdviceItem("send", text, advice.USMLE)


@lru_cache(maxsize=4096)
def _schedule(
    phase: Phase,
    late: bool,
    exam: _dt.date | None,
    cutoff: _dt.date,
    today: _dt.date,
    cycle: Cycle,
    match: MatchSystem,
    retake: bool,
) -> AdviceItem:
    """Say when to sit the exam, in the words of the phase; no date before today."""
    what = "your retake" if retake else "your exam"
    reading = f"programs start reading applications on {when(cycle.review_start)}"
    keep = exam is not None and exam >= today
    if retake and phase in ("preparing", "applying", "interviewing"):
        # The retake's date is the advisor's and the student's to set (the USMLE's rules on
        # retakes, readiness): no date is pushed on it.
        soon = (f" (programs start reading on {when(cycle.review_start)})"
                if cycle.review_start >= today else "")
        text = (
            "Set your retake date with your advisor: book it when your practice forms show "
            f"a safe pass, as early as that allows{soon}."
        )
    elif phase == "preparing" or phase == "applying":
        if not late and exam is not None:
            text = f"Keep your exam on {when(exam)}: the score should post before {reading}."
            return AdviceItem("keep", text, advice.TIMING)
        elif not late:
            text = (
                f"Book {what} for {when(cutoff)} or earlier, so the score posts before "
                f"{reading}."
            )
        elif exam is not None and cutoff >= today:
            text = (
                f"Move your exam to {when(cutoff)} or earlier if you can; if not, still apply "
                "on time."
            )
        elif exam is not None:
            text = (
                f"Keep your exam on {when(exam)} and apply on time ({reading}): your score "
                "will follow your application."
            )
        else:
            text = (
                f"Book {what} as soon as you are ready and apply on time ({reading}): your "
                "score will follow your application."
            )
    elif phase == "interviewing":
        lists = f"{match.list_name}s close on {when(match.rank_deadline)}"
        if keep and exam is not None:
            text = (
                f"Keep your exam on {when(exam)}: programs will want the score before they "
                f"make their lists ({lists})."
            )
            return AdviceItem("keep", text, advice.TIMING)
        else:
            text = (
                f"Book {what} as soon as you are ready: programs will want a passing score "
                f"before they make their lists ({lists})."
            )
    elif keep and exam is not None:
        text = (
            f"Keep your exam on {when(exam)}: you need a passing Step 2 CK score before you "
            "can start residency."
        )
        return AdviceItem("keep", text, advice.TIMING)
    else:
        text = (
            f"Plan {what} with your advisor: you need a passing Step 2 CK score before you "
            "can start residency."
        )
    return AdviceItem("schedule", text, advice.TIMING)


# --- the phases ---------------------------------------------------------------------------------


def _phase_items(
    s: Situation, deadlines: dict[str, _dt.date], floors: dict[str, _dt.date]
) -> list[AdviceItem]:
    """What the phase of the student's match asks of a student who has passed Step 1."""
    items: list[AdviceItem] = []
    step1_failure = s.step1.status == "failure"
    # The failure a student writes and answers for; a failing score on file is the retake's.
    step2_failure = s.step2_failed and s.raw != "failing"
    if s.phase == "preparing" or s.phase == "applying":
        ready = s.phase == "preparing" and s.day.ready
        if ready:
            items.append(_eras_ready(s.cycle.season, s.day.match.application))
            deadlines["ready"] = s.cycle.season - _dt.timedelta(days=1)
        # After a failure (either exam) no package lifts the level.
        package = s.tier == "hyper" and s.step1.status == "clean" and not s.step2_failed
        if s.upward:  # whom to ask: the ready item only says when
            items.append(advice.LETTERS_ITEM)
        elif s.weak_letters and not package:  # the package names the letter writers
            items.append(advice.ONE_MORE_LETTER)
        if package:
            # Grades already given cannot be worked on: the item names what still can be.
            items.append(advice.package(s.specialty, tuple(
                p for p in s.missing if s.grades_to_come or p != advice.GRADES_PIECE)))
        items.extend(advice.failure_statement(
            step1_failure, step2_failure, s.exam.state == "in" and s.raw != "failing"))
        items.append(advice.mix(s.mix) if s.phase == "applying" else _start_list(s.mix))
        if s.low:
            own = s.day.match.application
            items.append(advice.parallel(s.parallel, s.tier == "less",
                                         "ERAS" if own != "ERAS" and s.parallel else ""))
        if s.phase == "applying":
            opens = s.cycle.submissions
            items.append(_apply(opens, s.cycle.review_start, s.exam.state != "in"
                                and s.exam.state != "failing",
                                (opens - s.today).days <= s.plan.weeks_days, opens <= s.today,
                                s.day.match.application))
            deadlines["apply"] = s.cycle.review_start - _dt.timedelta(days=1)
            if opens > s.today:
                floors["apply"] = min(opens, s.today + _dt.timedelta(days=s.plan.weeks_days))
        return items
    if s.phase == "interviewing":
        items.append(INTERVIEWS)
        if step1_failure or step2_failure:
            items.append(_explain_failure(step1_failure, step2_failure))
        if (s.interviews_low or (s.interviews is None and s.low)) and s.raw != "failing":
            # The parallel specialty has its own item below at levels 1-2: said once.
            items.append(_add_programs(s.interviews, s.interviews_target,
                                       bool(s.parallel) and not s.low,
                                       s.today >= s.cycle.mid_season))
        if s.low and s.parallel:
            items.append(_parallel_now(s.parallel))
        return items
    match = s.day.match
    to_come = s.exam.state in ("scheduled", "unscheduled", "failing", "sat", "overdue")
    if s.phase == "ranking":
        items.append(_rank(match, bool(s.parallel) and s.low))
        deadlines["rank"] = match.rank_deadline
        if s.low:
            items.append(_soap(s.cycle.soap_from, s.today, before=True) if match.soap
                         else _backup(match))
        return items
    # match week (NRMP) or waiting for the results (SF Match, AUA); each item is due by the
    # week's own days, never after them.
    if match.soap and s.day.result == "did not match":  # SOAP is running: today
        items.append(SOAP_NOW)
        deadlines["soap"] = s.today
    elif match.soap and s.today >= s.cycle.soap_from and s.today <= match.match_day:
        # SOAP's days and no result on the roster: the student knows it since Monday.
        items.append(_soap_if(s.today if s.today == s.cycle.soap_from else None,
                               match.match_day))
        deadlines["soap"] = s.today
    elif match.soap and (s.low or to_come):
        items.append(_soap(s.cycle.soap_from, s.today, before=False))
        deadlines["soap"] = max(s.cycle.soap_from, s.today)
    elif match.soap:
        items.append(_match_day(match.match_day))
        deadlines["match_day"] = match.match_day
    else:
        if s.low:
            items.append(_backup(match))
            deadlines["backup"] = match.match_day
        items.append(_results(match))
        deadlines["results"] = match.match_day
    return items


SOAP_NOW = AdviceItem(
    "soap",
    "SOAP is running this week: work with your advisor today on your SOAP applications, and "
    "keep your phone and email at hand for offers.",
    "NRMP Main Match: Match Week and SOAP",
)


@lru_cache(maxsize=64)
def _eras_ready(opens: _dt.date, service: str) -> AdviceItem:
    """The last weeks of preparing: the day the application service opens, what to have ready."""
    return AdviceItem(
        "ready",
        f"{service} opens on {when(opens)}: have your letters asked for and your personal "
        "statement drafted by then.",
        CALENDAR,
    )


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
        f"Prepare your answer for when an interviewer asks about your {which}: one or two "
        f"sentences, what happened and what you changed. Then move on to {then}.",
        advice.STATEMENT,
    )


@lru_cache(maxsize=64)
def _start_list(share: ProgramMix) -> AdviceItem:
    return AdviceItem(
        "mix",
        f"Start your program list: about {share.reach}% reach, {share.solid}% solid, "
        f"{share.safety}% safety.",
        advice.GAME_PLAN,
    )


@lru_cache(maxsize=256)
def _apply(
    opens: _dt.date, review_start: _dt.date, pending: bool, in_plan: bool, open_now: bool,
    service: str,
) -> AdviceItem:
    """Submit once the service (ERAS, SF Match CAS) takes submissions; before that, finish the
    application for that day."""
    wait = " Do not wait for your score." if pending else ""
    if open_now:
        text = (
            f"Submit your {service} application with that list before programs start reading on "
            f"{when(review_start)}.{wait}"
        )
    elif in_plan:
        text = (
            f"Submit your {service} application with that list from {when(opens)} (submissions "
            f"open); programs start reading on {when(review_start)}.{wait}"
        )
    else:
        text = (
            f"Finish your {service} application with that list: {service} takes submissions "
            f"from "
            f"{when(opens)}; programs start reading on {when(review_start)}.{wait}"
        )
    return AdviceItem("apply", text, CALENDAR)


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
        f"If you have not yet, apply in your parallel specialty now: with your record, "
        f"{join(names)} {'is a realistic choice' if len(names) == 1 else 'are realistic choices'}.",
        advice.PARALLEL,
    )


@lru_cache(maxsize=64)
def _rank(match: MatchSystem, parallel: bool) -> AdviceItem:
    also = ", parallel programs included" if parallel else ""
    if match.soap:
        text = (
            "Certify your rank order list: every program you would accept, in your true order "
            f"of preference{also}. The deadline is {when(match.rank_deadline)}."
        )
    else:
        text = (
            f"Submit your {match.list_name} to the {match.name}: every program you would "
            f"accept, in your true order of preference{also}. The deadline is "
            f"{when(match.rank_deadline)}."
        )
    return AdviceItem("rank", text, match.name)


@lru_cache(maxsize=16)
def _soap_if(monday: _dt.date | None, match_day: _dt.date) -> AdviceItem:
    """In SOAP's days with no result on the roster: both branches, SOAP's first (it is today's).

    monday: the letter's day when it is Match Week's Monday (the NRMP tells applicants then)."""
    told = (f"The NRMP tells you on {when(monday)} whether you matched." if monday
            else "The NRMP has told you whether you matched.")
    return AdviceItem(
        "soap",
        f"{told} If you did not, SOAP is running this week: work with your advisor today on "
        "your SOAP applications, and keep your phone and email at hand for offers. If you did, "
        f"you learn where on Match Day, {when(match_day)}.",
        "NRMP Main Match: Match Week and SOAP",
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
    return AdviceItem("soap", text, "NRMP Main Match: Match Week and SOAP")


@lru_cache(maxsize=16)
def _backup(match: MatchSystem) -> AdviceItem:
    """Outside the NRMP there is no SOAP: the backup is planned with the advisor."""
    return AdviceItem(
        "backup",
        f"Plan with your advisor now what you will do if the {match.name} does not place you: "
        "the options are easier to weigh before the results.",
        advice.PARALLEL,
    )


@lru_cache(maxsize=16)
def _results(match: MatchSystem) -> AdviceItem:
    return AdviceItem(
        "results",
        f"Nothing more to submit: the {match.name} results come on {when(match.match_day)}. "
        "Your advisor is there if you want to talk before then.",
        match.name,
    )


@lru_cache(maxsize=64)
def _match_day(match_day: _dt.date) -> AdviceItem:
    return AdviceItem(
        "match_day",
        f"Nothing more to submit: Match Day is {when(match_day)}. Your advisor is there if you "
        "want to talk before then.",
        "NRMP Main Match",
    )


# --- after the Match ----------------------------------------------------------------------------

AFTER = "After the Match (the advising office)"


def _after_match(s: Situation, deadlines: dict[str, _dt.date]) -> list[AdviceItem]:
    """The Match result and its branch; nothing of the ended cycle's application."""
    result = s.day.result
    match = s.day.match
    items: list[AdviceItem] = []
    nrmp_open = not match.soap and s.today <= s.cycle.rank_deadline
    if result is None:
        items.extend(_unknown_result(nrmp_open))
        if nrmp_open:  # the other matches close at the NRMP's deadline
            deadlines["if_unmatched"] = s.cycle.rank_deadline - _dt.timedelta(days=1)
    elif result == "did not match":
        items.append(_unmatched(nrmp_open))
        if nrmp_open:
            deadlines["unmatched"] = s.cycle.rank_deadline - _dt.timedelta(days=1)
        items.append(_options())
    else:
        items.append(_matched(result if match.soap else "matched"))
        if not match.soap:
            # The intern year goes through the NRMP: after its deadline it is arranged or not.
            if s.today <= s.cycle.rank_deadline:
                items.append(INTERN_YEAR)
            else:
                items.append(INTERN_ARRANGED)
                deadlines["intern"] = s.today + _dt.timedelta(days=7)
    if s.exam.state in ("sat", "overdue"):
        items.append(_score_to_send(s))
    elif s.exam.to_come:
        retake = s.exam.state == "failing"
        if retake:
            # The most urgent thing after the Match, whatever the result: first, this week.
            items.insert(0, _exam_after(result, retake))
            deadlines["schedule"] = s.today + _dt.timedelta(days=7)
        else:
            items.append(_exam_after(result, retake))
    if result in ("matched", "matched in SOAP"):
        items.append(GRADUATE)
    return items


@lru_cache(maxsize=4)
def _matched(result: MatchResult) -> AdviceItem:
    return AdviceItem(
        "matched",
        "Return what your program sends you (the contract and the onboarding forms) by the "
        "dates it gives.",
        AFTER,
    )


INTERN_YEAR = AdviceItem(
    "intern",
    "If your program does not include the intern year, plan that year's application with your "
    "advisor.",
    AFTER,
)

INTERN_ARRANGED = AdviceItem(
    "intern",
    "If your program does not include the intern year, check with it that your intern year "
    "is arranged; if it is not, meet your advisor.",
    AFTER,
)

GRADUATE = AdviceItem(
    "graduate",
    "Keep your final-year requirements on track so that you graduate on time.",
    AFTER,
)

_OPTIONS = (
    "a broader program list or a related, less competitive specialty, and whether a research "
    "or preliminary year would strengthen your application"
)


@lru_cache(maxsize=4)
def _unmatched(other_matches_open: bool) -> AdviceItem:
    also = (
        " Other residency matches of this cycle have not closed yet: ask whether a related "
        "specialty or a preliminary year is still open to you."
        if other_matches_open else ""
    )
    return AdviceItem(
        "unmatched",
        "Meet your advisor within the week: go through what happened and choose your next "
        f"step together.{also}",
        AFTER,
    )


@lru_cache(maxsize=1)
def _options() -> AdviceItem:
    return AdviceItem(
        "options",
        f"For the next cycle, weigh with your advisor {_OPTIONS}. The next cycle's dates are "
        "not set yet: "
        "the office will write to you when they are.",
        AFTER,
    )


@lru_cache(maxsize=2)
def _unknown_result(other_matches_open: bool) -> tuple[AdviceItem, ...]:
    """Both branches; before the NRMP's deadline (SF Match, AUA) the unmatched branch is this
    cycle's other matches, not only the next cycle."""
    unmatched = (
        "If you did not match: meet your advisor within the week. Other residency matches of "
        "this cycle have not closed yet: ask whether a parallel application, a related "
        "specialty or a preliminary year is still open to you."
        if other_matches_open else
        "If you did not match: meet your advisor within the week; together you will weigh "
        f"{_OPTIONS} for the next cycle."
    )
    return (
        AdviceItem(
            "result",
            "Tell the office your Match result (reply to this letter), so that we can send "
            "you the plan that fits it.",
            AFTER,
        ),
        AdviceItem("if_unmatched", unmatched, AFTER),
        AdviceItem(
            "if_matched",
            "If you matched: congratulations. Return what your program sends you by the dates "
            "it gives.",
            AFTER,
        ),
    )


# After the Match, a score that should have posted long ago: no "as soon as you have it", no
# plan to rewrite with it (the plan is the Match's now).
SCORE_AFTER = AdviceItem(
    "score_now",
    "We have no Step 2 CK score on file for you: send it to the office, so that your "
    "record is complete.",
    advice.USMLE,
)


@lru_cache(maxsize=8)
def _exam_after(result: MatchResult | None, retake: bool = False) -> AdviceItem:
    """Step 2 CK still to pass after the Match; a retake is booked now, first thing."""
    matched = result in ("matched", "matched in SOAP")
    if retake and matched:
        why = "the passing score must post before you start residency"
    else:
        why = "you need a passing score before you start residency" + (
            "" if matched else ", and in hand it makes your next application stronger")
    if retake:
        text = f"Book the earliest Step 2 CK retake you can and meet your advisor: {why}."
    else:
        text = f"Plan your Step 2 CK with your advisor now: {why}."
    return AdviceItem("schedule", text, advice.TIMING)
