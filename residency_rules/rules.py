"""Evaluate students: one Evaluation each, carrying every rule that fired and the game plan.

The workbook and the letter render from the Evaluation and never recompute it.

Where the spec is silent, the rules decide (docs/rules.md, Where the rules are silent;
numbers and labels in the data file):
- Step 1 not taken: level 1 "Not yet eligible: take Step 1 first", like Step 1 not passed;
  precedence is Step 1 not passed / not taken, then Step 2 CK failing, then pending.
- Pending Step 2 CK: the level is the best a score could bring (modifiers and hyper cap
  included) but at most `pending_max_level` (3); next_levels shows every rung above level 1.
- The passing score is 214 for an exam dated before 1 July 2025, else 218 (also when undated).
- Timing: with no score and no exam date, today stands in for the date.
- Trend: a numeric Step 1 decides when the gap is >= 15 (upward) or < 5 (stable); otherwise
  a marginal or failed Step 1 is upward with an excellent Step 2 CK and stable below it.
- Modifiers shift only the matrix bands; outside the matrix the band is the raw band.
- The parallel plan names at most `max_listed` (3) specialties, each evaluated on the
  student's record and offered at `min_level` (3) or better; none without a numeric score.
  Order: the curated `parallel` list, then the `family`; other families only when none fits.
- Unknown is not zero: no research column or a blank cell, and no clerkship graded yet, are
  "not given": the hyper package does not count them as missing, no letter calls them so.
- Step 2 CK attempts count the sittings, the score on file (or awaited) included. A pass or a
  pending score after two or more, and any failing score, put a Step 2 CK failure on the
  record: a clean Step 1 then reads the `failure` row (score ladder included), Step 2 CK's
  impact is the failure's (60), and the personal statement covers the Step 2 CK failure.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from residency_rules import advice, explain, plan, situation
from residency_rules.bands import (
    clerkship_strength,
    matrix_row,
    passing_score,
    step1_status,
    step2_band,
    step2_failed_before,
)
from residency_rules.calendar import Cycle
from residency_rules.errors import RulesError
from residency_rules.outlook import ladder, read_matrix, score_bands, shift_band
from residency_rules.parallel import parallel_specialties
from residency_rules.records import (
    Band,
    ClerkshipStrength,
    Evaluation,
    NextLevel,
    ProgramMix,
    Reason,
    ScoreBand,
    Specialty,
    Step1Status,
    StudentRecord,
    Trend,
)
from residency_rules.rulebook import Outlook, Rules
from residency_rules.specialties import SpecialtyTable, load_default_table

_CACHE_KEY = "residency_rules.rules"
_IMPACT_WHY: dict[Step1Status, str] = {
    "clean": "no Step 1 problems",
    "not taken": "no Step 1 problems so far",
    "failure": "after a Step 1 failure",
    "not passed": "after a Step 1 failure",
}


@dataclass(slots=True)
class _Compiled:
    """What the rules derive once per table, so each student costs a few lookups."""

    rules: Rules
    version: str
    specialties: tuple[Specialty, ...]
    by_name: dict[str, Specialty]
    ladders: dict[tuple[str, Step1Status, ClerkshipStrength, bool, bool], tuple[NextLevel, ...]] = (
        field(default_factory=dict)
    )
    parallels: dict[tuple[object, ...], tuple[str, ...]] = field(default_factory=dict)
    band_cache: dict[tuple[str, Step1Status, ClerkshipStrength, bool, bool],
                     tuple[ScoreBand, ...]] = field(default_factory=dict)
    decisions: dict[_DecisionKey, _Decision] = field(default_factory=dict)

    def ladder(
        self,
        spec: Specialty,
        status: Step1Status,
        clerkships: ClerkshipStrength,
        repeated: bool,
        package_ok: bool,
    ) -> tuple[NextLevel, ...]:
        """Return the cached score ladder for this student's situation."""
        key = (spec.name, status, clerkships, repeated, package_ok)
        found = self.ladders.get(key)
        if found is None:
            failed = 2 if repeated else 0
            found = ladder(spec, status, clerkships, failed, package_ok, self.rules)
            self.ladders[key] = found
        return found

    def bands(
        self,
        spec: Specialty,
        status: Step1Status,
        clerkships: ClerkshipStrength,
        repeated: bool,
        package_ok: bool,
    ) -> tuple[ScoreBand, ...]:
        """Return the cached bands of scores still to come, each with its outlook."""
        key = (spec.name, status, clerkships, repeated, package_ok)
        found = self.band_cache.get(key)
        if found is None:
            failed = 2 if repeated else 0
            found = score_bands(spec, status, clerkships, failed, package_ok, self.rules)
            self.band_cache[key] = found
        return found


