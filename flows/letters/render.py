"""Render one advising letter per student (HTML + plain text) from its evaluation, to disk first.

The templates are compiled once per run, and letter.css is inlined into the HTML template's
source once at load (not into 20,000 rendered letters). Everything a student sees comes from
the Evaluation; nothing is recomputed here. Dates of the run and the "what changed" section are
marked while rendering so the content hash leaves them out: a nightly re-run with nothing
changed produces the same hash and sends nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import css_inline
import jinja2

from flows.files import student_file_stem, write_file
from flows.letters.model import Letter, LetterSummary
from flows.settings import Settings
from residency_rules import calendar
from residency_rules.errors import SettingsError
from residency_rules.explain import plural
from residency_rules.records import Evaluation, Specialty, StudentRecord
from residency_rules.schema import domain_allowed, has_line_break, is_address
from residency_rules.specialties import nrmp_citation

if TYPE_CHECKING:
    from residency_rules.specialties import SpecialtyTable

log = logging.getLogger(__name__)

HTML_TEMPLATE = "letter.html.j2"
TEXT_TEMPLATE = "letter.txt.j2"
SUBJECT_TEMPLATE = "subject.txt.j2"
STYLESHEET = "letter.css"

# Ranges are written with a plain hyphen: one character outside Latin-1 (an en dash) makes
# Python store the whole letter at two bytes per character, doubling the memory of 20k letters.

# Volatile regions (dates of the run, what changed since the last letter) are wrapped in these
# private-use characters while rendering: the hash drops what they enclose, the files drop them.
_VOL_OPEN, _VOL_CLOSE = "\ue000", "\ue001"
_VOLATILE = re.compile(f"{_VOL_OPEN}[^{_VOL_CLOSE}]*{_VOL_CLOSE}")
_HASH_VERSION = "letter-v1"

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

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


def summarize(evaluation: Evaluation) -> LetterSummary:
    """Return what a letter for this evaluation tells the student about the outlook."""
    return LetterSummary(
        level=evaluation.level,
        label=evaluation.label,
        band=evaluation.band,
        score=evaluation.step2_score,
        specialty=evaluation.specialty,
    )


def _said(summary: LetterSummary) -> str:
    """Quote an outlook with its level; no level number while a score is pending."""
    level = "" if summary.band == "pending" else f" (level {summary.level})"
    return f'"{summary.label}"{level}'


def describe_changes(previous: LetterSummary | None, current: LetterSummary) -> tuple[str, ...]:
    """Say in plain sentences what changed since the last letter; () for a first letter."""
    if previous is None or not previous.label:  # first letter, or nothing known about the last
        return ()
    lines: list[str] = []
    if previous.specialty != current.specialty:
        lines.append(
            f"Your specialty on file changed from {previous.specialty} to {current.specialty}."
        )
    if previous.level != current.level:
        way = "up" if current.level > previous.level else "down"
        if previous.band == "pending" or current.band == "pending":
            lines.append(f"Your outlook changed from {_said(previous)} to {_said(current)}.")
        else:
            lines.append(
                f"Your outlook moved {way} from {_said(previous)} to {_said(current)}."
            )
    elif previous.label != current.label:
        lines.append(f'Your outlook changed from "{previous.label}" to "{current.label}".')
    if previous.score != current.score:
        if previous.score is None:
            lines.append(f"Your Step 2 CK score is now on file: {current.score}.")
        elif current.score is None:
            lines.append(
                "We no longer have a Step 2 CK score on file for you; "
                "if that is a mistake, tell your advisor."
            )
        else:
            lines.append(
                f"Your Step 2 CK on file changed from {previous.score} to {current.score}."
            )
    elif previous.band != current.band and previous.specialty == current.specialty:
        lines.append(
            f"How programs are likely to read your score changed from {previous.band} "
            f"to {current.band} (see Why)."
        )
    return tuple(lines)


def format_day(day: date) -> str:
    """Format a date the way the letter prints it: 24 November 2026."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _short_day(day: date) -> str:
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1][:3]}"


def _volatile(text: str) -> str:
    return f"{_VOL_OPEN}{text}{_VOL_CLOSE}"


def _strip_marks(text: str) -> str:
    # Two replace calls: str.translate is ~100x slower on non-ASCII text.
    return text.replace(_VOL_OPEN, "").replace(_VOL_CLOSE, "")


