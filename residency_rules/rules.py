"""Evaluate students: one Evaluation each, carrying every rule that fired and the game plan.

The workbook and the letter render from the Evaluation and never recompute it.

Where DESIGN.md section 4 is silent, the rules decide (numbers and labels in the data file):
- Step 1 not taken: level 1 "Not yet eligible: take Step 1 first", like Step 1 not passed;
  precedence is Step 1 not passed / not taken, then Step 2 CK failing, then pending.
- Pending Step 2 CK: the level is the best a score could bring (modifiers and hyper cap
  included) but at most `pending_max_level` (3); next_levels shows every rung above level 1.
- The passing score is 214 for an exam dated before 1 July 2025, else 218 (also when undated).
- Timing: with no score and no exam date, today stands in for the date.
- Trend: a numeric Step 1 decides when the gap is >= 15 (upward) or < 5 (stable); otherwise
  a marginal or failed Step 1 is upward with an excellent Step 2 CK and stable below it.
- Modifiers shift only the matrix bands; outside the matrix the band is the raw band.
- The parallel plan names at most `max_listed` (5) specialties; none without a numeric score.
  Order: the specialty's curated `parallel` list, then its `family`, then the closest median.
- Step 2 CK attempts count the sittings, the score on file (or awaited) included. A pass or a
  pending score after two or more, and any failing score, put a Step 2 CK failure on the
  record: a clean Step 1 then reads the `failure` row (score ladder included), Step 2 CK's
  impact is the failure's (60), and the personal statement covers the Step 2 CK failure.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from residency_rules import advice, explain
from residency_rules.bands import (
    clerkship_strength,
    matrix_row,
    passing_score,
    step1_status,
    step2_band,
    step2_failed_before,
)
from residency_rules.errors import RulesError
from residency_rules.outlook import ladder, read_matrix, shift_band
from residency_rules.parallel import parallel_specialties
from residency_rules.records import (
    AdviceItem,
    Band,
    ClerkshipStrength,
    Evaluation,
    NextLevel,
    ProgramMix,
    Reason,
    Specialty,
    Step1Status,
    StudentRecord,
    Trend,
)
from residency_rules.rulebook import Rules
from residency_rules.specialties import SpecialtyTable

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
    parallels: dict[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)
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

    def parallel(self, spec: Specialty, score: int) -> tuple[str, ...]:
        """Return the cached parallel plan for a specialty and score: lower tiers only, where
        the score is already solid; curated list, then same family, then closest NRMP median."""
        key = (spec.name, score)
        found = self.parallels.get(key)
        if found is None:
            limit = self.rules.parallel_max_listed
            found = parallel_specialties(self.specialties, spec, score, limit)
            self.parallels[key] = found
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


def evaluate(
    record: StudentRecord, table: SpecialtyTable, *, review_start: _dt.date, today: _dt.date
) -> Evaluation:
    """Decide one student's outlook, say why, and write the game plan."""
    compiled = _compiled(table)
    cutoff = review_start - _dt.timedelta(weeks=compiled.rules.timing_weeks)
    return _evaluate(record, table, compiled, review_start, today, cutoff)


def evaluate_all(
    records: Sequence[StudentRecord],
    table: SpecialtyTable,
    *,
    review_start: _dt.date,
    today: _dt.date,
) -> list[Evaluation]:
    """Evaluate a whole roster in order; one Evaluation per record."""
    compiled = _compiled(table)
    cutoff = review_start - _dt.timedelta(weeks=compiled.rules.timing_weeks)
    return [_evaluate(r, table, compiled, review_start, today, cutoff) for r in records]


@dataclass(frozen=True, slots=True)
class _Decision:
    """What follows from a student's situation before the exact score and dates come in."""

    band: Band
    level: int
    label: str
    reasons: tuple[Reason, ...]  # modifiers, the outcome, the hyper-tier package, the impact
    next_levels: tuple[NextLevel, ...]
    impact: int
    mix: ProgramMix
    head: tuple[AdviceItem, ...]  # before the target: Step 1 first
    exam_prep: bool  # question bank and scheduling: no passing Step 2 CK yet
    middle: tuple[AdviceItem, ...]  # after the exam plan: personal statement
    tail: tuple[AdviceItem, ...]  # the package and the program-list mix
    closing: tuple[AdviceItem, ...]  # after the parallel plan: meet an advisor


