"""The outlook rules: the article's examples, the matrix cell by cell, modifiers, advice."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from residency_rules.errors import RulesError
from residency_rules.records import CLERKSHIPS, Evaluation, Grade, StudentRecord
from residency_rules.rules import evaluate, evaluate_all
from residency_rules.specialties import SpecialtyTable
from tests.support.records import (
    ACCEPTANCE,
    TABLE,
    records,
    student,
)

REVIEW_START = date(2026, 9, 23)  # the 2027 cycle
TODAY = date(2026, 5, 1)
STRONG = (("Internal Medicine", "H"), ("Surgery", "HP"), ("Pediatrics", "P"))
WEAK = (("Internal Medicine", "P"), ("Surgery", "P"), ("Pediatrics", "P"))




def run(record: StudentRecord, table: SpecialtyTable = TABLE, today: date = TODAY) -> Evaluation:
    return evaluate(record, table, review_start=REVIEW_START, today=today)


# --- the article's examples (docs/rules.md, Acceptance examples) --------------------------



@pytest.mark.parametrize(("step1", "score", "specialty", "label"), ACCEPTANCE)
def test_the_article_examples_hold_exactly(
    step1: dict[str, Any], score: int, specialty: str, label: str
) -> None:
    """Each example from the article's table and scenarios gets the article's outlook."""
    result = run(student(step2_score=score, specialty=specialty, **step1))
    assert result.label == label


def test_the_article_examples_read_through_aliases() -> None:
    """The article writes Internal Med, EM, Psych, Gen Surg and FM; the table resolves them."""
    for alias, name in [("Internal Med", "Internal Medicine"), ("EM", "Emergency Medicine"),
                        ("Psych", "Psychiatry"), ("Gen Surg", "General Surgery"),
                        ("FM", "Family Medicine")]:
        resolved = TABLE.resolve(alias)
        assert resolved is not None and resolved.name == name


# --- the matrix, cell by cell, written out from the spec table --------------------------------

# Representative specialty and marks per tier; a hyper student here has the whole package.
TIER_SPECIALTY = {
    "less": ("Internal Medicine", 240, 250),
    "moderate": ("Emergency Medicine", 245, 255),
    "high": ("General Surgery", 250, 260),
    "hyper": ("Dermatology", 255, 265),
}
# docs/rules.md, The outlook matrix: excellent / solid / borderline / below.
MATRIX = {
    ("clean", "less"): ["5 Very competitive", "4 Strong candidate",
                        "3 Competitive at community programs", "2 Apply broadly"],
    ("clean", "moderate"): ["5 Very competitive", "4 Competitive for many programs",
                            "3 Competitive at community programs", "2 Reach"],
    ("clean", "high"): ["4 Competitive at many places", "3 Competitive at some programs",
                        "2 Reach", "1 At risk: plan a parallel specialty"],
    ("clean", "hyper"): ["4 Competitive if the whole package is strong",
                         "3 Competitive at some programs",
                         "1 At risk: plan a parallel specialty",
                         "1 At risk: plan a parallel specialty"],
    ("failure", "less"): ["3 Matchable, with explanation", "3 Matchable, with explanation",
                          "2 Reach: apply broadly, with explanation", "1 At risk"],
    ("failure", "moderate"): ["3 Matchable at community programs, with explanation",
                              "2 Reach, with explanation", "1 At risk", "1 At risk"],
    ("failure", "high"): ["2 Reach, with explanation", "1 At risk: plan a parallel specialty",
                          "1 At risk: plan a parallel specialty",
                          "1 At risk: plan a parallel specialty"],
    ("failure", "hyper"): ["1 At risk: plan a parallel specialty"] * 4,
}
OUTSIDE = {
    "pending": "Pending Step 2 CK",
    "failing": "1 At risk: Step 2 CK not passed",
    "not passed": "1 Not yet eligible: pass Step 1 first",
    "not taken": "1 Not yet eligible: take Step 1 first",
}
# Pending takes the best level a score could bring, capped at 3.
PENDING_LEVEL = {
    ("clean", "less"): 3, ("clean", "moderate"): 3, ("clean", "high"): 3, ("clean", "hyper"): 3,
    ("failure", "less"): 3, ("failure", "moderate"): 3, ("failure", "high"): 2,
    ("failure", "hyper"): 1,
}
STATUS_FIELDS: dict[str, dict[str, Any]] = {
    "clean": {"step1_result": "pass", "step1_attempts": 1},
    "failure": {"step1_result": "pass", "step1_attempts": 2},
    "not passed": {"step1_result": "fail", "step1_attempts": 1},
    "not taken": {"step1_result": "not taken", "step1_attempts": 1},
}
BANDS = ["excellent", "solid", "borderline", "below", "failing", "pending"]


def band_score(band: str, solid: int, excellent: int) -> int | None:
    return {
        "excellent": excellent, "solid": solid, "borderline": solid - 1,
        "below": solid - 6, "failing": 217, "pending": None,
    }[band]


def expected(status: str, tier: str, band: str) -> tuple[int, str]:
    if status in ("not passed", "not taken"):
        cell = OUTSIDE[status]
    elif band == "failing":
        cell = OUTSIDE["failing"]
    elif band == "pending":
        return PENDING_LEVEL[(status, tier)], OUTSIDE["pending"]
    else:
        cell = MATRIX[(status, tier)][["excellent", "solid", "borderline", "below"].index(band)]
    level, label = cell.split(" ", 1)
    return int(level), label


CELLS = [
    (status, tier, band)
    for status in STATUS_FIELDS
    for tier in TIER_SPECIALTY
    for band in BANDS
]


@pytest.mark.parametrize(("status", "tier", "band"), CELLS)
def test_every_tier_band_and_step1_status_gets_the_spec_label(
    status: str, tier: str, band: str
) -> None:
    """Each cell of the spec's matrix and each case outside it, with neutral clerkships."""
    name, solid, excellent = TIER_SPECIALTY[tier]
    # Hyper needs strong clerkships for the whole package, but strong clerkships would lift a
    # borderline score; at borderline and below the level is 1 either way, so stay neutral there.
    package = tier == "hyper" and band not in ("borderline", "below")
    record = student(
        specialty=name,
        step2_score=band_score(band, solid, excellent),
        research_count=2,
        letters="strong",
        clerkships=STRONG if package else (),
        **STATUS_FIELDS[status],
    )
    result = run(record)
    assert (result.level, result.label) == expected(status, tier, band)
    assert result.raw_band == band
    assert result.step1_status == status


