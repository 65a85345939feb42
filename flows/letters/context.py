"""What a letter shows, worked out from the Evaluation: the chart, the plan's days, the standing.

Nothing here decides an outlook (residency_rules did); it only lays out what the templates
print. Dates of the run and "what changed" are marked volatile so the content hash skips them.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from flows.settings import Settings
from residency_rules import calendar
from residency_rules.explain import plural
from residency_rules.records import Evaluation, Specialty, StudentRecord
from residency_rules.schema import domain_allowed, is_address
from residency_rules.specialties import nrmp_citation

if TYPE_CHECKING:
    from residency_rules.specialties import SpecialtyTable

log = logging.getLogger(__name__)

# Ranges are written with a plain hyphen: one character outside Latin-1 (an en dash) makes
# Python store the whole letter at two bytes per character, doubling the memory of 20k letters.

# Volatile regions (dates of the run, what changed since the last letter) are wrapped in these
# private-use characters while rendering: the hash drops what they enclose, the files drop them.
VOL_OPEN, VOL_CLOSE = "\ue000", "\ue001"
VOLATILE = re.compile(f"{VOL_OPEN}[^{VOL_CLOSE}]*{VOL_CLOSE}")

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# When each kind of advice is due within the four weeks, by the advice key's first part:
# (day, "by") = a deadline, (day, "from") = a habit that starts that day. Keys the rules add
# later land at the end of the four weeks.
_PLAN_DAY: dict[str, tuple[int, str]] = {
    "qbank": (0, "from"),
    "interviews": (0, "from"),
    "target": (2, "by"),
    "schedule": (5, "by"),
    "timing": (5, "by"),
    "step1": (7, "by"),
    "advisor": (14, "by"),
    "meeting": (14, "by"),
    "letters": (14, "by"),
    "statement": (21, "by"),
    "parallel": (21, "by"),
    "package": (28, "by"),
    "mix": (28, "by"),
}
_LAST_DAY = 28

_TIER_WORDS = {
    "less": "a less competitive specialty",
    "moderate": "a moderately competitive specialty",
    "high": "a highly competitive specialty",
    "hyper": "one of the most competitive specialties",
}


@dataclass(frozen=True, slots=True)
class _Row:
    """One bar of the chart: widths in percent of the scale."""

    label: str
    value: str
    start: int
    width: int
    rest: int
    colour: str | None  # None = the colour of the student's level


@dataclass(frozen=True, slots=True)
class _Chart:
    rows: tuple[_Row, ...]
    note: str
    lo: int
    hi: int
    source: str


@dataclass(frozen=True, slots=True)
class _Step:
    level: int
    label: str
    score: int


@dataclass(frozen=True, slots=True)
class _PlanItem:
    when: str
    text: str


@dataclass(frozen=True, slots=True)
class _Mix:
    reach: int
    solid: int
    safety: int
    reach_n: int
    solid_n: int
    safety_n: int


@dataclass(frozen=True, slots=True)
class _Parallel:
    name: str
    median: int | None


_MARK_COLOUR = "#7b8794"
_RANGE_COLOUR = "#9fb3c8"



def format_day(day: date) -> str:
    """Format a date the way the letter prints it: 24 November 2026."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def _short_day(day: date) -> str:
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1][:3]}"


def _volatile(text: str) -> str:
    return f"{VOL_OPEN}{text}{VOL_CLOSE}"


def strip_marks(text: str) -> str:
    # Two replace calls: str.translate is ~100x slower on non-ASCII text.
    return text.replace(VOL_OPEN, "").replace(VOL_CLOSE, "")



def _lookup(table: SpecialtyTable, name: str) -> Specialty | None:
    try:
        return table.get(name)
    except KeyError:
        return None


def _pct(value: int, lo: int, hi: int) -> int:
    return max(0, min(100, round((value - lo) * 100 / (hi - lo))))


def _bar(label: str, value: str, start: int, end: int, colour: str | None) -> _Row:
    width = max(1, end - start)
    start = min(start, 100 - width)
    return _Row(label, value, start, width, 100 - start - width, colour)


