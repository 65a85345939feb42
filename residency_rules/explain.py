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


@cache
def step1(status: Step1Status, marginal: bool, failed: int) -> Reason:
    """Say where Step 1 leaves the student: programs check it first."""
    if status == "clean":
        if marginal:
            text = (
                "You passed Step 1 on the first try. It was a close pass, so programs will "
                "lean on your Step 2 CK to judge you."
            )
        else:
            text = "You passed Step 1 on the first try, which is the first thing programs check."
        return Reason("step1.clean", text)
    if status == "failure":
        text = (
            f"You passed Step 1 after {plural(failed, 'failed attempt')}. Programs will see it "
            "and ask what went wrong and what changed."
        )
        return Reason("step1.failure", text)
    if status == "not passed":
        return Reason(
            "step1.not_passed",
            "You have not passed Step 1 yet. Programs need a Step 1 pass before they look at "
            "anything else.",
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
            f"Your Step 2 CK score of {value} is well under {solid}, a solid score for "
            f"{specialty}."
        )
    elif band == "borderline":
        text = (
            f"Your Step 2 CK score of {value} is just under {solid}, a solid score for "
            f"{specialty}."
        )
    elif band == "solid":
        text = (
            f"Your Step 2 CK score of {value} is solid for {specialty} ({solid} or more); "
            f"{excellent} would be excellent."
        )
    else:
        text = (
            f"Your Step 2 CK score of {value} is excellent for {specialty} "
            f"({excellent} or more)."
        )
    return Reason(f"step2.{band}", text)


@cache
def clerkships(strength: ClerkshipStrength, failed_one: bool, moved_to: Band | None) -> Reason:
    """Say what the clerkship grades add, and how they moved the reading of the score."""
    if strength == "strong":
        text = "Your clerkship grades are strong: at least half are Honors or High Pass."
        if moved_to is not None:
            text += (
                " Strong clinical grades can push a slightly lower Step 2 CK into the interview "
                "pile, so we count your score as solid."
            )
        else:
            text += " They back up your Step 2 CK."
        return Reason("clerkships.strong", text)
    why = "a failed clerkship" if failed_one else "no Honors or High Pass yet"
    text = f"Your clerkship grades are a weak spot ({why})."
    if moved_to is not None:
        what = "solid" if moved_to == "solid" else "just under solid"
        text += (
            " Weak clinical comments can sink even a great score, so we count your score as "
            f"{what}."
        )
    else:
        text += " Programs read them next to your score."
    return Reason("clerkships.weak", text)


@cache
def repeated_failures(failed: int) -> Reason:
    """Say why two or more Step 1 failures weigh on the score."""
    return Reason(
        "step1.repeated",
        f"You failed Step 1 {failed} times, so programs will read even a good Step 2 CK more "
        "cautiously. We count your score one step lower.",
    )


_STATUS_WORDS: dict[Step1Status, str] = {
    "clean": "a first-try Step 1 pass",
    "failure": "a Step 1 pass after a failed attempt",
    "not passed": "Step 1 not passed",
    "not taken": "Step 1 not taken",
}
_BAND_WORDS: dict[Band, str] = {
    "excellent": "an excellent Step 2 CK",
    "solid": "a solid Step 2 CK",
    "borderline": "a Step 2 CK just under solid",
    "below": "a Step 2 CK well under solid",
    "failing": "a Step 2 CK not passed",
    "pending": "no Step 2 CK score yet",
}


# The record the matrix read when a Step 2 CK failure came before this score (#14).
_STEP2_FAILED_WORDS: dict[Step1Status, str] = {
    "clean": "a failed Step 2 CK attempt before this score",
    "failure": "failed attempts at Step 1 and at Step 2 CK before this score",
}


