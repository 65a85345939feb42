"""The roster schema: canonical fields, header aliases, and normalisers for what Excel really holds.

Pure: no file is opened here. Intake reads cells and hands them to these functions; validation
(the Great Expectations suite) checks the normalised values against the rules of section 3 of
the design. A normaliser answers with a value, `None` (blank), or `Invalid` (what is wrong and
what to do, in words an advisor understands).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.utils import getaddresses
from functools import lru_cache
from typing import Literal

from residency_rules.records import (
    CLERKSHIPS,
    Grade,
    LetterStrength,
    MatchResult,
    Step1Margin,
    Step1Result,
)

# What a spreadsheet reader hands over for one cell (calamine or openpyxl, cached values).
Cell = str | int | float | bool | date | datetime | time | timedelta | None


@dataclass(frozen=True, slots=True)
class Field:
    """One canonical roster column: the header the template writes, and every alias we accept."""

    name: str  # canonical, e.g. "step2_score"
    label: str  # the friendly header, e.g. "Step 2 CK Score"
    noun: str  # how messages name a value of it, e.g. "Step 2 CK score"
    aliases: tuple[str, ...] = ()
    required: bool = False
    help: str = ""  # one line for the template's Instructions sheet
    # What the letters and the workbook do without this column, told to the office (#25).
    absent: str = ""


def _clerkship_aliases(*bases: str) -> tuple[str, ...]:
    """Expand `IM` into `IM Clerkship`, `IM Clerkship Grade`, `IM Grade` ... (offices vary)."""
    suffixes = ("", " Clerkship", " Clerkship Grade", " Grade", " Rotation", " Rotation Grade")
    return tuple(base + suffix for base in bases for suffix in suffixes)


_CLERKSHIP_BASES: dict[str, tuple[str, ...]] = {
    "clerkship_im": ("Internal Medicine", "IM", "Medicine", "Int Med"),
    "clerkship_surgery": ("Surgery", "Surg", "General Surgery"),
    "clerkship_pediatrics": ("Pediatrics", "Peds", "Paediatrics"),
    "clerkship_obgyn": (
        "OB/GYN", "OB-GYN", "OB GYN", "Obstetrics and Gynecology", "Obstetrics and Gynaecology",
        "Women's Health",
    ),
    "clerkship_psychiatry": ("Psychiatry", "Psych"),
    "clerkship_neurology": ("Neurology", "Neuro"),
    "clerkship_family_medicine": ("Family Medicine", "FM", "Family Med", "Fam Med"),
}

# Canonical clerkship field -> the clerkship's name in records.CLERKSHIPS (same order).
CLERKSHIP_FIELDS: dict[str, str] = dict(zip(_CLERKSHIP_BASES, CLERKSHIPS, strict=True))

_GRADE_HELP = "Honors, High Pass, Pass, Fail (or H, HP, P, F); IP or blank = not graded yet"

FIELDS: tuple[Field, ...] = (
    Field(
        "student_id", "Student ID", "student ID",
        ("ID", "AAMC ID", "AAMC", "Student Number", "Student No", "Student #", "SID",
         "School ID", "Student Identifier", "Banner ID", "ID Number", "EMPLID"),
        required=True, help="Required. Unique per student; leading zeros are kept.",
    ),
    Field(
        "name", "Name", "name",
        ("Student Name", "Full Name", "Student Full Name"),
        required=True, help="Required (or First Name and Last Name columns). Any script.",
    ),
    Field("first_name", "First Name", "first name",
          ("First", "Given Name", "Firstname", "Forename", "Preferred First Name")),
    Field("last_name", "Last Name", "last name",
          ("Last", "Surname", "Family Name", "Lastname")),
    Field(
        "email", "Email", "email address",
        ("E-mail", "Email Address", "E-mail Address", "Student Email", "School Email",
         "Institutional Email", "Student E-mail"),
        help="The student's school address; without it the letter is written but not sent.",
        absent="letters are written but not emailed",
    ),
    Field(
        "step1_result", "Step 1 Result", "Step 1 result",
        ("Step 1", "Step1", "USMLE Step 1", "USMLE Step 1 Result", "Step 1 Pass/Fail",
         "Step 1 P/F", "Step 1 Status", "Step 1 Outcome"),
        required=True, help="Required. Pass, Fail or Not taken (P and F are accepted).",
    ),
    Field(
        "step1_attempts", "Step 1 Attempts", "number of Step 1 attempts",
        ("Attempts", "Step 1 Attempt Count", "Number of Step 1 Attempts", "Step 1 Tries",
         "Step 1 Attempt"),
        help="1-6. Leave blank when passed on the first attempt.",
        absent="every Step 1 pass is read as a first-try pass, every fail as one attempt",
    ),
    Field(
        "step1_score", "Step 1 Score", "Step 1 score",
        ("USMLE Step 1 Score", "Step 1 3-Digit Score", "Step 1 Numeric Score", "Step1 Score"),
        help="Only for Step 1 taken before 26 Jan 2022 (a three-digit score); else blank.",
        absent="no Step 1 score is used (pass/fail only, as since 2022)",
    ),
    Field(
        "step1_margin", "Step 1 Margin", "Step 1 margin",
        ("Margin", "Step 1 Pass Margin", "Pass Margin", "CBSE Margin"),
        help="Marginal or Comfortable: the advisor's judgement (e.g. from CBSE); may be blank.",
        absent="no Step 1 pass is read as marginal",
    ),
    Field(
        "step2_score", "Step 2 CK Score", "Step 2 CK score",
        ("Step 2 CK", "Step2CK", "Step 2CK", "Step 2", "USMLE Step 2 CK Score",
         "USMLE Step 2 CK", "Step 2 Score", "CK Score", "Step2 CK Score",
         "Step 2 CK 3-Digit Score"),
        help="1-300. Leave blank when not reported yet.",
        absent="every student reads as waiting for a Step 2 CK score",
    ),
    Field(
        "step2_date", "Step 2 CK Date", "Step 2 CK date",
        ("Step 2 Date", "Step 2 CK Test Date", "Step 2 CK Exam Date", "Step 2 CK Scheduled Date",
         "Step 2 Test Date", "CK Date", "Step 2 CK Date Taken", "Step2 CK Date"),
        help="The date Step 2 CK was taken or is scheduled.",
        absent="letters cannot time the exam: a student without a score is asked to book it",
    ),
    Field(
        "step2_attempts", "Step 2 CK Attempts", "number of Step 2 CK attempts",
        ("Step 2 Attempts", "Step2 CK Attempts", "Step 2 CK Attempt", "Step 2 CK Attempt Count",
         "Number of Step 2 CK Attempts", "Step 2 CK Tries", "USMLE Step 2 CK Attempts",
         "CK Attempts", "Step 2 Attempt"),
        help="1-6, the sitting whose score is shown included. Leave blank when passed (or "
        "booked) on the first attempt; a pass after a failed attempt is seen by programs.",
        absent="no failed Step 2 CK attempt is known",
    ),
    Field(
        "specialty", "Specialty", "specialty",
        ("Preferred Specialty", "Target Specialty", "Intended Specialty", "Specialty Choice",
         "Speciality", "Specialty Interest", "Planned Specialty", "Desired Specialty",
         "Residency Specialty", "Intended Residency"),
        required=True, help="Required. Pick from the list (aliases such as IM, EM, OB/GYN work).",
    ),
    *(
        Field(
            canonical, f"{clerkship} Clerkship", f"{clerkship} clerkship grade",
            _clerkship_aliases(*bases), help=_GRADE_HELP,
            absent=f"the {clerkship} grade is not given (not counted for or against)",
        )
        for (canonical, bases), clerkship in zip(_CLERKSHIP_BASES.items(), CLERKSHIPS, strict=True)
    ),
    Field(
        "research_count", "Research Items", "number of research items",
        ("Research", "Research Count", "Publications", "Pubs", "Number of Publications",
         "# Publications", "Research Experiences", "Research Products",
         "Publications/Presentations", "Research Output", "# Research Items",
         # As offices head it (#25): publications and posters counted together.
         "Pubs/Posters", "Pubs & Posters", "Pubs and Posters", "Publications & Posters",
         "Publications and Posters", "Publications/Posters", "Pubs/Presentations",
         "Publications & Presentations", "Posters & Publications",
         "Number of Research Items", "Research (n)", "# of Publications",
         "Publications, Posters & Presentations", "Abstracts & Publications"),
        help="A whole number, 0 or more (publications, posters, presentations).",
        absent="research is not known: letters do not mention it",
    ),
    Field(
        "letters", "Letters", "letter strength",
        ("LOR Strength", "LOR", "LORs", "Letters of Recommendation", "Letter Strength",
         "Letters Strength", "Recommendation Letters", "LOR Quality"),
        help="Strong, Average or Weak.",
        absent="letters of recommendation are not known: not counted for or against",
    ),
    Field(
        "interviews", "Interviews", "interview invitations",
        ("Interview Invitations", "Interview Invites", "Invitations", "Invites",
         "# Interviews", "Interviews Offered", "Number of Interviews", "Interview Count"),
        help="Interview invitations so far (a whole number, 0 or more); blank = not known.",
        absent="interview invitations are not known: letters give the target instead",
    ),
    Field(
        "match_result", "Match Result", "Match result",
        ("Match Outcome", "Match", "Match Status", "Matched", "Match Day Result",
         "Residency Match Result", "Match Results", "NRMP Result", "Result of the Match"),
        help="After Match Day: Matched, Matched in SOAP or Did not match; blank = not known "
        "yet (the letter then covers both).",
        absent="after Match Day, letters cover both results (matched, not matched)",
    ),
    Field(
        "advisor", "Advisor", "advisor",
        ("Adviser", "Advisor Name", "Faculty Advisor", "Advising Dean", "Career Advisor"),
        help="Signs the letter.",
        absent="letters are signed by the office",
    ),
    Field(
        "advisor_email", "Advisor Email", "advisor's email address",
        ("Adviser Email", "Advisor E-mail", "Advisor Email Address", "Advising Dean Email"),
        help="Replies to the letter go here.",
        absent="replies go to the office's address",
    ),
)

FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
# Columns a roster cannot do without ("name" may come as first + last name).
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)


def header_key(text: str) -> str:
    """Reduce a header to letters and digits so `E-mail Address` equals `email address`."""
    folded = text.casefold().replace("&", "and").replace("#", "number")
    return "".join(ch for ch in folded if ch.isalnum())


_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")


def _build_alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for f in FIELDS:
        for alias in (f.label, f.name, *f.aliases):
            key = header_key(alias)
            owner = index.setdefault(key, f.name)
            if owner != f.name:  # two fields claiming one header would make matching a lottery
                raise ValueError(f"header alias {alias!r} is claimed by {owner} and {f.name}")
    return index


ALIAS_INDEX: dict[str, str] = _build_alias_index()


def match_header(text: str) -> str | None:
    """Return the canonical field a header names, or None; `Step 2 CK (3-digit)` counts too."""
    key = header_key(text)
    if not key:
        return None
    found = ALIAS_INDEX.get(key)
    if found is None and ("(" in text or "[" in text):
        found = ALIAS_INDEX.get(header_key(_PARENTHESES.sub("", text)))
    return found


# Words that, in a header no alias matches, mean the column probably counts research: the
# office is warned (it names the field and the fix) rather than the column dropped in silence.
_RESEARCH_WORDS = frozenset({
    "pubs", "pub", "posters", "poster", "abstracts", "abstract", "presentations",
    "publications", "publication", "papers", "manuscripts", "research",
})


def suggest_header(text: str) -> Field | None:
    """Return the field a near-miss header probably meant (`Step 2 CK Scroe`), or None."""
    key = header_key(text)
    if len(key) < 4:
        return None
    words = set(re.findall(r"[a-z]+", text.casefold()))
    if words & _RESEARCH_WORDS and "advisor" not in words:
        return FIELD_BY_NAME["research_count"]
    digits = [ch for ch in key if ch.isdigit()]
    for close in difflib.get_close_matches(key, ALIAS_INDEX.keys(), n=3, cutoff=0.8):
        # `Step 3` is another exam, not a typo of `Step 2`: the digits must agree.
        if [ch for ch in close if ch.isdigit()] == digits:
            return FIELD_BY_NAME[ALIAS_INDEX[close]]
    return None


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """Where the header row sits and which column holds which field (0-based positions)."""

    row: int
    columns: dict[str, int]  # canonical -> 0-based column
    written: dict[str, str]  # canonical -> header text as the office wrote it
    # (0-based column, header as written, field already taken by an earlier column)
    duplicates: tuple[tuple[int, str, str], ...] = ()
    # (0-based column, header as written, field it probably meant)
    near_misses: tuple[tuple[int, str, str], ...] = ()
    # (0-based column, header as written) of every header cell that feeds no field: kept in the
    # workbook as it is, and told to the office.
    unread: tuple[tuple[int, str], ...] = ()
    mapped: frozenset[str] = frozenset()  # fields found through the office's column map


def column_map_index(mapping: Mapping[str, str]) -> dict[str, str]:
    """Index an office's column map (field -> "Our header") by header key, for matching."""
    return {header_key(header): name for name, header in mapping.items()}