def _compiled(table: SpecialtyTable) -> _Compiled:
    found = table.cache.get(_CACHE_KEY)
    if isinstance(found, _Compiled):
        return found
    built = _Compiled(
        rules=table.rules,
        version=table.version,
        specialties=table.specialties,
        by_name={s.name: s for s in table.specialties},
    )
    table.cache[_CACHE_KEY] = built
    return built


def cycle_of(
    table: SpecialtyTable, review_start: _dt.date | None = None, cycle: Cycle | None = None
) -> Cycle:
    """Return the cycle to evaluate against: the one given, else the table's [calendar]
    (the packaged one when the table has none), with review_start replaced when given."""
    if cycle is None:
        cycle = table.calendar or load_default_table().calendar
        assert cycle is not None  # the packaged file always has a [calendar] table
    if review_start is not None and review_start != cycle.review_start:
        cycle = replace(cycle, review_start=review_start)
    return cycle


def evaluate(
    record: StudentRecord,
    table: SpecialtyTable,
    *,
    today: _dt.date,
    review_start: _dt.date | None = None,
    cycle: Cycle | None = None,
) -> Evaluation:
    """Decide one student's outlook, say why, and write the game plan for `today`."""
    compiled = _compiled(table)
    found = cycle_of(table, review_start, cycle)
    return _evaluate(record, table, compiled, found, today)


def evaluate_all(
    records: Sequence[StudentRecord],
    table: SpecialtyTable,
    *,
    today: _dt.date,
    review_start: _dt.date | None = None,
    cycle: Cycle | None = None,
) -> list[Evaluation]:
    """Evaluate a whole roster in order; one Evaluation per record."""
    compiled = _compiled(table)
    found = cycle_of(table, review_start, cycle)
    return [_evaluate(r, table, compiled, found, today) for r in records]


@dataclass(frozen=True, slots=True)
class _Decision:
    """What follows from a student's situation before the exact score and dates come in."""

    band: Band
    level: int
    label: str
    reasons: tuple[Reason, ...]  # modifiers, the outcome, the hyper-tier package, the impact
    next_levels: tuple[NextLevel, ...]  # the score ladder: no passing score yet only
    impact: int
    mix: ProgramMix
    score_alone: Outlook | None  # the matrix for the score alone; None outside the matrix
    floor_label: str  # pending: the outlook a just-passing score would bring, if at risk
    modifiers: tuple[str, ...]  # what changed the score-alone reading (the why says so)
    bands: tuple[ScoreBand, ...]  # pending or failing: every band of the score to come
    capped: bool  # the hyper-tier package capped the level


_DecisionKey = tuple[
    str, Step1Status, bool, int, Band, ClerkshipStrength, bool, tuple[str, ...], bool, bool,
    bool,
]


def _decide(
    compiled: _Compiled,
    spec: Specialty,
    status: Step1Status,
    marginal: bool,
    failed: int,
    raw: Band,
    strength: ClerkshipStrength,
    failed_clerkship: bool,
    missing: tuple[str, ...],
    step2_failed: bool,
    grades_to_come: bool = True,
    levers_open: bool = True,
) -> _Decision:
    """Read the outlook for one situation; cached, as a roster repeats few situations.

    levers_open: programs do not review yet, so the why may still say what to do about the
    clinical grades.
    """
    key: _DecisionKey = (
        spec.name, status, marginal, failed, raw, strength, failed_clerkship, missing,
        step2_failed, grades_to_come, levers_open,
    )
    found = compiled.decisions.get(key)
    if found is None:
        found = _decide_uncached(
            compiled, spec, status, marginal, failed, raw, strength, failed_clerkship, missing,
            step2_failed, grades_to_come, levers_open,
        )
        compiled.decisions[key] = found
    return found