TEXT_WIDTH = 72
# Words never split from the word before them: a date ("23 September 2026", "Thu 26 Nov") and
# an exam's name ("Step 2 CK"). Set lookups per word: a regex over every line cost ~20 us a line.
_MONTH_WORDS = frozenset((*_MONTHS, *(m[:3] for m in _MONTHS)))
_WEEKDAY_WORDS = frozenset(_WEEKDAYS)
_GLUE_BEFORE = _MONTH_WORDS | _WEEKDAY_WORDS | {"Step"}  # and numbers: a quick first look


def _glued(before: str, word: str) -> bool:
    if before.isdigit() and len(before) <= 2:  # 26 Nov, 23 September
        return word.rstrip(".,;:)") in _MONTH_WORDS
    if before in _WEEKDAY_WORDS:  # Thu 26
        return word.rstrip(".,;:)").isdigit()
    if before in _MONTH_WORDS:  # Nov 2026
        return word[:4].isdigit()
    if before == "Step":
        return word.rstrip(".,;:)") in ("1", "2")
    return before == "2" and word.startswith("CK")


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap the plain-text part at width characters, as mail clients show it unwrapped.

    A list item ("- ") or callout ("! ") continues under its own text (a hanging indent).
    Lines break at spaces only, so a URL, an email address or a range like 245-262 is never
    split; a word longer than the width stands alone on its line. Dates and exam names stay on
    one line. The content hash is taken before wrapping: how lines fall is not content.
    """
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        indent = "  " if line.startswith(("- ", "! ")) else ""
        units: list[str] = []
        before = ""
        for word in line.split():
            if units and (before in _GLUE_BEFORE or before.isdigit()) and _glued(before, word):
                units[-1] = f"{units[-1]} {word}"
            else:
                units.append(word)
            before = word
        parts = [units[0]]
        used = len(units[0])
        for unit in units[1:]:
            if used + 1 + len(unit) > width:
                out.append(" ".join(parts))
                parts = [indent + unit]
                used = len(parts[0])
            else:
                parts.append(unit)
                used += 1 + len(unit)
        out.append(" ".join(parts))
    return "\n".join(out)


# --- templates --------------------------------------------------------------------------------

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_PLACEHOLDER = re.compile(r"<!--jinja:(\d+)-->|jinjaexpr(\d+)x")
_CLASS_ATTR = re.compile(r'\sclass="[^"]*"')
_START_TAG_OR_MARK = re.compile(r"<!--jinja:(\d+)-->|jinjaexpr(\d+)x|<[A-Za-z][^>]*>")
_EXPR_MARK = re.compile(r"jinjaexpr(\d+)x")


def _mark_order(inlined: str) -> list[int]:
    """The placeholders in document order; those in one start tag sorted, since the inliner
    may reorder a tag's attributes (a bgcolor and a style both holding an expression)."""
    seen: list[int] = []
    for match in _START_TAG_OR_MARK.finditer(inlined):
        if match.group(1) or match.group(2):
            seen.append(int(match.group(1) or match.group(2)))
        else:
            seen.extend(sorted(int(n) for n in _EXPR_MARK.findall(match.group(0))))
    return seen


def inline_template_css(source: str, css: str, name: str) -> str:
    """Inline css into a Jinja HTML template's source, keeping every Jinja tag where it was."""
    tags: list[str] = []

    def protect(match: re.Match[str]) -> str:
        tag = match.group(0)
        if tag.startswith("{#"):
            return ""
        tags.append(tag)
        index = len(tags) - 1
        # Statements may sit between table rows, where only a comment stays in place;
        # expressions sit in text or attribute values, where a plain word survives.
        return f"<!--jinja:{index}-->" if tag.startswith("{%") else f"jinjaexpr{index}x"

    protected = _JINJA_TAG.sub(protect, source)
    inliner = css_inline.CSSInliner(
        extra_css=css,
        minify_css=True,
        keep_style_tags=False,
        keep_link_tags=False,
        load_remote_stylesheets=False,
    )
    try:
        inlined = inliner.inline(protected)
    except css_inline.InlineError as exc:
        raise SettingsError(f"{name}: the styles could not be inlined ({exc})") from None
    # Once inlined, class attributes only weigh on 20,000 letters (the <style> is gone).
    inlined = _CLASS_ATTR.sub(lambda m: m.group(0) if "jinjaexpr" in m.group(0) else "", inlined)
    if _mark_order(inlined) != list(range(len(tags))):
        raise SettingsError(
            f"{name}: a Jinja tag sits where HTML does not allow it (inside a tag, or text "
            "between table rows); move it between elements or into an attribute value"
        )
    return _PLACEHOLDER.sub(lambda m: tags[int(m.group(1) or m.group(2))], inlined)