def match_header_row(
    cells: Sequence[Cell], row: int = 0, suggest: bool = True,
    custom: Mapping[str, str] | None = None,
) -> HeaderMatch:
    """Map one candidate header row's cells to fields; the leftmost column wins a field.

    custom (column_map_index of the office's ADVISING_COLUMN_MAP) is looked up before the
    aliases: the office's own words for a field win.
    """
    columns: dict[str, int] = {}
    written: dict[str, str] = {}
    duplicates: list[tuple[int, str, str]] = []
    unknown: list[tuple[int, str]] = []
    mapped: set[str] = set()
    for col, cell in enumerate(cells):
        if not isinstance(cell, str) or not cell.strip():
            continue
        text = " ".join(cell.split())
        name = custom.get(header_key(text)) if custom else None
        if name is not None and name not in columns:
            mapped.add(name)
        else:
            name = match_header(text)
        if name is None:
            unknown.append((col, text))
        elif name in columns:
            duplicates.append((col, text, name))
        else:
            columns[name] = col
            written[name] = text
    near: list[tuple[int, str, str]] = []
    for col, text in unknown if suggest else ():
        guess = suggest_header(text)
        # Only when the field it resembles is absent: `Step 2 CK (old)` beside `Step 2 CK` is fine.
        if guess is not None and guess.name not in columns:
            near.append((col, text, guess.name))
    unread = sorted([*unknown, *((col, text) for col, text, _ in duplicates)])
    return HeaderMatch(row, columns, written, tuple(duplicates), tuple(near), tuple(unread),
                       frozenset(mapped))


