"""Letters that fit the day they are sent: the phase of the run date, the plan it picks, and
one voice per letter (docs/rules.md, The application calendar and One voice;
issues #13 and #14)."""

from __future__ import annotations

import dataclasses
import html
import re
import statistics
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import intake
from flows.intake.demo import write_demo_roster
from residency_rules.calendar import phase, stale
from residency_rules.records import StudentRecord
from residency_rules.rules import evaluate
from tests.support.calendar_letters import (
    APPLICATION_KEYS,
    CYCLE,
    RUN_DATES,
    TABLE,
    G,
    dates_in,
    kinds,
    make_settings,
    render,
    student,
)
from tests.support.golden import check_golden
from tests.support.letters import (
    _no_advising_env,  # noqa: F401 - autouse: no ADVISING_* from the developer's shell
    flat,
)
from tests.support.records import records as any_record

assert CYCLE is not None
GOLDEN = Path(__file__).parent / "golden"










# --- the phase of the run date ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 5, 15), "preparing"),
        (date(2026, 6, 2), "preparing"),
        (date(2026, 6, 3), "applying"),  # ERAS opens
        (date(2026, 7, 15), "applying"),
        (date(2026, 8, 10), "applying"),
        (date(2026, 9, 23), "interviewing"),
        (date(2026, 12, 5), "interviewing"),
        (date(2027, 2, 1), "ranking"),
        (date(2027, 2, 20), "ranking"),
        (date(2027, 3, 3), "match week"),  # the rank order list deadline
        (date(2027, 3, 19), "match week"),  # Match Day
        (date(2027, 3, 20), "after match"),  # the next cycle's dates not known yet
    ],
)
def test_the_phase_follows_the_calendar(day: date, expected: str) -> None:
    assert phase(day, CYCLE) == expected


def test_the_cycle_comes_from_the_data_file_with_its_source_and_unconfirmed() -> None:
    """Defaults for the 2027 Main Match, marked as the office's to confirm."""
    assert (CYCLE.review_start, CYCLE.rank_deadline, CYCLE.match_day) == (
        date(2026, 9, 23), date(2027, 3, 3), date(2027, 3, 19),
    )
    assert CYCLE.confirmed is False and "confirm" in CYCLE.source
    assert TABLE.interviews is not None and TABLE.interviews.source
    assert TABLE.interviews.target("Dermatology") >= TABLE.interviews.target("Pediatrics")


def test_settings_override_each_date_of_the_cycle() -> None:
    """ADVISING_REVIEW_START, _RANK_DEADLINE and _MATCH_DAY win over the data file."""
    got = make_settings(date(2026, 5, 1), review_start=date(2026, 9, 30),
                        match_day=date(2027, 3, 26)).cycle(TABLE)
    assert (got.review_start, got.rank_deadline, got.match_day) == (
        date(2026, 9, 30), date(2027, 3, 3), date(2027, 3, 26),
    )
    assert make_settings(date(2026, 5, 1)).cycle(TABLE) == CYCLE


def test_dates_out_of_order_are_refused_naming_the_settings() -> None:
    from residency_rules.errors import AdvisingError

    with pytest.raises(AdvisingError, match="ADVISING_REVIEW_START"):
        make_settings(date(2026, 5, 1), rank_deadline=date(2026, 9, 1)).cycle(TABLE)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 29), None),
        (date(2027, 3, 20), "ended on Match Day"),
        (date(2025, 6, 1), "more than a year away"),
    ],
)
def test_a_stale_cycle_is_said_in_one_sentence(day: date, expected: str | None) -> None:
    said = stale(day, CYCLE)
    assert (said is None) if expected is None else (said is not None and expected in said)


# --- the plan for the day: one student's four letters -----------------------------------------


def test_the_plan_speaks_of_applying_then_interviews_then_the_rank_order_list() -> None:
    """May and August: the program list and the application; December: interviews;
    February: the rank order list and its deadline."""
    record = student(specialty="Emergency Medicine", step2_score=248)
    plans = {day: evaluate(record, TABLE, today=day) for day in RUN_DATES}
    keys = {day: [a.key for a in ev.advice] for day, ev in plans.items()}
    assert "mix" in keys[RUN_DATES[0]]
    assert keys[RUN_DATES[1]][-1] == "apply" and "mix" in keys[RUN_DATES[1]]
    assert "interviews" in keys[RUN_DATES[2]] and "apply" not in keys[RUN_DATES[2]]
    rank = [a for a in plans[RUN_DATES[3]].advice if a.key == "rank"]
    assert rank and "rank order list" in rank[0].text and "3 Mar 2027" in rank[0].text
    assert "true order of preference" in rank[0].text


