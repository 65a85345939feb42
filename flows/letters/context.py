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
from residency_rules.explain import plural
from residency_rules.records import Evaluation, Specialty, StudentRecord
from residency_rules.schema import domain_allowed, is_address
from residency_rules.situation import retake_after_lists
from residency_rules.specialties import nrmp_for_students, nrmp_match_year

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


def _nrmp_note(ev: Evaluation, spec: Specialty, year: str, trust: str) -> str:
    """Say the NRMP figures in a student's words: who, which specialty, which Match; the
    unmatched median where it explains an at-risk outlook; how far they were checked."""
    q1, q3 = spec.nrmp_q1, spec.nrmp_q3
    score = ev.step2_score
    note = (
        f" Of US MD seniors who matched in {ev.specialty} in {year}, the middle half scored "
        f"{q1}-{q3}"
    )
    if score is None or q1 is None or q3 is None:
        note += "."
    else:
        where = "below" if score < q1 else "above" if score > q3 else "inside"
        note += f"; your {score} is {where} that range."
        unmatched = spec.nrmp_unmatched_median
        if ev.at_risk and score < q1 and unmatched is not None and ev.raw_band != "failing":
            note += f" Those who did not match had a median of {unmatched}."
    return f"{note} ({trust}.)"


def _chart(ev: Evaluation, spec: Specialty | None, year: str, trust: str) -> _Chart:
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
    nrmp_note = ""
    if has_nrmp:
        assert spec is not None and spec.nrmp_q1 is not None and spec.nrmp_q3 is not None
        q1, q3 = spec.nrmp_q1, spec.nrmp_q3
        rows.append(
            _bar(
                "Middle half of US MD seniors who matched",
                f"{q1}-{q3}",
                _pct(q1, lo, hi),
                _pct(q3, lo, hi),
                _RANGE_COLOUR,
            )
        )
        if ev.raw_band != "failing":  # a retake's bands say what each score would mean
            nrmp_note = _nrmp_note(ev, spec, year, trust)
    if score is None:  # the standing and the score bands say what to aim for
        note = f"{ev.solid} is solid and {ev.excellent} excellent for {ev.specialty}."
        if nrmp_note:
            return _Chart(tuple(rows), nrmp_note.lstrip(), lo, hi, "")
    elif score >= ev.excellent:
        note = f"Your {score} is at or above the excellent mark ({ev.excellent})."
    elif score >= ev.solid:
        note = (
            f"Your {score} is at or above the solid mark ({ev.solid}), "
            f"{ev.excellent - score} under excellent ({ev.excellent})."
        )
    elif _capped_by_score(ev):
        note = ""  # the why's first reason gives the gap, and that it is what caps the outlook
    else:
        gap = plural(ev.solid - score, "point")
        note = f"Your {score} is {gap} under the solid mark ({ev.solid})."
    return _Chart(tuple(rows), (note + nrmp_note).strip(), lo, hi, "")


def _capped_by_score(ev: Evaluation) -> bool:
    return any(r.rule == "cap.score" for r in ev.reasons)


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


def _mix(ev: Evaluation, programs: int) -> _Mix:
    """Count the level's mix out of a list of `programs` (the data file's example list)."""
    m = ev.mix
    reach_n = round(m.reach * programs / 100)
    safety_n = round(m.safety * programs / 100)
    return _Mix(m.reach, m.solid, m.safety, reach_n, programs - reach_n - safety_n, safety_n)


