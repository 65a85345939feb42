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
from flows.settings import Settings
from residency_rules.errors import SettingsError
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
class LetterSummary:
    """The outlook a letter told the student, kept in the ledger to say what changed next time."""

    level: int
    label: str
    band: str
    score: int | None
    specialty: str
    sent_on: date | None = None


@dataclass(frozen=True)
class Letter:
    """One student's rendered letter, ready for the outbox or the relay."""

    student_id: str
    to: str | None
    reply_to: str | None
    subject: str
    html: str
    text: str
    content_hash: str
    changes: tuple[str, ...]
    # What this letter says about the outlook; the ledger stores it when the letter goes out.
    summary: LetterSummary | None = None


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
        lines.append(
            f'Your outlook moved {way} from "{previous.label}" (level {previous.level}) '
            f'to "{current.label}" (level {current.level}).'
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


# --- templates --------------------------------------------------------------------------------

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_PLACEHOLDER = re.compile(r"<!--jinja:(\d+)-->|jinjaexpr(\d+)x")
_CLASS_ATTR = re.compile(r'\sclass="[^"]*"')


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
    seen = [int(a or b) for a, b in _PLACEHOLDER.findall(inlined)]
    if seen != list(range(len(tags))):
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
    if score is None:
        note = (
            f"Aim for {ev.solid}-{ev.excellent}: {ev.solid} is solid and {ev.excellent} is "
            f"excellent for {ev.specialty}."
        )
    elif score >= ev.excellent:
        note = f"Your {score} is at or above the excellent mark ({ev.excellent})."
    elif score >= ev.solid:
        note = (
            f"Your {score} is above the solid mark ({ev.solid}), "
            f"{ev.excellent - score} under excellent ({ev.excellent})."
        )
    else:
        note = f"Your {score} is {ev.solid - score} points under the solid mark ({ev.solid})."
    return _Chart(tuple(rows), note + nrmp_note, lo, hi, source)


def _standing(ev: Evaluation) -> str:
    tier = _TIER_WORDS.get(ev.tier, "a specialty")
    score = ev.step2_score
    if score is None:
        return (
            f"We do not have your Step 2 CK score yet. {ev.specialty} is {tier}: "
            f"aim for {ev.solid}-{ev.excellent}."
        )
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
        self.review_start = format_day(settings.review_start)
        self.score_deadline = format_day(settings.review_start - timedelta(weeks=4))
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
        """Give every advice item a concrete day within the next four weeks, in date order."""
        items: list[tuple[int, int, str, str]] = []
        for order, advice in enumerate(ev.advice):
            day, kind = _PLAN_DAY.get(advice.key.split(".", 1)[0], (_LAST_DAY, "by"))
            items.append((day, order, kind, advice.text))
        keys = {a.key.split(".", 1)[0] for a in ev.advice}
        if (ev.mix.meet_advisor or not items) and not keys & {"advisor", "meeting"}:
            who = f"your advisor, {signer}," if advisor else f"an advisor at the {signer}"
            items.append((14, -1, "by", f"Meet {who} to go through this plan together."))
        items.sort()
        return items

    def plan_items(
        self, items: list[tuple[int, int, str, str]], marked: bool
    ) -> tuple[_PlanItem, ...]:
        """Return the plan with its dates, marked volatile or not."""
        return tuple(_PlanItem(self.when[kind, day, marked], text) for day, _, kind, text in items)


def _context(
    run: _Run, record: StudentRecord, ev: Evaluation, changes: tuple[str, ...], since: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the text template's context (run dates marked volatile) and the HTML's."""
    settings = run.settings
    # The advisor when their address is usable, else the office's (a configured setting).
    reply_to = run.address(record.advisor_email) or run.office_reply_to
    advisor = (record.advisor or "").strip()
    signer = advisor or settings.office_name
    callout = ""
    if ev.timing_late:
        when = (
            f"Your Step 2 CK date ({format_day(record.step2_date)}) is too late"
            if record.step2_date
            else "Your Step 2 CK is not scheduled in time"
        )
        callout = (
            f"{when}: the score would not be in your application when programs start reading "
            f"on {run.review_start}. Take the exam by {run.score_deadline} so the score posts "
            "in time."
        )
    reasons = [
        r.text for r in ev.reasons if not (callout and r.rule.split(".", 1)[0] == "timing")
    ]
    if record.conditional_pass and not any("conditional" in r.rule for r in ev.reasons):
        for clerkship in record.conditional_pass:
            reasons.append(
                f"Your {clerkship} clerkship grade was a Conditional Pass; "
                "it counts as a Pass here."
            )
    next_levels = tuple(
        _Step(n.level, n.label, n.score) for n in sorted(ev.next_levels, key=lambda n: n.level)
    )
    next_note = ""
    if not next_levels:
        if ev.step2_score is None:
            next_note = f"Aim for {ev.solid}-{ev.excellent}, the target range above."
        elif ev.level >= 5:
            next_note = "You are at the top level. Keep the rest of your application as strong."
        else:
            next_note = "A higher Step 2 CK alone would not raise your level; see why below."
    parallel: tuple[_Parallel, ...] = ()
    if ev.level <= 2 or ev.mix.parallel_plan:
        parallel = tuple(
            _Parallel(name, spec.nrmp_median if spec else None)
            for name in ev.parallel
            for spec in (run.spec(name),)
        )
    plan = run.plan(ev, signer, bool(advisor))
    text_ctx = {
        "school_name": settings.school_name,
        "office_name": settings.office_name,
        "name": record.name,
        "specialty": ev.specialty,
        "level": ev.level,
        "label": ev.label,
        "pending": ev.step2_score is None,
        "standing": _standing(ev),
        "callout": callout,
        "changes": changes,
        "changes_since": since,
        "vo": _VOL_OPEN,
        "vc": _VOL_CLOSE,
        "chart": run.chart(ev),
        "next_levels": next_levels,
        "next_note": next_note,
        "reasons": reasons,
        "impact_line": "" if any(r.rule == "impact" for r in ev.reasons) else (
            f"How much your Step 2 CK can help here: about {ev.impact} out of 100. "
            "A rule of thumb, not science."
        ),
        "missing": ev.missing_package,
        "plan": run.plan_items(plan, marked=True),
        "mix": _mix(ev),
        "parallel": parallel,
        "parallel_needed": ev.level <= 2 or ev.mix.parallel_plan,
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
        "plan": run.plan_items(plan, marked=False),
        "vo": "",
        "vc": "",
    }
    return text_ctx, html_ctx


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
    changes = describe_changes(previous, summary)
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
        text=_strip_marks(text),
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
        letter = _render_letter(run, templates, record, ev, previous.get(record.student_id))
        stem = student_file_stem(record.student_id)
        for path, data in (
            (letters_dir / f"{stem}.html", letter.html.encode("utf-8")),
            (letters_dir / f"{stem}.txt", letter.text.encode("utf-8")),
        ):
            write_file(path, data)
        letters.append(letter)
    log.info("Rendered %d letters into %s", len(letters), letters_dir)
    return letters
