"""The whole letter checked, not examples: the rules of issue #23 as executable invariants.

Every letter of a generated matrix of situations (each phase of the calendar and each match
system, Step 1 and Step 2 CK states, exam timing, tiers, modifiers, Match results), and of
hypothesis-chosen students on dates across a whole cycle (after the Match included), is
rendered with the real rules and templates and must keep every rule below. docs/rules.md,
"Every letter item", lists what each item needs to be printed.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import statistics
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from flows.letters import Letter
from flows.letters import render as letters_render
from flows.letters.context import Run
from flows.letters.render import load_templates
from residency_rules.calendar import Cycle
from residency_rules.explain import times
from residency_rules.records import CLERKSHIPS, Evaluation, StudentRecord
from residency_rules.rulebook import TIERS
from residency_rules.rules import evaluate
from residency_rules.specialties import load_default_table
from tests.support.calendar_letters import make_settings, student
from tests.support.records import ACCEPTANCE
from tests.support.records import records as any_record

TABLE = load_default_table()
CYCLE = TABLE.calendar
assert CYCLE is not None
LABELS = sorted(TABLE.rules.labels(), key=len, reverse=True)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
_FULL_DATE = re.compile(
    r"\b(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* (\d{4})\b"
)
_SHORT = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Days across the cycle, one or more in every phase of every match.
DAYS = (
    date(2026, 3, 25),  # preparing (before 1 May)
    date(2026, 5, 20),  # preparing, the last weeks: the day ERAS opens
    date(2026, 6, 20),  # applying, submissions more than four weeks away
    date(2026, 8, 10),  # applying, submissions within the plan's four weeks
    date(2026, 9, 5),  # applying, ERAS takes submissions
    date(2026, 10, 15),  # interviewing
    date(2026, 12, 6),  # interviewing, mid-season
    date(2027, 1, 10),  # SF Match and AUA ranking
    date(2027, 1, 22),  # SF Match results awaited (its match week), AUA ranking
    date(2027, 2, 5),  # NRMP ranking; SF Match and AUA over
    date(2027, 2, 25),  # NRMP ranking, the deadline near
    date(2027, 3, 10),  # NRMP match week, before SOAP
    date(2027, 3, 16),  # SOAP
    date(2027, 3, 25),  # after the Match
    date(2027, 5, 20),  # after the Match, the next cycle's dates not set
)
SPECIALTIES = ("Internal Medicine", "Family Medicine", "Emergency Medicine",
               "Diagnostic Radiology", "Dermatology", "Ophthalmology", "Urology")
STEP1: dict[str, dict[str, Any]] = {
    "clean": {},
    "marginal": {"step1_margin": "marginal"},
    "failed once": {"step1_attempts": 2},
    "failed twice": {"step1_attempts": 3},
    "not passed": {"step1_result": "fail", "step1_attempts": 1},
    "not passed twice": {"step1_result": "fail", "step1_attempts": 2},
    "not taken": {"step1_result": "not taken"},
}


def step2_states(today: date, specialty: str) -> dict[str, dict[str, Any]]:
    """Step 2 CK on the letter's day: a score in each of the specialty's bands, failing,
    after a failed attempt, and no score yet at every distance from the exam."""
    spec = TABLE.get(specialty)
    passing = TABLE.rules.failing_score
    return {
        "excellent": {"step2_score": spec.excellent + 1},
        "solid": {"step2_score": spec.solid + 1},
        "borderline": {"step2_score": spec.solid - 2},
        "below": {"step2_score": max(spec.solid - 8, passing + 1)},
        "failing": {"step2_score": 210, "step2_date": today - timedelta(days=40)},
        "passed after a failure": {"step2_score": spec.solid + 3, "step2_attempts": 2},
        "unscheduled": {},
        "in ten weeks": {"step2_date": today + timedelta(weeks=10)},
        "in five weeks": {"step2_date": today + timedelta(weeks=5)},
        "in ten days": {"step2_date": today + timedelta(days=10)},
        "in two days": {"step2_date": today + timedelta(days=2)},
        "sat last week": {"step2_date": today - timedelta(days=7)},
        "sat six weeks ago": {"step2_date": today - timedelta(weeks=6)},
    }


G = CLERKSHIPS
MODIFIERS: tuple[dict[str, Any], ...] = (
    {},
    {"clerkships": tuple(zip(G, "HHHPHPH", strict=True)), "research_count": 3,
     "letters": "strong"},
    {"clerkships": tuple(zip(G, "PPPPP", strict=False)), "research_count": 0,
     "letters": "weak"},
    {"clerkships": tuple(zip(G, ("H", "F", "HP", None), strict=False)), "letters": "average"},
    {"research_count": 1, "letters": "weak"},
)
RESULTS = (None, "matched", "matched in SOAP", "did not match")


def matrix(today: date) -> Iterator[StudentRecord]:
    """Every specialty x Step 1 state x Step 2 CK state on the day; modifiers and Match
    results cycle through the rows so each meets every other dimension."""
    n = 0
    for specialty, (_s1, f1) in itertools.product(SPECIALTIES, STEP1.items()):
        for f2 in step2_states(today, specialty).values():
            modifiers = MODIFIERS[n % len(MODIFIERS)]
            result = RESULTS[(n // len(MODIFIERS)) % len(RESULTS)]
            yield student(f"M{n:05d}", specialty=specialty, match_result=result,
                          **f1, **f2, **modifiers)
            n += 1


def letters_for(records: list[StudentRecord], today: date,
                monkeypatch: pytest.MonkeyPatch) -> list[tuple[StudentRecord, Evaluation, Letter]]:
    """Evaluate and render, plain text unwrapped (one paragraph a line), no file written."""
    monkeypatch.setattr(letters_render, "wrap_text", lambda text: text)
    run_settings = make_settings(today)
    run = Run(TABLE, run_settings)
    templates = load_templates(run_settings.templates_dir)
    out = []
    for record in records:
        ev = evaluate(record, TABLE, today=today, cycle=run.cycle)
        out.append((record, ev, letters_render._render_letter(run, templates, record, ev, None)))
    return out


# --- the invariants ---------------------------------------------------------------------------

NRMP_WORDS = re.compile(r"NRMP|SOAP|Match Week|Main Match|\brank", re.I)
# The office's letters-of-recommendation rating, in any wording.
RATING = re.compile(
    r"\b(strong|weak|average|rated|rating|good|poor)\b[^.;:]{0,30}\bletters?\b(?! of this)"
    r"|\bletters?\b[^.;:]{0,30}\b(strong|weak|average|rated|rating)\b"
    r"|letters? of recommendation|\bLORs?\b",
    re.I,
)
REASSURANCE = re.compile(
    r"\bfine\b|first thing programs check|you have what programs look for|serves you well"
    r"|nothing to worry|you're ok",
    re.I,
)
APPLICATION_KEYS = frozenset((
    "mix", "apply", "rank", "soap", "statement", "interviews", "package", "parallel", "add",
    "explain", "ready", "letters", "match_day", "results", "backup", "target",
))
LEVER_KEYS = frozenset(("package", "letters", "ready"))
SIT_EXAM = re.compile(r"\b(Take|Book|Keep|Move) (the|your) exam\b|Take the exam", re.I)


def dates_in(text: str) -> list[date]:
    return [date(int(y), _SHORT.index(m[:3]) + 1, int(d)) for d, m, y in _FULL_DATE.findall(text)]


def why_lines(text: str) -> list[str]:
    if "\nWHY\n" not in text:
        return []
    block = text.split("\nWHY\n", 1)[1].split("\n\n", 1)[0]
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


def body(text: str) -> str:
    """The letter without its signature and footer (names and the rules version)."""
    return text.split("\nQuestions? Reply", 1)[0]


def check(record: StudentRecord, ev: Evaluation, letter: Letter, today: date,
          cycle: Cycle = CYCLE) -> None:  # type: ignore[assignment]
    """Every rule of issue #23 for one rendered letter."""
    text = letter.text
    main = body(text)
    where = (record.student_id, today.isoformat(), ev.specialty, ev.step1_status,
             ev.exam_state, ev.phase, ev.match_result)
    after = ev.phase == "after match" and ev.applies_this_cycle
    keys = [a.key for a in ev.advice]
    passed = ev.step1_status in ("clean", "failure")

    # No date printed before the letter's date (a checked NRMP table names its check day).
    for day in dates_in(main):
        assert day >= today, (where, day, main)
    # Every plan day lies in the next four weeks, in causal order.
    assert len(ev.advice_days) == len(ev.advice) and all(0 <= d <= 28 for d in ev.advice_days)

    # No "submit" instruction dated before the student's service (ERAS, SF Match CAS) takes
    # submissions.
    own = cycle.for_match(ev.match_system)
    for item, day in zip(ev.advice, ev.advice_days, strict=True):
        if re.search(r"\bSubmit your (ERAS|SF Match CAS)\b", item.text):
            assert today + timedelta(days=day) >= own.submissions, (where, item.text)
    for item, day in zip(ev.advice, ev.advice_days, strict=True):
        if today + timedelta(days=day) < own.submissions:  # nothing to apply to yet
            assert not re.search(r"\bapply (to|in)\b", item.text, re.I), (where, item.text)
        # Grades already given cannot be worked on.
        if not any(g is None for _, g in record.clerkships):
            assert "Honors-level clinical grades" not in item.text, (where, item.text)
    if today + timedelta(days=28) < own.submissions:
        assert not re.search(r"\bsubmit\b", main, re.I), (where, main)

    # After the Match a score long overdue is asked for now, not "as soon as you have it".
    if ev.phase == "after match":
        assert "as soon as you have it" not in main, (where, main)

    # Once programs review, the list is sent: nothing about choosing it.
    if ev.phase in ("interviewing", "ranking", "match week"):
        assert "realistic program list" not in main, (where, main)

    # Once the rank lists are in (nothing left to move), nothing is left for programs to weigh.
    if ev.phase in ("match week", "after match"):
        assert "is what they will weigh" not in main, (where, main)
    else:  # while programs interview and rank, the failure's story still counts
        assert "failure as steady rather than a comeback;" not in main, (where, main)
    # A Step 1 failure is never answered with a bare "not a comeback": what changed is the story.
    if ev.step1_status == "failure":
        assert "as steady, not as a comeback" not in main, (where, main)

    # A personal statement points at a Step 2 CK score only when a passing one is in.
    if ev.exam_state != "in" or ev.raw_band == "failing":
        assert "how your Step 2 CK shows it" not in main, (where, main)

    # Each student applies through the match's own service (ERAS; SF Match CAS for the SF Match).
    service = cycle.system(ev.match_system).application
    # (The parallel application of an SF Match student goes through ERAS, and says so.)
    own_only = main.replace("parallel application through ERAS", "parallel application")
    for other in {"ERAS", "SF Match CAS"} - {service}:
        assert not re.search(rf"\b{other}\b", own_only), (where, other, main)

    # In the NRMP's Match Week a student who did not match is in SOAP, today.
    if ev.phase == "match week" and ev.match_result == "did not match" and passed:
        assert "SOAP is running this week" in main, where

    # Each student hears of their own match only.
    if ev.match_system != "nrmp":
        assert not NRMP_WORDS.search(main), (where, NRMP_WORDS.search(main), main)
        # (The letter's own date may fall on one of them: it is no NRMP date then.)
        named = [d for d in dates_in(main) if d != today]
        for nrmp_day in (cycle.rank_deadline, cycle.match_day, cycle.soap_from):
            assert nrmp_day not in named, where

    # The office's letters-of-recommendation rating never appears.
    assert not RATING.search(main), (where, RATING.search(main))

    # One outlook, the headline's; none at all after the Match.
    if after:
        assert not any(label in main for label in LABELS), (where, main)
        assert "level" not in main.lower().split("\n\n", 3)[2], where
        assert not set(keys) & APPLICATION_KEYS, (where, keys)
        assert "ERAS" not in main and "program list:" not in main, where
        return

    # At levels 1-2: no reassurance, and the why begins with what caps the outlook.
    if ev.level <= 2:
        assert not REASSURANCE.search(main), (where, REASSURANCE.search(main))
        assert ev.cap_rule, where
        if ev.step2_score is not None or not passed:
            cap = next(r.text for r in ev.reasons if r.rule == ev.cap_rule)
            assert why_lines(text)[:1] == [cap], (where, why_lines(text), cap)

    # A Step 1 failure is counted in words: "twice", never "2 failed attempts".
    if ev.step1_failures >= 1 and ev.step1_status != "not taken":
        assert f"failing it {times(ev.step1_failures)}" in main or (
            f"failed it {times(ev.step1_failures)}" in main), where

    # The parallel plan: at most three, lower tiers only, each rated level 3+ for this student.
    assert len(ev.parallel) <= 3, where
    for name in ev.parallel:
        other = TABLE.get(name)
        assert TIERS.index(other.tier) < TIERS.index(ev.tier), (where, name)
        again = evaluate(dataclasses.replace(record, specialty=name), TABLE, today=today)
        assert again.level >= 3, (where, name, again.label)
    assert "second specialty" not in main, where
    # One instruction to apply in the parallel specialty, not two.
    assert sum("parallel specialty" in a.text for a in ev.advice) <= 1, (where, keys)
    if ev.tier == "less" and "parallel" in keys:
        assert "more programs than usual" in main, where

    # Levers that no longer count are not offered once programs review.
    if ev.phase not in ("preparing", "applying"):
        assert not set(keys) & LEVER_KEYS, (where, keys)
        assert "would lift your outlook" not in main and "aim for Honors" not in main, where
        assert not re.search(r"\bresearch\b", " ".join(a.text for a in ev.advice), re.I), where

    # The exam's state decides the study plan.
    if ev.exam_state == "scheduled" and ev.exam_weeks_left is not None and ev.exam_weeks_left < 3:
        assert "two full passes" not in main, where
    if ev.exam_state in ("sat", "overdue"):
        assert not SIT_EXAM.search(main), (where, SIT_EXAM.search(main))
        assert "Send the office your Step 2 CK score" in main or "send it to the office" in main
        assert "Aim for" not in main, where

    # Step 1 not passed: a retake plan with the advisor; no deadline to pass it, no Step 2 CK
    # target, no application this cycle.
    if not passed:
        assert keys[0] == "step1" and "with your advisor" in ev.advice[0].text, where
        assert "Pass Step 1 first:" not in main and "Aim for" not in main, where
        assert not set(keys) & APPLICATION_KEYS, (where, keys)
        if ev.step1_status == "not passed" and ev.step1_failures >= 2:
            assert f"failed it {times(ev.step1_failures)}" in main, where

    # Strengths only when true; unknown is not zero.
    if not record.research_count:
        assert "research item" not in main, where
    if record.research_count is None:
        assert not re.search(r"research, ideally|Research[^.]*would lift", main), where
    assert "research and letters" not in main, where

    why = main.split("\nWHY\n", 1)[1].split("\n\n", 1)[0] if "\nWHY\n" in main else ""
    # At level 3 and up, a score under the solid mark that nothing moved sets the outlook:
    # the why says so first.
    if (why and not TABLE.rules.levels[ev.level].at_risk and ev.step1_status == "clean"
            and ev.raw_band in ("borderline", "below") and ev.band == ev.raw_band):
        assert why.startswith(f"- Your {ev.step2_score} is ") and "the solid mark for" in \
            why.split("\n- ")[0], (where, why)

    # The clinical grades are said once in the why (the outcome's cause or their own line).
    assert sum("Honors or High Pass" in b or "failed clerkship" in b
               for b in why.split("\n- ")) <= 1, (where, why)

    # NRMP in a student's words.
    spec = TABLE.get(ev.specialty)
    if spec.nrmp_q1 is not None and ev.raw_band != "failing":
        assert (f"Of US MD seniors who matched in {ev.specialty} in the 2026 Match, the middle "
                f"half scored {spec.nrmp_q1}-{spec.nrmp_q3}") in main, where
        assert "not yet checked by your office against the report" in main, where
    assert "applicants who matched" not in main and "approximate NRMP" not in main, where

    # A failing score's ladder shows every band from the passing score up to the solid mark,
    # while a retake's score can still count this cycle (not once the lists are closing).
    late = ev.phase in ("ranking", "match week")
    if ev.raw_band == "failing" and passed and late:
        assert "WHAT EACH SCORE WOULD MEAN" not in main, where
    if ev.raw_band == "failing" and passed and not late:
        bands = re.findall(r"^- (\d+)(?:-(\d+)| or more): ", main, re.M)
        lows = sorted(int(low) for low, _ in bands)
        assert lows and lows[0] == TABLE.rules.failing_score, (where, bands)
        assert any(int(low) <= ev.solid <= int(high or 999) for low, high in bands), where