def _chart(ev: Evaluation, spec: Specialty | None, citation: str) -> _Chart:
    score = ev.step2_score
    marks = [ev.solid, ev.excellent]
    has_nrmp = spec is not None and spec.nrmp_q1 is not None and spec.nrmp_q3 is not None
    if has_nrmp:
        assert spec is not None and spec.nrmp_q1 is not None and spec.nrmp_q3 is not None
        marks += [spec.nrmp_q1, spec.nrmp_q3]
    if score is not None:
        marks.append(score)
    lo = int(math.floor((min(marks) - 10) / 5) * 5)
    hi = int(math.ceil((max(marks) + 5) / 5) * 5)
    rows = []
    if score is not None:
        rows.append(_bar("Your Step 2 CK", str(score), 0, _pct(score, lo, hi), None))
    else:
        rows.append(
            _bar(
                "Your target range",
                f"{ev.solid}-{ev.excellent}",
                _pct(ev.solid, lo, hi),
                _pct(ev.excellent, lo, hi),
                None,
            )
        )
    rows.append(_bar("Solid mark", str(ev.solid), 0, _pct(ev.solid, lo, hi), _MARK_COLOUR))
    rows.append(
        _bar("Excellent mark", str(ev.excellent), 0, _pct(ev.excellent, lo, hi), _MARK_COLOUR)
    )
    source = ""
    nrmp_note = ""
    if has_nrmp:
        assert spec is not None and spec.nrmp_q1 is not None and spec.nrmp_q3 is not None
        q1, q3 = spec.nrmp_q1, spec.nrmp_q3
        rows.append(
            _bar(
                "Middle half of applicants who matched",
                f"{q1}-{q3}",
                _pct(q1, lo, hi),
                _pct(q3, lo, hi),
                _RANGE_COLOUR,
            )
        )
        source = citation  # approximate until the office checks the figures (#14)
        median = f", median {spec.nrmp_median}" if spec.nrmp_median else ""
        if score is None:
            nrmp_note = f" Half of the applicants who matched scored between {q1} and {q3}{median}."
        elif score < q1:
            nrmp_note = f" It is below the middle half of applicants who matched ({q1}-{q3})."
        elif score > q3:
            nrmp_note = f" It is above the middle half of applicants who matched ({q1}-{q3})."
        else:
            nrmp_note = f" It is inside the middle half of applicants who matched ({q1}-{q3})."
    if score is None:  # the standing and the score ladder say what to aim for
        note = f"{ev.solid} is solid and {ev.excellent} excellent for {ev.specialty}."
    elif score >= ev.excellent:
        note = f"Your {score} is at or above the excellent mark ({ev.excellent})."
    elif score >= ev.solid:
        note = (
            f"Your {score} is at or above the solid mark ({ev.solid}), "
            f"{ev.excellent - score} under excellent ({ev.excellent})."
        )
    else:
        gap = plural(ev.solid - score, "point")
        note = f"Your {score} is {gap} under the solid mark ({ev.solid})."
    return _Chart(tuple(rows), note + nrmp_note, lo, hi, source)


def _standing(ev: Evaluation) -> str:
    tier = _TIER_WORDS.get(ev.tier, "a specialty")
    score = ev.step2_score
    if score is None:
        return f"We do not have your Step 2 CK score yet; {ev.specialty} is {tier}."
    reading = {
        "failing": "is under the passing score",
        "below": "is well under the solid mark for it",
        "borderline": "is just under the solid mark for it",
        "solid": "is solid for it",
        "excellent": "is excellent for it",
    }.get(ev.raw_band, "is on file")
    return f"{ev.specialty} is {tier}. Your Step 2 CK of {score} {reading}."


def _mix(ev: Evaluation) -> _Mix:
    m = ev.mix
    reach_n = round(m.reach * 20 / 100)
    safety_n = round(m.safety * 20 / 100)
    return _Mix(m.reach, m.solid, m.safety, reach_n, 20 - reach_n - safety_n, safety_n)