# --- modifiers ---------------------------------------------------------------------------------


def test_strong_clerkships_lift_a_borderline_score_to_solid() -> None:
    """Strong clinical grades push a slightly lower Step 2 CK into the interview pile; the why
    says so once, in the outcome (the grades' own sentence does not repeat it)."""
    result = run(student(specialty="Emergency Medicine", step2_score=242, clerkships=STRONG))
    assert (result.raw_band, result.band, result.clerkships) == ("borderline", "solid", "strong")
    assert result.label == "Competitive for many programs"
    texts = [r.text for r in result.reasons]
    assert sum("clinical grades" in t for t in texts) == 1, texts
    assert any(r.rule == "matrix.changed" and "at least half Honors or High Pass) lift it"
               in r.text for r in result.reasons)


@pytest.mark.parametrize(
    ("score", "band", "label"),
    [(256, "solid", "Competitive for many programs"),
     (250, "borderline", "Competitive at community programs")],
)
def test_weak_clerkships_lower_excellent_and_solid_by_one_step(
    score: int, band: str, label: str
) -> None:
    """Weak clinical comments can sink even a great score (said once, in the outcome)."""
    result = run(student(specialty="Emergency Medicine", step2_score=score, clerkships=WEAK))
    assert (result.clerkships, result.band, result.label) == ("weak", band, label)
    assert any(r.rule == "matrix.changed" and "Honors or High Pass) lower it" in r.text
               for r in result.reasons)
    assert not any("sink" in r.text for r in result.reasons)


def test_a_failed_clerkship_makes_clerkships_weak() -> None:
    """Any Fail is weak, however many Honors there are."""
    grades = (("Internal Medicine", "H"), ("Surgery", "H"), ("Pediatrics", "F"))
    assert run(student(step2_score=245, clerkships=grades)).clerkships == "weak"


@pytest.mark.parametrize(
    ("grades", "strength"),
    [
        ((), "neutral"),
        ((("Surgery", None), ("Pediatrics", None)), "neutral"),
        ((("Surgery", "H"),), "strong"),
        ((("Surgery", "HP"), ("Pediatrics", "P")), "strong"),
        ((("Surgery", "HP"), ("Pediatrics", "P"), ("Psychiatry", "P")), "neutral"),
        ((("Surgery", "P"), ("Pediatrics", "P")), "neutral"),
        ((("Surgery", "P"), ("Pediatrics", "P"), ("Psychiatry", "P")), "weak"),
    ],
)
def test_clerkship_strength_follows_the_spec(
    grades: tuple[tuple[str, Grade | None], ...], strength: str
) -> None:
    """Strong: half or more H/HP and no Fail; weak: a Fail, or 3+ graded with no H/HP."""
    assert run(student(step2_score=245, clerkships=grades)).clerkships == strength


