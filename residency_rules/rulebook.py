"""The rules' numbers and labels, read from the data file so the code holds only logic."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass

from residency_rules import datafile as df
from residency_rules.records import Band, ProgramMix, Step1Status, Tier

TIERS: tuple[Tier, ...] = ("less", "moderate", "high", "hyper")
# The tiers in the words an office uses (the workbook's Tier column and Summary).
TIER_NAMES: dict[str, str] = {
    "less": "least competitive", "moderate": "moderately competitive",
    "high": "highly competitive", "hyper": "most competitive",
}
# The bands the matrix reads, best first; a row's level may not rise down this list.
MATRIX_BANDS: tuple[Band, ...] = ("excellent", "solid", "borderline", "below")
MATRIX_STATUSES: tuple[Step1Status, ...] = ("clean", "failure")
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)


@dataclass(frozen=True, slots=True)
class Outlook:
    """A level (1 at risk .. 5 very competitive) and the label people see."""

    level: int
    label: str


@dataclass(frozen=True, slots=True)
class Level:
    """What a level means to the office, and whether a student at it is at risk."""

    meaning: str
    at_risk: bool


@dataclass(frozen=True, slots=True)
class PlanRules:
    """The letter's plan: how many days it covers, and when each kind of item falls due."""

    weeks_days: int  # the plan covers the next this many days (four weeks)
    rest_days: int  # an exam this close: rest, no new practice form
    due: tuple[tuple[str, int], ...]  # kind of item -> the earliest day it is due
    habits: frozenset[str]  # kinds that start today and run on: no day of their own

    def due_day(self, kind: str) -> int:
        """Return the earliest day a kind of item is due: 0 for a habit (it starts today),
        the due table's day, or the plan's last day for a kind the table does not list."""
        if kind in self.habits:
            return 0
        return dict(self.due).get(kind, self.weeks_days)


def at_risk_span(levels: Mapping[int, Level]) -> str:
    """Name the levels marked at risk as people write them: "1-2", "1", "1, 3"."""
    marked = [level for level in sorted(levels) if levels[level].at_risk]
    if len(marked) > 1 and marked == list(range(marked[0], marked[-1] + 1)):
        return f"{marked[0]}-{marked[-1]}"
    return ", ".join(map(str, marked)) or "none"


@dataclass(frozen=True)
class Rules:
    """Every number and label the outlook rules use, each traceable to the data file."""

    failing_score: int  # Step 2 CK passing score now
    failing_score_before: int  # ... for exams taken before failing_score_since
    failing_score_since: _dt.date
    borderline_below_solid: int
    marginal_step1_below: int
    impact_clean: int
    impact_failure: int
    impact_hyper: int
    trend_upward_at_least: int
    trend_stable_under: int
    timing_weeks: int
    package_min_research: int
    package_cap: Outlook
    parallel_max_listed: int
    parallel_min_level: int  # a parallel specialty is offered only at this level or better
    score_posts_from_weeks: int  # a Step 2 CK score posts this long after the exam at the soonest
    score_posts_by_weeks: int  # ... and should have posted by this long after it
    max_attempts: int  # USMLE: attempts allowed at one Step
    full_passes_weeks: int  # weeks left before "two full passes" of a question bank is a plan
    final_weeks: int  # under this many weeks left: a practice form, weak areas, rest
    pending_label: str
    pending_max_level: int
    failing: Outlook
    step1_not_passed: Outlook
    step1_not_taken: Outlook
    matrix: Mapping[tuple[Step1Status, Tier, Band], Outlook]
    mix: Mapping[int, ProgramMix]
    mix_programs: int  # the list a letter counts each mix out of ("3 reach, 8 solid ...")
    plan: PlanRules
    levels: Mapping[int, Level]
    sources: Mapping[str, str]

    def labels(self) -> frozenset[str]:
        """List every label an evaluation can carry, so tests and the workbook can check one."""
        found = {o.label for o in self.matrix.values()}
        found |= {self.package_cap.label, self.pending_label, self.failing.label}
        found |= {self.step1_not_passed.label, self.step1_not_taken.label}
        return frozenset(found)

    def labels_by_level(self) -> dict[int, tuple[str, ...]]:
        """List the labels each level carries, most used first: what "L3" means to a reader."""
        outlooks = [*self.matrix.values(), self.package_cap, self.failing,
                    self.step1_not_passed, self.step1_not_taken]
        uses: dict[int, dict[str, int]] = {level: {} for level in LEVELS}
        for o in outlooks:
            uses[o.level][o.label] = uses[o.level].get(o.label, 0) + 1
        return {
            level: tuple(sorted(found, key=lambda label: -found[label]))
            for level, found in uses.items()
        }


