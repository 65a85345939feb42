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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import css_inline
import jinja2

from flows.errors import AdvisingError, SettingsError, StudentFailed
from flows.files import student_file_stem, write_file
from flows.letters.changes import describe_changes, season_change, summarize
from flows.letters.context import (
    MONTHS,
    VOL_CLOSE,
    VOL_OPEN,
    VOLATILE,
    WEEKDAYS,
    Run,
    format_day,
    letter_context,
    strip_marks,
)
from flows.letters.hold import held_after_match
from flows.letters.model import Letter, LetterSummary
from flows.settings import Settings
from residency_rules.records import Evaluation, StudentRecord
from residency_rules.schema import has_line_break

if TYPE_CHECKING:
    from residency_rules.specialties import SpecialtyTable

log = logging.getLogger(__name__)

HTML_TEMPLATE = "letter.html.j2"
TEXT_TEMPLATE = "letter.txt.j2"
SUBJECT_TEMPLATE = "subject.txt.j2"
STYLESHEET = "letter.css"
# Raised when the hash must change for every letter (a new way of hashing, not a new content).
_HASH_VERSION = "letter-v1"

TEXT_WIDTH = 72
# Words never split from the word before them: a date ("23 September 2026", "Thu 26 Nov") and
# an exam's name ("Step 2 CK"). Set lookups per word: a regex over every line cost ~20 us a line.
_MONTH_WORDS = frozenset((*MONTHS, *(m[:3] for m in MONTHS)))
_WEEKDAY_WORDS = frozenset(WEEKDAYS)
_GLUE_BEFORE = _MONTH_WORDS | _WEEKDAY_WORDS | {"Step"}  # and numbers: a quick first look


def _glued(before: str, word: str) -> bool:
    if before == "2" and word.startswith("CK"):  # Step 2 CK
        return True
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



def _content_hash(to: str | None, text: str) -> str:
    """Hash what the student reads and where it goes, without the run's dates or the changes."""
    stable = VOLATILE.sub("", text)
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
    run: Run, templates: LetterTemplates, record: StudentRecord, ev: Evaluation,
    previous: LetterSummary | None,
) -> Letter:
    """Render one student's letter (HTML, text, subject) and its content hash."""
    summary = summarize(ev)
    season = season_change(previous, run.cycle, ev.phase, ev.match_system)
    # After the Match the letter is about the result: the ended cycle's outlook is not news.
    changes = season if ev.phase == "after match" else describe_changes(previous, summary) + season
    since = ""
    if changes and previous is not None and previous.sent_on is not None:
        since = " of " + format_day(previous.sent_on)
    ctx, html_ctx = letter_context(run, record, ev, changes, since)
    html = _render(templates.html, html_ctx)
    text = _render(templates.text, ctx)
    subject = " ".join(_render(templates.subject, html_ctx).split())
    if has_line_break(subject) or not subject:
        raise SettingsError(f"{SUBJECT_TEMPLATE}: the subject must be one non-empty line")
    to = (record.email or "").strip() or None
    if VOL_OPEN in html or VOL_CLOSE in html:  # a marked value reached the HTML template
        html = strip_marks(html)
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
        text=wrap_text(strip_marks(text)),
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
    run = Run(table, settings)
    letters_dir.mkdir(parents=True, exist_ok=True)
    letters: list[Letter] = []
    # Written as they are rendered, in this thread: a writer thread measured slower (it waits
    # for the GIL after every system call while rendering holds it).
    for record in records:
        ev = evaluations.get(record.student_id)
        if ev is None or held_after_match(ev, settings):
            continue  # held back by a problem, or after the Match until the result is in
        try:
            letter = _render_letter(run, templates, record, ev, previous.get(record.student_id))
        except AdvisingError:
            raise  # the product's own words (a template that cannot render)
        except Exception as exc:
            # Which student: flows.crash.record_crash names the ID (never the row's values).
            raise StudentFailed(record.student_id, exc) from exc
        stem = student_file_stem(record.student_id)
        for path, data in (
            (letters_dir / f"{stem}.html", letter.html.encode("utf-8")),
            (letters_dir / f"{stem}.txt", letter.text.encode("utf-8")),
        ):
            write_file(path, data)
        letters.append(letter)
    log.info("Rendered %d letters into %s", len(letters), letters_dir)
    return letters