def find_header(
    rows: Sequence[Sequence[Cell]], max_scan: int = 30, min_fields: int = 2,
    custom: Mapping[str, str] | None = None,
) -> HeaderMatch | None:
    """Return the header among the first rows (title rows above it are skipped), or None.

    The header is the row naming the most fields; at least `min_fields` so a title such as
    "Step 1 results" is not taken for it.
    """
    best: HeaderMatch | None = None
    for index, cells in enumerate(rows[:max_scan]):
        if sum(1 for c in cells if isinstance(c, str) and c.strip()) < min_fields:
            continue
        candidate = match_header_row(cells, index, suggest=False, custom=custom)
        if len(candidate.columns) >= min_fields and (
            best is None or len(candidate.columns) > len(best.columns)
        ):
            best = candidate
    # "Did you mean" only for the header row itself, not for every row scanned.
    return None if best is None else match_header_row(rows[best.row], best.row, custom=custom)


def missing_required(columns: Mapping[str, int]) -> list[Field]:
    """Return the required fields no column provides (`name` is also met by first + last)."""
    missing = []
    for name in REQUIRED_FIELDS:
        if name in columns:
            continue
        if name == "name" and "first_name" in columns and "last_name" in columns:
            continue
        missing.append(FIELD_BY_NAME[name])
    return missing