def test_two_failed_step1_attempts_move_the_band_down_one_step() -> None:
    """Failed twice, then passed: an excellent 255 in FM reads as solid (the same outlook, so
    the why does not dwell on it); a solid 247 reads as borderline, a reach, and the why says
    what the second failure did."""
    result = run(student(specialty="Family Medicine", step2_score=255, step1_attempts=3))
    assert (result.raw_band, result.band) == ("excellent", "solid")
    assert result.label == "Matchable, with explanation"
    assert not any("one step lower" in r.text for r in result.reasons)
    lower = run(student(specialty="Family Medicine", step2_score=247, step1_attempts=3))
    assert (lower.raw_band, lower.band) == ("solid", "borderline")
    assert lower.label == "Reach: apply broadly, with explanation"
    (failure,) = [r for r in lower.reasons if r.rule == "step1.failure"]  # one reason, not two
    assert "failing it twice" in failure.text and "one step lower" in failure.text


def test_strong_clerkships_lift_a_borderline_hyper_score_out_of_risk() -> None:
    """Derm 252 with the whole package reads as solid: Competitive at some programs."""
    result = run(student(specialty="Dermatology", step2_score=252, clerkships=STRONG,
                         research_count=3, letters="strong"))
    assert (result.band, result.level, result.label) == ("solid", 3, "Competitive at some programs")


def test_modifiers_apply_in_order_clerkships_then_attempts() -> None:
    """Strong clerkships lift borderline to solid, then two failures bring it back down."""
    result = run(
        student(specialty="Family Medicine", step2_score=237, step1_attempts=3, clerkships=STRONG)
    )
    assert (result.raw_band, result.band) == ("borderline", "borderline")
    assert result.label == "Reach: apply broadly, with explanation"


def test_hyper_tier_without_the_whole_package_is_capped_at_reach() -> None:
    """Necessary but not sufficient: an excellent score alone is a reach, and the gaps listed
    (each known: no research counted, clinical grades graded and not strong, weak letters)."""
    result = run(student(specialty="Dermatology", step2_score=268, letters="weak",
                         research_count=0, clerkships=WEAK))
    assert (result.level, result.label) == (2, "Reach: the rest of the package is missing")
    assert result.missing_package == (
        "Honors-level clinical grades",
        "research, ideally in Dermatology",
        "strong letters from big names in the field",
    )
    # One voice: the why says what the score alone gives and what the package changes, first
    # (it caps the outlook), and never the office's letters rating.
    package = [r for r in result.reasons if r.rule == "matrix.changed"]
    assert package and "necessary but not enough" in package[0].text
    assert '"Competitive if the whole package is strong"' in package[0].text
    assert result.reasons[0].rule == result.cap_rule == "matrix.changed"
    assert not any("letters" in r.text for r in result.reasons)


def test_unknown_research_or_clinical_grades_are_not_given_not_missing() -> None:
    """Unknown is not zero: a Dermatology 268 with no research column and no clerkship graded
    keeps the matrix's level; with a known 0 and graded Pass grades it is capped."""
    unknown = run(student(specialty="Dermatology", step2_score=268))
    assert (unknown.level, unknown.missing_package) == (4, ())
    assert not any("research" in r.text.lower() for r in unknown.reasons)
    assert not any("research" in lever.lower() for lever in unknown.levers)
    known = run(student(specialty="Dermatology", step2_score=268, research_count=0,
                        clerkships=WEAK))
    assert known.level == 2 and "research, ideally in Dermatology" in known.missing_package


def test_hyper_tier_with_the_whole_package_keeps_the_matrix_level() -> None:
    """Strong clerkships, research and letters that are not weak: no cap."""
    result = run(
        student(specialty="Orthopaedic Surgery", step2_score=266, clerkships=STRONG,
                research_count=1)
    )
    assert (result.level, result.label) == (4, "Competitive if the whole package is strong")
    assert result.missing_package == ()


def test_a_marginal_step1_in_a_hyper_tier_adds_the_top_programs_note() -> None:
    """Even a great Step 2 may not carry the top programs."""
    result = run(student(specialty="Plastic Surgery", step2_score=270, step1_margin="marginal"))
    assert any(r.rule == "hyper.marginal" and "top programs" in r.text for r in result.reasons)