def _decide_uncached(
    compiled: _Compiled,
    spec: Specialty,
    status: Step1Status,
    marginal: bool,
    failed: int,
    raw: Band,
    strength: ClerkshipStrength,
    failed_clerkship: bool,
    missing: tuple[str, ...],
    step2_failed: bool,
    grades_to_come: bool,
    levers_open: bool,
) -> _Decision:
    rules = compiled.rules
    # A Step 2 CK failure on the record puts a clean Step 1 on the `failure` row (#14).
    row = matrix_row(status, step2_failed)
    name, tier = spec.name, spec.tier
    hyper = tier == "hyper"
    step1_passed = status == "clean" or status == "failure"
    repeated = failed >= 2 and status == "failure"
    package_ok = not missing
    reasons: list[Reason] = []
    band = raw
    capped = False
    next_levels: tuple[NextLevel, ...] = ()
    clerk_moved_to: Band | None = None
    score_alone: Outlook | None = None
    floor_label = ""
    causes: list[str] = []
    bands: tuple[ScoreBand, ...] = ()
    outcome: Reason | None
    if not step1_passed:
        outside = rules.step1_not_passed if status == "not passed" else rules.step1_not_taken
        level, label = outside.level, outside.label
        kind = "step1_not_passed" if status == "not passed" else "step1_not_taken"
        outcome = explain.outside(kind, name, spec.solid, spec.excellent)
    elif raw == "failing":
        level, label = rules.failing.level, rules.failing.label
        outcome = explain.outside("failing", name, spec.solid, spec.excellent)
        steps = compiled.ladder(spec, row, strength, repeated, package_ok)
        next_levels = tuple(n for n in steps if n.level > level)
        bands = compiled.bands(spec, row, strength, repeated, package_ok)
    elif raw == "pending":
        steps = compiled.ladder(spec, row, strength, repeated, package_ok)
        best = steps[-1].level if steps else 1
        level, label = min(best, rules.pending_max_level), rules.pending_label
        # No score yet: every rung is still ahead, but a score that leaves the student at
        # risk is no goal to show; it is the downside of the range (floor_label).
        next_levels = tuple(n for n in steps if n.level > 1)
        if steps and steps[0].level == 1:
            floor_label = steps[0].label
        capped = bool(steps) and steps[-1].label == rules.package_cap.label and not package_ok
        outcome = explain.outside("pending", name, spec.solid, spec.excellent)
        bands = compiled.bands(spec, row, strength, repeated, package_ok)
    else:
        band, clerk_moved, _ = shift_band(raw, strength, failed if repeated else 0)
        if clerk_moved:
            clerk_moved_to = shift_band(raw, strength, 0)[0]
        cell, capped = read_matrix(row, tier, band, package_ok, rules)
        level, label = cell.level, cell.label
        # The score can no longer change (a passed exam cannot be retaken): no ladder. When a
        # modifier changed what the score alone gives, say both, the headline's last.
        score_alone = rules.matrix[(row, tier, raw)]
        if clerk_moved_to is not None:
            causes.append(explain.clerkship_cause(strength, failed_clerkship, grades_to_come))
        if repeated and band != raw:
            causes.append(f"failing Step 1 {explain.times(failed)} lowers it")
        if capped:
            causes.append(
                f"in {name} a strong score is necessary but not enough without "
                f"{explain.pieces_text(name, missing)}"
            )
        outcome = None
        if score_alone.label != label and causes:
            outcome = explain.changed(score_alone.label, tuple(causes), label)

    # A modifier that moved the band says so only where the move changed the outlook (or the
    # bands of a score still to come): otherwise it is a sentence without an effect.
    matrix_changed = outcome is not None and outcome.rule == "matrix.changed"
    changed_anything = matrix_changed or raw in ("pending", "failing")
    if strength != "neutral" and matrix_changed and clerk_moved_to is not None:
        # The outcome names the grades and what they did ("alone would read ..."): only an
        # action is left to say, right after it.
        if strength == "weak" and levers_open and outcome is not None:
            outcome = Reason(outcome.rule, f"{outcome.text} "
                             f"{explain.clerkships_action(grades_to_come)}")
    elif strength != "neutral":
        reasons.append(explain.clerkships(
            strength, failed_clerkship,
            clerk_moved_to if raw in ("pending", "failing") else None,
            grades_to_come, levers_open,
        ))
    if repeated and raw != "failing" and changed_anything:
        reasons.append(explain.repeated_failures(failed))
    if hyper and step1_passed:
        # Missing pieces only (the strengths of a whole package are the student's record's,
        # said by _evaluate); else the outcome says it.
        # After a failure (either exam) every hyper cell is level 1: no piece lifts it.
        if missing and row != "failure" and not (
                capped and outcome is not None and outcome.rule == "matrix.changed"):
            reasons.append(explain.package(name, missing, capped))
        if marginal and level >= 3:  # the top programs' note means nothing at a reach
            reasons.append(explain.hyper_marginal(name))
    if outcome is not None:
        reasons.append(outcome)
    if hyper:
        impact, why = rules.impact_hyper, "in a highly competitive specialty"
    elif row == "failure" or status == "not passed":
        why = _IMPACT_WHY[status] if status != "clean" else "after a Step 2 CK failure"
        impact = rules.impact_failure
    else:
        impact, why = rules.impact_clean, _IMPACT_WHY[status]
    reasons.append(explain.impact(impact, why))

    return _Decision(
        band=band,
        level=level,
        label=label,
        reasons=tuple(reasons),
        next_levels=next_levels,
        impact=impact,
        mix=rules.mix[level],
        score_alone=score_alone,
        floor_label=floor_label,
        modifiers=tuple(causes) if outcome is not None else (),
        bands=bands,
        capped=capped,
    )


