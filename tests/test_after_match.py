"""After Match Day: the Match result column, the letter of each branch, and the hold.

Issue #23: on 25 Mar every letter repeated the ended cycle's outlook and started a new
application. Now the letter speaks of the Match: matched (brief), did not match (the advisor
within the week, the next cycle's options in general terms), not known (both branches, or
held with ADVISING_AFTER_MATCH=hold).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from flows import intake
from flows.intake.template import write_template
from flows.letters import render_letters
from flows.letters.hold import HELD_AFTER_MATCH, held_after_match
from residency_rules.records import StudentRecord
from residency_rules.rules import evaluate, evaluate_all
from residency_rules.schema import match_header, norm_match_result
from residency_rules.specialties import load_default_table
from tests.support.calendar_letters import make_settings
from tests.support.letters import flat

TABLE = load_default_table()
AFTER = date(2027, 3, 25)
LABELS = TABLE.rules.labels()


def student(sid: str, **fields: Any) -> StudentRecord:
    base: dict[str, Any] = {
        "student_id": sid, "name": "Ana Lima", "email": f"{sid.lower()}@school.edu",
        "step1_result": "pass", "step1_attempts": 1, "specialty": "General Surgery",
        "step2_score": 244, "advisor": "Dr. Rosa Ortiz",
        "advisor_email": "rosa.ortiz@school.edu",
    }
    base.update(fields)
    return StudentRecord(**base)


def letter_for(record: StudentRecord, tmp_path: Path, today: date = AFTER) -> str:
    evaluations = evaluate_all([record], TABLE, today=today)
    (letter,) = render_letters([record], {e.student_id: e for e in evaluations}, TABLE,
                               make_settings(today), {}, tmp_path)
    return flat(letter.text)


# --- the column -----------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Match Result", "Match outcome", "Match", "match_result",
                                    "Match Status", "Residency Match Result"])
def test_the_match_result_column_is_found_by_its_usual_headers(header: str) -> None:
    assert match_header(header) == "match_result"


@pytest.mark.parametrize(
    ("cell", "value"),
    [("Matched", "matched"), ("matched ", "matched"), ("Matched in SOAP", "matched in SOAP"),
     ("SOAP", "matched in SOAP"), ("Did not match", "did not match"),
     ("Unmatched", "did not match"), ("", None), (None, None)],
)
def test_match_results_are_read_in_an_offices_words(cell: str | None, value: str | None) -> None:
    assert norm_match_result(cell) == value


def test_a_roster_with_a_match_outcome_column_is_read_and_a_bad_cell_is_a_problem(
    tmp_path: Path,
) -> None:
    """A real .xlsx with the office's own header: each value read, an unknown one named with
    its row and column and what to enter, and that row held."""
    path = tmp_path / "roster.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Student ID", "Name", "Step 1 Result", "Step 2 CK", "Specialty", "Match outcome"])
    rows = [("S1", "A", "Pass", 250, "IM", "Matched"), ("S2", "B", "Pass", 244, "IM", "SOAP"),
            ("S3", "C", "Pass", 240, "IM", "Did not match"), ("S4", "D", "Pass", 250, "IM", None),
            ("S5", "E", "Pass", 250, "IM", "Maybe")]
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    roster = intake.ingest(path, make_settings(AFTER), TABLE)
    found = {r.student_id: r.match_result for r in roster.records}
    assert found == {"S1": "matched", "S2": "matched in SOAP", "S3": "did not match",
                     "S4": None}
    (problem,) = [p for p in roster.problems if p.student_id == "S5"]
    assert (problem.row, problem.column, problem.value) == (6, "Match outcome", "Maybe")
    assert "Matched, Matched in SOAP or Did not match" in problem.fix


def test_the_template_has_a_match_result_column_with_a_dropdown(tmp_path: Path) -> None:
    path = tmp_path / "template.xlsx"
    write_template(path, TABLE, AFTER)
    ws = openpyxl.load_workbook(path)["Roster"]
    headers = [c.value for c in ws[1]]
    assert "Match Result" in headers
    column = openpyxl.utils.get_column_letter(headers.index("Match Result") + 1)
    lists = [dv for dv in ws.data_validations.dataValidation
             if any(str(r).startswith(f"{column}2:") for r in dv.sqref.ranges)]
    assert lists and lists[0].formula1 == '"Matched,Matched in SOAP,Did not match"'


# --- the letters ----------------------------------------------------------------------------


def test_a_matched_student_gets_a_brief_letter_about_the_match(tmp_path: Path) -> None:
    text = letter_for(student("M1", match_result="matched"), tmp_path)
    assert "2027 MAIN MATCH: You matched" in text and "Congratulations on your match" in text
    assert "Return what your program sends you" in text
    assert not any(label in text for label in LABELS)
    assert "ERAS" not in text and "personal statement" not in text
    assert len(text.split()) < 150


def test_a_soap_match_says_so_and_is_as_real_as_any(tmp_path: Path) -> None:
    text = letter_for(student("M2", match_result="matched in SOAP"), tmp_path)
    assert "You matched through SOAP" in text and "as real as any other" in text


def test_an_unmatched_student_meets_the_advisor_within_the_week_and_hears_the_options(
    tmp_path: Path,
) -> None:
    record = student("U1", match_result="did not match", step1_attempts=2)
    ev = evaluate(record, TABLE, today=AFTER)
    assert ev.advice[0].key == "unmatched" and ev.advice_days[0] <= 7
    text = letter_for(record, tmp_path)
    assert "First, by Thu 1 Apr: Meet your advisor within the week" in text
    assert "a broader program list or a related, less competitive specialty" in text
    assert "research or preliminary year" in text
    # The next cycle in general terms: its dates are not set.
    assert "The next cycle's dates are not set yet" in text
    assert not any(label in text for label in LABELS)
    assert "Certify" not in text and "Submit" not in text


def test_a_blank_result_gives_both_branches_briefly(tmp_path: Path) -> None:
    text = letter_for(student("B1"), tmp_path)
    assert "we do not have your result on file yet" in text
    assert "If you did not match: meet your advisor within the week" in text
    assert "If you matched: congratulations" in text
    assert "Tell the office your Match result" in text


def test_an_sf_match_student_hears_of_their_match_after_its_own_day(tmp_path: Path) -> None:
    """Ophthalmology's SF Match ends in January: on 5 Feb the letter is about its result,
    while the NRMP students rank; no NRMP word."""
    record = student("O1", specialty="Ophthalmology", step2_score=262,
                     match_result="did not match")
    text = letter_for(record, tmp_path, date(2027, 2, 5))
    assert "SF MATCH: Did not match" in text
    assert "Other residency matches of this cycle have not closed yet" in text
    assert "NRMP" not in text and "SOAP" not in text and "rank" not in text.lower()


def test_a_student_who_has_not_passed_step1_gets_the_retake_plan_not_a_match_letter(
    tmp_path: Path,
) -> None:
    text = letter_for(student("N1", step1_result="fail", step1_attempts=2, step2_score=None),
                      tmp_path)
    assert "Plan your Step 1 retake with your advisor" in text
    assert "Match Day has passed" not in text


def test_when_the_office_sets_the_next_cycle_the_next_class_gets_its_preparing_letter(
    tmp_path: Path,
) -> None:
    """With the 2028 cycle's dates set, a student on 25 Mar 2027 without a result is preparing
    (with the new dates); one who matched still gets the Match letter."""
    next_cycle = dict(season_opens=date(2027, 6, 2), submissions_open=date(2027, 9, 1),
                      review_start=date(2027, 9, 22), ranking_opens=date(2028, 2, 1),
                      rank_deadline=date(2028, 3, 1), match_week=date(2028, 3, 13),
                      match_day=date(2028, 3, 17))
    settings = make_settings(AFTER, **next_cycle)
    from residency_rules.errors import RulesError

    with pytest.raises(RulesError, match=r"\[calendar.aua\] of the specialty table"):
        settings.cycle(TABLE)  # the SF Match's and AUA's dates are the table's to move
    assert TABLE.calendar is not None
    year = timedelta(days=364)
    others = tuple(dataclasses.replace(
        m, ranking_opens=m.ranking_opens + year, rank_deadline=m.rank_deadline + year,
        match_day=m.match_day + year,
        **{k: getattr(m, k) + year for k in ("season_opens", "submissions_open", "review_start")
           if getattr(m, k) is not None}) for m in TABLE.calendar.others)
    table = dataclasses.replace(TABLE, calendar=dataclasses.replace(TABLE.calendar,
                                                                     others=others))
    cycle = settings.cycle(table)
    records = [student("NEXT", step2_score=None), student("DONE", match_result="matched")]
    evaluations = evaluate_all(records, TABLE, today=AFTER, cycle=cycle)
    assert [e.phase for e in evaluations] == ["preparing", "after match"]
    letters = render_letters(records, {e.student_id: e for e in evaluations}, table, settings,
                             {}, tmp_path)
    preparing = flat(letters[0].text)
    assert "Pending Step 2 CK" in preparing and "Book your exam for 25 Aug 2027" in preparing
    assert "You matched" in flat(letters[1].text)


# --- the hold -------------------------------------------------------------------------------


def test_hold_renders_no_letter_for_a_blank_result_and_says_why() -> None:
    records = [student("B1"), student("M1", match_result="matched"),
               student("N1", step1_result="fail", step2_score=None)]
    evaluations = evaluate_all(records, TABLE, today=AFTER)
    hold = make_settings(AFTER, after_match="hold")
    reasons = {e.student_id: held_after_match(e, hold) for e in evaluations}
    assert reasons == {"B1": HELD_AFTER_MATCH, "M1": None, "N1": None}
    assert all(held_after_match(e, make_settings(AFTER)) is None for e in evaluations)
    before = evaluate_all(records, TABLE, today=AFTER - timedelta(days=10))
    assert all(held_after_match(e, hold) is None for e in before)


def test_a_wrong_after_match_setting_is_refused_naming_it() -> None:
    from flows.errors import SettingsError
    from flows.settings import load_settings

    with pytest.raises(SettingsError, match="ADVISING_AFTER_MATCH"):
        load_settings(after_match="maybe")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_held_letter_is_not_written_or_sent_and_the_workbook_says_why(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real flow run after Match Day with ADVISING_AFTER_MATCH=hold: the student with no
    result has no letter, no .eml, and the workbook's letter cell names the setting."""
    from flows.pipeline import advising_run

    monkeypatch.setenv("ADVISING_TODAY", AFTER.isoformat())
    monkeypatch.setenv("ADVISING_AFTER_MATCH", "hold")
    monkeypatch.setenv("ADVISING_ALLOWED_EMAIL_DOMAINS", "school.edu")
    path = workdir / "input" / "class.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK", "Specialty",
               "Match Result"])
    ws.append(["S1", "Ana Lima", "s1@school.edu", "Pass", 250, "IM", "Matched"])
    ws.append(["S2", "Ben Okafor", "s2@school.edu", "Pass", 244, "IM", None])
    wb.save(path)
    (outcome,) = advising_run()
    assert outcome.status == "done"
    out = workdir / "output" / "class"
    assert (out / "letters" / "S1.txt").exists() and not (out / "letters" / "S2.txt").exists()
    assert len(list((out / "outbox").glob("*.eml"))) == 1
    sheet = openpyxl.load_workbook(out / "class-annotated.xlsx").worksheets[0]
    header = [c.value for c in sheet[1]]
    letter = header.index("Letter")
    cells = {row[0].value: row[letter].value for row in sheet.iter_rows(min_row=2)}
    assert cells["S2"] == HELD_AFTER_MATCH and cells["S1"] != HELD_AFTER_MATCH
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["letters_written"] == 1


def test_after_match_letters_are_valid_html_with_nothing_of_the_ended_cycle(
    tmp_path: Path,
) -> None:
    """The HTML part of each branch parses, shows the result as its heading, and has no chart,
    no level, no why and no program list."""
    from tests.support.letters import check_html

    records = [student("M1", match_result="matched"), student("U1", match_result="did not match"),
               student("B1")]
    evaluations = evaluate_all(records, TABLE, today=AFTER)
    letters = render_letters(records, {e.student_id: e for e in evaluations}, TABLE,
                             make_settings(AFTER), {}, tmp_path)
    for letter, heading in zip(letters, ("You matched", "Did not match: your next steps",
                                         "After Match Day: your next steps"), strict=True):
        plain = check_html(letter.html).plain
        assert heading in plain and "2027 Main Match" in plain
        for absent in ("Your Step 2 CK on the scale", "Level ", "Why", "Your program list"):
            assert absent not in plain, (letter.student_id, absent)