def test_a_past_exam_date_without_a_score_becomes_send_the_office_your_score() -> None:
    ev = evaluate(student(step2_date=date(2026, 7, 15)), TABLE, today=date(2026, 11, 29))
    assert ev.exam_overdue and ev.pending_at_risk
    assert [a.key for a in ev.advice][0] == "send"
    assert not any("Keep your exam" in a.text for a in ev.advice)


def test_a_step2_failure_in_december_is_not_told_to_apply_on_time() -> None:
    """Issue #13: "Book your exam ... and still apply on time" to a June failure, in Nov."""
    record = student(step2_score=210, step2_date=date(2026, 6, 10))
    ev = evaluate(record, TABLE, today=date(2026, 11, 29))
    text = " ".join(a.text for a in ev.advice)
    assert "apply on time" not in text and "Set your retake date with your advisor" in text


def test_step1_not_passed_gets_no_application_advice_but_the_next_cycle() -> None:
    for day in RUN_DATES:
        ev = evaluate(student(step1_result="fail"), TABLE, today=day)
        keys = [a.key for a in ev.advice]
        assert not set(keys) & APPLICATION_KEYS, (day, keys)
        assert "next_cycle" in keys and not ev.applies_this_cycle


def test_interviews_below_the_target_by_mid_season_add_programs() -> None:
    """Four invitations in December for General Surgery (target 10): more programs, the
    parallel plan, and the Summary's flag."""
    record = student(specialty="General Surgery", step2_score=248, interviews=4)
    ev = evaluate(record, TABLE, today=date(2026, 12, 5))
    add = [a for a in ev.advice if a.key == "add"]
    assert ev.interviews_low and add and "With 4 interview invitations so far" in add[0].text
    enough = evaluate(dataclasses.replace(record, interviews=14), TABLE, today=date(2026, 12, 5))
    assert not enough.interviews_low


# --- properties over (student, date) ------------------------------------------------------------


@st.composite
def student_days(draw: st.DrawFn) -> tuple[StudentRecord, date]:
    record = draw(any_record())
    record = dataclasses.replace(record, interviews=draw(st.none() | st.integers(0, 30)))
    return record, draw(st.dates(date(2026, 3, 1), date(2027, 4, 30)))


@settings(max_examples=400, deadline=None)
@given(student_days())
def test_no_instruction_is_dated_before_the_letter(pair: tuple[StudentRecord, date]) -> None:
    """Every date written into the plan is the letter's date or later, every day counted from
    the letter's date lies in the next four weeks, and the days follow the plan's order."""
    record, today = pair
    ev = evaluate(record, TABLE, today=today)
    for item in ev.advice:
        assert all(d >= today for d in dates_in(item.text)), (today, item.text)
    assert len(ev.advice_days) == len(ev.advice)
    plan = TABLE.rules.plan
    assert all(0 <= d <= plan.weeks_days for d in ev.advice_days)
    deadlines = [d for a, d in zip(ev.advice, ev.advice_days, strict=True)
                 if a.key.split(".", 1)[0] not in plan.habits]
    assert deadlines == sorted(deadlines)


@settings(max_examples=400, deadline=None)
@given(student_days())
def test_no_application_advice_without_a_step1_pass(pair: tuple[StudentRecord, date]) -> None:
    record, today = pair
    ev = evaluate(record, TABLE, today=today)
    if ev.step1_status in ("not passed", "not taken"):
        assert not {a.key for a in ev.advice} & APPLICATION_KEYS
        assert not ev.applies_this_cycle


@settings(max_examples=400, deadline=None)
@given(student_days())
def test_plan_items_come_in_causal_order(pair: tuple[StudentRecord, date]) -> None:
    """The exam before the application, the program list before applying, the statement
    before applying; a score already in is a fact, not a task."""
    record, today = pair
    ev = evaluate(record, TABLE, today=today)
    keys = [a.key for a in ev.advice]

    def at(key: str) -> int:
        return keys.index(key)

    if "apply" in keys:
        assert keys[-1] == "apply" or keys[-1] == "advisor" or at("apply") == len(keys) - 1
        for before in ("mix", "statement", "target", "schedule", "send", "parallel"):
            if before in keys:
                assert at(before) < at("apply"), keys
    if "target" in keys and "qbank" in keys:
        assert at("target") < at("qbank")
    if ev.step2_score is not None and ev.raw_band != "failing":
        assert "target" not in keys and ev.next_levels == ()
    if "advisor" in keys:
        assert at("advisor") == 0


