"""Students for property tests: a hypothesis strategy over every roster field, the article's
acceptance examples, and a plain student builder."""


from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import strategies as st

from residency_rules.records import CLERKSHIPS, Grade, StudentRecord
from residency_rules.specialties import load_default_table

TABLE = load_default_table()


def student(**fields: Any) -> StudentRecord:
    """Build a record: a clean first-try Step 1 pass unless told otherwise."""
    base: dict[str, Any] = {
        "student_id": "S001",
        "name": "Ada Example",
        "email": "ada@school.edu",
        "step1_result": "pass",
        "step1_attempts": 1,
        "specialty": "Internal Medicine",
    }
    base.update(fields)
    return StudentRecord(**base)


ACCEPTANCE = [
    ({"step1_margin": "marginal"}, 255, "Internal Medicine", "Very competitive"),
    ({"step1_margin": "marginal"}, 250, "Emergency Medicine", "Competitive for many programs"),
    ({"step1_margin": "marginal"}, 245, "Psychiatry", "Strong candidate"),
    ({"step1_margin": "marginal"}, 260, "General Surgery", "Competitive at many places"),
    ({"step1_attempts": 2}, 255, "Family Medicine", "Matchable, with explanation"),
    ({}, 248, "Emergency Medicine", "Competitive for many programs"),
    ({"step1_attempts": 2}, 252, "Family Medicine", "Matchable, with explanation"),
]


GRADES: list[Grade | None] = ["H", "HP", "P", "F", None]


@st.composite
def records(draw: st.DrawFn) -> StudentRecord:
    """Any record the roster schema allows."""
    names = draw(st.lists(st.sampled_from(CLERKSHIPS), unique=True, max_size=7))
    return student(
        step1_result=draw(st.sampled_from(["pass", "fail", "not taken"])),
        step1_attempts=draw(st.integers(1, 6)),
        step1_score=draw(st.none() | st.integers(1, 300)),
        step1_margin=draw(st.sampled_from([None, "marginal", "comfortable"])),
        step2_score=draw(st.none() | st.integers(1, 300)),
        step2_date=draw(st.none() | st.dates(date(2024, 1, 1), date(2027, 6, 1))),
        step2_attempts=draw(st.none() | st.integers(1, 6)),
        specialty=draw(st.sampled_from(TABLE.names())),
        clerkships=tuple((n, draw(st.sampled_from(GRADES))) for n in names),
        research_count=draw(st.none() | st.integers(0, 20)),
        letters=draw(st.sampled_from([None, "strong", "average", "weak"])),
    )

