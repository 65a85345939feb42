"""The game plan: advice items, each tied to the article section it comes from.

Builders are cached on their plain arguments so most students reuse an item already built.
"""

from __future__ import annotations

from functools import cache, lru_cache

from residency_rules.explain import join
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

_CACHE = 1 << 16
_WRITE_IT_DOWN = "Write down your next four weeks: questions a day, NBME forms, exam date."


@lru_cache(maxsize=_CACHE)
def target(specialty: str, solid: int, excellent: int, situation: str, score: int) -> AdviceItem:
    """Give the specialty's target range, worded for where the student is."""
    if situation == "pending":
        text = f"Aim for {solid}-{excellent} on Step 2 CK for {specialty}. {_WRITE_IT_DOWN}"
    elif situation == "retake":
        text = (
            f"Aim for {solid}-{excellent} on your Step 2 CK retake for {specialty}. "
            f"{_WRITE_IT_DOWN}"
        )
    elif situation == "step1":
        text = f"Once Step 1 is passed, aim for {solid}-{excellent} on Step 2 CK for {specialty}."
    else:
        text = f"The target range for {specialty} is {solid}-{excellent}; you scored {score}."
    return AdviceItem("target", text, TARGET)


QBANK = AdviceItem(
    "qbank",
    "Do two full passes of a question bank (UWorld or AMBOSS) in mixed, timed blocks, and "
    "NBME practice forms until they predict your range.",
    GAME_PLAN,
)

STEP1_RETAKE = AdviceItem(
    "step1",
    "Pass Step 1 first: plan your retake with your advisor and use NBME practice forms to "
    "know you are ready before you book it.",
    STEP1_FAILED,
)

STEP1_TAKE = AdviceItem(
    "step1",
    "Take Step 1 first, early enough that you can still sit Step 2 CK before applications go "
    "out.",
    STEP1_SCREEN,
)

STATEMENT_ITEM = AdviceItem(
    "statement",
    "In your personal statement, write one short, specific paragraph on your Step 1 failure: "
    "what happened, what you changed, and how your Step 2 CK and clerkships show it. Not an "
    "apology letter.",
    STATEMENT,
)

STEP2_STATEMENT_ITEM = AdviceItem(
    "statement",
    "In your personal statement, write one short, specific paragraph about your Step 2 CK "
    "failure: what happened, what you changed, and how your passing score and clerkships show "
    "it. Not an apology letter.",
    STATEMENT,
)

BOTH_STATEMENT_ITEM = AdviceItem(
    "statement",
    "In your personal statement, write one short, specific paragraph about your Step 1 and "
    "Step 2 CK failures: what happened, what you changed (question banks, NBME forms, "
    "schedule, mentoring), and how your scores and clerkships show it. Not an apology letter.",
    STATEMENT,
)


def failure_statement(step1_failed: bool, step2_failed: bool) -> tuple[AdviceItem, ...]:
    """Ask for the personal-statement paragraph about whichever exam failures are on record."""
    if step1_failed and step2_failed:
        return (BOTH_STATEMENT_ITEM,)
    if step1_failed:
        return (STATEMENT_ITEM,)
    if step2_failed:
        return (STEP2_STATEMENT_ITEM,)
    return ()


LETTERS_ITEM = AdviceItem(
    "letters",
    "Ask for letters from attendings who saw you at your best, late in third year or early "
    "in fourth year.",
    LETTERS,
)

ADVISOR_ITEM = AdviceItem(
    "advisor",
    "Meet your advisor to go through this plan together.",
    AT_RISK,
)


@lru_cache(maxsize=_CACHE)
def package(specialty: str, missing: tuple[str, ...]) -> AdviceItem:
    """Name the rest of the package a hyper-competitive specialty wants."""
    if missing:
        text = (
            f"For {specialty}, work on the rest of the package now: {join(missing)}, and away "
            "rotations where you want to match."
        )
    else:
        text = (
            f"For {specialty}, keep building the package: research in the field, strong "
            "letters from big names and away rotations where you want to match."
        )
    return AdviceItem("package", text, PACKAGE)


@lru_cache(maxsize=_CACHE)
def missing_pieces(
    specialty: str, strong_clerkships: bool, research_ok: bool, letters_ok: bool
) -> tuple[str, ...]:
    """List what a hyper-competitive application still lacks, in the article's words."""
    pieces: list[str] = []
    if not strong_clerkships:
        pieces.append("Honors-level clinical grades")
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
        f"Build a realistic program list: about {share.reach}% reach, {share.solid}% solid and "
        f"{share.safety}% safety programs.",
        GAME_PLAN,
    )


@lru_cache(maxsize=_CACHE)
def parallel(names: tuple[str, ...], lowest_tier: bool) -> AdviceItem:
    """Name the parallel specialties, or say how to find one when none can be named yet."""
    if names:
        text = (
            f"Plan a parallel application as well: your score is already solid for "
            f"{join(names)}."
        )
    elif lowest_tier:
        text = (
            "Apply to more programs than usual, with plenty of community programs, and talk "
            "with your advisor about a backup plan."
        )
    else:
        text = (
            "Plan a parallel application in a less competitive specialty; your advisor can "
            "help you choose one."
        )
    return AdviceItem("parallel", text, PARALLEL)
