"""The typed records every stage passes along: a student row, a problem, an evaluation.

These are the contract between intake, the rules, the workbook and the letters: the workbook
and the letter render from an `Evaluation`, they never recompute it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

Step1Result = Literal["pass", "fail", "not taken"]
Step1Margin = Literal["marginal", "comfortable"]
Grade = Literal["H", "HP", "P", "F"]
LetterStrength = Literal["strong", "average", "weak"]
Tier = Literal["less", "moderate", "high", "hyper"]
Band = Literal["failing", "below", "borderline", "solid", "excellent", "pending"]
Step1Status = Literal["clean", "failure", "not passed", "not taken"]
ClerkshipStrength = Literal["strong", "neutral", "weak"]
Trend = Literal["upward", "stable"]
# The student's Match result (optional roster column `match_result`), read after Match Day.
MatchResult = Literal["matched", "matched in SOAP", "did not match"]
# Step 2 CK on the day: in (a passing score), failing (a score under the passing mark),
# scheduled (a date today or later), sat (a date past, the score not due yet), overdue (a date
# past and the score should have posted), unscheduled (no score, no date).
ExamState = Literal["in", "failing", "scheduled", "sat", "overdue", "unscheduled"]

# The seven core clerkships, in the order the office usually lists them.
CLERKSHIPS: tuple[str, ...] = (
    "Internal Medicine",
    "Surgery",
    "Pediatrics",
    "Obstetrics and Gynecology",
    "Psychiatry",
    "Neurology",
    "Family Medicine",
)


@dataclass(frozen=True, slots=True)
class StudentRecord:
    """One roster row that intake could read and validation let through."""

    student_id: str
    name: str
    email: str | None
    step1_result: Step1Result
    step1_attempts: int
    specialty: str  # canonical name from the specialty table
    step1_score: int | None = None
    step1_margin: Step1Margin | None = None
    step2_score: int | None = None
    step2_date: date | None = None
    # Times Step 2 CK was sat, the score on file (or awaited) included; None when not given.
    step2_attempts: int | None = None
    # (clerkship name from CLERKSHIPS, grade or None when not graded yet); only columns present.
    clerkships: tuple[tuple[str, Grade | None], ...] = ()
    # Clerkships graded "Conditional Pass": counted as P, and the letter notes it.
    conditional_pass: tuple[str, ...] = ()
    research_count: int | None = None
    letters: LetterStrength | None = None
    advisor: str | None = None
    advisor_email: str | None = None
    interviews: int | None = None  # interview invitations so far (optional column)
    match_result: MatchResult | None = None  # after Match Day (optional column)
    row: int = 0  # the Excel row number as the office sees it


@dataclass(frozen=True, slots=True)
class Specialty:
    """One row of the specialty table: tier, Step 2 CK marks and the NRMP figures, with sources."""

    name: str  # canonical name, e.g. "Emergency Medicine"
    tier: Tier
    solid: int
    excellent: int
    source: str  # "article", "assigned", with a note
    aliases: tuple[str, ...] = ()
    # NRMP Charting Outcomes 2026, Table 5: matched US MD seniors Q1 / median / Q3; None if absent.
    nrmp_q1: int | None = None
    nrmp_median: int | None = None
    nrmp_q3: int | None = None
    nrmp_unmatched_median: int | None = None
    # The kind of work (surgical, medical, primary care ...): the parallel plan's first choice.
    family: str = ""
    # Lower-tier specialties an advisor suggests first for a parallel plan, in order, and why.
    parallel: tuple[str, ...] = ()
    parallel_source: str = ""
    # The match the specialty goes through: "nrmp" (Main Match), "sf_match", "aua".
    match: str = "nrmp"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong in the roster, said so the office can fix it without us."""

    file: str
    what: str  # what is wrong, in plain words
    fix: str  # what to do
    sheet: str | None = None
    row: int | None = None  # Excel row number; None for a whole-file problem
    column: str | None = None  # the header as the office wrote it
    value: str = ""  # the offending value, as text (office eyes only: never logged)
    student_id: str | None = None
    holds_row: bool = True  # False for a warning that lets the student go on


@dataclass(frozen=True, slots=True)
class Reason:
    """A rule that fired, and why, in a sentence a student understands."""

    rule: str  # stable id, e.g. "band", "clerkships.strong", "matrix", "hyper.package"
    text: str


@dataclass(frozen=True, slots=True)
class AdviceItem:
    """One step of the game plan, with the article section it comes from."""

    key: str  # stable id, e.g. "target", "qbank", "schedule", "statement", "parallel"
    text: str
    section: str


