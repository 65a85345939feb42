"""The sentences that say why: one Reason per rule that fired, in words a student understands.

Each builder is cached on its few plain arguments: 100,000 students share a few thousand
distinct sentences, so a row mostly reuses a Reason already built.
"""

from __future__ import annotations

import datetime as _dt
from functools import cache, lru_cache

from residency_rules.records import Band, ClerkshipStrength, Reason, Step1Status, Trend

_CACHE = 1 << 16


def when(day: _dt.date) -> str:
    """Write a date the way a student reads it on a phone: 23 Sep 2026."""
    return f"{day.day} {day:%b %Y}"


def plural(n: int, word: str) -> str:
    """Write "1 attempt" / "2 attempts"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def number_word(n: int) -> str:
    """Write a small count as a word ("one", "two"); 10 and above as digits."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def counted(n: int, word: str) -> str:
    """Write a count the way a person says it: "one failed attempt", "two failed attempts"."""
    number = number_word(n)
    return f"{number} {word}" if n == 1 else f"{number} {word}s"


def times(n: int) -> str:
    """Write how often: "once", "twice", "three times"."""
    if n == 1:
        return "once"
    if n == 2:
        return "twice"
    return f"{number_word(n)} times"


_LETTERS_PIECE = "strong letters from big names in the field"


def visible(missing: tuple[str, ...]) -> tuple[str, ...]:
    """Drop the letters piece from a list a student reads: the letters-of-recommendation
    rating is the office's (students usually waive access to their letters)."""
    return tuple(m for m in missing if m != _LETTERS_PIECE)


def effect(level: int) -> str:
    """Say what a cap does to the outlook, in words (not the label: one voice)."""
    return "puts you at risk" if level <= 1 else "holds your outlook back"


@cache
def step1(status: Step1Status, marginal: bool, failed: int, low: bool = False,
          specialty: str = "", level: int = 3, numeric: bool = False) -> Reason:
    """Say where Step 1 leaves the student: programs check it first.

    `low` (levels 1-2): no reassurance, and a failure says what it does to the outlook.
    """
    if status == "clean":
        if marginal and numeric:  # a scored Step 1 (before 2022): programs see the number
            text = (
                "You passed Step 1 on the first try with a low score, so programs will lean on "
                "your Step 2 CK to judge you."
            )
        elif marginal:
            text = (
                "You passed Step 1 on the first try. Step 1 is pass/fail, so programs will "
                "lean on your Step 2 CK to judge you."
            )
        elif low:
            text = "You passed Step 1 on the first try."
        else:
            text = "You passed Step 1 on the first try, which is the first thing programs check."
        return Reason("step1.clean", text)
    if status == "failure":
        if low and specialty:
            text = (
                f"You passed Step 1 after failing it {times(failed)}. Programs see every "
                "attempt: a strong Step 2 CK softens the failure but does not erase it, "
                f"and in {specialty} that {effect(level)}."
            )
        else:
            text = (
                f"You passed Step 1 after failing it {times(failed)}. Programs will see it "
                "and ask what changed."
            )
        return Reason("step1.failure", text)
    if status == "not passed":
        return Reason(
            "step1.not_passed",
            f"You have not passed Step 1 yet: you have failed it {times(max(failed, 1))}, and "
            "every attempt stays on your record. Programs need a Step 1 pass before they look "
            "at anything else.",
        )
    return Reason(
        "step1.not_taken",
        "You have not taken Step 1 yet. Programs need a Step 1 pass before they look at "
        "anything else.",
    )


@lru_cache(maxsize=_CACHE)
def score(
    specialty: str, band: Band, value: int | None, solid: int, excellent: int, passing: int
) -> Reason:
    """Say how the Step 2 CK score compares with what is solid for the specialty."""
    if band == "pending" or value is None:
        text = (
            f"Your Step 2 CK score is not in yet. For {specialty}, {solid} is a solid score "
            f"and {excellent} an excellent one."
        )
    elif band == "failing":
        text = (
            f"Your Step 2 CK score of {value} is under the passing score of {passing}, so it "
            "counts as not passed."
        )
    elif band == "below":
        text = (
            f"Your Step 2 CK score of {value} is well under {solid}, the solid mark for "
            f"{specialty}."
        )
    elif band == "borderline":
        text = (
            f"Your Step 2 CK score of {value} is just under {solid}, the solid mark for "
            f"{specialty}."
        )
    elif band == "solid":
        text = f"Your Step 2 CK score of {value} is solid for {specialty} ({solid} or more)."
    else:
        text = (
            f"Your Step 2 CK score of {value} is excellent for {specialty} "
            f"({excellent} or more)."
        )
    return Reason(f"step2.{band}", text)


