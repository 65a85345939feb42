"""Letters on the days of the application calendar: the acceptance run dates, a student,
settings pinned to a day, rendering, and the kinds of advice a letter holds."""


from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.letters import Letter, LetterSummary, render_letters
from flows.letters import render as letters_render
from flows.settings import Settings
from residency_rules.records import Evaluation, StudentRecord
from residency_rules.rules import evaluate_all
from residency_rules.specialties import load_default_table

TABLE = load_default_table()


CYCLE = TABLE.calendar


# The run dates of the acceptance: two while applying, then interviews, then ranking.
RUN_DATES = (date(2026, 5, 15), date(2026, 8, 10), date(2026, 12, 5), date(2027, 2, 20))


_DATE = re.compile(
    r"\b(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* (\d{4})\b"
)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# Keys of application advice: none of them for a student who has not passed Step 1.
APPLICATION_KEYS = frozenset(
    ("mix", "parallel", "apply", "interviews", "explain", "add", "rank", "soap", "match_day",
     "statement", "package")
)


def dates_in(text: str) -> list[date]:
    """Every full date written in a text (23 Sep 2026, 23 September 2026)."""
    return [date(int(y), _MONTHS.index(m) + 1, int(d)) for d, m, y in _DATE.findall(text)]


def student(sid: str = "S1", **fields: Any) -> StudentRecord:
    base: dict[str, Any] = {
        "student_id": sid, "name": "Ana Lima", "email": f"{sid.lower()}@school.edu",
        "step1_result": "pass", "step1_attempts": 1, "specialty": "Internal Medicine",
        "advisor": "Dr. Rosa Ortiz", "advisor_email": "rosa.ortiz@school.edu",
    }
    base.update(fields)
    return StudentRecord(**base)


def make_settings(today: date, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "today": today, "allowed_email_domains": ("school.edu",),
        "reply_to": "advising@school.edu",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def render(
    records: list[StudentRecord], today: date, tmp: Path,
    previous: dict[str, LetterSummary] | None = None, wrapped: bool = True,
) -> tuple[list[Letter], list[Evaluation]]:
    """Evaluate and render; wrapped=False leaves each plain-text paragraph on one line, for
    tests that read it line by line (wrapping moves only whitespace: tests/test_letters.py)."""
    evaluations = evaluate_all(records, TABLE, today=today)
    with pytest.MonkeyPatch.context() as patch:
        if not wrapped:
            patch.setattr(letters_render, "wrap_text", lambda text: text)
        letters = render_letters(
            records, {e.student_id: e for e in evaluations}, TABLE, make_settings(today),
            previous or {}, tmp,
        )
    return letters, evaluations


G = ("Internal Medicine", "Surgery", "Pediatrics", "Obstetrics and Gynecology", "Psychiatry",
     "Neurology", "Family Medicine")


def kinds(today: date | None = None) -> list[StudentRecord]:
    """A varied roster: above and below the marks, pending early / late / past, Step 1
    failures and not passed, hyper-competitive, a failed Step 2 CK; given the letter's date,
    also the students issue #23 named: Step 1 failed twice, Ophthalmology (SF Match), Urology
    (AUA), Dermatology 262 after a failed Step 2 CK, Family Medicine 234, an exam sat last
    week and one in ten days, and the Match results."""
    extra: list[StudentRecord] = []
    if today is not None:
        extra = [
            student("S1_TWICE", step1_result="fail", step1_attempts=2),
            student("OPHTHO", specialty="Ophthalmology", step2_score=262, research_count=3,
                    clerkships=tuple(zip(G, "HHHPHPH", strict=True))),
            student("URO", specialty="Urology", step2_score=250, research_count=1),
            student("DERM_S2F", specialty="Dermatology", step2_score=262, step2_attempts=2,
                    research_count=4, clerkships=tuple(zip(G, "HHHHPHP", strict=True))),
            student("FM_234", specialty="Family Medicine", step2_score=234),
            student("SAT_LAST_WEEK", specialty="Emergency Medicine",
                    step2_date=today - timedelta(days=7)),
            student("EXAM_IN_10_DAYS", specialty="Pediatrics",
                    step2_date=today + timedelta(days=10)),
            student("MATCHED", specialty="Internal Medicine", step2_score=250,
                    match_result="matched"),
            student("UNMATCHED", specialty="General Surgery", step2_score=244,
                    step1_attempts=2, match_result="did not match"),
        ]
    return [
        student("STRONG", specialty="Emergency Medicine", step2_score=248, step1_margin="marginal"),
        student("PEND_EARLY", step2_date=date(2026, 7, 15)),
        student("PEND_LATE", specialty="Emergency Medicine", step2_date=date(2026, 9, 10)),
        student("PEND_NONE", specialty="Pediatrics"),
        student("FAILED_ONCE", specialty="Family Medicine", step1_attempts=2, step2_score=252),
        student("FAILED_TWICE", step1_attempts=3, step2_score=251),
        student("S1_NOT_PASSED", step1_result="fail"),
        student("HYPER_REACH", specialty="Dermatology", step2_score=262, research_count=0,
                clerkships=tuple(zip(G, ("H", "P", "HP", None, None), strict=False))),
        student("AT_RISK", specialty="General Surgery", step2_score=240, interviews=4,
                letters="weak"),
        student("STEP2_FAILED", step2_score=210, step2_date=date(2026, 6, 10)),
        student("ALL_PASS", step2_score=255, clerkships=tuple(zip(G, "PPPPPPP", strict=True))),
        *extra,
    ]