def test_a_pre_2022_step1_score_under_210_is_marginal() -> None:
    """Numeric Step 1 scores under 210 count as a marginal pass."""
    assert run(student(step1_score=205, step2_score=245)).step1_marginal is True
    assert run(student(step1_score=215, step2_score=245)).step1_marginal is False


@pytest.mark.parametrize(
    ("fields", "impact"),
    [
        ({}, 80),
        ({"step1_attempts": 2}, 60),
        ({"specialty": "Otolaryngology"}, 40),
        ({"specialty": "Otolaryngology", "step1_attempts": 2}, 40),
    ],
)
def test_step2_impact_is_the_lowest_that_applies(fields: dict[str, Any], impact: int) -> None:
    """80 with a clean Step 1, 60 after a failure, 40 in a hyper tier."""
    assert run(student(step2_score=250, **fields)).impact == impact


@pytest.mark.parametrize(
    ("fields", "trend"),
    [
        ({"step1_margin": "marginal", "step2_score": 255}, "upward"),
        ({"step1_margin": "marginal", "step2_score": 245}, "stable"),
        ({"step1_attempts": 2, "step2_score": 252}, "upward"),
        ({"step1_attempts": 2, "step2_score": 241}, "stable"),
        ({"step2_score": 245}, None),
        ({"step1_score": 230, "step2_score": 245}, "upward"),
        ({"step1_score": 242, "step2_score": 246}, "stable"),
        ({"step1_score": 235, "step2_score": 245}, None),
        ({"step1_margin": "marginal"}, None),
    ],
)
def test_trend_reads_step1_against_step2(fields: dict[str, Any], trend: str | None) -> None:
    """Upward trajectory or stable, not transformed (FAQ 3); numeric scores: 15 up, under 5."""
    assert run(student(**fields)).trend == trend


def test_an_upward_trend_says_so_and_asks_for_the_right_letter_writers() -> None:
    """A scored Step 1 with Step 2 CK well above it is an upward trend, said; after a close
    pass/fail Step 1 there is no score to rise from: the Step 1 sentence says programs lean on
    Step 2 CK, and no trend sentence repeats it. Both ask for the right letter writers."""
    scored = run(student(step1_score=205, step2_score=258))
    assert any(r.rule == "trend.upward" for r in scored.reasons)
    bare = run(student(step1_margin="marginal", step2_score=258))
    assert bare.trend == "upward"
    assert not any(r.rule == "trend.upward" for r in bare.reasons)
    assert any("Step 1 is pass/fail" in r.text for r in bare.reasons)
    for result in (scored, bare):
        assert any(a.key == "letters" and "late in third year" in a.text for a in result.advice)


# --- Step 2 CK passing score and timing --------------------------------------------------------


def test_the_passing_score_moved_from_214_to_218_on_1_july_2025() -> None:
    """A 216 taken in June 2025 passed; the same score in August 2025 did not."""
    before = run(student(step2_score=216, step2_date=date(2025, 6, 30)))
    after = run(student(step2_score=216, step2_date=date(2025, 7, 1)))
    undated = run(student(step2_score=216))
    assert before.raw_band == "below"
    assert after.raw_band == undated.raw_band == "failing"


@pytest.mark.parametrize(
    ("exam", "late"),
    [
        (date(2026, 8, 26), False),  # exactly four weeks before 23 Sep 2026
        (date(2026, 8, 27), True),
        (date(2026, 7, 1), False),
        (None, False),
    ],
)
def test_timing_flags_a_score_that_will_not_be_there(exam: date | None, late: bool) -> None:
    """No score and an exam later than four weeks before programs start reviewing."""
    result = run(student(step2_date=exam))
    assert result.timing_late is late
    assert any(r.rule == "timing.late" for r in result.reasons) is late


def test_timing_is_never_late_once_the_score_is_in() -> None:
    assert run(student(step2_score=250, step2_date=date(2026, 9, 20))).timing_late is False


def test_no_exam_date_after_the_cutoff_has_passed_is_late() -> None:
    """With no date on file, today stands in for the exam date."""
    assert run(student(), today=date(2026, 9, 1)).timing_late is True


# --- advice ------------------------------------------------------------------------------------


def keys(result: Evaluation) -> list[str]:
    return [a.key for a in result.advice]