def _levers(
    compiled: _Compiled,
    spec: Specialty,
    status: Step1Status,
    marginal: bool,
    failed: int,
    raw: Band,
    decision: _Decision,
    record: StudentRecord,
    strength: ClerkshipStrength,
    step2_failed: bool,
) -> tuple[str, ...]:
    """Say what can still move the outlook of a student whose score is in and passing.

    Derived from the rules: each modifier the student can still change (grades still to
    come, the hyper tier's package) is tried, and named when it would raise the level.
    """
    grades = [g for _, g in record.clerkships]
    to_come = sum(1 for g in grades if g is None)
    graded = len(grades) - to_come
    good = sum(1 for g in grades if g in ("H", "HP"))
    failed_one = "F" in grades
    found: list[str] = []
    could_be_strong = strength == "strong" or (
        not failed_one and to_come > 0 and 2 * (good + to_come) >= graded + to_come
    )
    if strength != "strong" and could_be_strong:
        need = max(1, -(-(graded + to_come) // 2) - good)
        missing = _missing(spec.name, "strong", record, compiled.rules)
        alt = _decide(compiled, spec, status, marginal, failed, raw, "strong", False, missing,
                      step2_failed)
        if alt.level > decision.level:
            if need == to_come == 1:
                where = "the clerkship still to be graded"
            elif need == to_come == 2:
                where = "both clerkships still to be graded"
            elif need == to_come:
                where = f"all {explain.number_word(to_come)} clerkships still to be graded"
            else:
                where = (f"{explain.counted(need, 'clerkship')} of the "
                         f"{explain.number_word(to_come)} still to be graded")
            found.append(
                f"Honors or High Pass in {where} would make your clinical grades strong and "
                f'lift your outlook to "{alt.label}".'
            )
    # Weak only for want of any Honors or High Pass (no Fail): one in a clerkship still to be
    # graded makes the grades neutral, which can be enough when strong is out of reach.
    if strength == "weak" and not failed_one and good == 0 and to_come > 0 and not found:
        missing = _missing(spec.name, "neutral", record, compiled.rules)
        alt = _decide(compiled, spec, status, marginal, failed, raw, "neutral", False, missing,
                      step2_failed)
        if alt.level > decision.level:
            where = ("the clerkship still to be graded" if to_come == 1 else
                     f"one of the {explain.number_word(to_come)} clerkships still to be graded")
            found.append(
                f"Honors or High Pass in {where} would end the weak reading of your clinical "
                f'grades and lift your outlook to "{alt.label}".'
            )
    if spec.tier == "hyper":
        missing = _missing(spec.name, strength, record, compiled.rules)
        # What the student can be told: research, not the office's letters rating.
        pieces = tuple(m for m in explain.visible(missing) if "clinical" not in m)
        if pieces:
            best = "strong" if could_be_strong else strength
            left = tuple(m for m in _missing(spec.name, best, record, compiled.rules)
                         if m not in pieces)
            alt = _decide(compiled, spec, status, marginal, failed, raw, best, False, left,
                          step2_failed)
            if alt.level > decision.level:
                grades_too = " with strong clinical grades" if strength != "strong" else ""
                said = explain.join(pieces)
                found.append(
                    f"{said[:1].upper()}{said[1:]}{',' if ',' in said else ''}{grades_too} "
                    f'would lift your outlook to "{alt.label}".'
                )
    return tuple(found)


def _missing(
    name: str, strength: ClerkshipStrength, record: StudentRecord, rules: Rules
) -> tuple[str, ...]:
    """List the hyper package's missing pieces; a piece the roster does not give (no research
    count, no clerkship graded yet) is unknown, not missing (docs/rules.md, Unknown is not
    zero)."""
    graded = any(g is not None for _, g in record.clerkships)
    research = record.research_count
    return advice.missing_pieces(
        name,
        strength == "strong" or not graded,
        research is None or research >= rules.package_min_research,
        record.letters != "weak",
    )


def _parallel(
    compiled: _Compiled,
    spec: Specialty,
    score: int,
    step2_date: _dt.date | None,
    status: Step1Status,
    marginal: bool,
    failed: int,
    strength: ClerkshipStrength,
    failed_clerkship: bool,
    step2_failed: bool,
) -> tuple[str, ...]:
    """Return the cached parallel plan: lower tiers where this record reaches level 3 or
    better, each candidate read by the same rules (failures and clinical grades included)."""
    key = (spec.name, score, step2_date, status, marginal, failed, strength, failed_clerkship,
           step2_failed)
    found = compiled.parallels.get(key)
    if found is None:
        rules = compiled.rules

        def level_for(other: Specialty) -> int:
            raw = step2_band(score, step2_date, other, rules)
            return _decide(compiled, other, status, marginal, failed, raw, strength,
                           failed_clerkship, (), step2_failed).level

        found = parallel_specialties(compiled.specialties, spec, score, level_for,
                                     rules.parallel_max_listed, rules.parallel_min_level)
        compiled.parallels[key] = found
    return found


def _cap_rule(
    status: Step1Status, raw: Band, step2_failed: bool, decision: _Decision
) -> str:
    """Name the reason that caps an outlook at level 1-2: the why gives it first."""
    if status == "not passed":
        return "step1.not_passed"
    if status == "not taken":
        return "step1.not_taken"
    if raw == "failing":
        return "outlook.failing"
    if status == "failure":
        return "step1.failure"
    if step2_failed:
        return "step2.failed_before"
    if raw == "pending":
        return "hyper.package" if decision.capped else ""
    if decision.modifiers:
        return "matrix.changed"
    if decision.capped:
        return "hyper.package"
    return "cap.score"


def _evaluate(
    record: StudentRecord,
    table: SpecialtyTable,
    compiled: _Compiled,
    cycle: Cycle,
    today: _dt.date,
) -> Evaluation:
    rules = compiled.rules
    spec = compiled.by_name.get(record.specialty) or table.resolve(record.specialty)
    if spec is None:
        raise RulesError(
            f'specialty table {table.version}: no specialty "{record.specialty}" '
            f"(student {record.student_id}, row {record.row}). Fix: correct the roster, or add "
            "the specialty to the specialty table."
        )
    name = spec.name
    tier = spec.tier
    cycle = cycle.for_match(spec.match)  # the student's own application service's dates
    review_start = cycle.review_start
    cutoff = review_start - _dt.timedelta(weeks=rules.timing_weeks)
    status, marginal, failed = step1_status(record, rules)
    score = record.step2_score
    step2_date = record.step2_date
    passing = passing_score(step2_date, rules)
    raw = step2_band(score, step2_date, spec, rules)
    strength, failed_clerkship = clerkship_strength(record.clerkships)
    grades_to_come = any(g is None for _, g in record.clerkships)
    step2_failed = step2_failed_before(record.step2_attempts, raw)
    day = situation.day(today, cycle, spec.match, record.match_result)
    season = day.phase
    # Research, grades and new letters count only until programs review (and not after the
    # Match): from then on the plan is what counts now.
    levers_open = season in ("preparing", "applying")
    missing: tuple[str, ...] = ()
    if tier == "hyper":
        missing = _missing(name, strength, record, rules)
    decision = _decide(
        compiled, spec, status, marginal, failed, raw, strength, failed_clerkship, missing,
        step2_failed, grades_to_come, levers_open,
    )
    level = decision.level
    low = rules.levels[level].at_risk  # the why leads with what caps an at-risk outlook
    step1_passed = status == "clean" or status == "failure"
    exam = situation.exam(score, raw, step2_date, today, rules)
    step1 = situation.step1(status, marginal, failed, record.step1_attempts, rules)

    cap = _cap_rule(status, raw, step2_failed, decision) if low else ""
    # A failure says what it does to the outlook only where it is what caps it.
    reasons: list[Reason] = [
        explain.step1(status, marginal, failed, low, name if cap == "step1.failure" else "",
                      level, record.step1_score is not None),
        explain.score(name, raw, score, spec.solid, spec.excellent, passing),
    ]
    if record.conditional_pass:
        reasons.append(explain.conditional(record.conditional_pass))
    if any(r.rule == "step1.repeated" for r in decision.reasons):
        reasons[0] = explain.step1_repeated(
            failed, name if cap == "step1.failure" else "", level)
    reasons.extend(r for r in decision.reasons if r.rule != "step1.repeated")
    if step2_failed:
        reasons.append(explain.step2_failed_before(
            raw, name if cap == "step2.failed_before" else "", level))
    # Strengths, only when the roster shows them (never the letters rating).
    research = record.research_count
    if research:  # (strong grades have their own sentence: not named twice)
        reasons.append(explain.research(research))
    trend = _trend(status, marginal, raw, score, record.step1_score, rules)
    # An upward trend after a first-try pass/fail Step 1 has no score to rise from (the Step 1
    # sentence says programs lean on Step 2 CK); after a failure at levels 1-2 the failure's
    # sentence already says what the score does for it.
    said = trend == "upward" and (
        (status == "clean" and record.step1_score is None) or (status == "failure" and low))
    if trend is not None and not said:
        reasons.append(explain.trend(trend, low, status == "failure", not levers_open,
                                     ranked=season in ("match week", "after match")))
    timing_late = False
    if score is None:
        # No date on file: the exam cannot be earlier than today.
        timing_late = (step2_date or today) > cutoff
        if timing_late:
            reasons.append(explain.timing(step2_date, review_start, today))
    # At level 3 and up, a score under the solid mark that nothing moved is what sets the
    # outlook: the why says so first (the chart then leaves the gap to it).
    score_sets_it = (not low and status == "clean" and raw in ("borderline", "below")
                     and decision.band == raw)
    lead = cap or ("cap.score" if score_sets_it else "")
    if lead == "cap.score" and score is not None:
        reasons.append(explain.cap_score(name, score, spec.solid, level))
    if situation.retake_after_lists(raw, season):
        # The lists close before a retake posts: it opens no door this cycle.
        reasons = [explain.FAILING_LATE if r.rule == "outlook.failing" else r for r in reasons]
    # The why explains the headline: at levels 1-2 what caps the outlook comes first.
    first = [r for r in reasons if r.rule == lead]
    reasons = first[:1] + [r for r in reasons if r not in first[:1]]

    mix = decision.mix
    parallel: tuple[str, ...] = ()
    if mix.parallel_plan and score is not None and raw != "failing":
        parallel = _parallel(compiled, spec, score, step2_date, status, marginal, failed,
                             strength, failed_clerkship, step2_failed)

    target = table.interviews.target(name) if table.interviews is not None else 10
    interviews = record.interviews
    low_invitations = (
        season == "interviewing" and today >= cycle.mid_season and interviews is not None
        and interviews < target and step1_passed
    )
    items, days = plan.build(plan.Situation(
        day=day, cutoff=cutoff, specialty=name, tier=tier, solid=spec.solid,
        excellent=spec.excellent, step1=step1, step2_failed=step2_failed, raw=raw, exam=exam,
        late=timing_late, upward=trend == "upward", level=level, mix=mix, parallel=parallel,
        missing=missing, weak_letters=record.letters == "weak", grades_to_come=grades_to_come,
        interviews=interviews,
        interviews_target=target, interviews_low=low_invitations,
        full_passes_weeks=rules.full_passes_weeks, final_weeks=rules.final_weeks,
        max_attempts=rules.max_attempts, plan=rules.plan,
        best_level=max((b.level for b in decision.bands), default=level),
    ))
    levers: tuple[str, ...] = ()
    if step1_passed and raw not in ("pending", "failing") and levers_open:
        levers = _levers(
            compiled, spec, status, marginal, failed, raw, decision, record, strength,
            step2_failed,
        )
    alone = decision.score_alone
    pending = raw == "pending"
    # The workbook's "exam date passed, no score" (sat or overdue); the letter tells the two
    # apart by exam_state (a score due in the next weeks is not yet late).
    overdue = exam.state in ("sat", "overdue")
    to_book = exam.state in ("scheduled", "unscheduled")
    pending_at_risk = pending and (timing_late or overdue or status == "failure" or step2_failed)

    return Evaluation(
        student_id=record.student_id,
        specialty=name,
        tier=tier,
        solid=spec.solid,
        excellent=spec.excellent,
        step1_status=status,
        step1_marginal=marginal,
        raw_band=raw,
        band=decision.band,
        clerkships=strength,
        level=level,
        label=decision.label,
        impact=decision.impact,
        trend=trend,
        timing_late=timing_late,
        reasons=tuple(reasons),
        advice=items,
        mix=mix,
        rules_version=compiled.version,
        next_levels=decision.next_levels,
        parallel=parallel,
        missing_package=missing,
        step2_score=score,
        phase=season,
        advice_days=days,
        applies_this_cycle=step1_passed,
        exam_overdue=overdue,
        # The last day to sit the exam: for a student who still has to book it, or whose date
        # is too late (a date in time says it already: "Keep your exam on ...").
        score_by=(cutoff if pending and cutoff >= today and season in ("preparing", "applying")
                  and (exam.state == "unscheduled" or (to_book and timing_late)) else None),
        interviews_low=low_invitations,
        pending_at_risk=pending_at_risk,
        at_risk=compiled.rules.levels[level].at_risk or pending_at_risk,
        step2_failed_before=step2_failed,
        score_alone_label=alone.label if alone is not None else "",
        score_alone_level=alone.level if alone is not None else 0,
        levers=levers,
        floor_label=decision.floor_label,
        modifiers=decision.modifiers,
        match_system=day.match.key,
        match_name=day.match.name,
        match_result=record.match_result,
        step1_failures=step1.failures,
        exam_state=exam.state,
        exam_date=step2_date,
        exam_weeks_left=exam.weeks_left,
        score_posts=(exam.posts_from, exam.posts_by)
        if exam.posts_from is not None and exam.posts_by is not None else None,
        score_bands=decision.bands,
        cap_rule=cap,
        research_known=research is not None,
    )


def _trend(
    status: Step1Status,
    marginal: bool,
    raw: Band,
    score: int | None,
    step1_score: int | None,
    rules: Rules,
) -> Trend | None:
    """Read the change from Step 1 to Step 2 CK (FAQ 3, 4); None when there is nothing to read."""
    if score is None or raw == "failing" or not (status == "clean" or status == "failure"):
        return None
    if step1_score is not None:
        gain = score - step1_score
        if gain >= rules.trend_upward_at_least:
            return "upward"
        if gain < rules.trend_stable_under:
            return "stable"
    if marginal or status == "failure":
        return "upward" if raw == "excellent" else "stable"
    return None
