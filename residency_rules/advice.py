"""The game plan: advice items, each tied to the article section (or calendar) it comes from.

Builders are cached on their plain arguments so most students reuse an item already built.
No item names the office's letters-of-recommendation rating: letters appear only as
instructions (whom to ask), never as a judgement of the student's letters.
"""

from __future__ import annotations

from functools import cache, lru_cache

from residency_rules.explain import join, number_word, pieces_text, visible
from residency_rules.records import AdviceItem, ProgramMix

# Section names as the article heads them, so a student or advisor can find the passage.
TARGET = "FAQ 7"
GAME_PLAN = "Practical Game Plan If You're Banking on Step 2 CK"
TIMING = "Time Your Exam and ERAS Submission"
STATEMENT = "FAQ 6"
LETTERS = 'Make Sure Letters and MSPE Align with the "Improvement" Narrative'
PACKAGE = "Hyper-Competitive Specialties Still Want the Whole Package"
PARALLEL = "You're Applying Reasonably for Your Profile"
AT_RISK = "When a Strong Step 2 CK Is Not Enough By Itself"
STEP1_FAILED = "A Step 1 Failure Changes the Conversation"
STEP1_SCREEN = "How Program Directors Actually View Step 2 CK vs Step 1"
USMLE = "USMLE Bulletin of Information (attempt limits, score reporting)"

_CACHE = 1 << 16


@lru_cache(maxsize=_CACHE)
def target(specialty: str, solid: int, excellent: int, situation: str, score: int) -> AdviceItem:
    """Give the specialty's target range, worded for where the student is.

    situation: "pending" (an exam to book or weeks away), "near" (the exam in the last
    weeks: no four-week plan to write), "retake" (after a failing score).
    """
    if situation == "pending":  # the letter's plan is the four weeks FAQ 7 asks for
        text = f"Aim for {solid}-{excellent} on Step 2 CK for {specialty}."
    elif situation == "near":
        text = f"Your target for {specialty} is {solid}-{excellent} on Step 2 CK."
    elif situation == "retake":
        text = f"Aim for {solid}-{excellent} on your Step 2 CK retake for {specialty}."
    else:
        text = f"The target range for {specialty} is {solid}-{excellent}; you scored {score}."
    return AdviceItem("target", text, TARGET)


SAFE_PASS = AdviceItem(
    "target",
    "Aim for a safe pass on your retake: a pass is what counts now.",
    TARGET,
)

QBANK = AdviceItem(
    "qbank",
    "Do two full passes of a question bank (UWorld or AMBOSS) in mixed, timed blocks, and "
    "NBME practice forms until they predict your range.",
    GAME_PLAN,
)

QBANK_FINISH = AdviceItem(
    "qbank",
    "Finish your question bank in mixed, timed blocks, and take an NBME practice form every "
    "week or two to check your range.",
    GAME_PLAN,
)

QBANK_FINAL = AdviceItem(
    "qbank",
    "Take one more NBME practice form, go over the weak areas it shows, and rest the day "
    "before your exam.",
    GAME_PLAN,
)

QBANK_REST = AdviceItem(
    "qbank",
    "Rest before your exam: go over your notes on weak areas lightly, and no new material.",
    GAME_PLAN,
)


@lru_cache(maxsize=64)
def step1_retake(failures: int, left: int | None, limit: int) -> AdviceItem:
    """Plan the Step 1 retake with the advisor: eligibility, practice forms, then a date.

    Never a deadline to pass: the date is the advisor's and the student's to set once the
    practice forms say the student is ready.
    """
    text = (
        "Plan your Step 1 retake with your advisor: check your eligibility, take NBME "
        "practice forms until they show you are ready, then choose the date."
    )
    if failures >= 2 and left is not None:
        text += (
            f" The USMLE allows {number_word(limit)} attempts at a Step: make the next one "
            "the one you pass."
        )
    return AdviceItem("step1", text, STEP1_FAILED if failures >= 2 else USMLE)


STEP1_TAKE = AdviceItem(
    "step1",
    "Plan Step 1 with your advisor: take NBME practice forms until they show you are ready, "
    "then book the date.",
    STEP1_SCREEN,
)

STATEMENT_ITEM = AdviceItem(
    "statement",
    "In your personal statement, give your Step 1 failure one short paragraph, not an "
    "apology: what happened, what you changed, how your Step 2 CK shows it.",
    STATEMENT,
)

STEP2_STATEMENT_ITEM = AdviceItem(
    "statement",
    "In your personal statement, give your Step 2 CK failure one short paragraph, not an "
    "apology: what happened, what you changed, how your passing score and clerkships show it.",
    STATEMENT,
)