class Run:
    """What is the same for every letter of one run: settings, dates, the table."""

    def __init__(self, table: SpecialtyTable, settings: Settings) -> None:
        self.table = table
        self.settings = settings
        self.today = settings.run_date()
        # Dates of the run, marked volatile for the text (its hash leaves them out) and plain
        # for the HTML (not hashed; markers would make Python store it at 2 bytes a character).
        self.plan_rules = table.rules.plan
        last = self.plan_rules.weeks_days
        end = self.today + timedelta(days=last)
        plain = {
            "letter_date": format_day(self.today),
            "plan_span": f"{_short_day(self.today)} to {_short_day(end)}",
        }
        self.dates = {False: plain, True: {k: _volatile(v) for k, v in plain.items()}}
        # Due on the letter's own day: "Today (Tue 16 Mar)", not "By Tue 16 Mar".
        self.when = {
            (kind, d, marked): (_volatile(text) if marked else text)
            for d in range(last + 1)
            for kind, word in (("by", "By"), ("from", "From"))
            for text in (_due(word, d, self.today + timedelta(days=d)),)
            for marked in (False, True)
        }
        self.cycle = settings.cycle(table)
        self.passing = table.rules.failing_score
        self.specs: dict[str, Specialty | None] = {}
        self.nrmp_year = nrmp_match_year(table)
        self.nrmp_trust = nrmp_for_students(table)
        self.charts: dict[tuple[Any, ...], _Chart] = {}
        self.allowed = settings.allowed_email_domains
        office = settings.reply_to.strip()
        self.office_reply_to = office if is_address(office) else None

    def spec(self, name: str) -> Specialty | None:
        if name not in self.specs:
            self.specs[name] = _lookup(self.table, name)
        return self.specs[name]

    def chart(self, ev: Evaluation) -> _Chart:
        key = (ev.specialty, ev.solid, ev.excellent, ev.step2_score, ev.at_risk,
               _capped_by_score(ev))
        chart = self.charts.get(key)
        if chart is None:
            chart = self.charts[key] = _chart(
                ev, self.spec(ev.specialty), self.nrmp_year, self.nrmp_trust
            )
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
        who = f"your advisor, {signer}," if advisor else f"an advisor at the {signer}"
        for order, advice in enumerate(ev.advice):
            head = advice.key.split(".", 1)[0]
            day = self.plan_rules.due_day(head)  # the rules' days below, when they gave them
            kind = "from" if head in self.plan_rules.habits else "by"
            if days:
                day = min(max(days[order], 0), self.plan_rules.weeks_days)
            text = advice.text
            if advice.key == "advisor":  # the letter names who (the rules cannot)
                text = f"Meet {who} to go through this plan together."
            items.append((day, order, kind, text))
        if not items:  # the rules always give a plan; an empty one still points somewhere
            items.append((14, len(items), "by", f"Meet {who} to go through this plan together."))
        if not days:
            items.sort()
        return items

    def first_when(self, items: list[tuple[int, int, str, str]], marked: bool) -> str:
        """Return "by Thu 26 Nov" for the plan's first item, marked volatile or not."""
        if not items:
            return ""
        day, _, kind, _ = items[0]
        text = _due(kind, day, self.today + timedelta(days=day))
        text = text[0].lower() + text[1:]
        return _volatile(text) if marked else text

    def plan_items(
        self, items: list[tuple[int, int, str, str]], marked: bool
    ) -> tuple[_PlanItem, ...]:
        """Return the plan with its dates, marked volatile or not."""
        return tuple(_PlanItem(self.when[kind, day, marked], text) for day, _, kind, text in items)


def _due(word: str, days: int, day: date) -> str:
    """Say when a plan item is due: "By Thu 26 Nov", "From Sun 6 Dec", "Today (Tue 16 Mar)"."""
    if days == 0 and word.lower() == "by":
        return f"Today ({_short_day(day)})"
    return f"{word} {_short_day(day)}"


SEASON_WORDS: dict[str, str] = {
    "preparing": "getting ready to apply",
    "applying": "applications",
    "interviewing": "interviews",
    "ranking": "the rank order list",
    "match week": "Match Week",
    "after match": "the Match result",
}
# Outside the NRMP (SF Match, AUA) there is no rank order list and no Match Week.
_OTHER_SEASON_WORDS: dict[str, str] = {
    "ranking": "your preference list",
    "match week": "your match results",
}