@cache
def clerkships(
    strength: ClerkshipStrength,
    failed_one: bool,
    moved_to: Band | None,
    grades_to_come: bool = True,
    levers_open: bool = True,
) -> Reason:
    """Say what the clerkship grades add, how they moved the reading of the score, and (weak,
    while grades and letters can still count this cycle) what to do about them."""
    if strength == "strong":
        text = "Your clerkship grades are strong: at least half are Honors or High Pass."
        if moved_to is not None:
            text += (
                " Strong clinical grades can carry a slightly lower Step 2 CK."
            )
        return Reason("clerkships.strong", text)
    text = f"Your clerkship grades are a weak spot ({_weak_why(failed_one, grades_to_come)})"
    if moved_to is not None:
        text += ": weak clinical grades can sink even a great score"
    if not levers_open:
        return Reason("clerkships.weak", f"{text}.")
    return Reason("clerkships.weak", f"{text}. {clerkships_action(grades_to_come)}")


def _weak_why(failed_one: bool, grades_to_come: bool) -> str:
    if failed_one:
        return "a failed clerkship"
    return "no Honors or High Pass so far" if grades_to_come else "all Pass, no Honors or High Pass"


@cache
def clerkship_cause(strength: ClerkshipStrength, failed_one: bool, grades_to_come: bool) -> str:
    """The grades as the cause that moved the outlook, with what makes them strong or weak."""
    if strength == "strong":
        return "your clinical grades (at least half Honors or High Pass) lift it"
    if failed_one:
        return "a failed clerkship lowers it"
    return f"your clinical grades ({_weak_why(False, grades_to_come)}) lower it"


@cache
def clerkships_action(grades_to_come: bool) -> str:
    """What to do about weak grades while they can still count, said after the sentence that
    names them (the outcome's cause)."""
    action = (
        "aim for Honors in the clerkships still to come and ask for feedback midway"
        if grades_to_come
        else "ask the attendings of your sub-internship for feedback midway"
    )
    return f"To answer it, {action}."


@lru_cache(maxsize=256)
def research(count: int) -> Reason:
    """Name research items as a strength, counted (only when the roster gives a count)."""
    verb = "adds" if count == 1 else "add"
    return Reason(
        "research.count",
        f"Your {counted(count, 'research item')} {verb} to your application.",
    )


@lru_cache(maxsize=_CACHE)
def cap_score(specialty: str, score: int, solid: int, level: int) -> Reason:
    """Say that the score under the solid mark is what caps the outlook (levels 1-2)."""
    gap = plural(solid - score, "point")
    return Reason(
        "cap.score",
        f"Your {score} is {gap} under {solid}, the solid mark for {specialty}: that is what "
        f"{effect(level)}.",
    )


@cache
def step1_repeated(failed: int, specialty: str = "", level: int = 3) -> Reason:
    """Say, in one sentence with the failure, what two or more Step 1 failures do to the score
    (one reason, not two: the student reads the failure and its weight together)."""
    text = (
        f"You passed Step 1 after failing it {times(failed)}. Programs see every attempt and "
        "read even a good Step 2 CK more cautiously after more than one: we count it one step "
        "lower"
    )
    text += f", and in {specialty} that {effect(level)}." if specialty else "."
    return Reason("step1.failure", text)


@cache
def repeated_failures(failed: int) -> Reason:
    """Say why two or more Step 1 failures weigh on the score."""
    return Reason(
        "step1.repeated",
        f"Failing Step 1 {times(failed)} makes programs read even a good Step 2 CK more "
        "cautiously: we count it one step lower.",
    )


@lru_cache(maxsize=_CACHE)
def changed(alone: str, causes: tuple[str, ...], label: str) -> Reason:
    """Say what the score alone would give and what changed it, so the letter keeps one voice."""
    return Reason(
        "matrix.changed",
        f'Your Step 2 CK alone would read "{alone}", but {join(causes)}: your outlook is '
        f'"{label}".',
    )


@cache
def step2_failed_before(band: Band, specialty: str = "", level: int = 3) -> Reason:
    """Say that a failed Step 2 CK attempt stays visible to programs, even after a pass; at
    levels 1-2, what it does to the outlook."""
    if band == "failing":
        text = (
            "Programs see every Step 2 CK attempt: even after a passing retake, they will read "
            "this failure like a Step 1 failure."
        )
    elif band == "pending":
        text = (
            "You failed Step 2 CK on an earlier attempt. Programs see every attempt and read "
            "that failure like a Step 1 failure, even after a pass."
        )
    elif specialty:  # given only where the failure is what caps an at-risk outlook
        text = (
            "You failed Step 2 CK on an earlier attempt. Programs see every attempt and read "
            f"that failure like a Step 1 failure, and in {specialty} it {effect(level)}."
        )
    else:
        text = (
            "You passed Step 2 CK after failing it on an earlier attempt. Programs see every "
            "attempt, so the earlier failure stays visible to them and counts like a Step 1 "
            "failure."
        )
    return Reason("step2.failed_before", text)


_FAILING = ("Most programs will not offer you a position until you pass Step 2 CK, so for now "
            "you are at risk")


@lru_cache(maxsize=_CACHE)
def outside(kind: str, specialty: str, solid: int, excellent: int) -> Reason:
    """Say why the student falls outside the matrix, and what unlocks it."""
    if kind == "step1_not_passed":
        text = "Your first step is to pass Step 1; your Step 2 CK outlook counts once that is done."
    elif kind == "step1_not_taken":
        text = "Take Step 1 first; your Step 2 CK outlook counts once Step 1 is passed."
    elif kind == "failing":
        text = f"{_FAILING}. A passing retake opens the door again."
    else:
        text = (
            f"We cannot place you until your Step 2 CK score is in. For {specialty}, aim for "
            f"{solid}-{excellent}."
        )
    return Reason(f"outlook.{kind}", text)