@dataclass(frozen=True, slots=True)
class ProgramMix:
    """Share of reach / solid / safety programs on the application list, in percent."""

    reach: int
    solid: int
    safety: int
    parallel_plan: bool
    meet_advisor: bool


@dataclass(frozen=True, slots=True)
class NextLevel:
    """The Step 2 CK score that would lift this student to a higher level, all else equal."""

    level: int
    label: str
    score: int


@dataclass(frozen=True, slots=True)
class ScoreBand:
    """Scores from `low` to `high` (None: and above) and the outlook they would bring."""

    low: int
    high: int | None
    level: int
    label: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything the rules concluded about one student; outputs render from this only."""

    student_id: str
    specialty: str
    tier: Tier
    solid: int  # the specialty's solid Step 2 CK mark
    excellent: int  # the specialty's excellent mark
    step1_status: Step1Status
    step1_marginal: bool
    raw_band: Band  # from the score alone
    band: Band  # after the modifiers
    clerkships: ClerkshipStrength
    level: int  # 1 (at risk) .. 5 (very competitive)
    label: str
    impact: int  # how much Step 2 CK can help, out of 100
    trend: Trend | None
    timing_late: bool  # the score will not be there when programs read the application
    reasons: tuple[Reason, ...]
    advice: tuple[AdviceItem, ...]
    mix: ProgramMix
    rules_version: str
    next_levels: tuple[NextLevel, ...] = ()
    parallel: tuple[str, ...] = ()  # lower-tier specialties where this score is already solid
    missing_package: tuple[str, ...] = ()  # hyper tier: the pieces of the package not there yet
    step2_score: int | None = None
    # A failed Step 2 CK attempt is on the record: before the passing (or awaited) score, or the
    # failing score on file itself. Programs see it; the matrix reads the `failure` row.
    step2_failed_before: bool = False
    # --- the application calendar (docs/rules.md, The application calendar) ---
    phase: str = "preparing"  # residency_rules.calendar.Phase of the letter's date
    # Days from the letter's date on which each advice item is due, in the advice's order
    # (never decreasing: the plan reads in causal order); () = the letter decides.
    advice_days: tuple[int, ...] = ()
    applies_this_cycle: bool = True  # False: Step 1 not passed, no application advice
    exam_overdue: bool = False  # the Step 2 CK date has passed and no score is on file
    # Pending: the last day to sit the exam so the score posts before programs read (None: past).
    score_by: date | None = None
    interviews_low: bool = False  # mid-season, fewer invitations than the specialty's target
    pending_at_risk: bool = False  # pending with a late date, an overdue score or a failure
    # At risk for the office: a level [levels] marks at risk, or pending at risk. The Summary's
    # list, the counts and the office's note all read this one flag.
    at_risk: bool = False
    # --- one voice (docs/rules.md, One voice) ---
    # What the matrix gave for the score alone (before the modifiers and the hyper cap);
    # equal to label when no modifier changed it; "" outside the matrix.
    score_alone_label: str = ""
    score_alone_level: int = 0
    # What changed the score-alone reading, in the order applied (clerkships, repeated Step 1
    # failures, the hyper-tier package), each in a few words; () when nothing did.
    modifiers: tuple[str, ...] = ()
    # Students with a passing score: what can still move the outlook (the score cannot).
    levers: tuple[str, ...] = ()
    # Pending: the outlook a just-passing score would bring (the downside of the range).
    floor_label: str = ""
    # --- the situation on the day (docs/rules.md, The situation on the day) ---
    match_system: str = "nrmp"  # the student's match: nrmp, sf_match, aua
    match_name: str = "NRMP Main Match"
    match_result: MatchResult | None = None
    step1_failures: int = 0  # failed Step 1 attempts, counted
    exam_state: ExamState = "unscheduled"
    exam_date: date | None = None
    exam_weeks_left: int | None = None  # scheduled: whole weeks to the exam
    # Sat, score not in: the days between which the score should post (about 3-4 weeks after).
    score_posts: tuple[date, date] | None = None
    # Pending or failing: every band from the passing score up, with the outlook it would
    # bring, worst first (the letter shows them best first).
    score_bands: tuple[ScoreBand, ...] = ()
    # Levels 1-2: the rule id of the reason that caps the outlook (the why names it first).
    cap_rule: str = ""
    research_known: bool = False  # the roster gives a research count (None: not given)