_SCORE = {"low": 1, "high": 300}


def parse_rules(doc: df.Table, origin: str) -> Rules:
    """Read and check the [rules], [matrix] and [mix] tables of a parsed data file."""
    top = df.Where(origin, "top of the file")
    sources = _sources(doc, top)
    rules = df.table(doc, "rules", top, "copy the [rules.*] tables from the packaged file")

    def section(name: str) -> tuple[df.Table, df.Where]:
        where = df.Where(origin, f"[rules.{name}]")
        fix = f"copy the [rules.{name}] table from the packaged specialties.toml"
        found = df.table(rules, name, df.Where(origin, "[rules]"), fix)
        df.text(found, "source", where, 'say where these numbers come from, e.g. source = "design"')
        return found, where

    step2, w = section("step2")
    fix = "use the USMLE Step 2 CK passing score, e.g. failing_score = 218"
    failing_score = df.integer(step2, "failing_score", w, fix, **_SCORE)
    failing_before = df.integer(step2, "failing_score_before", w, fix, **_SCORE)
    since = df.day(step2, "failing_score_since", w, "write the date unquoted, e.g. 2025-07-01")

    bands, w = section("bands")
    offset = df.integer(
        bands, "borderline_below_solid", w, "use a small positive number, e.g. 5", low=1, high=50
    )

    step1, w = section("step1")
    marginal = df.integer(
        step1, "marginal_score_below", w, "use a Step 1 score, e.g. 210", **_SCORE
    )

    impact, w = section("impact")
    fix = "use a number out of 100, e.g. clean = 80, failure = 60, hyper = 40"
    impacts = [
        df.integer(impact, key, w, fix, low=0, high=100) for key in ("clean", "failure", "hyper")
    ]

    trend, w = section("trend")
    fix = "use points of Step 2 CK above Step 1, e.g. upward_at_least = 15, stable_under = 5"
    upward = df.integer(trend, "upward_at_least", w, fix, low=0, high=300)
    stable = df.integer(trend, "stable_under", w, fix, low=0, high=300)
    if stable > upward:
        raise w.error(f"stable_under ({stable}) is above upward_at_least ({upward})", fix)

    timing, w = section("timing")
    fix = "use a number of weeks, e.g. weeks_before_review = 4"
    weeks = df.integer(timing, "weeks_before_review", w, fix, low=0, high=52)

    package, w = section("package")
    fix = "use a whole number, e.g. min_research = 1"
    min_research = df.integer(package, "min_research", w, fix, low=0, high=100)
    cap = Outlook(
        df.integer(package, "cap_level", w, "use a level 1-5, e.g. cap_level = 2", low=1, high=5),
        df.text(package, "cap_label", w, 'e.g. cap_label = "Reach: the rest of the package ..."'),
    )

    parallel, w = section("parallel")
    max_listed = df.integer(parallel, "max_listed", w, "use e.g. max_listed = 3", low=1, high=50)
    min_level = df.integer(parallel, "min_level", w, "use a level 1-5, e.g. min_level = 3",
                           low=1, high=5)

    exam, w = section("exam")
    fix = "use a number of weeks, e.g. score_posts_from_weeks = 3, score_posts_by_weeks = 4"
    posts_from = df.integer(exam, "score_posts_from_weeks", w, fix, low=0, high=26)
    posts_by = df.integer(exam, "score_posts_by_weeks", w, fix, low=0, high=26)
    if posts_from > posts_by:
        raise w.error(f"score_posts_from_weeks ({posts_from}) is above score_posts_by_weeks "
                      f"({posts_by})", fix)
    max_attempts = df.integer(exam, "max_attempts", w, "use the USMLE's limit, e.g. 4",
                              low=1, high=10)

    study, w = section("study")
    fix = "use a number of weeks, e.g. full_passes_weeks = 8, final_weeks = 3"
    full_passes = df.integer(study, "full_passes_weeks", w, fix, low=1, high=52)
    final = df.integer(study, "final_weeks", w, fix, low=1, high=52)
    if final > full_passes:
        raise w.error(f"final_weeks ({final}) is above full_passes_weeks ({full_passes})", fix)

    outside, w = section("outside")
    pending_label = df.text(outside, "pending_label", w, 'e.g. pending_label = "Pending Step 2 CK"')
    fix = "use a level 1-5, e.g. pending_max_level = 3"
    pending_max = df.integer(outside, "pending_max_level", w, fix, low=1, high=5)
    failing = _outlook(outside, "failing", w)
    not_passed = _outlook(outside, "step1_not_passed", w)
    not_taken = _outlook(outside, "step1_not_taken", w)

    return Rules(
        failing_score=failing_score,
        failing_score_before=failing_before,
        failing_score_since=since,
        borderline_below_solid=offset,
        marginal_step1_below=marginal,
        impact_clean=impacts[0],
        impact_failure=impacts[1],
        impact_hyper=impacts[2],
        trend_upward_at_least=upward,
        trend_stable_under=stable,
        timing_weeks=weeks,
        package_min_research=min_research,
        package_cap=cap,
        parallel_max_listed=max_listed,
        parallel_min_level=min_level,
        score_posts_from_weeks=posts_from,
        score_posts_by_weeks=posts_by,
        max_attempts=max_attempts,
        full_passes_weeks=full_passes,
        final_weeks=final,
        pending_label=pending_label,
        pending_max_level=pending_max,
        failing=failing,
        step1_not_passed=not_passed,
        step1_not_taken=not_taken,
        matrix=_matrix(doc, origin),
        mix=_mix(doc, origin),
        mix_programs=df.integer(
            df.table(doc, "mix", df.Where(origin, "top of the file"), "copy the [mix] table"),
            "example_programs", df.Where(origin, "[mix]"), "e.g. example_programs = 20",
            low=1, high=200),
        plan=_plan(doc, origin),
        levels=_levels(doc, origin),
        sources=sources,
    )


