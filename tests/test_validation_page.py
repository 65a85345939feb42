"""The validation page: real GX over a real roster, a page that loads nothing from outside."""

from __future__ import annotations

import re
import stat
from html.parser import HTMLParser
from pathlib import Path

from openpyxl import Workbook

from flows.intake.read import ingest
from flows.intake.validation import validate
from flows.settings import Settings
from residency_rules.specialties import SpecialtyTable

DATA = Path(__file__).parent / "data"
HOSTILE = '<img src="https://tracker.example/x.png">Surgery & "Co"'
URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background"}


class _Page(HTMLParser):
    """Collect every tag, every URL-carrying attribute, style text and the text shown."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in URL_ATTRS and value is not None:
                self.urls.append(value)
            if name == "style" and value:
                self.styles.append(value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        (self.styles if self._in_style else self.text).append(data)


def _hostile_roster(path: Path) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Roster"
    ws.append(["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK Score", "Specialty"])
    ws.append(["V2", "Ana Lima", "ana@school.edu", "Pass", 250, "Internal Medicine"])
    ws.append(["V3", "Bo Chen", "bo@school.edu", "Pass", 320, HOSTILE])
    wb.save(path)
    return path


def _page(docs: Path) -> tuple[str, _Page]:
    text = (docs / "index.html").read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    parser.close()
    return text, parser


def test_the_page_loads_nothing_from_outside_and_escapes_values(
    tmp_path: Path, settings: Settings, table: SpecialtyTable
) -> None:
    """No src/href to http(s) or //, no @import or url(), no script; the value shown escaped."""
    docs = tmp_path / "output" / "hostile" / "validation"
    roster = ingest(_hostile_roster(tmp_path / "hostile.xlsx"), settings, table)
    checked = validate(roster, settings, table, docs)
    assert [p.row for p in checked.problems] == [3, 3]  # the score and the specialty
    raw, page = _page(docs)
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert page.urls == []  # no src, href or any other fetching attribute at all
    assert not re.search(r"(https?:)?//", "".join(page.styles))
    assert "@import" not in raw and "url(" not in raw
    assert re.search(r"default-src 'none'", raw)  # the browser may fetch nothing either
    shown = "".join(page.text)
    assert HOSTILE in shown  # the office sees the value as typed ...
    assert "&lt;img src=&quot;https://tracker.example/x.png&quot;&gt;Surgery &amp; " in raw
    assert "320" in shown and "Step 2 CK Score" in shown  # ... and the header as written
    assert stat.S_IMODE((docs / "index.html").stat().st_mode) == 0o640


def test_the_page_lists_every_check_and_each_problem_once(
    tmp_path: Path, settings: Settings, table: SpecialtyTable
) -> None:
    """The summary counts GX's checks; each problem is one row with its fix; every check a row."""
    docs = tmp_path / "validation"
    checked = validate(ingest(DATA / "out_of_range.xlsx", settings, table), settings, table, docs)
    raw, page = _page(docs)
    assert "<title>Validation of out_of_range.xlsx</title>" in raw
    problems = raw.split("<h2>Problems</h2>")[1].split("<h2>Every check</h2>")[0]
    checks = raw.split("<h2>Every check</h2>")[1]
    assert problems.count("<tr><td") == len(checked.problems) == 9
    assert "Enter Strong, Average or Weak" not in problems  # only the failures are listed
    assert 'class="failed"' in checks and 'class="passed"' in checks
    assert checks.count("<tr class=") == 22  # every expectation of the suite, passed or not
    assert "row 3: 320" in checks and "row 11: 1900-09-01" in checks
    assert "9 problems found: 8 rows held" in "".join(page.text)


def test_a_clean_roster_says_so(tmp_path: Path, settings: Settings, table: SpecialtyTable
                                ) -> None:
    docs = tmp_path / "validation"
    validate(ingest(DATA / "text_numbers.xlsx", settings, table), settings, table, docs)
    raw, page = _page(docs)
    assert "No problems found" in "".join(page.text)
    assert "<h2>Problems</h2>" not in raw and 'class="failed"' not in raw