FAILING_LATE = Reason(
    "outlook.failing", f"{_FAILING}; a passing retake is what you need before residency starts."
)


def pieces_text(specialty: str, missing: tuple[str, ...]) -> str:
    """Name the missing pieces a student may read; the whole package when only the office's
    letters rating is missing."""
    shown = visible(missing)
    if shown:
        return join(shown)
    return "the whole package (your advisor will go through yours with you)"


@lru_cache(maxsize=_CACHE)
def package(specialty: str, missing: tuple[str, ...], capped: bool) -> Reason:
    """Say what a hyper-competitive specialty still wants beyond the score (the pieces
    missing, never the letters rating); its strengths are said by their own sentences."""
    pieces = pieces_text(specialty, missing)
    advisor = (
        " Your advisor will go through the rest with you."
        if visible(missing) and len(visible(missing)) < len(missing) else ""
    )
    if capped:
        text = (
            f"For {specialty}, a strong Step 2 CK is necessary but not enough: programs also "
            f"want {pieces}.{advisor}"
        )
    else:
        text = f"For {specialty}, programs also want {pieces}.{advisor}"
    return Reason("hyper.package", text)


@lru_cache(maxsize=_CACHE)
def hyper_marginal(specialty: str) -> Reason:
    """Say that a close Step 1 pass limits even a great Step 2 at the top programs."""
    return Reason(
        "hyper.marginal",
        f"In {specialty}, even a great Step 2 CK may not carry a close Step 1 pass at the top "
        "programs; smaller places are likelier.",
    )


@cache
def impact(value: int, why: str) -> Reason:
    """Give the article's rule of thumb for how much Step 2 CK can help here."""
    return Reason(
        "impact",
        f"Step 2 CK weighs about {value} out of 100 here ({why}; a rule of thumb, not science).",
    )


@cache
def trend(direction: Trend, low: bool = False, after_failure: bool = False,
          listed: bool = False, ranked: bool = False) -> Reason:
    """Say how programs will read the change from Step 1 to Step 2 CK (no reassurance at
    levels 1-2; after a Step 1 failure, at any level, the story is what changed, for as long
    as programs still interview and rank: a bare "not a comeback" beside "a strong Step 2 CK
    softens the failure" read as a contradiction; once the list is sent, `listed`, nothing
    about choosing it; once the rank lists are in, `ranked`, nothing left to weigh)."""
    if direction == "upward" and after_failure:
        return Reason(
            "trend.upward",
            "Your Step 2 CK gives programs a strong number to set beside your Step 1 failure.",
        )
    if direction == "upward":
        return Reason(
            "trend.upward",
            "Your Step 2 CK is clearly better than your Step 1: programs notice an upward "
            "trend like that.",
        )
    if after_failure and ranked:
        return Reason(
            "trend.stable",
            "Programs read your Step 2 CK after a Step 1 failure as steady rather than a "
            "comeback; the outlook above already takes that into account.",
        )
    if after_failure:  # at any level: what to say about the failure, never a reassurance
        return Reason(
            "trend.stable",
            "Programs will read your Step 2 CK after a Step 1 failure as steady rather than "
            "a comeback: what you changed, said briefly, is what they will weigh.",
        )
    if low:
        return Reason(
            "trend.stable",
            "Programs will read your Step 2 CK as steady, not as a comeback from Step 1.",
        )
    if listed:
        return Reason(
            "trend.stable",
            "Programs will read your Step 2 CK as steady rather than a comeback from Step 1; "
            "the outlook above already takes that into account.",
        )
    return Reason(
        "trend.stable",
        "Programs will read your Step 2 CK as steady rather than a comeback from Step 1: "
        "fine with a realistic program list.",
    )


@lru_cache(maxsize=_CACHE)
def timing(step2_date: _dt.date | None, review_start: _dt.date, today: _dt.date) -> Reason:
    """Say that the score will not be there when programs read the application."""
    if step2_date is None:
        text = (
            "You have no Step 2 CK date on file, and a score would no longer post before "
            f"{when(review_start)}, when programs start reading applications."
        )
    else:
        verb = "you took it" if step2_date <= today else "it is booked"
        text = (
            f"Your Step 2 CK score will not be out by {when(review_start)}, when programs start "
            f"reading applications ({verb} on {when(step2_date)})."
        )
    return Reason("timing.late", text)


@lru_cache(maxsize=_CACHE)
def conditional(names: tuple[str, ...]) -> Reason:
    """Say that a Conditional Pass was counted as a Pass."""
    if len(names) == 1:
        text = f"Your {names[0]} grade was a Conditional Pass; we counted it as a Pass."
    else:
        text = f"Your {join(names)} grades were Conditional Passes; we counted them as Passes."
    return Reason("clerkships.conditional", text)


def join(items: tuple[str, ...]) -> str:
    """Join names the way people write them: "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