@settings(max_examples=400, deadline=None)
@given(student_days())
def test_no_step2_target_above_a_passing_score(pair: tuple[StudentRecord, date]) -> None:
    """A passed USMLE Step cannot be retaken: no score to aim for, no ladder, once it passed."""
    record, today = pair
    ev = evaluate(record, TABLE, today=today)
    if ev.step2_score is not None and ev.raw_band != "failing":
        text = " ".join(a.text for a in ev.advice) + " ".join(ev.levers)
        assert "Aim for" not in text and ev.next_levels == ()


LABELS = sorted(TABLE.rules.labels(), key=len, reverse=True)
_CONDITIONAL = re.compile(r"\b(would|if|could)\b", re.I)


def stated_outlooks(text: str) -> set[str]:
    """Outlook labels a letter states outside a conditional ("would", "if") and the ladder."""
    found: set[str] = set()
    for line in text.splitlines():
        if re.match(r"- (\d+ or more|\d+-\d+|under \d+):", line):
            continue  # the score ladder: each line is "if you score this"
        for sentence in re.split(r"(?<=[.;!?])\s+|, but ", line):
            if _CONDITIONAL.search(sentence):
                continue
            rest = sentence
            for label in LABELS:  # longest first: "Reach" inside "Reach, with explanation"
                if label in rest:
                    found.add(label)
                    rest = rest.replace(label, "")
    return found


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pair=student_days())
def test_a_letter_states_one_outlook_and_dates_no_task_in_the_past(
    pair: tuple[StudentRecord, date], tmp_path: Path
) -> None:
    """Rendered letter: at most one outlook label outside a conditional (the headline's), and
    no plan line (its day or a date in it) before the letter's date."""
    record, today = pair
    folder = tmp_path / f"{today.isoformat()}-{len(list(tmp_path.iterdir()))}"
    letters, evaluations = render([record], today, folder, wrapped=False)
    letter, ev = letters[0], evaluations[0]
    assert stated_outlooks(letter.text) <= {ev.label}
    for line in letter.text.splitlines():
        instruction = line.startswith(("- By ", "- From ", "First, "))
        # A callout may state a past exam date as a fact ("has passed"), never ask for it.
        callout = line.startswith("! ") and "has passed" not in line
        if instruction or callout:
            for d in dates_in(line):
                assert d >= today, (today, line)
    if ev.step2_score is None:
        assert "level" not in letter.text.split("\n\n", 3)[2].lower()  # pending: no number


# --- the one-minute letter over the demo roster ----------------------------------------------


@pytest.mark.slow
def test_demo_roster_letters_are_a_one_minute_read_on_every_run_date(tmp_path: Path) -> None:
    """Plain-text part: median under 300 words and none over 450, on each acceptance date,
    for the demo roster written as a real .xlsx and read back."""
    path = write_demo_roster(tmp_path / "demo.xlsx", students=150)
    for today in RUN_DATES:
        roster = intake.ingest(path, make_settings(today), TABLE)
        records = [r for r in roster.records if TABLE.resolve(r.specialty)]
        letters, evaluations = render(records, today, tmp_path / today.isoformat(), wrapped=False)
        words = [len(letter.text.split()) for letter in letters]
        assert len(words) > 100
        assert statistics.median(words) < 300, (today, statistics.median(words))
        assert max(words) <= 450, (today, max(words))
        for letter, ev in zip(letters, evaluations, strict=True):
            assert stated_outlooks(letter.text) <= {ev.label}, letter.student_id


# --- golden letters: one file per run date, one letter per kind of student -------------------





# The acceptance's run dates, the five days of the year (20 May: the Match over, the
# next cycle's dates not set) and Match Week (SOAP).
GOLDEN_DATES = (*RUN_DATES, date(2026, 7, 15), date(2026, 12, 6), date(2027, 2, 25),
                date(2027, 3, 16), date(2027, 3, 25), date(2027, 5, 20))


@pytest.mark.parametrize("today", GOLDEN_DATES, ids=[d.isoformat() for d in GOLDEN_DATES])
def test_golden_letters_for_each_phase(today: date, tmp_path: Path) -> None:
    """The plain-text letters of each kind of student on each run date equal their reviewed
    golden file (UPDATE_GOLDEN=1 rewrites it and fails: read it as the student would)."""
    letters, _ = render(kinds(today), today, tmp_path)
    body = "".join(f"==== {letter.student_id}\n{letter.text}\n" for letter in letters)
    check_golden((GOLDEN / f"phase_{today.isoformat()}.txt", body))


