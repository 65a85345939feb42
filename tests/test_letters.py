"""The advising letter: golden files, valid and safe HTML, phone-first, what a student needs."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from flows.errors import SettingsError
from flows.files import student_file_stem
from flows.letters import LetterSummary
from flows.letters.changes import describe_changes, summarize
from flows.letters.render import load_templates, render_letters, with_bodies, without_bodies
from flows.settings import PROJECT_ROOT
from residency_rules.records import (
    Reason,
)
from residency_rules.specialties import SpecialtyTable
from tests.conftest import RUN_DATE
from tests.support.golden import check_golden
from tests.support.letters import (
    CASES,
    XSS_NAME,
    _no_advising_env,  # noqa: F401 - autouse: no ADVISING_* from the developer's shell
    check_html,
    flat,
    make_evaluation,
    make_settings,
    make_student,
    render_one,
)

GOLDEN = Path(__file__).parent / "golden"


# --- builders shared with test_delivery -------------------------------------------------------














# --- the cases of the golden files ------------------------------------------------------------







_DATE_PATTERNS = (
    re.compile(
        r"\b\d{1,2} (January|February|March|April|May|June|July|August|September|October|"
        r"November|December) \d{4}\b",
        re.I,
    ),
    re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} [A-Z][a-z]{2}\b", re.I),
    re.compile(r"\b\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}\b"),
)


def mask_dates(text: str) -> str:
    """Replace every date the letter prints, so golden files do not depend on the calendar."""
    for pattern in _DATE_PATTERNS:
        text = pattern.sub("<DATE>", text)
    return text


@pytest.mark.parametrize("case", sorted(CASES))
def test_letter_matches_golden_file(case: str, tmp_path: Path, table: SpecialtyTable) -> None:
    """Each letter equals its reviewed golden file once dates are masked (UPDATE_GOLDEN=1
    rewrites it and fails: read the diff, then run again)."""
    record, evaluation, previous = CASES[case]
    letter = render_one(tmp_path, table, record, evaluation, previous)
    check_golden(*(
        (GOLDEN / f"{case}.{suffix}", mask_dates(body))
        for suffix, body in (("html", letter.html), ("txt", letter.text))
    ))


# --- valid, safe HTML -------------------------------------------------------------------------







@pytest.mark.parametrize("case", sorted(CASES))
def test_every_letter_is_valid_html_with_nothing_active(
    case: str, tmp_path: Path, table: SpecialtyTable
) -> None:
    """The HTML parses with balanced tags and no script, external resource or handler."""
    record, evaluation, previous = CASES[case]
    letter = render_one(tmp_path, table, record, evaluation, previous)
    checker = check_html(letter.html)
    assert record.name in checker.plain
    assert "None" not in checker.plain.split()
    assert "None" not in letter.text.split()


def test_hostile_input_is_escaped_everywhere(tmp_path: Path, table: SpecialtyTable) -> None:
    """A name, advisor or reason full of markup shows as text and never becomes markup."""
    record, evaluation, _ = CASES["hostile_input"]
    letter = render_one(tmp_path, table, record, evaluation)
    assert "<script>" not in letter.html
    assert "<b>Bold</b>" not in letter.html and "<i>markup</i>" not in letter.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; O&#39;Brien &amp; Zo&#235;" in letter.html
    checker = check_html(letter.html)
    for tag, _ in checker.elements:
        assert tag not in ("b", "i", "u", "script")
    assert XSS_NAME in checker.plain
    assert 'Dr. <b>Bold</b> & "Quote"' in checker.plain
    # The plain-text part is text: shown as typed, it cannot run anywhere.
    assert f"Dear {XSS_NAME}," in letter.text
    assert XSS_NAME not in letter.subject and "X01" not in letter.subject


@hyp_settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != ""),
    reason=st.text(max_size=60),
)
def test_any_text_in_the_record_comes_out_as_the_same_text(
    name: str, reason: str, tmp_path: Path, table: SpecialtyTable
) -> None:
    """Whatever characters a name or a reason holds, the parsed letter shows exactly them."""
    name = "".join(ch for ch in name if ch.isprintable())  # intake drops control characters
    if not name.strip():
        return
    record = make_student(name=name)
    evaluation = make_evaluation(reasons=(Reason("matrix", reason),))
    letter = render_one(tmp_path, table, record, evaluation)
    checker = check_html(letter.html)
    assert " ".join(name.split()) in checker.plain


# --- phone first, email safe ------------------------------------------------------------------


def test_letter_is_phone_first_and_needs_no_style_sheet(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """Viewport set, styles inlined, no width a 375 px screen would have to scroll for."""
    letter = render_one(tmp_path, table)
    checker = check_html(letter.html)
    metas = [a for t, a in checker.elements if t == "meta"]
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in metas
    assert "<style" not in letter.html and "class=" not in letter.html  # all inlined
    assert letter.html.isascii()  # non-ASCII as character references
    for style in checker.styles:
        for prop, px in re.findall(r"(?<![-\w])([-\w]*width)\s*:\s*(\d+)px", style):
            assert prop == "max-width" or prop.startswith("border") or int(px) <= 320, style
    for tag, attrs in checker.elements:
        if "max-width:600px" in (attrs.get("style") or ""):  # the card: 600 in Outlook only
            assert attrs["width"] == "600" and "width:100%" in str(attrs["style"]), attrs
        else:
            assert "width" not in attrs or str(attrs["width"]).endswith("%"), (tag, attrs)
    assert len(checker.styles) > 40


def test_css_is_inlined_once_into_the_template_not_per_letter(tmp_path: Path) -> None:
    """Loading the templates twice gives the same compiled objects (cached per folder)."""
    folder = PROJECT_ROOT / "templates"
    assert load_templates(folder) is load_templates(folder)


# --- what the letter says ---------------------------------------------------------------------


def test_outlook_and_level_come_first_then_chart_plan_mix_signature(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """A student reads, in order: outlook, the first thing to do, chart, what can still move
    the outlook (the score is in: no score to reach), why, the rest of the plan, mix, advisor."""
    letter = render_one(tmp_path, table)
    text = check_html(letter.html).plain
    assert "To reach the next level" not in text and "255+" not in text
    mix_due = RUN_DATE + timedelta(days=table.rules.plan.due_day("mix"))  # the data file's day
    order = [
        "Competitive for many programs", "Level 4 of 5", "First, from Tue 24 Nov",
        "Your Step 2 CK on the scale", "Middle half of US MD seniors who matched",
        "What can still move your outlook", "Why", "Then",
        f"By {mix_due:%a} {mix_due.day} {mix_due:%b}", "Your program list",
        "4 reach", "10 solid", "6 safety", "Dr. Rosa Ortiz", "rosa.ortiz@school.edu",
        "not a guarantee", "Rules version 2026.1",
    ]
    positions = [text.find(item) for item in order]
    assert -1 not in positions, [o for o, p in zip(order, positions, strict=True) if p == -1]
    assert positions == sorted(positions)
    assert "parallel plan" not in text.lower()  # level 4: no parallel plan


def test_chart_shows_score_against_marks_and_nrmp_quartiles(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """Bars for the score, solid and excellent marks, and the NRMP Q1-Q3 range, in percent."""
    letter = render_one(tmp_path, table)
    spec = table.get("Emergency Medicine")
    assert f"{spec.nrmp_q1}-{spec.nrmp_q3}" in flat(letter.text)
    plain = check_html(letter.html).plain
    assert "Your Step 2 CK 248" in plain
    assert "Solid mark 245" in plain and "Excellent mark 255" in plain
    assert (
        "Of US MD seniors who matched in Emergency Medicine in the 2026 Match, the middle half "
        f"scored {spec.nrmp_q1}-{spec.nrmp_q3}; your 248 is inside that range" in flat(letter.text)
    )
    bars = [a for t, a in check_html(letter.html).elements
            if t == "td" and a.get("height") == "12" and "bgcolor" in a]
    widths = [int(str(a["width"]).rstrip("%")) for a in bars]
    assert len(widths) == 4 and all(1 <= w <= 100 for w in widths)
    score_bar, solid_bar, excellent_bar = widths[:3]
    assert solid_bar < score_bar < excellent_bar


def test_nrmp_figures_are_called_approximate_until_the_office_checks_them(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """Unchecked (as shipped): not yet checked by the office, no table number. Checked: the
    report and the day the office checked it."""
    letter = render_one(tmp_path, table)
    assert table.nrmp_status == "unchecked"
    for text in (flat(letter.text), letter.html):
        assert "NRMP figures, not yet checked by your office against the report" in text
        assert "Table 5" not in text and "Charting Outcomes" not in text
    checked = dataclasses.replace(
        table, nrmp_status="checked", nrmp_checked_on=date(2026, 12, 1)
    )
    letter = render_one(tmp_path / "checked", checked)
    for text in (flat(letter.text), letter.html):
        assert "NRMP Charting Outcomes 2026, Table 5, checked by your office on 1 Dec 2026" in (
            text)
        assert "not yet checked" not in text


def test_pending_student_gets_a_target_range_and_a_plan(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """No score yet, the exam three weeks away in the interview season: the target range in
    the chart, every band of the score with its outlook, the study plan for the weeks left
    (no "two full passes" now), the exam date to keep, and no date already past."""
    record, evaluation, _ = CASES["pending_late"]
    letter = render_one(tmp_path, table, record, evaluation)
    text = flat(letter.text)
    assert "We do not have your Step 2 CK score yet" in text
    assert "Your target range 240-250" in check_html(letter.html).plain
    assert "WHAT EACH SCORE WOULD MEAN" in text
    # The range of outcomes, the downside included; no level number before there is a score.
    assert "- 250 or more: Very competitive - 240-249: Strong candidate" in text
    assert "- under 218: not passed (a retake)" in text
    assert "level 3" not in text.lower() and "(level" not in text
    assert "Finish your question bank in mixed, timed blocks" in text
    assert "two full passes" not in text
    assert "Keep your exam on 15 Dec 2026" in text
    assert "23 September 2026" not in text and "23 Sep 2026" not in text
    assert "an advisor at the Office of Student Affairs" not in text  # no meeting needed


def test_parallel_plan_and_advisor_meeting_at_level_one(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """Level 1: the parallel specialty the rules rate level 3 for this student, the Step 1
    failure first in the why, and a dated meeting with an advisor."""
    record, evaluation, _ = CASES["at_risk_parallel"]
    letter = render_one(tmp_path, table, record, evaluation)
    text = flat(letter.text)
    assert evaluation.parallel == ("Family Medicine",)
    assert "apply in your parallel specialty now: with your record, Family Medicine is a " \
        "realistic choice" in text
    assert "First, by Tue 1 Dec: Meet an advisor at the Office of Student Affairs" in text
    why = text[text.index("WHY"):]
    assert why.startswith("WHY - You passed Step 1 after failing it once. Programs see every "
                          "attempt")
    assert "Surgery grade was a Conditional Pass; we counted it as a Pass" in text
    # No advisor on the roster: the office signs and its address is the one to write to.
    assert "write to Office of Student Affairs, advising@school.edu" in text
    assert letter.reply_to == "advising@school.edu"


def test_reply_to_is_the_advisor_only_inside_the_allowed_domains(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """An advisor address outside the school's domains falls back to the office's reply-to."""
    inside = render_one(tmp_path, table)
    assert inside.reply_to == "rosa.ortiz@school.edu"
    outside = render_one(tmp_path, table, make_student(advisor_email="rosa@gmail.com"))
    assert outside.reply_to == "advising@school.edu"
    assert "rosa@gmail.com" not in outside.text and "rosa@gmail.com" not in outside.html
    injected = render_one(
        tmp_path, table, make_student(advisor_email="a@school.edu\r\nBcc: x@evil.com")
    )
    assert injected.reply_to == "advising@school.edu"


# --- what changed, and the content hash -------------------------------------------------------


def test_changed_outlook_says_what_changed_since_the_last_letter(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """A later letter names the old and new outlook and score, and the date of the last one."""
    record, evaluation, previous = CASES["failure_changed"]
    letter = render_one(tmp_path, table, record, evaluation, previous)
    assert letter.changes == (
        'Your outlook moved up from "Reach: apply broadly, with explanation" (level 2) to '
        '"Matchable, with explanation" (level 3).',
        "Your Step 2 CK on file changed from 238 to 252.",
    )
    assert "WHAT CHANGED SINCE YOUR LETTER OF 1 OCTOBER 2026" in flat(letter.text)
    assert "What changed since your letter of 1 October 2026" in letter.html
    assert letter.subject.startswith("Updated: ")


def test_describe_changes_covers_score_arriving_specialty_and_band() -> None:
    """Each kind of change gets one plain sentence; nothing changed says nothing."""
    before = LetterSummary(3, "Pending Step 2 CK", "pending", None, "Internal Medicine")
    after = LetterSummary(5, "Very competitive", "excellent", 255, "Internal Medicine")
    assert describe_changes(before, after) == (
        'Your outlook changed from "Pending Step 2 CK" to "Very competitive" (level 5).',
        "Your Step 2 CK score is now on file: 255.",
    )
    moved = dataclasses.replace(after, specialty="Pediatrics")
    assert describe_changes(after, moved)[0].startswith("Your specialty on file changed")
    band = dataclasses.replace(after, band="solid")
    assert "changed from excellent to solid" in describe_changes(after, band)[0]
    assert describe_changes(after, after) == ()
    assert describe_changes(None, after) == ()


def test_content_hash_ignores_run_date_and_changes_but_not_content(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """Same letter tomorrow, with a what-changed section or a new rules version: same hash."""
    base = render_one(tmp_path, table)
    tomorrow = render_one(tmp_path, table, settings=make_settings(today=date(2026, 12, 1)))
    assert tomorrow.text != base.text and tomorrow.content_hash == base.content_hash
    prev = LetterSummary(2, "Reach", "below", 238, "Emergency Medicine", date(2026, 10, 1))
    with_changes = render_one(tmp_path, table, previous=prev)
    assert with_changes.changes and with_changes.content_hash == base.content_hash
    rescored = render_one(
        tmp_path, table, make_student(step2_score=250), make_evaluation(step2_score=250)
    )
    assert rescored.content_hash != base.content_hash
    readdressed = render_one(tmp_path, table, make_student(email="new@school.edu"))
    assert readdressed.content_hash != base.content_hash
    new_version = render_one(tmp_path, table, evaluation=make_evaluation(rules_version="2027.1"))
    assert "Rules version 2027.1" in flat(new_version.text)
    assert new_version.content_hash == base.content_hash


def test_summary_is_what_the_ledger_keeps(tmp_path: Path, table: SpecialtyTable) -> None:
    """The letter carries the outlook summary the ledger stores when it goes out."""
    letter = render_one(tmp_path, table)
    assert letter.summary == summarize(make_evaluation())
    assert letter.summary == LetterSummary(4, "Competitive for many programs", "solid", 248,
                                           "Emergency Medicine")


# --- files ------------------------------------------------------------------------------------


def test_letters_are_written_atomically_under_safe_names(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """<id>.html and <id>.txt per student; unsafe IDs are cleaned; no temporary file remains."""
    ids = ["00123", "../etc/passwd", "a b/c", "A-1_ok", "A-1_OK"]
    records = [make_student(i) for i in ids]
    evaluations = {i: make_evaluation(i) for i in ids}
    held = make_student("HELD")  # no evaluation: held back by a problem, no letter
    out = tmp_path / "letters"
    letters = render_letters([*records, held], evaluations, table, make_settings(), {}, out)
    assert [lt.student_id for lt in letters] == ids
    names = sorted(p.name for p in out.iterdir())
    stems = [student_file_stem(i) for i in ids]
    assert names == sorted([f"{s}.html" for s in stems] + [f"{s}.txt" for s in stems])
    assert student_file_stem("00123") == "00123" and student_file_stem("A-1_OK") == "A-1_OK"
    assert "/" not in student_file_stem("../etc/passwd") and ".." not in student_file_stem("../x")
    assert student_file_stem("a/b") != student_file_stem("a_b")
    assert (out / "00123.html").read_text(encoding="utf-8") == letters[0].html
    assert (out / "00123.txt").read_text(encoding="utf-8") == letters[0].text
    assert not (tmp_path / "etc").exists()


def test_a_letter_the_disk_takes_in_pieces_is_written_whole(
    tmp_path: Path, table: SpecialtyTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.write may take part of the data (a nearly full disk): the rest follows, none is lost."""
    real = os.write
    calls: list[int] = []

    def short(fd: int, data: bytes) -> int:
        calls.append(fd)
        return real(fd, bytes(data[:1000]))

    monkeypatch.setattr(os, "write", short)
    out = tmp_path / "letters"
    (letter,) = render_letters([make_student("00123")], {"00123": make_evaluation("00123")},
                               table, make_settings(), {}, out)
    monkeypatch.undo()
    assert len(calls) > 2
    assert (out / "00123.html").read_bytes() == letter.html.encode("utf-8")
    assert (out / "00123.txt").read_bytes() == letter.text.encode("utf-8")