def _sources(doc: df.Table, top: df.Where) -> dict[str, str]:
    fix = "add a [sources] table naming the NRMP report and the article"
    found = df.table(doc, "sources", top, fix)
    where = df.Where(top.origin, "[sources]")
    fix = 'cite the source, e.g. nrmp = "NRMP Charting Outcomes in the Match 2026, Table 5: ..."'
    return {key: df.text(found, key, where, fix) for key in ("nrmp", "article")} | {
        str(k): v for k, v in found.items() if isinstance(v, str)
    }


def _outlook(parent: df.Table, key: str, where: df.Where) -> Outlook:
    fix = f'write {key} = {{ level = 1, label = "..." }}'
    found = df.table(parent, key, where, fix)
    inner = where.child(key)
    return Outlook(
        df.integer(found, "level", inner, "use a level 1-5", low=1, high=5),
        df.text(found, "label", inner, "write the label people see, in quotes"),
    )


def _matrix(doc: df.Table, origin: str) -> dict[tuple[Step1Status, Tier, Band], Outlook]:
    top = df.Where(origin, "[matrix]")
    fix = "copy the [matrix.*] tables from the packaged specialties.toml"
    matrix = df.table(doc, "matrix", df.Where(origin, "top of the file"), fix)
    df.text(matrix, "source", top, 'say where the matrix comes from, e.g. source = "design"')
    cells: dict[tuple[Step1Status, Tier, Band], Outlook] = {}
    for status in MATRIX_STATUSES:
        rows = df.table(matrix, status, top, f"add the [matrix.{status}.<tier>] tables")
        for tier in TIERS:
            where = df.Where(origin, f"[matrix.{status}.{tier}]")
            fix = f"add [matrix.{status}.{tier}] with excellent, solid, borderline and below"
            row = df.table(rows, tier, df.Where(origin, f"[matrix.{status}]"), fix)
            previous: Outlook | None = None
            for band in MATRIX_BANDS:
                cell = _outlook(row, band, where)
                if previous is not None and cell.level > previous.level:
                    raise where.error(
                        f"{band} has level {cell.level}, above the better band's {previous.level}",
                        "a lower Step 2 CK band may not give a higher level; lower it",
                    )
                cells[(status, tier, band)] = previous = cell
    return cells