def test_pending_advice_sets_the_target_range_and_the_exam_plan() -> None:
    """Aim for 245-255 for EM; question bank and NBME forms; a date that posts in time."""
    result = run(student(specialty="EM", step2_date=date(2026, 9, 10)))
    assert result.label == "Pending Step 2 CK"
    assert keys(result)[:3] == ["target", "qbank", "schedule"]
    target, qbank, schedule = result.advice[:3]
    assert "Aim for 245-255 on Step 2 CK for Emergency Medicine" in target.text
    assert target.section == "FAQ 7"
    assert "two full passes" in qbank.text and "mixed, timed blocks" in qbank.text
    assert "NBME" in qbank.text
    assert qbank.section == "Practical Game Plan If You're Banking on Step 2 CK"
    assert "26 Aug 2026" in schedule.text
    assert schedule.section == "Time Your Exam and ERAS Submission"


def test_a_step1_failure_gets_the_personal_statement_paragraph() -> None:
    result = run(student(specialty="Family Medicine", step2_score=252, step1_attempts=2))
    statement = [a for a in result.advice if a.key == "statement"]
    assert statement and "not an apology" in statement[0].text
    assert statement[0].section == "FAQ 6"


def test_hyper_advice_names_research_letters_and_away_rotations() -> None:
    result = run(student(specialty="Neurosurgery", step2_score=262))
    package = [a for a in result.advice if a.key == "package"]
    assert package and "away rotations" in package[0].text and "research" in package[0].text
    assert package[0].section == "Hyper-Competitive Specialties Still Want the Whole Package"


@pytest.mark.parametrize(
    ("fields", "level", "mix"),
    [
        ({"step2_score": 255}, 5, (25, 50, 25, False, False)),
        ({"step2_score": 245}, 4, (20, 50, 30, False, False)),
        ({"step2_score": 237}, 3, (15, 40, 45, False, False)),
        ({"step2_score": 230}, 2, (10, 30, 60, True, False)),
        ({"step2_score": 230, "specialty": "General Surgery"}, 1, (5, 25, 70, True, True)),
    ],
)
def test_the_program_list_mix_follows_the_level(
    fields: dict[str, Any], level: int, mix: tuple[int, int, int, bool, bool]
) -> None:
    result = run(student(**fields))
    assert result.level == level
    got = result.mix
    assert (got.reach, got.solid, got.safety, got.parallel_plan, got.meet_advisor) == mix
    assert any(a.key == "mix" and f"{mix[0]}% reach" in a.text for a in result.advice)
    assert ("parallel" in keys(result)) is mix[3]
    assert ("advisor" in keys(result)) is mix[4]


def test_the_parallel_plan_offers_only_what_the_rules_rate_level_three_for_the_student() -> None:
    """After a Step 1 failure a 247 in General Surgery is at risk. 247 is solid for every less
    and moderate tier specialty, but on this record (a Step 1 failure) the moderate ones read
    "Reach, with explanation" (level 2): of the office's list (OB/GYN, Anesthesiology, EM,
    Family Medicine) only Family Medicine is offered, rated "Matchable, with explanation"."""
    result = run(student(specialty="General Surgery", step2_score=247, step1_attempts=2))
    assert result.level == 1
    assert result.parallel == ("Family Medicine",)
    fm = run(student(specialty="Family Medicine", step2_score=247, step1_attempts=2))
    assert fm.level >= 3
    parallel = [a for a in result.advice if a.key == "parallel"][0]
    assert "Family Medicine is a realistic choice" in parallel.text
    assert parallel.section == "You're Applying Reasonably for Your Profile"


def test_radiology_after_a_step1_failure_is_not_offered_what_the_rules_rate_a_reach() -> None:
    """Issue #23: Diagnostic Radiology 252 after a Step 1 failure was offered Anesthesiology
    and EM, which read "Reach, with explanation" for that record."""
    result = run(student(specialty="Diagnostic Radiology", step2_score=252, step1_attempts=2))
    assert result.parallel and not {"Anesthesiology", "Emergency Medicine"} & set(
        result.parallel)
    for name in result.parallel:
        assert run(student(specialty=name, step2_score=252, step1_attempts=2)).level >= 3


def test_the_parallel_plan_never_names_the_same_or_a_higher_tier() -> None:
    result = run(student(specialty="Dermatology", step2_score=262, step1_attempts=2))
    tiers = {TABLE.get(name).tier for name in result.parallel}
    assert result.parallel and tiers <= {"less", "moderate", "high"}