@lru_cache(maxsize=_CACHE)
def outcome(
    specialty: str, status: Step1Status, band: Band, label: str, step2_failed: bool = False
) -> Reason:
    """Say what the matrix concluded, naming the two things it read."""
    record = _STATUS_WORDS[status]
    if step2_failed:
        record = _STEP2_FAILED_WORDS.get(status, record)
    return Reason(
        "matrix",
        f"With {record} and {_BAND_WORDS[band]}, your outlook for {specialty} is: {label}.",
    )


@cache
def step2_failed_before(band: Band) -> Reason:
    """Say that a failed Step 2 CK attempt stays visible to programs, even after a pass."""
    if band == "failing":
        text = (
            "Programs see every Step 2 CK attempt: after a passing retake they will still see "
            "this failure, and read it like a Step 1 failure."
        )
    elif band == "pending":
        text = (
            "You failed Step 2 CK on an earlier attempt. Programs see every attempt, so even "
            "after a pass they will see that failure and read it like a Step 1 failure."
        )
    else:
        text = (
            "You passed Step 2 CK after failing it on an earlier attempt. Programs see every "
            "attempt, so the earlier failure stays visible to them and counts like a Step 1 "
            "failure."
        )
    return Reason("step2.failed_before", text)


@lru_cache(maxsize=_CACHE)
def outside(kind: str, specialty: str, solid: int, excellent: int) -> Reason:
    """Say why the student falls outside the matrix, and what unlocks it."""
    if kind == "step1_not_passed":
        text = "Your first step is to pass Step 1; your Step 2 CK outlook counts once that is done."
    elif kind == "step1_not_taken":
        text = "Take Step 1 first; your Step 2 CK outlook counts once Step 1 is passed."
    elif kind == "failing":
        text = (
            "Programs will not consider you until you pass Step 2 CK, so for now you are at "
            "risk. A passing retake opens the door again."
        )
    else:
        text = (
            f"We cannot place you until your Step 2 CK score is in. For {specialty}, aim for "
            f"{solid}-{excellent}."
        )
    return Reason(f"outlook.{kind}", text)


@lru_cache(maxsize=_CACHE)
def package(specialty: str, missing: tuple[str, ...], capped: bool) -> Reason:
    """Say what a hyper-competitive specialty wants beyond the score."""
    if not missing:
        return Reason(
            "hyper.package",
            f"For {specialty} you have the rest of the package programs look for: strong "
            "clinical grades, research and letters.",
        )
    pieces = join(missing)
    if capped:
        text = (
            f"For {specialty}, a strong Step 2 CK is necessary but not enough: programs also "
            f"want {pieces}. Until you have those, it is a reach."
        )
    else:
        text = f"For {specialty}, programs also want {pieces}."
    return Reason("hyper.package", text)


@lru_cache(maxsize=_CACHE)
def hyper_marginal(specialty: str) -> Reason:
    """Say that a close Step 1 pass limits even a great Step 2 at the top programs."""
    return Reason(
        "hyper.marginal",
        f"Your Step 1 was a close pass: in {specialty}, even a great Step 2 CK may not carry "
        "you at the top programs. You may still match, more likely at smaller or less "
        "well-known places.",
    )


@cache
def impact(value: int, why: str) -> Reason:
    """Give the article's rule of thumb for how much Step 2 CK can help here."""
    return Reason(
        "impact",
        f"How much your Step 2 CK can help here: about {value} out of 100 ({why}). A rule of "
        "thumb, not science.",
    )


@cache
def trend(direction: Trend) -> Reason:
    """Say how programs will read the change from Step 1 to Step 2 CK."""
    if direction == "upward":
        return Reason(
            "trend.upward",
            "Your Step 2 CK is clearly better than your Step 1. Programs notice an upward "
            "trend like that, so make sure your letters show it too.",
        )
    return Reason(
        "trend.stable",
        "Your Step 2 CK is not far enough above your Step 1 to read as a comeback, so "
        "programs will see it as steady rather than transformed. That is fine when your "
        "program list is realistic.",
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