# A Step 1 failure while the Step 2 CK score is not in yet, or is itself a failing one: the
# paragraph cannot point at a score that does not show it (yet).
STATEMENT_NO_SCORE_ITEM = AdviceItem(
    "statement",
    "In your personal statement, give your Step 1 failure one short paragraph, not an "
    "apology: what happened, what you changed, how your clerkships show it.",
    STATEMENT,
)

BOTH_STATEMENT_ITEM = AdviceItem(
    "statement",
    "In your personal statement, give your Step 1 and Step 2 CK failures one short paragraph, "
    "not an apology: what happened, what you changed, how your scores show it.",
    STATEMENT,
)


def failure_statement(
    step1_failed: bool, step2_failed: bool, step2_shows: bool = True
) -> tuple[AdviceItem, ...]:
    """Ask for the personal-statement paragraph about whichever exam failures are on record.

    step2_shows: a passing Step 2 CK score is in, so the paragraph can point at it.
    """
    if step1_failed and step2_failed:
        return (BOTH_STATEMENT_ITEM,)
    if step1_failed:
        return (STATEMENT_ITEM if step2_shows else STATEMENT_NO_SCORE_ITEM,)
    if step2_failed:
        return (STEP2_STATEMENT_ITEM,)
    return ()


LETTERS_ITEM = AdviceItem(
    "letters",
    "Ask for letters from attendings who saw you at your best, late in third year or early "
    "in fourth year.",
    LETTERS,
)

# Chosen from the office's rating, worded as an instruction only (the rating is never said).
ONE_MORE_LETTER = AdviceItem(
    "letters",
    "Ask one more attending who saw your best work for a letter; give them your CV.",
    LETTERS,
)

ADVISOR_ITEM = AdviceItem(
    "advisor",
    "Meet your advisor to go through this plan together.",
    AT_RISK,
)


@lru_cache(maxsize=_CACHE)
def package(specialty: str, missing: tuple[str, ...]) -> AdviceItem:
    """Name the rest of the package a hyper-competitive specialty wants (never the rating)."""
    writers = "letters from faculty in the field who saw your best work"
    if visible(missing):
        text = (
            f"For {specialty}, work on the rest of the package now: "
            f"{pieces_text(specialty, missing)}, {writers}, and away rotations where you want "
            "to match."
        )
    else:
        text = (
            f"For {specialty}, keep building the package: research in the field, {writers}, "
            "and away rotations where you want to match."
        )
    return AdviceItem("package", text, PACKAGE)


GRADES_PIECE = "Honors-level clinical grades"


@lru_cache(maxsize=_CACHE)
def missing_pieces(
    specialty: str, strong_clerkships: bool, research_ok: bool, letters_ok: bool
) -> tuple[str, ...]:
    """List what a hyper-competitive application still lacks, in the article's words.

    The caller passes True for a piece the roster does not give (unknown is not zero).
    """
    pieces: list[str] = []
    if not strong_clerkships:
        pieces.append(GRADES_PIECE)
    if not research_ok:
        pieces.append(f"research, ideally in {specialty}")
    if not letters_ok:
        pieces.append("strong letters from big names in the field")
    return tuple(pieces)


@cache
def mix(share: ProgramMix) -> AdviceItem:
    """Turn the level's program-list mix into one plain instruction."""
    return AdviceItem(
        "mix",
        f"Build a realistic program list: about {share.reach}% reach, {share.solid}% solid, "
        f"{share.safety}% safety.",
        GAME_PLAN,
    )


@lru_cache(maxsize=_CACHE)
def parallel(names: tuple[str, ...], lowest_tier: bool, through: str = "") -> AdviceItem:
    """Name the parallel specialties; in the least competitive tier (no lower one), breadth.

    `through`: the service the parallel application goes through when it is not the
    student's own (an Ophthalmology student applies in SF Match CAS, the parallel in ERAS).
    """
    if names:
        via = f" through {through}" if through else ""
        text = (
            f"Plan a parallel application{via} as well: with your record, {join(names)} "
            f"{'is a realistic choice' if len(names) == 1 else 'are realistic choices'}."
        )
    elif lowest_tier:
        text = (
            "Put more programs than usual on your list, many of them community programs, and "
            "plan SOAP with your advisor."
        )
    else:
        text = (
            "Put more programs than usual on your list, many of them community programs, and "
            "plan a backup with your advisor."
        )
    return AdviceItem("parallel", text, PARALLEL)
