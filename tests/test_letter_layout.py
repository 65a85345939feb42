"""Letters that survive Outlook desktop, paper and screen readers (issue #19).

Outlook desktop renders with Word: it ignores max-width and margin: auto, drops padding on
divs and paragraphs and may drop backgrounds, as printing does. So the card is a 600-wide
table, the verdict a heading in a cell whose ink reads on its tint and on white, the bars are
cells sized by attributes and hidden from screen readers (their text says the same), numbers
agree with their nouns, and the plain-text part is wrapped for a mail client's window.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows import intake
from flows.intake.demo import write_demo_roster
from flows.letters import Letter
from flows.letters import render as letters_render
from flows.letters.render import TEXT_WIDTH, wrap_text
from residency_rules.specialties import SpecialtyTable
from tests.support.calendar_letters import RUN_DATES, TABLE, kinds, make_settings, render, student
from tests.support.letters import CASES, check_html, flat, make_evaluation, render_one

LABELS = {
    5: "Very competitive",
    4: "Competitive for many programs",
    3: "Matchable, with explanation",
    2: "Reach: apply broadly, with explanation",
    1: "At risk: plan a parallel specialty",
}


# --- a small DOM: each element with its parent, attributes, style and text --------------------


@dataclass(eq=False)  # compared by identity: parents and children refer to each other
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def style(self) -> dict[str, str]:
        """The inline style as a property -> value map."""
        out: dict[str, str] = {}
        for decl in (self.attrs.get("style") or "").split(";"):
            if ":" in decl:
                name, value = decl.split(":", 1)
                out[name.strip().lower()] = value.strip()
        return out

    def all_text(self) -> str:
        return " ".join([*self.text, *(c.all_text() for c in self.children)])

    def walk(self) -> list[Node]:
        return [self, *(n for c in self.children for n in c.walk())]

    def ancestors(self) -> list[Node]:
        found, node = [], self.parent
        while node is not None:
            found.append(node)
            node = node.parent
        return found


class _Builder(HTMLParser):
    VOID = frozenset(("br", "meta", "hr", "img", "link", "wbr"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.current.parent is not None:
            self.current = self.current.parent

    def handle_data(self, data: str) -> None:
        self.current.text.append(data)


def dom(html: str) -> Node:
    check_html(html)  # balanced, nothing active: the existing guarantees first
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def contrast(one: str, two: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(one), luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def level_letter(tmp_path: Path, table: SpecialtyTable, level: int) -> Letter:
    return render_one(
        tmp_path / str(level), table,
        evaluation=make_evaluation(level=level, label=LABELS[level]),
    )


# --- the card ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_card_is_a_centred_presentation_table_600_wide_with_padding_on_cells(
    case: str, tmp_path: Path, table: SpecialtyTable
) -> None:
    """One table 600 wide (Outlook), 100% up to 600 px elsewhere, centred; no div; padding
    only on cells (and the bullet indent of lists)."""
    record, evaluation, previous = CASES[case]
    letter = render_one(tmp_path, table, record, evaluation, previous)
    nodes = dom(letter.html).walk()
    cards = [n for n in nodes if n.attrs.get("width") == "600"]
    assert len(cards) == 1
    card = cards[0]
    assert card.tag == "table" and card.attrs["role"] == "presentation"
    assert card.attrs["align"] == "center"
    assert card.style()["width"] == "100%" and card.style()["max-width"] == "600px"
    outer = card.parent
    assert outer is not None and outer.tag == "td" and outer.attrs["align"] == "center"
    # Outlook's Word engine reads the [if mso] table, which holds the card at 600 even if it
    # took the card's CSS width of 100%.
    assert '<!--[if mso]><table role="presentation" width="600" align="center"' in letter.html
    assert all(n.tag != "div" for n in nodes)
    for node in nodes:
        padding = [v for k, v in node.style().items() if k.startswith("padding")]
        if any(re.search(r"[1-9]", v) for v in padding):
            assert node.tag in ("td", "ul"), (node.tag, node.attrs)
    for table_node in (n for n in nodes if n.tag == "table"):
        assert table_node.attrs.get("role") == "presentation"
        assert table_node.attrs.get("cellpadding") == "0"


# --- the verdict ------------------------------------------------------------------------------


@pytest.mark.parametrize("level", sorted(LABELS))
def test_verdict_is_an_h1_in_a_cell_with_bgcolor_readable_with_backgrounds_dropped(
    level: int, tmp_path: Path, table: SpecialtyTable
) -> None:
    """The outlook is the letter's one h1, in a td whose tint is both bgcolor and style; its
    ink has WCAG AA contrast (4.5:1) on the tint and on white (Outlook, paper), and so has
    the cell's other text; the level's colour stays as a border."""
    letter = level_letter(tmp_path, table, level)
    nodes = dom(letter.html).walk()
    headings = [n for n in nodes if n.tag == "h1"]
    assert len(headings) == 1
    h1 = headings[0]
    assert " ".join(h1.all_text().split()) == LABELS[level]
    cell = h1.parent
    assert cell is not None and cell.tag == "td"
    tint = cell.attrs["bgcolor"]
    assert cell.style()["background-color"] == tint
    ink = h1.style()["color"]
    body_ink = cell.style()["color"]
    for colour in (ink, body_ink):
        assert contrast(colour, tint) >= 4.5, (colour, tint)
        assert contrast(colour, "#ffffff") >= 4.5, colour
    border = cell.style()["border-left"].split()[-1]
    assert contrast(border, "#ffffff") >= 3.0  # a non-text mark (WCAG 1.4.11)
    assert f"Level {level} of 5" in " ".join(cell.all_text().split())
    # Nothing white is left to vanish on white paper.
    assert all(n.style().get("color", "").lower() not in ("#fff", "#ffffff") for n in nodes)


def test_verdict_of_a_pending_score_is_a_heading_without_a_level(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    record, evaluation, _ = CASES["pending_late"]
    letter = render_one(tmp_path, table, record, evaluation)
    nodes = dom(letter.html).walk()
    (h1,) = [n for n in nodes if n.tag == "h1"]
    assert h1.all_text().strip() == "Pending Step 2 CK"
    assert h1.parent is not None and "bgcolor" in h1.parent.attrs
    assert "Level" not in h1.parent.all_text()


# --- the bars ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["strong_em", "pending_late", "at_risk_parallel"])
def test_bars_are_cells_with_width_attributes_hidden_from_screen_readers(
    case: str, tmp_path: Path, table: SpecialtyTable
) -> None:
    """Every bar and gap is a td with a width attribute (its CSS width the same) and
    aria-hidden; the cells of one bar add up to 100%; each bar's label and value, and the
    program mix, are in the text beside it."""
    record, evaluation, previous = CASES[case]
    # In July (applying) the letter shows the program mix as well as the chart.
    evaluation = dataclasses.replace(evaluation, phase="applying")
    letter = render_one(tmp_path, table, record, evaluation, previous)
    root = dom(letter.html)
    nodes = root.walk()
    cells = [n for n in nodes if n.tag == "td" and "height" in n.attrs]
    assert len(cells) >= 4 + 3  # four chart rows and the three parts of the program list
    rows: dict[int, int] = {}
    for cell in cells:
        assert cell.attrs["aria-hidden"] == "true"
        width = cell.attrs["width"]
        assert re.fullmatch(r"\d{1,3}%", width), width
        assert cell.style()["width"] == width
        assert cell.all_text().strip() == ""  # nothing a reader would miss
        if "bgcolor" in cell.attrs:
            assert cell.style()["background-color"] == cell.attrs["bgcolor"]
        row = cell.parent
        assert row is not None
        rows[id(row)] = rows.get(id(row), 0) + int(width[:-1])
    assert set(rows.values()) == {100}
    assert all(n.attrs.get("aria-hidden") != "true" for n in nodes if n not in cells)
    # Each bar's row follows a row of two cells that say it: the label and the value.
    tracks = [n for n in nodes if n.tag == "tr" and any(
        c.tag == "td" and c.attrs.get("colspan") == "2" for c in n.children)]
    assert len(tracks) >= 3
    for track in tracks:
        assert track.parent is not None
        siblings = track.parent.children
        label_row = siblings[siblings.index(track) - 1]
        said = [" ".join(c.all_text().split()) for c in label_row.children if c.tag == "td"]
        assert len(said) == 2 and all(said), said
        assert re.fullmatch(r"\d{3}(-\d{3})?", said[1]), said
    plain = check_html(letter.html).plain
    assert re.search(r"Of every 20 programs: \d+ reach ?, \d+ solid ?, \d+ safety ?\.", plain)


# --- plurals ----------------------------------------------------------------------------------

# "1 points", "one failed attempts", "1 interview invitations"; and "3 point", "2 program".
_WRONG_PLURAL = re.compile(
    r"(?<!Step )\b(?:1|one) (?:[a-z]+ )?[a-z]+s\b"
    r"|\b(?:[02-9]|\d\d+) (?:point|program|attempt|invitation|clerkship|failure)\b(?!s)"
)


def test_the_plural_check_catches_what_it_is_for() -> None:
    for wrong in ("is 1 points under", "after one failed attempts", "With 1 interview "
                  "invitations so far", "is 3 point under", "of 20 program."):
        assert _WRONG_PLURAL.search(wrong), wrong
    for right in ("is 1 point under", "after one failed attempt", "Step 1 scores", "1 reach, 5 "
                  "solid", "Level 1 of 5", "With 2 interview invitations"):
        assert not _WRONG_PLURAL.search(right), right


@pytest.mark.slow
def test_numbers_agree_with_their_nouns_across_a_varied_roster(tmp_path: Path) -> None:
    """The demo roster (a real .xlsx read back) and students at the edges (one point under
    the solid mark, one interview invitation, one failed attempt), on each run date: no
    "1 points" in the text or the HTML, and the singular where it is due."""
    path = write_demo_roster(tmp_path / "demo.xlsx", students=200, seed=19)
    edges = [
        student("ONE_POINT", step2_score=239),
        student("ONE_INVITE", specialty="General Surgery", step2_score=240, interviews=1),
        student("ONE_FAILURE", step1_attempts=2, step2_score=244),
    ]
    singular = {"ONE_POINT": "is 1 point under",
                "ONE_INVITE": "With 1 interview invitation so far",
                "ONE_FAILURE": "after failing it once."}
    found: set[str] = set()
    for today in (*RUN_DATES, date(2026, 11, 29)):
        roster = intake.ingest(path, make_settings(today), TABLE)
        records = [r for r in roster.records if TABLE.resolve(r.specialty)] + kinds() + edges
        letters, _ = render(records, today, tmp_path / today.isoformat())
        assert len(letters) > 150
        for letter in letters:
            for text in (flat(letter.text), check_html(letter.html).plain):
                wrong = _WRONG_PLURAL.search(text)
                assert wrong is None, (today, letter.student_id, wrong and wrong.group(0))
            if singular.get(letter.student_id, "\0") in flat(letter.text):
                found.add(letter.student_id)
    assert found == set(singular)  # each edge case met its singular at least once


# --- the plain-text part ----------------------------------------------------------------------


def _check_lines(text: str, width: int = TEXT_WIDTH) -> None:
    for line in text.splitlines():
        assert len(line) <= width or len(line.split()) == 1, line


@pytest.mark.parametrize("case", sorted(CASES))
def test_plain_text_lines_fit_a_mail_window(
    case: str, tmp_path: Path, table: SpecialtyTable
) -> None:
    """Every line at most 72 characters (under 78, RFC 5322) unless it is one unbreakable
    word; list items hang under their text; the address stays whole."""
    record, evaluation, previous = CASES[case]
    letter = render_one(tmp_path, table, record, evaluation, previous)
    _check_lines(letter.text)
    assert max(map(len, letter.text.splitlines())) <= 78
    lines = letter.text.splitlines()
    for before, line in zip(lines, lines[1:], strict=False):
        if line.startswith(" "):
            assert line.startswith("  ") and not line.startswith("   ")
            assert before.startswith(("- ", "! ", "  "))
    if letter.reply_to:
        assert any(letter.reply_to in line for line in lines)


@pytest.mark.slow
def test_plain_text_of_the_demo_roster_fits_on_every_run_date(tmp_path: Path) -> None:
    path = write_demo_roster(tmp_path / "demo.xlsx", students=120, seed=7)
    for today in RUN_DATES:
        roster = intake.ingest(path, make_settings(today), TABLE)
        records = [r for r in roster.records if TABLE.resolve(r.specialty)]
        letters, _ = render(records, today, tmp_path / today.isoformat())
        for letter in letters:
            _check_lines(letter.text)


def test_wrapping_keeps_addresses_links_ranges_and_dates_whole() -> None:
    url = "https://www.nrmp.org/match-data/2026/charting-outcomes-very-long-path/table-5.pdf"
    line = (
        f"- Write to someone.with.a.long.address@medical-school.example.edu by Thu 26 Nov, or "
        f"read {url} before 23 September 2026; the middle half scored 245-262 on Step 2 CK."
    )
    wrapped = wrap_text(line)
    lines = wrapped.split("\n")
    assert len(lines) > 2
    assert flat(wrapped) == flat(line)
    assert any(url in x for x in lines)
    assert any("someone.with.a.long.address@medical-school.example.edu" in x for x in lines)
    for whole in ("Thu 26 Nov", "23 September 2026", "245-262", "Step 2 CK"):
        assert any(whole in x for x in lines), whole
    assert all(x.startswith("  ") for x in lines[1:])
    _check_lines(wrapped)
    assert wrap_text("short line\n\n- short item\n") == "short line\n\n- short item\n"


@given(st.lists(st.text("abcdefghij.-@:/", min_size=1, max_size=90), min_size=1, max_size=40),
       st.sampled_from(["", "- ", "! "]))
def test_wrapping_moves_only_spaces(words: list[str], lead: str) -> None:
    """Any words: the same words in the same order, lines within the width unless a word is
    longer, and a list item's lines hang under its text."""
    text = lead + " ".join(words)
    wrapped = wrap_text(text)
    assert wrapped.split() == text.split()
    _check_lines(wrapped)
    if lead:
        assert all(x.startswith("  ") for x in wrapped.split("\n")[1:])


def test_content_hash_is_taken_before_wrapping(
    tmp_path: Path, table: SpecialtyTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How lines fall is not content: the same letter unwrapped has the same hash (no letter
    is sent again because of this change, or because a date's length moved a break)."""
    record, evaluation, _ = CASES["pending_late"]
    wrapped = render_one(tmp_path / "a", table, record, evaluation)
    monkeypatch.setattr(letters_render, "wrap_text", lambda text: text)
    unwrapped = render_one(tmp_path / "b", table, record, evaluation)
    assert wrapped.text != unwrapped.text and flat(wrapped.text) == flat(unwrapped.text)
    assert max(map(len, unwrapped.text.splitlines())) > TEXT_WIDTH
    assert wrapped.content_hash == unwrapped.content_hash
    rescored = dataclasses.replace(evaluation, score_bands=evaluation.score_bands[1:])
    assert render_one(tmp_path / "c", table, record, rescored).content_hash != (
        wrapped.content_hash
    )  # content still counts
