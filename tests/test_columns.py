"""What was read from the office's columns (#25): renamed, near-miss and unreadable headers.

Fast: real .xlsx files written with openpyxl and read by intake (no GX, no flow run). Every
header either feeds its field, or is named as not read (with a warning when it looks like a
field), and a column missed never changes a student's outlook: unknown is not zero.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import openpyxl
import pytest

from flows.cli import main
from flows.intake.columns import columns_line, columns_read, format_columns
from flows.intake.read import ingest
from flows.settings import Settings, load_column_map
from residency_rules.rules import evaluate
from residency_rules.specialties import load_default_table

TABLE = load_default_table()
TODAY = date(2026, 7, 15)
BASE = ["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK Score", "Specialty",
        "IM Clerkship", "Surgery Clerkship", "Pediatrics Clerkship", "LOR Strength"]
ROW = ["0100001", "Ana Lima", "ana@school.edu", "Pass", 262, "Dermatology", "Honors",
       "Honors", "High Pass", "Strong"]

# Research headed as offices head it: the product's names, synonyms, near misses, and headers
# nobody could map (they must be named as not read, and change no outlook).
RESEARCH_HEADERS = [
    "Research Items", "Pubs/Posters", "Pubs & Posters", "Publications & Posters",
    "Publications", "# of Publications", "Research (n)", "Abstracts & Publications",
    "Posters", "Presentations", "Abstracts", "Papers", "Pubs.", "Research Count (#)",
    "Publicatons", "Reserach Items", "Scholarly Work", "Column1", "???", "Misc",
]


def roster_file(path: Path, research_header: str, value: object = 6) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Roster"
    ws.append([*BASE, research_header, "Notes"])
    ws.append([*ROW, value, "see file"])
    wb.save(path)
    return path


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, today=TODAY, **values)  # type: ignore[call-arg]


def level_with(research: int | None) -> int:
    from tests.support.records import student

    record = student(specialty="Dermatology", step2_score=262, research_count=research,
                     letters="strong", clerkships=(("Internal Medicine", "H"), ("Surgery", "H"),
                                                   ("Pediatrics", "HP")))
    return evaluate(record, TABLE, today=TODAY).level


@pytest.mark.parametrize("header", RESEARCH_HEADERS)
def test_every_research_header_is_read_or_named_and_never_changes_the_outlook_silently(
    header: str, tmp_path: Path,
) -> None:
    roster = ingest(roster_file(tmp_path / "r.xlsx", header), settings(), TABLE)
    account = columns_read(roster)
    (record,) = roster.records
    level = evaluate(record, TABLE, today=TODAY).level
    if "research_count" in roster.column_index:
        assert record.research_count == 6
        assert any(c.field == "Research Items" and c.header == header for c in account.read)
        assert level == level_with(6)
        return
    # Not read: the office is told which column, and the field's absence and its effect.
    assert (_letter_of(roster, header), header) in account.unread, account
    assert ("Research Items", "research is not known: letters do not mention it") in \
        account.absent
    assert f'"{header}"' in format_columns(account)
    # Unknown is not zero: the outlook is the one research would give, not a missing piece's.
    assert record.research_count is None and level == level_with(6) > level_with(0)
    warned = [p for p in roster.problems if p.column == header]
    looks_like_research = any(w in header.casefold() for w in ("pub", "poster", "abstract",
                                                              "presentation", "paper"))
    if looks_like_research:
        assert warned and "Research Items" in warned[0].what + warned[0].fix, roster.problems


def _letter_of(roster: object, header: str) -> str:
    from flows.ooxml import column_letter

    unread = roster.unread  # type: ignore[attr-defined]
    (col,) = [c for c, h in unread.items() if h == header]
    return column_letter(col)


def test_the_column_map_reads_the_office_s_own_header(tmp_path: Path) -> None:
    """ADVISING_COLUMN_MAP: field = "Our header" feeds the field, and says it came from the map."""
    path = roster_file(tmp_path / "r.xlsx", "Scholarly Work")
    mapping = tmp_path / "columns.toml"
    mapping.write_text('research_count = "Scholarly Work"\n', encoding="utf-8")
    roster = ingest(path, settings(column_map=mapping), TABLE)
    (record,) = roster.records
    assert record.research_count == 6
    (read,) = [c for c in columns_read(roster).read if c.field == "Research Items"]
    assert read.mapped and read.header == "Scholarly Work" and read.letter == "K"
    assert "(your column map)" in format_columns(columns_read(roster))
    assert "1 not read" in columns_line(columns_read(roster))  # Notes


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('reserch_count = "Pubs"\n', "'reserch_count' is not a roster field; did you mean "
                                    "research_count?"),
        ("research_count = 3\n", "research_count needs your header in quotes"),
        ('research_count = "Pubs"\ninterviews = "pubs"\n', "is given for two fields"),
        ("research_count = \n", "not a TOML file"),
    ],
)
def test_a_wrong_column_map_stops_every_command_at_start(
    text: str, said: str, workdir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mapping = workdir / "columns.toml"
    mapping.write_text(text, encoding="utf-8")
    roster = roster_file(workdir / "r.xlsx", "Research Items")
    monkeypatch.setenv("ADVISING_COLUMN_MAP", str(mapping))
    assert main(["check", str(roster)]) == 2
    err = capsys.readouterr().err
    assert "ADVISING_COLUMN_MAP" in err and said in err, err
    assert "Traceback" not in err


def test_labels_are_accepted_as_field_names(tmp_path: Path) -> None:
    mapping = tmp_path / "columns.toml"
    mapping.write_text('"Research Items" = "Scholarly Work"\n', encoding="utf-8")
    assert load_column_map(settings(column_map=mapping)) == {"research_count": "Scholarly Work"}


def test_check_prints_what_was_read(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roster = roster_file(workdir / "r.xlsx", "Pubs/Posters")
    main(["check", str(roster)])
    out = capsys.readouterr().out
    assert 'Research Items' in out and '<- column K "Pubs/Posters"' in out, out
    assert 'column L "Notes"' in out
    assert "Interviews: interview invitations are not known" in out


def test_the_corpus_roster_in_the_office_s_own_words_is_read_whole() -> None:
    """tests/data/corpus/office_own_headers.xlsx: every field through an alias; the office's
    own two columns named as not read (the corpus test holds its outlooks to the plain file's)."""
    path = Path(__file__).parent / "data" / "corpus" / "office_own_headers.xlsx"
    account = columns_read(ingest(path, settings(), TABLE))
    assert [(c.field, c.header) for c in account.read] == [
        ("Student ID", "AAMC ID"), ("Name", "Student Full Name"), ("Email", "E-mail Address"),
        ("Step 1 Result", "USMLE Step 1"), ("Step 2 CK Score", "USMLE Step 2 CK Score"),
        ("Step 2 CK Date", "Step 2 CK Test Date"), ("Specialty", "Intended Specialty"),
        ("Advisor", "Faculty Advisor"),
    ]
    assert account.unread == (("I", "Comments"), ("J", "Scholarly Work"), ("K", "Photo on file"))