@pytest.mark.parametrize("today", DAYS, ids=[d.isoformat() for d in DAYS])
def test_every_letter_of_the_matrix_keeps_the_rules(
    today: date, monkeypatch: pytest.MonkeyPatch
) -> None:
    """7 specialties (every tier and match system) x 7 Step 1 states x 13 Step 2 CK states,
    with modifiers and Match results in turn, on a day of each phase."""
    rendered = letters_for(list(matrix(today)), today, monkeypatch)
    assert len(rendered) == len(SPECIALTIES) * len(STEP1) * 13
    phases = set()
    for record, ev, letter in rendered:
        check(record, ev, letter, today)
        phases.add((ev.match_system, ev.phase))
    words = [len(letter.text.split()) for _, _, letter in rendered]
    assert max(words) <= 450, max(words)
    # The matrix reaches each match system on this day.
    assert {m for m, _ in phases} == {"nrmp", "sf_match", "aua"}


def test_the_matrix_covers_every_phase_of_every_match() -> None:
    """Across the days, each match system is met in each of its phases."""
    seen = set()
    for today in DAYS:
        for specialty in ("Internal Medicine", "Ophthalmology", "Urology"):
            ev = evaluate(student("P", specialty=specialty, step2_score=250), TABLE, today=today)
            seen.add((ev.match_system, ev.phase))
    phases = ("preparing", "applying", "interviewing", "ranking", "match week", "after match")
    assert seen == {(m, p) for m in ("nrmp", "sf_match", "aua") for p in phases}