def accepted_headers(field: Field, limit: int = 4) -> str:
    """Name a few headers we accept for a field, for messages about a missing column."""
    shown = [f"'{a}'" for a in field.aliases[:limit]]
    return ", ".join(shown)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invalid:
    """A cell that cannot be read as its field: what is wrong and what to do."""

    what: str
    fix: str


GradeCell = tuple[Grade | None, bool]  # (grade or None when not graded yet, conditional pass)

# Every whitespace Excel users paste: no-break, thin, figure and narrow no-break spaces.
_SPACES = re.compile(r"[\s\u00a0\u2007\u2009\u202f]+")
# Cells that mean "nothing here yet" in an optional number or date column.
_BLANK_MARKERS = frozenset(
    {"", "-", "\u2013", "\u2014", "na", "n/a", "none", "tbd", "pending", "not reported",
     "not yet", "not available", "null"}
)


def cell_text(value: Cell) -> str:
    """Show a cell as the office sees it: 245 not 245.0, dates as 2026-07-15, text trimmed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return " ".join(value.split())


def _is_blank(value: Cell) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _marker(value: str) -> str:
    return _SPACES.sub(" ", value).strip().casefold()


@lru_cache(maxsize=4096, typed=True)
def norm_text(value: Cell) -> str | None:
    """Trim and collapse spaces (any script is kept as written); None for a blank cell."""
    if _is_blank(value):
        return None
    text = _SPACES.sub(" ", cell_text(value)).strip()
    return text or None


@lru_cache(maxsize=65536, typed=True)
def norm_student_id(value: Cell) -> str | None | Invalid:
    """Read an ID as text, keeping leading zeros; a numeric cell becomes `123`, never `123.0`."""
    if _is_blank(value):
        return None
    if isinstance(value, bool) or isinstance(value, date | time | timedelta):
        return Invalid(
            f"the student ID cell holds {cell_text(value)}, not an ID",
            "Type the student's ID (format the column as Text to keep leading zeros).",
        )
    if isinstance(value, float) and not value.is_integer():
        return Invalid(
            f"student ID {cell_text(value)} is not a whole number",
            "Type the ID exactly as the school issues it (format the column as Text).",
        )
    return _SPACES.sub(" ", cell_text(value)).strip()


_STEP1: dict[str, Step1Result] = {
    "pass": "pass", "p": "pass", "passed": "pass",
    "fail": "fail", "f": "fail", "failed": "fail",
    "not taken": "not taken", "nt": "not taken", "not yet taken": "not taken",
    "not taken yet": "not taken", "nottaken": "not taken", "not attempted": "not taken",
}


@lru_cache(maxsize=256, typed=True)
def norm_step1_result(value: Cell) -> Step1Result | Invalid:
    """Read Pass / Fail / Not taken (P, F accepted); a blank cell is a problem, it is required."""
    if _is_blank(value):
        return Invalid(
            "the Step 1 result is blank",
            "Enter Pass, Fail or Not taken.",
        )
    found = _STEP1.get(_marker(cell_text(value)).rstrip("."))
    if found is None:
        return Invalid(
            f"Step 1 result '{cell_text(value)}' is not Pass, Fail or Not taken",
            "Enter Pass, Fail or Not taken (P and F are accepted).",
        )
    return found


_GRADES: dict[str, GradeCell] = {
    "h": ("H", False), "honors": ("H", False), "honours": ("H", False), "honor": ("H", False),
    "hp": ("HP", False), "high pass": ("HP", False), "highpass": ("HP", False),
    "high-pass": ("HP", False), "h/p": ("HP", False),
    "p": ("P", False), "pass": ("P", False), "passed": ("P", False),
    "f": ("F", False), "fail": ("F", False), "failed": ("F", False),
    "conditional pass": ("P", True), "cp": ("P", True), "conditional": ("P", True),
    "pass (conditional)": ("P", True), "conditional-pass": ("P", True), "cond pass": ("P", True),
    "ip": (None, False), "in progress": (None, False), "in-progress": (None, False),
    "not graded": (None, False), "not yet graded": (None, False), "pending": (None, False),
    "incomplete": (None, False), "inc": (None, False), "tbd": (None, False),
    "-": (None, False), "n/a": (None, False), "na": (None, False),
}


@lru_cache(maxsize=256, typed=True)
def norm_grade(value: Cell) -> GradeCell | Invalid:
    """Read a clerkship grade: H/HP/P/F or words; IP or blank = not graded; Conditional Pass = P."""
    if _is_blank(value):
        return (None, False)
    found = _GRADES.get(_marker(cell_text(value)).rstrip("."))
    if found is None:
        return Invalid(
            f"clerkship grade '{cell_text(value)}' is not one we know",
            "Use Honors, High Pass, Pass, Fail (or H, HP, P, F), Conditional Pass, "
            "or IP / leave blank when not graded yet.",
        )
    return found


_MATCH_RESULTS: dict[str, MatchResult] = {
    "matched": "matched", "match": "matched", "yes": "matched", "y": "matched",
    "m": "matched",
    "matched in soap": "matched in SOAP", "soap": "matched in SOAP",
    "matched (soap)": "matched in SOAP", "matched through soap": "matched in SOAP",
    "matched via soap": "matched in SOAP", "soap match": "matched in SOAP",
    "soap matched": "matched in SOAP",
    "did not match": "did not match", "not matched": "did not match", "unmatched": "did not match",
    "no match": "did not match", "no": "did not match", "n": "did not match",
    "dnm": "did not match", "didn't match": "did not match", "didnt match": "did not match",
    "did not match (soap)": "did not match",
}


@lru_cache(maxsize=256, typed=True)
def norm_match_result(value: Cell) -> MatchResult | None | Invalid:
    """Read the Match result: Matched / Matched in SOAP / Did not match; blank = not known."""
    if _is_blank(value):
        return None
    found = _MATCH_RESULTS.get(_marker(cell_text(value)).rstrip("."))
    if found is None:
        return Invalid(
            f"Match result '{cell_text(value)}' is not Matched, Matched in SOAP or Did not match",
            "Enter Matched, Matched in SOAP or Did not match, or leave the cell blank until "
            "the result is known.",
        )
    return found


_LETTERS: dict[str, LetterStrength] = {
    "strong": "strong", "s": "strong", "average": "average", "a": "average", "avg": "average",
    "weak": "weak", "w": "weak",
}
_MARGINS: dict[str, Step1Margin] = {
    "marginal": "marginal", "m": "marginal", "comfortable": "comfortable", "c": "comfortable",
}


@lru_cache(maxsize=256, typed=True)
def norm_letters(value: Cell) -> LetterStrength | None | Invalid:
    """Read letter strength: Strong / Average / Weak; blank = not known."""
    if _is_blank(value):
        return None
    found = _LETTERS.get(_marker(cell_text(value)))
    if found is None:
        return Invalid(
            f"letter strength '{cell_text(value)}' is not Strong, Average or Weak",
            "Enter Strong, Average or Weak, or leave the cell blank.",
        )
    return found


@lru_cache(maxsize=256, typed=True)
def norm_margin(value: Cell) -> Step1Margin | None | Invalid:
    """Read the Step 1 margin: Marginal / Comfortable; blank = no judgement given."""
    if _is_blank(value):
        return None
    found = _MARGINS.get(_marker(cell_text(value)))
    if found is None:
        return Invalid(
            f"Step 1 margin '{cell_text(value)}' is not Marginal or Comfortable",
            "Enter Marginal or Comfortable, or leave the cell blank.",
        )
    return found


_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


@lru_cache(maxsize=8192, typed=True)
def norm_whole(value: Cell, noun: str) -> int | None | Invalid:
    """Read a whole number stored as a number or as text (` 245 `, `245.0`, `1,024`)."""
    if value is None or _is_blank(value):
        return None
    if isinstance(value, bool) or isinstance(value, date | time | timedelta):
        return Invalid(
            f"the {noun} cell holds {cell_text(value)}, not a number",
            f"Type the {noun} as digits, or leave the cell blank.",
        )
    number: float
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = _SPACES.sub("", value)
        if text.casefold() in _BLANK_MARKERS or _marker(value) in _BLANK_MARKERS:
            return None
        if _THOUSANDS.match(text):
            text = text.replace(",", "")
        try:
            number = float(text)
        except ValueError:
            return Invalid(
                f"{noun} '{cell_text(value)}' is not a number",
                f"Type the {noun} as digits (for example 245), or leave the cell blank.",
            )
    if number != number or number in (float("inf"), float("-inf")):
        return Invalid(f"{noun} '{cell_text(value)}' is not a number",
                       f"Type the {noun} as digits, or leave the cell blank.")
    if not number.is_integer():
        return Invalid(
            f"{noun} {cell_text(value).strip()} is not a whole number",
            f"Type the {noun} as a whole number.",
        )
    return int(number)


EXCEL_EPOCH = date(1899, 12, 30)  # serial 1 = 1900-01-01 (Excel's 1900 leap-year bug included)
_MAX_SERIAL = 2958465  # 9999-12-31
_DATE_FORMATS = (
    "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d",
    # Two-digit years first: strptime's %Y would read "7/15/26" as the year 26.
    "%m/%d/%y", "%m-%d-%y", "%m/%d/%Y", "%m-%d-%Y", "%m.%d.%Y",
    "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y",  # only reached when the month-first reading fails
    "%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y", "%b %d, %Y", "%B %d, %Y",
    "%d-%b-%Y", "%d-%b-%y", "%b-%d-%Y", "%a %b %d %Y", "%A, %B %d, %Y",
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S",
)


def excel_serial_to_date(serial: float) -> date | None:
    """Turn an Excel day serial into a date; None outside what Excel can show."""
    if not 1 <= serial <= _MAX_SERIAL:
        return None
    return EXCEL_EPOCH + timedelta(days=int(serial))


@lru_cache(maxsize=4096, typed=True)
def norm_date(value: Cell, noun: str) -> date | None | Invalid:
    """Read a date given as a date cell, an Excel serial (46218) or text (7/15/2026, 15 Jul 2026).

    Text dates are read month first (US style) and day first only when that cannot be a date.
    """
    if value is None or _is_blank(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    bad = Invalid(
        f"{noun} '{cell_text(value)}' is not a date",
        "Enter the date as a date (for example 7/15/2026), or leave the cell blank.",
    )
    if isinstance(value, bool) or isinstance(value, time | timedelta):
        return bad
    if isinstance(value, int | float):
        found = excel_serial_to_date(float(value))
        return bad if found is None else found
    text = _SPACES.sub(" ", value).strip()
    if text.casefold() in _BLANK_MARKERS:
        return None
    if re.fullmatch(r"\d{5}(\.\d+)?", text):  # a serial pasted as text
        found = excel_serial_to_date(float(text))
        return bad if found is None else found
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text.replace(",", ", ").replace(",  ", ", "))
    for candidate in dict.fromkeys((text, cleaned, cleaned.replace(",", ""))):
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(candidate, fmt).date()
            except ValueError:
                continue
    return bad


@lru_cache(maxsize=65536, typed=True)
def norm_email(value: Cell) -> str | None:
    """Trim an address (and a pasted `mailto:`), lower-case its domain; GX checks the shape."""
    text = norm_text(value)
    if text is None:
        return None
    if text.casefold().startswith("mailto:"):
        text = text[7:].strip()
    local, at, domain = text.rpartition("@")
    if at and local:
        return f"{local}@{domain.lower()}"
    return text


# One plain ASCII addr-spec: dot-atom local part, dotted domain, 254 characters at most. The GX
# suite checks roster cells with EMAIL_PATTERN and delivery checks with is_address, so a cell the
# Problems sheet lets through is one the relay will be given. Quoted local parts and non-ASCII
# addresses (SMTPUTF8) are refused: a school relay may not support them.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^(?=.{{1,254}}$){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$"
_ADDRESS = re.compile(EMAIL_PATTERN)
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LINE_BREAK = re.compile(r"[\r\n\x00]")


def is_address(value: str) -> bool:
    """Tell whether value is one plain email address (and so safe in a header)."""
    return "\n" not in value and _ADDRESS.match(value) is not None


def is_domain(value: str) -> bool:
    """Tell whether value is a DNS domain name such as school.edu."""
    return len(value) <= 253 and _DOMAIN.fullmatch(value) is not None


def has_line_break(value: str) -> bool:
    """Tell whether a header value would break out of its header line (CR, LF or NUL)."""
    return _LINE_BREAK.search(value) is not None


def parse_sender(value: str) -> tuple[str, str] | None:
    """Split a setting like 'Office <advising@school.edu>' into (name, address); None if bad."""
    if not value or has_line_break(value):
        return None
    found = getaddresses([value])
    if len(found) != 1 or not is_address(found[0][1]):
        return None
    return found[0]


def email_domain(address: str) -> str:
    """Return the lower-cased domain of an address (the text after the last @)."""
    return address.rpartition("@")[2].lower()


def domain_pattern(domains: Sequence[str]) -> str:
    """Return a regex matching the allowed domains and their subdomains (`med.school.edu`)."""
    names = "|".join(re.escape(d.lower().lstrip("@")) for d in domains)
    return rf"^(?:[a-z0-9-]+\.)*(?:{names})$"


def domain_allowed(address: str, domains: Sequence[str]) -> bool:
    """Tell whether the address is in one of the allowed domains (or under one); empty = any."""
    if not domains:
        return True
    domain = email_domain(address)
    return any(domain == d or domain.endswith("." + d) for d in (x.lower() for x in domains))


GRADES: tuple[Grade, ...] = ("H", "HP", "P", "F")
STEP1_RESULTS: tuple[Step1Result, ...] = ("pass", "fail", "not taken")
LETTER_STRENGTHS: tuple[LetterStrength, ...] = ("strong", "average", "weak")
MARGINS: tuple[Step1Margin, ...] = ("marginal", "comfortable")
SCORE_RANGE = (1, 300)
ATTEMPTS_RANGE = (1, 6)
# A Step 2 CK date the roster may hold: from the exam's modern form to a few years ahead.
EARLIEST_STEP2_DATE = date(2010, 1, 1)
STEP2_DATE_YEARS_AHEAD = 3


def step2_date_range(today: date) -> tuple[date, date]:
    """Return the first and last likely Step 2 CK date on `today` (validation and template)."""
    return EARLIEST_STEP2_DATE, date(today.year + STEP2_DATE_YEARS_AHEAD, 12, 31)

# Words the template's dropdowns offer (what the office sees), and that the normalisers accept.
DROPDOWNS: dict[str, tuple[str, ...]] = {
    "step1_result": ("Pass", "Fail", "Not taken"),
    "step1_margin": ("Marginal", "Comfortable"),
    "letters": ("Strong", "Average", "Weak"),
    "match_result": ("Matched", "Matched in SOAP", "Did not match"),
    "clerkship": ("Honors", "High Pass", "Pass", "Fail", "Conditional Pass", "IP"),
}

Kind = Literal[
    "text", "id", "step1_result", "whole", "date", "grade", "letters", "margin", "email",
    "match_result",
]
KINDS: dict[str, Kind] = {
    "student_id": "id",
    "name": "text",
    "first_name": "text",
    "last_name": "text",
    "email": "email",
    "step1_result": "step1_result",
    "step1_attempts": "whole",
    "step1_score": "whole",
    "step1_margin": "margin",
    "step2_score": "whole",
    "step2_date": "date",
    "step2_attempts": "whole",
    "specialty": "text",
    **{name: "grade" for name in CLERKSHIP_FIELDS},
    "research_count": "whole",
    "letters": "letters",
    "interviews": "whole",
    "match_result": "match_result",
    "advisor": "text",
    "advisor_email": "email",
}
