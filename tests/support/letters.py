"""Letters for tests: settings, a student and the evaluation the rules give it, one letter
rendered, the golden cases, and the strict HTML checker every letter must pass."""


from __future__ import annotations

import os
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from flows.letters import Letter, LetterSummary
from flows.letters.render import render_letters
from flows.settings import Settings
from residency_rules.records import (
    AdviceItem,
    Evaluation,
    NextLevel,
    ProgramMix,
    Reason,
    StudentRecord,
)
from residency_rules.specialties import SpecialtyTable
from tests.conftest import RUN_DATE

XSS_NAME = "<script>alert(1)</script> O'Brien & Zoë"


@pytest.fixture(autouse=True)
def _no_advising_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's ADVISING_* variables out of these tests."""
    for key in list(os.environ):
        if key.startswith("ADVISING_"):
            monkeypatch.delenv(key)


def make_settings(**overrides: Any) -> Settings:
    """Settings for a test: today pinned, the school's domain allowed, no .env file."""
    values: dict[str, Any] = {
        "today": RUN_DATE,
        "allowed_email_domains": ("school.edu",),
        "reply_to": "advising@school.edu",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def make_student(student_id: str = "S001", **overrides: Any) -> StudentRecord:
    """A student who passed Step 1 and has a Step 2 CK for Emergency Medicine."""
    values: dict[str, Any] = {
        "student_id": student_id,
        "name": "Ana Lima",
        "email": f"{student_id.lower()}@school.edu",
        "step1_result": "pass",
        "step1_attempts": 1,
        "specialty": "Emergency Medicine",
        "step1_margin": "marginal",
        "step2_score": 248,
        "advisor": "Dr. Rosa Ortiz",
        "advisor_email": "rosa.ortiz@school.edu",
    }
    values.update(overrides)
    return StudentRecord(**values)


def make_evaluation(student_id: str = "S001", **overrides: Any) -> Evaluation:
    """The evaluation the rules give make_student(): level 4, competitive for many programs."""
    values: dict[str, Any] = {
        "student_id": student_id,
        "specialty": "Emergency Medicine",
        "tier": "moderate",
        "solid": 245,
        "excellent": 255,
        "step1_status": "clean",
        "step1_marginal": True,
        "raw_band": "solid",
        "band": "solid",
        "clerkships": "neutral",
        "level": 4,
        "label": "Competitive for many programs",
        "impact": 80,
        "trend": "stable",
        "timing_late": False,
        "reasons": (
            Reason("step1.clean", "You passed Step 1 on the first try. Step 1 is pass/fail, so "
                   "programs will lean on your Step 2 CK to judge you."),
            Reason("step2.solid", "Your Step 2 CK score of 248 is solid for Emergency Medicine "
                   "(245 or more); 255 would be excellent."),
            Reason("matrix", "With a first-try Step 1 pass and a solid Step 2 CK, your outlook "
                   "for Emergency Medicine is: Competitive for many programs."),
            Reason("impact", "How much your Step 2 CK can help here: about 80 out of 100 (no "
                   "Step 1 problems). A rule of thumb, not science."),
        ),
        "advice": (
            AdviceItem("target", "The target range for Emergency Medicine is 245-255; you "
                       "scored 248.", "What counts as strong"),
            AdviceItem("mix", "Build a realistic program list: about 20% reach, 50% solid and "
                       "30% safety programs.", "Game plan 6"),
        ),
        "mix": ProgramMix(20, 50, 30, parallel_plan=False, meet_advisor=False),
        "rules_version": "2026.1",
        "next_levels": (NextLevel(5, "Very competitive", 255),),
        "step2_score": 248,
    }
    values.update(overrides)
    return Evaluation(**values)


def flat(text: str) -> str:
    """The plain-text part with its line wrapping undone, for looking up a phrase in it."""
    return " ".join(text.split())


def render_one(
    tmp_path: Path,
    table: SpecialtyTable,
    record: StudentRecord | None = None,
    evaluation: Evaluation | None = None,
    previous: LetterSummary | None = None,
    settings: Settings | None = None,
) -> Letter:
    """Render one letter into tmp_path/letters and return it."""
    record = record or make_student()
    evaluation = evaluation or make_evaluation(record.student_id)
    prev = {record.student_id: previous} if previous else {}
    letters = render_letters(
        [record], {record.student_id: evaluation}, table, settings or make_settings(), prev,
        tmp_path / "letters",
    )
    assert len(letters) == 1
    return letters[0]


def ruled(record: StudentRecord, today: date = RUN_DATE) -> Evaluation:
    """The evaluation the real rules give a record on the letter's date."""
    from residency_rules.rules import evaluate
    from residency_rules.specialties import load_default_table

    return evaluate(record, load_default_table(), today=today)


def _cases() -> dict[str, tuple[StudentRecord, Evaluation, LetterSummary | None]]:
    """The golden letters' students, evaluated by the real rules on RUN_DATE (24 Nov 2026,
    the interview season), and one hand-built evaluation carrying hostile text."""
    pending_record = make_student(
        "P01", name="Kwame Mensah", specialty="Internal Medicine", step2_score=None,
        step1_margin=None, step2_date=date(2026, 12, 15), advisor=None, advisor_email=None,
    )
    pending = (pending_record, ruled(pending_record), None)
    changed_record = make_student("F01", name="Li Wei", specialty="Family Medicine",
                                  step1_attempts=2, step1_margin=None, step2_score=252)
    changed = (
        changed_record,
        ruled(changed_record),
        LetterSummary(2, "Reach: apply broadly, with explanation", "borderline", 238,
                      "Family Medicine", date(2026, 10, 1)),
    )
    hyper_record = make_student(
        "D01", name="Sofía Núñez", specialty="Dermatology", step1_margin=None, step2_score=262,
        research_count=0, letters="weak",
        clerkships=(("Internal Medicine", "HP"), ("Surgery", "P"), ("Pediatrics", "P"),
                    ("Psychiatry", None)),
    )
    hyper = (hyper_record, ruled(hyper_record), None)
    at_risk_record = make_student(
        "G01", name="Jonas Berg", specialty="General Surgery", step1_attempts=2,
        step1_margin=None, step2_score=240, advisor=None, advisor_email=None,
        conditional_pass=("Surgery",), clerkships=(("Surgery", "P"),),
    )
    at_risk = (at_risk_record, ruled(at_risk_record), None)
    hostile = (
        make_student("X01", name=XSS_NAME, advisor="Dr. <b>Bold</b> & \"Quote\"",
                     advisor_email="adv@school.edu"),
        make_evaluation(
            "X01",
            reasons=(Reason("matrix", "A reason with <i>markup</i> & \"quotes\" in it."),),
            advice=(AdviceItem("target", "Aim <u>high</u>.", "t"),),
        ),
        None,
    )
    return {
        "strong_em": (make_student(), ruled(make_student()), None),
        "pending_late": pending,
        "failure_changed": changed,
        "hyper_reach": hyper,
        "at_risk_parallel": at_risk,
        "hostile_input": hostile,
    }


CASES = _cases()


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


FORBIDDEN = {"script", "style", "link", "img", "iframe", "object", "embed", "form", "input",
             "svg", "math", "base", "video", "audio", "frame", "frameset"}


class StrictChecker(HTMLParser):
    """Check a letter's HTML: balanced tags, nothing active, nothing fetched from outside."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.decls: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.decls.append(decl)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag in FORBIDDEN:
            self.errors.append(f"<{tag}> is not allowed in a letter")
        for name, value in attrs:
            low = (value or "").lower()
            if name.startswith("on"):
                self.errors.append(f"event handler {name} on <{tag}>")
            if name in ("href", "src", "action", "background") and not low.startswith("mailto:"):
                self.errors.append(f"{name}={value!r} on <{tag}> points outside the letter")
            if "javascript:" in low or "url(" in low or "expression(" in low or "@import" in low:
                self.errors.append(f"active or external content in {name} of <{tag}>")
            if name == "style" and value:
                self.styles.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"end tag for void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close <{self.stack[-1] if self.stack else ''}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def finish(self) -> StrictChecker:
        self.close()
        if self.stack:
            self.errors.append(f"unclosed elements: {self.stack}")
        return self

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def check_html(html: str) -> StrictChecker:
    """Parse a letter and fail the test on any structural or safety problem."""
    checker = StrictChecker()
    checker.feed(html)
    checker.finish()
    assert checker.errors == []
    assert checker.decls == ["DOCTYPE html"]
    assert checker.elements[0][0] == "html"
    return checker