# --- re-sending: a new season, never the date alone ---------------------------------------------


def test_the_date_moving_alone_never_changes_the_letter(tmp_path: Path) -> None:
    """Two nights in the same phase: the same content hash (plan days are the run's dates)."""
    record = student(specialty="Emergency Medicine", step2_score=248)
    first, _ = render([record], date(2026, 12, 5), tmp_path / "a")
    second, _ = render([record], date(2026, 12, 6), tmp_path / "b")
    assert first[0].content_hash == second[0].content_hash
    assert first[0].text != second[0].text  # the dates did move


def test_a_new_phase_is_a_changed_letter_that_says_a_new_season(tmp_path: Path) -> None:
    record = student(specialty="Emergency Medicine", step2_score=248)
    december, evs = render([record], date(2026, 12, 5), tmp_path / "a")
    summary = dataclasses.replace(december[0].summary, sent_on=date(2026, 12, 5))
    assert summary is not None
    february, _ = render([record], date(2027, 2, 20), tmp_path / "b", {"S1": summary})
    assert february[0].content_hash != december[0].content_hash
    assert february[0].changes == ("A new season: your plan is now about the rank order list.",)
    assert "A new season" in flat(february[0].text)
    same = render([record], date(2026, 12, 20), tmp_path / "c", {"S1": summary})[0][0]
    assert same.changes == () and same.content_hash == december[0].content_hash


def test_exam_dates_in_the_past_are_never_a_plan_date(tmp_path: Path) -> None:
    """Issue #13: "Keep your exam on 15 Jul 2026" in November, "Take the exam by 26 August"."""
    letters, _ = render(kinds(), date(2026, 11, 29), tmp_path)
    for letter in letters:
        text = flat(letter.text)
        assert "Keep your exam on 15 Jul 2026" not in text
        assert "Take the exam by" not in text
        assert "26 Aug 2026" not in text
    overdue = flat(next(x for x in letters if x.student_id == "PEND_EARLY").text)
    assert "should have posted by now, and we have none on file" in overdue
    assert "Send the office your Step 2 CK score: we will rewrite your plan" in overdue
    assert "15 Jul 2026" not in overdue and "15 July 2026" not in overdue


@pytest.mark.parametrize("today", RUN_DATES, ids=[d.isoformat() for d in RUN_DATES])
def test_the_first_phone_screen_holds_outlook_standing_and_the_first_step(
    today: date, tmp_path: Path
) -> None:
    """On a 375 x 700 phone the outlook, one sentence of standing and the first thing to do
    come before anything else, in a few hundred characters (about 13 lines of 16 px text)."""
    letters, evaluations = render(kinds(), today, tmp_path)
    for letter, ev in zip(letters, evaluations, strict=True):
        body = letter.html[letter.html.index("<body"):]
        end = body.index("</td>", body.index("First, "))
        shown = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body[:end])))
        assert ev.label in shown and "First, " in shown, letter.student_id
        assert "Your Step 2 CK on the scale" not in shown and "Why" not in shown
        assert len(shown) <= 520, (letter.student_id, len(shown))


def test_the_evaluation_carries_the_score_alone_and_what_changed_it() -> None:
    """All-Pass clerkships take an excellent 255 in IM from level 5 to 4: both are kept, the
    modifier named, and the why says both with the headline's last (one voice)."""
    record = student(step2_score=255, clerkships=tuple(zip(G, "PPPPPPP", strict=True)))
    ev = evaluate(record, TABLE, today=date(2026, 5, 15))
    assert (ev.score_alone_level, ev.score_alone_label) == (5, "Very competitive")
    assert (ev.level, ev.label) == (4, "Strong candidate")
    assert ev.modifiers == ("your clinical grades (all Pass, no Honors or High Pass) lower it",)
    why = next(r.text for r in ev.reasons if r.rule == "matrix.changed")
    assert why.index('would read "Very competitive"') < why.index('"Strong candidate"')
    # The grades are described once, in the outcome, with the action right after them.
    assert why.endswith("To answer it, ask the attendings of your sub-internship for feedback "
                        "midway.")
    assert not any(r.rule == "clerkships.weak" for r in ev.reasons)