def season_words(phase: str, match_system: str = "nrmp") -> str:
    """Name what the plan is about in a phase, in the words of the student's own match."""
    if match_system != "nrmp" and phase in _OTHER_SEASON_WORDS:
        return _OTHER_SEASON_WORDS[phase]
    return SEASON_WORDS.get(phase, phase)


def _callout(run: Run, record: StudentRecord, ev: Evaluation) -> str:
    """Say what cannot wait about the exam; never ask for something before today, and never
    print a date that is already past."""
    if ev.exam_state == "overdue":
        return "Your Step 2 CK score should have posted by now, and we have none on file."
    if (not ev.timing_late or ev.phase not in ("preparing", "applying")
            or ev.exam_state not in ("scheduled", "unscheduled")):
        return ""
    when = (
        f"Your Step 2 CK date ({format_day(record.step2_date)}) is too late"
        if record.step2_date
        else "Your Step 2 CK is not booked in time"
    )
    return (
        f"{when}: the score would not be in your application when programs start reading on "
        f"{format_day(run.cycle.for_match(ev.match_system).review_start)}."
    )


def _score_range(run: Run, ev: Evaluation) -> tuple[tuple[str, str], ...]:
    """Pending or failing: every band of the score to come and its outlook, best first, the
    at-risk ones and a failing score included (score text, outlook)."""
    rows = []
    for band in reversed(ev.score_bands):
        if band.high is None:
            text = f"{band.low} or more"
        elif band.high == band.low:
            text = str(band.low)
        else:
            text = f"{band.low}-{band.high}"
        rows.append((text, band.label))
    rows.append((f"under {run.passing}", "not passed (a retake)"))
    return tuple(rows)


# The after-Match letter: the result's headline and one sentence of standing.
_AFTER_HEADLINES: dict[str | None, tuple[str, str]] = {
    "matched": (
        "You matched",
        "Congratulations on your match. A few things remain before you start residency.",
    ),
    "matched in SOAP": (
        "You matched through SOAP",
        "Congratulations: you matched through SOAP, and your position is as real as any "
        "other. A few things remain before you start residency.",
    ),
    "did not match": (
        "Did not match: your next steps",
        "We are sorry you did not match this year. There is a way forward, and you will not "
        "plan it alone.",
    ),
    None: (
        "After Match Day: your next steps",
        "Match Day has passed, and we do not have your result on file yet.",
    ),
}


def _after_match(run: Run, ev: Evaluation) -> tuple[str, str, str]:
    """Return the after-Match letter's title, headline and standing for the student's result."""
    result = ev.match_result
    if result == "matched in SOAP" and ev.match_system != "nrmp":
        result = "matched"  # SOAP is the NRMP's: another match has none
    label, standing = _AFTER_HEADLINES[result]
    if result is None and ev.match_system != "nrmp":  # "Match Day" is the NRMP's, still ahead
        standing = (f"The {ev.match_name} results are out, and we do not have your result on "
                    "file yet.")
    # The Main Match by its cycle's name ("2027 Main Match"); the others by their own.
    title = run.cycle.name if ev.match_system == "nrmp" else ev.match_name
    return title, label, standing