class _InliningLoader(jinja2.FileSystemLoader):
    """Load templates from the folder, with the stylesheet inlined into the HTML ones."""

    def __init__(self, folder: Path) -> None:
        super().__init__(str(folder))
        self.folder = folder

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html.j2"):
            css_path = self.folder / STYLESHEET
            try:
                css = css_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(
                    f"{css_path}: cannot read the letter's stylesheet ({exc.strerror}); "
                    "restore it from the product's templates/ folder"
                ) from None
            source = inline_template_css(source, css, filename or template)
        return source, filename, uptodate


@dataclass(frozen=True)
class LetterTemplates:
    """The three compiled templates of one templates folder."""

    html: jinja2.Template
    text: jinja2.Template
    subject: jinja2.Template


def load_templates(folder: Path) -> LetterTemplates:
    """Compile the letter templates once (cached per folder and file times)."""
    stamps = []
    for name in (HTML_TEMPLATE, TEXT_TEMPLATE, SUBJECT_TEMPLATE, STYLESHEET):
        try:
            stamps.append((name, (folder / name).stat().st_mtime_ns))
        except OSError:
            raise SettingsError(
                f"{folder / name}: the letter template is missing; set ADVISING_TEMPLATES_DIR "
                "to a folder holding letter.html.j2, letter.txt.j2, subject.txt.j2 and letter.css"
            ) from None
    return _load_templates(folder.resolve(), tuple(stamps))