_DecisionKey = tuple[
    str, Step1Status, bool, int, Band, ClerkshipStrength, bool, tuple[str, ...], bool
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
) -> _Decision:
    """Read the outlook for one situation; cached, as a roster repeats few situations."""
    key: _DecisionKey = (
        spec.name, status, marginal, failed, raw, strength, failed_clerkship, missing,
        step2_failed,
    )
    found = compiled.decisions.get(key)
    if found is None:
        found = _decide_uncached(
            compiled, spec, status, marginal, failed, raw, strength, failed_clerkship, missing,
            step2_failed,
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
    elif raw == "pending":
        steps = compiled.ladder(spec, row, strength, repeated, package_ok)
        best = steps[-1].level if steps else 1
        level, label = min(best, rules.pending_max_level), rules.pending_label
        # No score yet: every rung is still ahead, but a score that leaves the student at
        # risk is no goal to show.
        next_levels = tuple(n for n in steps if n.level > 1)
        capped = bool(steps) and steps[-1].label == rules.package_cap.label and not package_ok
        outcome = explain.outside("pending", name, spec.solid, spec.excellent)
    else:
        band, clerk_moved, _ = shift_band(raw, strength, failed if repeated else 0)
        if clerk_moved:
            clerk_moved_to = shift_band(raw, strength, 0)[0]
        cell, capped = read_matrix(row, tier, band, package_ok, rules)
        level, label = cell.level, cell.label
        # The matrix's own label; the package reason below explains a cap.
        outcome = explain.outcome(
            name, status, band, rules.matrix[(row, tier, band)].label, step2_failed
        )
        steps = compiled.ladder(spec, row, strength, repeated, package_ok)
        next_levels = tuple(n for n in steps if n.level > level)

    if strength != "neutral":
        reasons.append(explain.clerkships(strength, failed_clerkship, clerk_moved_to))
    if repeated and raw != "failing":
        reasons.append(explain.repeated_failures(failed))
    reasons.append(outcome)
    if hyper and step1_passed:
        reasons.append(explain.package(name, missing, capped))
        if marginal:
            reasons.append(explain.hyper_marginal(name))
    if hyper:
        impact, why = rules.impact_hyper, "in a highly competitive specialty"
    elif row == "failure" or status == "not passed":
        why = _IMPACT_WHY[status] if status != "clean" else "after a Step 2 CK failure"
        impact = rules.impact_failure
    else:
        impact, why = rules.impact_clean, _IMPACT_WHY[status]
    reasons.append(explain.impact(impact, why))

    mix = rules.mix[level]
    head: tuple[AdviceItem, ...] = ()
    if status == "not passed":
        head = (advice.STEP1_RETAKE,)
    elif status == "not taken":
        head = (advice.STEP1_TAKE,)
    tail: list[AdviceItem] = []
    if hyper:
        tail.append(advice.package(name, missing))
    tail.append(advice.mix(mix))
    return _Decision(
        band=band,
        level=level,
        label=label,
        reasons=tuple(reasons),
        next_levels=next_levels,
        impact=impact,
        mix=mix,
        head=head,
        exam_prep=step1_passed and (raw == "pending" or raw == "failing"),
        middle=advice.failure_statement(
            status == "failure", step2_failed and raw != "failing"
        ),
        tail=tuple(tail),
        closing=(advice.ADVISOR_ITEM,) if mix.meet_advisor else (),
    )


def _evaluate(
    record: StudentRecord,
    table: SpecialtyTable,
    compiled: _Compiled,
    review_start: _dt.date,
    today: _dt.date,
    cutoff: _dt.date,
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
    status, marginal, failed = step1_status(record, rules)
    score = record.step2_score
    step2_date = record.step2_date
    passing = passing_score(step2_date, rules)
    raw = step2_band(score, step2_date, spec, rules)
    step2_failed = step2_failed_before(record.step2_attempts, raw)
    strength, failed_clerkship = clerkship_strength(record.clerkships)
    missing: tuple[str, ...] = ()
    if tier == "hyper":
        missing = advice.missing_pieces(
            name,
            strength == "strong",
            (record.research_count or 0) >= rules.package_min_research,
            record.letters != "weak",
        )
    decision = _decide(
        compiled, spec, status, marginal, failed, raw, strength, failed_clerkship, missing,
        step2_failed,
    )
    level = decision.level

    reasons: list[Reason] = [
        explain.step1(status, marginal, failed),
        explain.score(name, raw, score, spec.solid, spec.excellent, passing),
    ]
    if step2_failed:
        reasons.append(explain.step2_failed_before(raw))
    if record.conditional_pass:
        reasons.append(explain.conditional(record.conditional_pass))
    reasons.extend(decision.reasons)
    trend = _trend(status, marginal, raw, score, record.step1_score, rules)
    if trend is not None:
        reasons.append(explain.trend(trend))
    timing_late = False
    if score is None:
        # No date on file: the exam cannot be earlier than today.
        timing_late = (step2_date or today) > cutoff
        if timing_late:
            reasons.append(explain.timing(step2_date, review_start, today))

    mix = decision.mix
    parallel: tuple[str, ...] = ()
    if mix.parallel_plan and score is not None and raw != "failing":
        parallel = compiled.parallel(spec, score)

    items = list(decision.head)
    if decision.head:
        situation = "step1"
    elif raw == "pending":
        situation = "pending"
    elif raw == "failing":
        situation = "retake"
    else:
        situation = "scored"
    items.append(advice.target(name, spec.solid, spec.excellent, situation, score or 0))
    if decision.exam_prep:
        items.append(advice.QBANK)
        if raw == "pending":
            items.append(advice.schedule(timing_late, step2_date, cutoff, review_start))
        else:  # a retake: the old exam date says nothing about the new one
            items.append(advice.schedule(today > cutoff, None, cutoff, review_start))
    items.extend(decision.middle)
    if trend == "upward":
        items.append(advice.LETTERS_ITEM)
    items.extend(decision.tail)
    if mix.parallel_plan:
        items.append(advice.parallel(parallel, tier == "less"))
    items.extend(decision.closing)

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
        advice=tuple(items),
        mix=mix,
        rules_version=compiled.version,
        next_levels=decision.next_levels,
        parallel=parallel,
        missing_package=missing,
        step2_score=score,
        step2_failed_before=step2_failed,
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