@pytest.mark.parametrize("today", DAYS, ids=[d.isoformat() for d in DAYS])
def test_the_seven_acceptance_examples_keep_their_labels_on_every_day(today: date) -> None:
    for step1, score, specialty, label in ACCEPTANCE:
        ev = evaluate(student("A", step2_score=score, specialty=specialty, **step1), TABLE,
                      today=today)
        assert ev.label == label, (today, specialty, score)


# --- hypothesis: any student, any day of a whole cycle, the Match and after included ----------


@st.composite
def student_days(draw: st.DrawFn) -> tuple[StudentRecord, date]:
    record = draw(any_record())
    today = draw(st.dates(date(2026, 3, 20), date(2027, 6, 30)))
    record = dataclasses.replace(
        record,
        interviews=draw(st.none() | st.integers(0, 30)),
        match_result=draw(st.sampled_from(RESULTS)),
        step2_date=draw(st.none() | st.dates(today - timedelta(weeks=10),
                                             today + timedelta(weeks=20))),
    )
    return record, today


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=student_days())
def test_any_student_on_any_day_keeps_the_rules(
    pair: tuple[StudentRecord, date], monkeypatch: pytest.MonkeyPatch
) -> None:
    record, today = pair
    ((record, ev, letter),) = letters_for([record], today, monkeypatch)
    check(record, ev, letter, today)
    # Hypothesis aims for the longest letters. A student with every problem at once (four Step 1
    # failures, a failed Step 2 CK, a failed clerkship, pending, a hyper-tier specialty) reads
    # 472 words, the longest of 3000 targeted examples; the median letter is about 250.
    words = len(letter.text.split())
    target(float(words))
    assert words <= 500