def test_letters_sent_back_without_bodies_are_whole_again_from_their_files(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """The render process returns letters without HTML and text; the files give them back."""
    ids = ["00123", "../etc/passwd", "Zoë-7"]
    out = tmp_path / "letters"
    letters = render_letters([make_student(i) for i in ids],
                             {i: make_evaluation(i) for i in ids}, table, make_settings(), {}, out)
    light = without_bodies(letters)
    assert all(lt.html == lt.text == "" for lt in light)
    assert [dataclasses.replace(lt, html="", text="") for lt in letters] == light
    assert with_bodies(light, out) == letters
    assert with_bodies(letters, tmp_path / "nowhere") == letters  # whole letters are not re-read


def test_subject_never_names_the_student(tmp_path: Path, table: SpecialtyTable) -> None:
    """The subject is one line with neither the name nor the ID, even if settings hold CR/LF."""
    record = make_student("ZX9", name="Unique Person")
    letter = render_one(
        tmp_path, table, record, make_evaluation("ZX9"),
        settings=make_settings(office_name="Office\r\nBcc: evil@example.com"),
    )
    assert "\n" not in letter.subject and "\r" not in letter.subject
    assert "Unique" not in letter.subject and "ZX9" not in letter.subject


# --- template errors name the template --------------------------------------------------------


@pytest.fixture
def template_copy(tmp_path: Path) -> Iterator[Path]:
    """A copy of the templates folder a test may break."""
    folder = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", folder)
    yield folder


def test_missing_field_in_a_template_fails_naming_it(
    template_copy: Path, tmp_path: Path, table: SpecialtyTable
) -> None:
    """StrictUndefined: a misspelt field stops the run instead of printing a blank."""
    path = template_copy / "letter.txt.j2"
    path.write_text(path.read_text(encoding="utf-8") + "{{ advisr }}\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"letter\.txt\.j2.*advisr"):
        render_one(tmp_path, table, settings=make_settings(templates_dir=template_copy))


def test_jinja_tag_inside_an_html_tag_is_refused_at_load(template_copy: Path) -> None:
    """CSS is inlined into the template source, so a tag must sit between elements."""
    path = template_copy / "letter.html.j2"
    source = path.read_text(encoding="utf-8")
    path.write_text(
        source.replace(
            '<td class="card-cell">', '<td {% if level %}class="card-cell"{% endif %}>'
        ),
        encoding="utf-8",
    )
    with pytest.raises(SettingsError, match="letter.html.j2: a Jinja tag sits where"):
        load_templates(template_copy)


def test_missing_template_names_the_setting(tmp_path: Path) -> None:
    """An empty templates folder fails with the file and ADVISING_TEMPLATES_DIR."""
    with pytest.raises(SettingsError, match="ADVISING_TEMPLATES_DIR"):
        load_templates(tmp_path)


# --- with the real rules ----------------------------------------------------------------------


def test_letters_from_the_rules_engine_are_complete_and_valid(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """Every specialty, Step 1 history and score the rules can see gives a full, valid letter."""
    rules = pytest.importorskip("residency_rules.rules")
    records = []
    scores: tuple[int | None, ...] = (None, 210, 236, 244, 251, 258, 268)
    for i, spec in enumerate(table.specialties):
        for j, score in enumerate(scores):
            for attempts in (1, 2, 3):
                records.append(make_student(
                    f"R{i:02d}{j}{attempts}", specialty=spec.name, step2_score=score,
                    step1_attempts=attempts, step2_date=date(2026, 9, 1) if score is None else None,
                    step1_result="fail" if attempts == 3 and j == 0 else "pass",
                ))
    evaluations = rules.evaluate_all(
        records, table, review_start=date(2026, 9, 23), today=date(2026, 6, 1)
    )
    letters = render_letters(
        records, {e.student_id: e for e in evaluations}, table, make_settings(), {},
        tmp_path / "letters",
    )
    assert len(letters) == len(records)
    for letter, evaluation in zip(letters, evaluations, strict=True):
        plain = check_html(letter.html).plain
        assert evaluation.label in plain
        pending = evaluation.step2_score is None
        assert (f"Level {evaluation.level} of 5" in plain) is not pending
        assert "First, " in plain and "not a guarantee" in plain
        assert "None" not in plain.split() and "None" not in letter.text.split()
        if evaluation.level <= 2 and evaluation.applies_this_cycle:
            # A parallel specialty, or (the least competitive tier) breadth: never "a second
            # specialty" where there is no lower tier.
            assert "parallel" in plain.lower() or "more programs than usual" in plain
            assert "second specialty" not in plain