@lru_cache(maxsize=4)
def _load_templates(folder: Path, stamps: tuple[tuple[str, int], ...]) -> LetterTemplates:
    env = jinja2.Environment(
        loader=_InliningLoader(folder),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    try:
        return LetterTemplates(
            html=env.get_template(HTML_TEMPLATE),
            text=env.get_template(TEXT_TEMPLATE),
            subject=env.get_template(SUBJECT_TEMPLATE),
        )
    except jinja2.TemplateSyntaxError as exc:
        raise SettingsError(
            f"{exc.filename or exc.name}, line {exc.lineno}: {exc.message}; fix the template"
        ) from None


# --- context ----------------------------------------------------------------------------------


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


class _Run:
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


_SEASON_WORDS: dict[str, str] = {
    "preparing": "getting ready to apply",
    "applying": "applications",
    "interviewing": "interviews",
    "ranking": "the rank order list",
    "match week": "Match Week",
}


def _callout(run: _Run, record: StudentRecord, ev: Evaluation) -> str:
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


def _score_range(run: _Run, ev: Evaluation) -> tuple[tuple[str, str], ...]:
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


def _context(
    run: _Run, record: StudentRecord, ev: Evaluation, changes: tuple[str, ...], since: str
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
        "vo": _VOL_OPEN,
        "vc": _VOL_CLOSE,
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


def season_change(
    previous: LetterSummary | None, cycle: calendar.Cycle, phase: str
) -> tuple[str, ...]:
    """Say "a new season" when the last letter went out in another phase of the calendar."""
    if previous is None or previous.sent_on is None:
        return ()
    if calendar.phase(previous.sent_on, cycle) == phase:
        return ()
    return (f"A new season: your plan is now about {_SEASON_WORDS.get(phase, phase)}.",)


def _content_hash(to: str | None, text: str) -> str:
    """Hash what the student reads and where it goes, without the run's dates or the changes."""
    stable = _VOLATILE.sub("", text)
    digest = hashlib.sha256(f"{_HASH_VERSION}\n{to or ''}\n".encode())
    digest.update(stable.encode("utf-8"))
    return digest.hexdigest()


def without_bodies(letters: Sequence[Letter]) -> list[Letter]:
    """The letters minus their HTML and text, which their files in the letters folder hold.

    What the render process sends back: ~12 KB a letter through a pipe whose reading thread
    here waits for the GIL at every 64 KB while this process delivers, which left the render
    process idle ~0.6 s after each batch of 5,000 (with_bodies reads them back here instead).
    """
    return [replace(letter, html="", text="") for letter in letters]


def with_bodies(letters: Sequence[Letter], letters_dir: Path) -> list[Letter]:
    """Read back the HTML and text of letters that without_bodies left in letters_dir."""
    out: list[Letter] = []
    for letter in letters:
        if letter.html:
            out.append(letter)
            continue
        stem = letters_dir / student_file_stem(letter.student_id)
        html = stem.with_name(stem.name + ".html").read_bytes().decode("utf-8")
        text = stem.with_name(stem.name + ".txt").read_bytes().decode("utf-8")
        out.append(replace(letter, html=html, text=text))
    return out


def _render(template: jinja2.Template, ctx: Mapping[str, Any]) -> str:
    """Render, turning a template mistake into an error that names the file and line."""
    try:
        return template.render(ctx)
    except jinja2.TemplateError as exc:
        where = template.filename or template.name or "letter template"
        line = None
        tb = exc.__traceback__
        while tb is not None:  # Jinja maps template frames to the template's own lines
            if tb.tb_frame.f_code.co_filename == template.filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        at = f", line {line}" if line else ""
        raise SettingsError(
            f"{where}{at}: {exc.message or exc}; fix the template (every field it prints must "
            "exist: a blank is never printed instead)"
        ) from None


def _render_letter(
    run: _Run, templates: LetterTemplates, record: StudentRecord, ev: Evaluation,
    previous: LetterSummary | None,
) -> Letter:
    """Render one student's letter (HTML, text, subject) and its content hash."""
    summary = summarize(ev)
    changes = describe_changes(previous, summary) + season_change(previous, run.cycle, ev.phase)
    since = ""
    if changes and previous is not None and previous.sent_on is not None:
        since = " of " + format_day(previous.sent_on)
    ctx, html_ctx = _context(run, record, ev, changes, since)
    html = _render(templates.html, html_ctx)
    text = _render(templates.text, ctx)
    subject = " ".join(_render(templates.subject, html_ctx).split())
    if has_line_break(subject) or not subject:
        raise SettingsError(f"{SUBJECT_TEMPLATE}: the subject must be one non-empty line")
    to = (record.email or "").strip() or None
    if _VOL_OPEN in html or _VOL_CLOSE in html:  # a marked value reached the HTML template
        html = _strip_marks(html)
    if not html.isascii():
        # Character references keep the HTML ASCII: one byte per character in memory (a
        # single CJK letter in a name would double the whole letter) and 7bit in the email.
        html = html.encode("ascii", "xmlcharrefreplace").decode("ascii")
    return Letter(
        student_id=record.student_id,
        to=to,
        reply_to=ctx["_reply_to"],
        subject=subject,
        html=html,
        text=wrap_text(_strip_marks(text)),
        content_hash=_content_hash(to, text),
        changes=changes,
        summary=summary,
    )


def render_letters(
    records: Sequence[StudentRecord],
    evaluations: Mapping[str, Evaluation],
    table: SpecialtyTable,
    settings: Settings,
    previous: Mapping[str, LetterSummary],
    letters_dir: Path,
) -> list[Letter]:
    """Render a letter for every evaluated student and write <id>.html and <id>.txt.

    The files are written in place: letters_dir is a staging folder no one reads until the
    caller swaps it in whole (flows.drop_folder.publish_dir).
    """
    templates = load_templates(settings.templates_dir)
    run = _Run(table, settings)
    letters_dir.mkdir(parents=True, exist_ok=True)
    letters: list[Letter] = []
    # Written as they are rendered, in this thread: a writer thread measured slower (it waits
    # for the GIL after every system call while rendering holds it).
    for record in records:
        ev = evaluations.get(record.student_id)
        if ev is None:
            continue  # held back by a problem: no letter
        try:
            letter = _render_letter(run, templates, record, ev, previous.get(record.student_id))
        except Exception as exc:
            # Which student: run_record.record_crash names the ID (never the row's values).
            exc.student_id = record.student_id  # type: ignore[attr-defined]
            raise
        stem = student_file_stem(record.student_id)
        for path, data in (
            (letters_dir / f"{stem}.html", letter.html.encode("utf-8")),
            (letters_dir / f"{stem}.txt", letter.text.encode("utf-8")),
        ):
            write_file(path, data)
        letters.append(letter)
    log.info("Rendered %d letters into %s", len(letters), letters_dir)
    return letters