@pytest.mark.parametrize("score", [255, 258, 262, 270])
def test_dermatology_is_offered_medical_specialties_not_surgery_or_radiology(score: int) -> None:
    """A dermatology advisor suggests Internal Medicine, Pathology, Family Medicine ... first:
    the curated list and the medical family fill the five places before any surgical or
    radiology specialty, although General Surgery and Diagnostic Radiology are a lower tier."""
    result = run(student(specialty="Dermatology", step2_score=score, step1_attempts=2))
    assert result.level == 1
    assert result.parallel == ("Internal Medicine", "Pathology", "Family Medicine")
    assert not {"General Surgery", "Diagnostic Radiology"} & set(result.parallel)


def test_the_parallel_plan_only_names_specialties_where_the_score_is_already_solid() -> None:
    """A 242 after a Step 1 failure in Emergency Medicine (moderate): only less-tier
    specialties with a solid mark of 240 qualify, hospital-based ones (EM's family) first."""
    result = run(student(specialty="Emergency Medicine", step2_score=242, step1_attempts=2))
    assert result.level == 1
    assert result.parallel[:2] == ("Pathology", "Radiation Oncology")
    for name in result.parallel:
        spec = TABLE.get(name)
        assert spec.tier == "less" and spec.solid <= 242


def test_level_one_asks_for_a_meeting_with_an_advisor_first() -> None:
    """At risk, the plan is gone through with an advisor before anything else; Step 1 not
    passed, the first item is the retake planned with the advisor (never a deadline to pass)."""
    result = run(student(step2_score=230, specialty="General Surgery"))
    assert result.level == 1 and result.advice[0].key == "advisor"
    retake = run(student(step1_result="fail"))
    assert retake.advice[0].key == "step1" and "with your advisor" in retake.advice[0].text
    assert "Pass Step 1 first" not in retake.advice[0].text


def test_not_taken_step1_is_not_yet_eligible_and_says_take_it_first() -> None:
    """Decision: Step 1 not taken is level 1, "Not yet eligible: take Step 1 first"."""
    result = run(student(step1_result="not taken", step2_score=250))
    assert (result.level, result.label) == (1, "Not yet eligible: take Step 1 first")
    step1 = [a for a in result.advice if a.key == "step1"]
    assert step1 and "Plan Step 1 with your advisor" in step1[0].text
    assert result.next_levels == ()


# --- next levels -------------------------------------------------------------------------------


def test_a_passed_step2_gets_no_score_ladder() -> None:
    """A passed USMLE Step cannot be retaken: a 241 in EM (level 3) gets no score to reach."""
    result = run(student(specialty="Emergency Medicine", step2_score=241))
    assert result.level == 3 and result.next_levels == ()


def test_a_failed_step2_gets_the_ladder_for_the_retake() -> None:
    """A 210 in EM is not passed: the retake's ladder reads the failure row (the failure stays
    on the record), so a bare pass leaves the student at risk and is no rung of its own."""
    result = run(student(specialty="Emergency Medicine", step2_score=210))
    assert [(n.level, n.score) for n in result.next_levels] == [(2, 245), (3, 255)]


def test_next_levels_for_a_pending_score_show_the_whole_ladder() -> None:
    result = run(student(specialty="Family Medicine", step1_attempts=2))
    assert [(n.level, n.score) for n in result.next_levels] == [(2, 235), (3, 240)]


def test_every_evaluation_carries_the_rules_version() -> None:
    results = evaluate_all(
        [student(student_id=str(i), step2_score=230 + i) for i in range(5)], TABLE,
        review_start=REVIEW_START, today=TODAY,
    )
    assert [r.student_id for r in results] == ["0", "1", "2", "3", "4"]
    assert {r.rules_version for r in results} == {"2026.1"}


def test_a_specialty_missing_from_the_table_is_a_rules_error() -> None:
    with pytest.raises(RulesError, match='no specialty "Astronautics"'):
        run(student(specialty="Astronautics"))


def test_an_alias_in_the_record_is_read_as_its_specialty() -> None:
    assert run(student(specialty="Gen Surg", step2_score=255)).specialty == "General Surgery"


# --- properties --------------------------------------------------------------------------------

ALL_LABELS = {cell.split(" ", 1)[1] for row in MATRIX.values() for cell in row} | {
    OUTSIDE["pending"],
    *(v.split(" ", 1)[1] for k, v in OUTSIDE.items() if k != "pending"),
    "Reach: the rest of the package is missing",
}