def letter_context(
    run: Run, record: StudentRecord, ev: Evaluation, changes: tuple[str, ...], since: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the text template's context (run dates marked volatile) and the HTML's."""
    settings = run.settings
    # The advisor when their address is usable, else the office's (a configured setting).
    reply_to = run.address(record.advisor_email) or run.office_reply_to
    advisor = (record.advisor or "").strip()
    signer = advisor or settings.office_name
    passed_step1 = ev.step1_status in ("clean", "failure")
    after = ev.phase == "after match" and passed_step1
    pending = ev.step2_score is None
    plan = run.plan(ev, signer, bool(advisor))
    first, rest_plan = plan[:1], plan[1:]
    keys = {a.key for a in ev.advice}
    base: dict[str, Any] = {
        "school_name": settings.school_name,
        "office_name": settings.office_name,
        "name": record.name,
        "specialty": ev.specialty,
        "changes": changes,
        "changes_since": since,
        "vo": VOL_OPEN,
        "vc": VOL_CLOSE,
        "first": first[0][3] if first else "",
        "first_when": run.first_when(first, marked=True),
        "plan": run.plan_items(rest_plan, marked=True),
        "signer": signer,
        "signer_email": reply_to or "",
        "signer_role": (
            f"Your advisor, {settings.office_name}" if advisor else settings.school_name
        ),
        "rules_version": ev.rules_version,
        "_reply_to": reply_to,
        **run.dates[True],
    }
    if after:
        # After the Match: the result and its branch; no outlook, no task of the ended cycle.
        title, label, standing = _after_match(run, ev)
        text_ctx = {
            **base,
            "after_match": True,
            "title": title,
            "label": label,
            "level": 3,  # the colour of the headline box: news, not an outlook
            "show_level": False,
            "pending": False,
            "standing": standing,
            "callout": "",
            "chart": None,
            "score_range": (),
            "score_by": "",
            "levers": (),
            "reasons": (),
            "mix": _mix(ev, run.table.rules.mix_programs),
            "show_mix": False,
            "mix_in_plan": False,
        }
    else:
        callout = _callout(run, record, ev)
        # The standing sentence gives the score's reading and the callout or plan its timing;
        # the old one-line matrix verdict would state the headline twice. The cap of a low
        # outlook is said in its own words (cap.score), never twice.
        # The impact rule of thumb stays in the workbook: a one-minute letter leaves it out.
        skip = ("step2", "timing", "matrix", "impact", "outlook.pending")
        keep = ("matrix.changed", "step2.failed_before")
        reasons = [
            r.text
            for r in ev.reasons
            if r.text and (not (r.rule.split(".", 1)[0] in skip or r.rule in skip)
                           or r.rule in keep)
        ]
        # The score bands only where a score is still to come (pending or failing): a passed
        # exam cannot be retaken. The others read what can still move their outlook.
        # (A retake in ranking or Match Week posts after the lists close: no bands to read.)
        ladder = passed_step1 and (pending or ev.raw_band == "failing") and not (
            retake_after_lists(ev.raw_band, ev.phase))
        score_range = _score_range(run, ev) if ladder else ()
        season = passed_step1 and ev.phase in ("preparing", "applying", "interviewing")
        level_at_risk = run.table.rules.levels[ev.level].at_risk
        parallel_needed = season and (level_at_risk or ev.mix.parallel_plan)
        levers: tuple[str, ...] = ()
        if passed_step1 and not ladder:
            rest = "your interviews" if ev.phase == "interviewing" else "your program list"
            if parallel_needed:
                rest += " and your parallel plan"
            if not season:
                ranking = ("how you rank programs" if ev.match_system == "nrmp"
                           else "your preference list")
                rest = ranking if ev.phase == "ranking" else "being ready"
            verb = "matter" if rest.endswith(("plan", "interviews")) else "matters"
            # Research or grades can move the outlook only until programs review.
            moving = ev.levers if ev.phase in ("preparing", "applying") else ()
            final = (
                "Your retake's score will come after this cycle's lists close"
                if ev.raw_band == "failing" else "Your Step 2 CK is in and final"
            )
            levers = (*moving, f"{final}; {rest} now {verb} most.")
        text_ctx = {
            **base,
            "after_match": False,
            "title": ev.specialty,
            "label": ev.label,
            "level": ev.level,
            "show_level": not pending,
            "pending": pending,
            "standing": _standing(ev),
            "callout": callout,
            "chart": run.chart(ev),
            "score_range": score_range,
            "score_by": format_day(ev.score_by) if pending and ev.score_by else "",
            "levers": levers,
            "reasons": reasons,
            "mix": _mix(ev, run.table.rules.mix_programs),
            "show_mix": season and ev.phase != "interviewing",
            "mix_in_plan": "mix" in keys,
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