# --- the demo roster: a one-minute read on the five days of the issue ---------------------------


@pytest.mark.slow
def test_the_demo_roster_is_a_one_minute_read_on_the_five_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain-text median under 300 words, none over 450, every invariant, on 15 Jul, 6 Dec,
    25 Feb, 25 Mar and 20 May, for the demo roster written as a real .xlsx and read back."""
    from flows import intake
    from flows.intake.demo import write_demo_roster

    path = write_demo_roster(tmp_path / "demo.xlsx", students=150)
    for today in (date(2026, 7, 15), date(2026, 12, 6), date(2027, 2, 25), date(2027, 3, 25),
                  date(2027, 5, 20)):
        roster = intake.ingest(path, make_settings(today), TABLE)
        records = [r for r in roster.records if TABLE.resolve(r.specialty)]
        rendered = letters_for(records, today, monkeypatch)
        words = [len(letter.text.split()) for _, _, letter in rendered]
        assert len(words) > 100
        assert statistics.median(words) < 300, (today, statistics.median(words))
        assert max(words) <= 450, (today, max(words))
        for record, ev, letter in rendered:
            check(record, ev, letter, today)


# --- the checks can fail: each catches what it is for -----------------------------------------


@pytest.mark.parametrize(
    ("record", "today", "old", "new"),
    [
        # A date already past.
        (student("C1", step2_score=250), date(2026, 12, 6), "Prepare for each interview",
         "Since 1 Oct 2026, prepare for each interview"),
        # The letters rating.
        (student("C2", step2_score=250), date(2026, 12, 6), "Prepare for each interview",
         "Your letters are rated weak. Prepare for each interview"),
        # NRMP words to an SF Match student.
        (student("C3", specialty="Ophthalmology", step2_score=262), date(2026, 12, 6),
         "Prepare for each interview", "Certify your rank order list. Prepare for each interview"),
        # Reassurance at level 1.
        (student("C4", specialty="General Surgery", step2_score=238), date(2026, 12, 6),
         "Prepare for each interview", "You are fine. Prepare for each interview"),
        # ERAS to a student who applies through the SF Match's own service.
        (student("C8", specialty="Ophthalmology", step2_score=262), date(2026, 8, 20),
         "Submit your SF Match CAS application", "Submit your ERAS application"),
        # A submit instruction in June.
        (student("C5", step2_score=250), date(2026, 6, 20), "Build a realistic program list",
         "Submit your application now. Build a realistic program list"),
        # An outlook after the Match.
        (student("C6", step2_score=250, match_result="matched"), date(2027, 3, 25),
         "Return what your program sends", "Strong candidate. Return what your program sends"),
        # A Step 1 failure not counted.
        (student("C7", step1_attempts=3, step2_score=250), date(2026, 12, 6),
         "after failing it twice", "after failing it"),
    ],
)
def test_the_checks_catch_a_letter_that_breaks_a_rule(
    record: StudentRecord, today: date, old: str, new: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real letter passes; the same letter with one broken sentence does not."""
    ((record, ev, letter),) = letters_for([record], today, monkeypatch)
    check(record, ev, letter, today)
    assert old in letter.text, letter.text
    broken = dataclasses.replace(letter, text=letter.text.replace(old, new, 1))
    with pytest.raises(AssertionError):
        check(record, ev, broken, today)