class Run:
    """What is the same for every letter of one run: settings, dates, the table."""

    def __init__(self, table: SpecialtyTable, settings: Settings) -> None:
        self.table = table
        self.settings = settings
        self.today = settings.run_date()
        # Dates of the run, marked volatile for the text (its hash leaves them out) and plain
        # for the HTML (not hashed; markers would make Python store it at 2 bytes a character).
        end = self.today + timedelta(days=_LAST_DAY)
        plain = {
            "letter_date": format_day(self.today),
            "plan_span": f"{_short_day(self.today)} to {_short_day(end)}",
        }
        self.dates = {False: plain, True: {k: _volatile(v) for k, v in plain.items()}}
        self.when = {
            (kind, d, marked): (_volatile(text) if marked else text)
            for d in range(_LAST_DAY + 1)
            for kind, word in (("by", "By"), ("from", "From"))
            for text in (f"{word} {_short_day(self.today + timedelta(days=d))}",)
            for marked in (False, True)
        }
        self.cycle = settings.cycle(table)
        self.phase = calendar.phase(self.today, self.cycle)
        self.cycle_over = self.cycle.over(self.today)
        self.review_start = format_day(self.cycle.review_start)
        self.passing = table.rules.failing_score
        self.specs: dict[str, Specialty | None] = {}
        self.nrmp_citation = nrmp_citation(table)
        self.charts: dict[tuple[Any, ...], _Chart] = {}
        self.allowed = settings.allowed_email_domains
        office = settings.reply_to.strip()
        self.office_reply_to = office if is_address(office) else None

    def spec(self, name: str) -> Specialty | None:
        if name not in self.specs:
            self.specs[name] = _lookup(self.table, name)
        return self.specs[name]

    def chart(self, ev: Evaluation) -> _Chart:
        key = (ev.specialty, ev.solid, ev.excellent, ev.step2_score)
        chart = self.charts.get(key)
        if chart is None:
            chart = self.charts[key] = _chart(ev, self.spec(ev.specialty), self.nrmp_citation)
        return chart

    def address(self, value: str | None) -> str | None:
        """Return a checked address in the allowed domains, else None."""
        if not value:
            return None
        value = value.strip()
        if is_address(value) and domain_allowed(value, self.allowed):
            return value
        return None

    def plan(self, ev: Evaluation, signer: str, advisor: bool) -> list[tuple[int, int, str, str]]:
        """Give every advice item its day within the next four weeks, in the rules' order.

        The rules give the days (ev.advice_days: causal order, never before today); an
        evaluation without them gets each kind's usual day, sorted by day.
        """
        items: list[tuple[int, int, str, str]] = []
        days = ev.advice_days if len(ev.advice_days) == len(ev.advice) else ()
        for order, advice in enumerate(ev.advice):
            day, kind = _PLAN_DAY.get(advice.key.split(".", 1)[0], (_LAST_DAY, "by"))
            if days:
                day = min(max(days[order], 0), _LAST_DAY)
            items.append((day, order, kind, advice.text))
        keys = {a.key.split(".", 1)[0] for a in ev.advice}
        if (ev.mix.meet_advisor or not items) and not keys & {"advisor", "meeting"}:
            who = f"your advisor, {signer}," if advisor else f"an advisor at the {signer}"
            items.append((14, len(items), "by", f"Meet {who} to go through this plan together."))
        if not days:
            items.sort()
        return items

    def first_when(self, items: list[tuple[int, int, str, str]], marked: bool) -> str:
        """Return "by Thu 26 Nov" for the plan's first item, marked volatile or not."""
        if not items:
            return ""
        day, _, kind, _ = items[0]
        text = f"{kind} {_short_day(self.today + timedelta(days=day))}"
        return _volatile(text) if marked else text

    def plan_items(
        self, items: list[tuple[int, int, str, str]], marked: bool
    ) -> tuple[_PlanItem, ...]:
        """Return the plan with its dates, marked volatile or not."""
        return tuple(_PlanItem(self.when[kind, day, marked], text) for day, _, kind, text in items)


SEASON_WORDS: dict[str, str] = {
    "preparing": "getting ready to apply",
    "applying": "applications",
    "interviewing": "interviews",
    "ranking": "the rank order list",
    "match week": "Match Week",
}


def _callout(run: Run, record: StudentRecord, ev: Evaluation) -> str:
    """Say what cannot wait about the exam date; never ask for something before today."""
    if ev.exam_overdue and record.step2_date is not None:
        return (
            f"Your Step 2 CK date ({format_day(record.step2_date)}) has passed and we have no "
            "score on file."
        )
    if not ev.timing_late or ev.phase not in ("preparing", "applying") or run.cycle_over:
        return ""
    when = (
        f"Your Step 2 CK date ({format_day(record.step2_date)}) is too late"
        if record.step2_date
        else "Your Step 2 CK is not booked in time"
    )
    return (
        f"{when}: the score would not be in your application when programs start reading on "
        f"{run.review_start}."
    )


def _score_range(run: Run, ev: Evaluation) -> tuple[tuple[str, str], ...]:
    """Pending or failing: each score's outlook, the downside included (score text, label)."""
    steps = sorted(ev.next_levels, key=lambda n: n.score)
    rows = [(f"{n.score} or more", n.label) for n in reversed(steps)]  # best first
    first = steps[0].score if steps else run.passing
    if ev.floor_label and first > run.passing:
        rows.append((f"{run.passing}-{first - 1}", ev.floor_label))
    elif ev.floor_label and not steps:
        rows.append((f"{run.passing} or more", ev.floor_label))
    rows.append((f"under {run.passing}", "not passed (a retake)"))
    return tuple(rows)