@settings(max_examples=400, deadline=None)
@given(records(), st.integers(1, 300), st.integers(1, 300))
def test_a_higher_step2_never_lowers_the_level(
    record: StudentRecord, first: int, second: int
) -> None:
    """All else equal, a better Step 2 CK score never hurts."""
    low, high = sorted((first, second))
    assert run(dataclasses.replace(record, step2_score=low)).level <= run(
        dataclasses.replace(record, step2_score=high)
    ).level


@settings(max_examples=400, deadline=None)
@given(records(), st.sampled_from(CLERKSHIPS))
def test_adding_an_honors_never_lowers_the_level(record: StudentRecord, clerkship: str) -> None:
    """Turning one clerkship (graded or not, present or not) into Honors never hurts."""
    others = tuple((n, g) for n, g in record.clerkships if n != clerkship)
    better = dataclasses.replace(record, clerkships=(*others, (clerkship, "H")))
    without = dataclasses.replace(record, clerkships=others)
    assert run(without).level <= run(better).level


@settings(max_examples=400, deadline=None)
@given(records())
def test_every_input_gets_exactly_one_known_label(record: StudentRecord) -> None:
    """One label from the matrix or the cases outside it, a level 1-5 and its mix."""
    result = run(record)
    assert result.label in ALL_LABELS
    assert result.label in TABLE.rules.labels()
    assert 1 <= result.level <= 5
    assert result.mix == TABLE.rules.mix[result.level]
    assert result.rules_version == TABLE.version
    # The target range is a task only while a passing score is still to come; a score in is
    # a fact (the why), not a task.
    # Never one once Step 2 CK was sat (send the score), in the last weeks before the exam,
    # for a student without a Step 1 pass, or after the Match.
    to_come = result.exam_state in ("unscheduled", "failing") or (
        result.exam_state == "scheduled" and (result.exam_weeks_left or 0) >= 3)
    to_come = to_come and result.applies_this_cycle and result.phase != "after match"
    # ... and none where no score could lift the outlook above at risk.
    to_come = to_come and max((b.level for b in result.score_bands), default=5) > 1
    assert [a.key for a in result.advice].count("target") == (1 if to_come else 0)
    assert all(a.section for a in result.advice)


@settings(max_examples=300, deadline=None)
@given(records())
def test_next_levels_are_reached_at_the_scores_they_name(record: StudentRecord) -> None:
    """Each next level is higher than now, and scoring exactly that reaches it; after a
    failing score, on a retake (one more attempt, the failure on the record)."""
    result = run(record)
    previous = result.level if result.label != "Pending Step 2 CK" else 1
    attempts = record.step2_attempts
    if result.raw_band == "failing":
        attempts = (attempts or 1) + 1
    for step in result.next_levels:
        assert step.level > previous
        previous = step.level
        again = run(dataclasses.replace(
            record, step2_score=step.score, step2_date=None, step2_attempts=attempts
        ))
        assert (again.level, again.label) == (step.level, step.label)
        assert run(dataclasses.replace(
            record, step2_score=step.score - 1, step2_date=None, step2_attempts=attempts
        )).level < step.level


@settings(max_examples=300, deadline=None)
@given(records())
def test_student_facing_text_has_no_jargon(record: StudentRecord) -> None:
    """Reasons and advice are plain sentences: no "band", no "tier", no rule ids."""
    result = run(record)
    for text in [r.text for r in result.reasons] + [a.text for a in result.advice]:
        lowered = text.lower()
        assert "band" not in lowered and "tier" not in lowered and "matrix" not in lowered
        assert text.endswith((".", ")")) and "  " not in text


# --- Step 2 CK attempts (#14): a pass after a failure stays on the record ---------------------


def test_a_step2_pass_after_a_failed_attempt_reads_the_failure_row() -> None:
    """255 in Family Medicine is Very competitive at the first sitting; after a failed one it
    is on the failure row (Matchable, with explanation), and the letter's reason says programs
    see the earlier failure. Step 1 is still called a first-try pass."""
    first = run(student(specialty="Family Medicine", step2_score=255))
    assert (first.label, first.step2_failed_before) == ("Very competitive", False)
    assert run(student(specialty="Family Medicine", step2_score=255, step2_attempts=1)).label == (
        "Very competitive"
    )
    again = run(student(specialty="Family Medicine", step2_score=255, step2_attempts=2))
    assert (again.level, again.label, again.step2_failed_before) == (
        3, "Matchable, with explanation", True
    )
    assert again.step1_status == "clean"
    why = {r.rule: r.text for r in again.reasons}
    assert why["step1.clean"].startswith("You passed Step 1 on the first try")
    assert "Programs see every attempt" in why["step2.failed_before"]
    assert "earlier failure stays visible to them" in why["step2.failed_before"]
    assert "matrix" not in why  # one voice: the failure is said once, in its own reason
    assert "after a Step 2 CK failure" in why["impact"]
    statement = [a for a in again.advice if a.key == "statement"]
    assert len(statement) == 1 and "Step 2 CK failure" in statement[0].text
    assert "Step 1" not in statement[0].text