def _mix(doc: df.Table, origin: str) -> dict[int, ProgramMix]:
    top = df.Where(origin, "[mix]")
    mix = df.table(doc, "mix", df.Where(origin, "top of the file"), "copy the [mix] table")
    df.text(mix, "source", top, 'say where the mix comes from, e.g. source = "design"')
    found: dict[int, ProgramMix] = {}
    for level in LEVELS:
        fix = (
            f"write {level} = {{ reach = .., solid = .., safety = .., "
            "parallel_plan = .., meet_advisor = .. }"
        )
        row = df.table(mix, str(level), top, fix)
        where = top.child(f"level {level}")
        share = "use a percentage 0-100"
        item = ProgramMix(
            reach=df.integer(row, "reach", where, share, low=0, high=100),
            solid=df.integer(row, "solid", where, share, low=0, high=100),
            safety=df.integer(row, "safety", where, share, low=0, high=100),
            parallel_plan=df.flag(row, "parallel_plan", where, "write true or false"),
            meet_advisor=df.flag(row, "meet_advisor", where, "write true or false"),
        )
        total = item.reach + item.solid + item.safety
        if total != 100:
            raise where.error(f"reach + solid + safety is {total}", "make the shares add up to 100")
        found[level] = item
    return found


def _plan(doc: df.Table, origin: str) -> PlanRules:
    top = df.Where(origin, "[plan]")
    found = df.table(doc, "plan", df.Where(origin, "top of the file"),
                     "copy the [plan] table from the packaged specialties.toml")
    df.text(found, "source", top, 'say where the days come from, e.g. source = "design"')
    weeks = df.integer(found, "weeks_days", top, "e.g. weeks_days = 28", low=7, high=90)
    rest = df.integer(found, "rest_days", top, "e.g. rest_days = 3", low=0, high=14)
    habits = frozenset(df.texts(found, "habits", top, 'e.g. habits = ["qbank", "send"]'))
    due_table = df.table(found, "due", top, "e.g. due = { letters = 14, mix = 14 }")
    due = tuple(
        (str(kind), df.integer(due_table, str(kind), top.child("due"),
                               f"use a day 0-{weeks}", low=0, high=weeks))
        for kind in due_table
    )
    return PlanRules(weeks, rest, due, habits)


def _levels(doc: df.Table, origin: str) -> dict[int, Level]:
    top = df.Where(origin, "[levels]")
    found = df.table(doc, "levels", df.Where(origin, "top of the file"), "copy the [levels] table")
    df.text(found, "source", top, 'say where the meanings come from, e.g. source = "design"')
    levels: dict[int, Level] = {}
    for level in LEVELS:
        fix = f'write {level} = {{ meaning = "...", at_risk = true or false }}'
        row = df.table(found, str(level), top, fix)
        where = top.child(f"level {level}")
        levels[level] = Level(
            df.text(row, "meaning", where, "write what the level means to the office, in quotes"),
            df.flag(row, "at_risk", where, "write true or false"),
        )
    return levels