def letter_context(
    run: Run, record: StudentRecord, ev: Evaluation, changes: tuple[str, ...], since: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the text template's context (run dates marked volatile) and the HTML's."""
    settings = run.settings
    # The advisor when their address is usable, else the office's (a configured setting).
    reply_to = run.address(record.advisor_email) or run.office_reply_to
    advisor = (record.advisor or "").strip()
    signer = advisor or settings.office_name
    callout = _callout(run, record, ev)
    # The standing sentence gives the score's reading and the callout or plan its timing;
    # the old one-line matrix verdict would state the headline twice.
    # The impact rule of thumb stays in the workbook: a one-minute letter leaves it out.
    skip = ("step2", "timing", "matrix", "impact", "outlook.pending")
    reasons = [
        r.text
        for r in ev.reasons
        if not (r.rule.split(".", 1)[0] in skip or r.rule in skip) or r.rule == "matrix.changed"
    ]
    if record.conditional_pass and not any("conditional" in r.rule for r in ev.reasons):
        for clerkship in record.conditional_pass:
            reasons.append(
                f"Your {clerkship} clerkship grade was a Conditional Pass; "
                "it counts as a Pass here."
            )
    pending = ev.step2_score is None
    passed_step1 = ev.step1_status in ("clean", "failure")
    # The score ladder only where a score is still to come (pending or failing): a passed
    # exam cannot be retaken. The others read what can still move their outlook.
    ladder = passed_step1 and (pending or ev.raw_band == "failing")
    score_range = _score_range(run, ev) if ladder else ()
    applies = ev.applies_this_cycle and passed_step1
    # The evaluation's phase (the rules read the same date): what the plan is about.
    season = applies and ev.phase in ("preparing", "applying", "interviewing")
    parallel_needed = season and (ev.level <= 2 or ev.mix.parallel_plan)
    parallel: tuple[_Parallel, ...] = ()
    if parallel_needed:
        parallel = tuple(
            _Parallel(name, spec.nrmp_median if spec else None)
            for name in ev.parallel
            for spec in (run.spec(name),)
        )
    levers: tuple[str, ...] = ()
    if passed_step1 and not ladder:
        rest = "your interviews" if ev.phase == "interviewing" else "your program list"
        if parallel_needed:
            rest += " and your parallel plan"
        if not season:
            rest = "how you rank programs" if ev.phase == "ranking" else "being ready"
        verb = "matter" if rest.endswith(("plan", "interviews")) else "matters"
        # Research or grades still to come can move next year's file, not this cycle's list.
        moving = ev.levers if season else ()
        levers = (*moving, f"Your Step 2 CK is in and final; {rest} now {verb} most.")
    plan = run.plan(ev, signer, bool(advisor))
    first, rest_plan = plan[:1], plan[1:]
    keys = {a.key for a in ev.advice}
    text_ctx = {
        "school_name": settings.school_name,
        "office_name": settings.office_name,
        "name": record.name,
        "specialty": ev.specialty,
        "level": ev.level,
        "label": ev.label,
        "pending": pending,
        "standing": _standing(ev),
        "callout": callout,
        "changes": changes,
        "changes_since": since,
        "vo": VOL_OPEN,
        "vc": VOL_CLOSE,
        "chart": run.chart(ev),
        "score_range": score_range,
        "score_by": format_day(ev.score_by) if pending and ev.score_by else "",
        "levers": levers,
        "reasons": reasons,
        "first": first[0][3] if first else "",
        "first_when": run.first_when(first, marked=True),
        "plan": run.plan_items(rest_plan, marked=True),
        "mix": _mix(ev),
        "show_mix": season and ev.phase != "interviewing",
        "mix_in_plan": "mix" in keys,
        "parallel": () if "parallel" in keys else parallel,
        "parallel_needed": parallel_needed and "parallel" not in keys,
        "signer": signer,
        "signer_email": reply_to or "",
        "signer_role": (
            f"Your advisor, {settings.office_name}" if advisor else settings.school_name
        ),
        "rules_version": ev.rules_version,
        "_reply_to": reply_to,
        **run.dates[True],
    }
    html_ctx = {
        **text_ctx,
        **run.dates[False],
        "first_when": run.first_when(first, marked=False),
        "plan": run.plan_items(rest_plan, marked=False),
        "vo": "",
        "vc": "",
    }
    return text_ctx, html_ctx