def test_a_step2_failure_lowers_a_hyper_specialty_to_at_risk() -> None:
    result = run(student(specialty="Dermatology", step2_score=268, step2_attempts=3,
                         clerkships=STRONG, research_count=3, letters="strong"))
    assert (result.level, result.label) == (1, "At risk: plan a parallel specialty")
    assert result.parallel and "General Surgery" not in result.parallel


def test_failures_at_both_steps_ask_for_one_paragraph_about_both() -> None:
    result = run(student(step1_attempts=2, step2_score=255, step2_attempts=2))
    assert result.step1_status == "failure" and result.step2_failed_before
    why = {r.rule: r.text for r in result.reasons}
    assert "step2.failed_before" in why and "after" in why["step1.failure"]
    statement = [a.text for a in result.advice if a.key == "statement"]
    assert len(statement) == 1 and "Step 1 and Step 2 CK failures" in statement[0]


def test_a_failing_step2_is_on_the_record_and_its_targets_read_the_failure_row() -> None:
    """210 (failing) in Family Medicine: the flag is set whatever the attempts column says, and
    no next level is one that only a clean record could reach."""
    for attempts in (None, 1, 2):
        result = run(student(specialty="Family Medicine", step2_score=210, step2_attempts=attempts))
        assert result.step2_failed_before
        assert "even after a passing retake, they will read this failure" in (
            {r.rule: r.text for r in result.reasons}["step2.failed_before"]
        )
        labels = {n.label for n in result.next_levels}
        assert labels == {"Reach: apply broadly, with explanation", "Matchable, with explanation"}
        assert not {"Very competitive", "Strong candidate"} & labels


def test_a_pending_retake_after_a_failure_is_flagged_and_its_range_reads_the_failure_row() -> None:
    result = run(student(specialty="Emergency Medicine", step2_attempts=2))
    assert result.raw_band == "pending" and result.step2_failed_before
    assert "You failed Step 2 CK on an earlier attempt" in (
        {r.rule: r.text for r in result.reasons}["step2.failed_before"]
    )
    assert max(n.level for n in result.next_levels) == 3  # the failure row's best for EM
    assert "Very competitive" not in {n.label for n in result.next_levels}


@pytest.mark.parametrize(
    ("grades", "says"),
    [
        ((("Internal Medicine", "P"), ("Surgery", None)), "in the clerkship still to be graded"),
        ((("Internal Medicine", None), ("Surgery", None)),
         "in one clerkship of the two still to be graded"),
        ((("Internal Medicine", "P"), ("Surgery", "P"), ("Pediatrics", None),
          ("Psychiatry", None)), "in both clerkships still to be graded"),
    ],
)
def test_the_clerkship_lever_counts_in_words(
    grades: tuple[tuple[str, str | None], ...], says: str
) -> None:
    """A 237 in Internal Medicine is just under solid: strong clinical grades would lift it, and
    the lever says how many Honors it takes in words, never "of the 1 still to be graded"."""
    result = run(student(step2_score=237, clerkships=grades))
    assert result.raw_band == "borderline"
    (lever,) = result.levers
    assert says in lever and "Strong candidate" in lever
    assert not any(ch.isdigit() for ch in lever.split("lift")[0])


def test_a_weak_reading_that_one_honors_would_end_is_a_lever() -> None:
    """Internal Medicine 252 with five Pass grades and two to come reads weak (level 4, where the
    score alone is "Very competitive"); one Honors would make the grades neutral: say so."""
    grades = tuple((name, "P") for name in ("Internal Medicine", "Surgery", "Pediatrics",
                                            "Psychiatry", "Neurology"))
    grades += (("Family Medicine", None), ("Obstetrics and Gynecology", None))
    result = run(student(step2_score=252, clerkships=grades))
    assert result.clerkships == "weak" and result.level == 4
    assert result.levers == (
        "Honors or High Pass in one of the two clerkships still to be graded would end the weak "
        'reading of your clinical grades and lift your outlook to "Very competitive".',
    )
