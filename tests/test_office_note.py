"""The morning note to the office: one short email after a run with news, IDs and counts only."""

from __future__ import annotations

import email
import email.policy
from datetime import date
from pathlib import Path

import openpyxl
import pytest

from flows.delivery.office_note import RosterNews, compose_note
from flows.errors import SettingsError
from flows.intake.demo import write_demo_roster
from flows.settings import Settings
from tests.support.smtp_sink import running_sink

OFFICE = "advising-office@example.edu"


def _run() -> list[dict]:
    from flows.pipeline import advising_run

    return advising_run()


def _drop(workdir: Path, name: str = "class-2027.xlsx") -> tuple[Path, set[str], str]:
    """Drop a demo roster with one unreadable row; return it, its student names and the
    held row's ID."""
    path = write_demo_roster(workdir / "input" / name, 12, seed=7)
    wb = openpyxl.load_workbook(path)
    ws = wb["Roster"]
    header = [c.value for c in ws[3]]
    names = {f"{ws.cell(row=r, column=3).value} {ws.cell(row=r, column=2).value}"
             for r in range(4, ws.max_row + 1)}
    row = ws.max_row + 1
    values = {"Student ID": "0999999", "Last Name": "Doe", "First Name": "Jan",
              "Email": "jan@students.example.edu", "Step 1 Result": "Pass", "Step 2 CK": 320,
              "Preferred Specialty": "Pediatrics"}
    for col, key in enumerate(header, start=1):
        ws.cell(row=row, column=col, value=values.get(key))
    wb.save(path)
    return path, names, "0999999"


def _smtp(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    for key, value in {"ADVISING_DELIVERY": "smtp", "ADVISING_SMTP_HOST": "127.0.0.1",
                       "ADVISING_SMTP_PORT": str(port), "ADVISING_SMTP_SECURITY": "none",
                       "ADVISING_MAIL_FROM": "advising@example.edu",
                       "ADVISING_ALLOWED_EMAIL_DOMAINS": "students.example.edu",
                       "ADVISING_OFFICE_EMAIL": OFFICE}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_run_with_news_sends_one_note_to_the_office_only(
    workdir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real relay path (aiosmtpd sink): one note, to the office, IDs and counts."""
    _, names, held_id = _drop(workdir)
    with running_sink() as sink:
        _smtp(monkeypatch, sink.port)
        outcomes = _run()
        assert [o.status for o in outcomes] == ["done"]
        notes = [m for m in sink.received if OFFICE in m.rcpt_tos]
        assert len(notes) == 1
        note = notes[0]
        assert note.rcpt_tos == (OFFICE,)  # never a student beside it
        assert all(OFFICE not in m.rcpt_tos for m in sink.received if m is not note)
        message = email.message_from_bytes(note.data, policy=email.policy.default)
        assert not message.is_multipart()  # nothing attached: no roster, no workbook
        text = message.get_content()
        assert message["Subject"].startswith("Residency advising 2026-11-24: 1 roster processed")
        assert "1 row held" in message["Subject"]
        assert f"Held (no letter until fixed; see the Problems sheet): {held_id}" in text
        workbook = workdir / "output" / "class-2027" / "class-2027-annotated.xlsx"
        assert f"Workbook: {workbook}" in text and workbook.exists()
        assert "12 evaluated" in text
        for name in names:  # student IDs only: no name, no score
            assert name not in text
        assert "Newly at risk" in text or "newly at risk" not in message["Subject"]

        # A run with no news (nothing dropped) sends nothing.
        before = len(sink.received)
        assert _run() == []
        assert len(sink.received) == before


def _news(**changes: object) -> RosterNews:
    base = RosterNews("class.xlsx", "done", "/out/class/class-annotated.xlsx", rows=3,
                      evaluated=3)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_the_note_says_nothing_when_the_run_had_no_news() -> None:
    assert compose_note([], date(2026, 11, 24)) is None
    assert compose_note([RosterNews("a.xlsx", "unchanged")], date(2026, 11, 24)) is None


def test_the_note_counts_and_lists_ids_for_each_kind_of_news() -> None:
    news = [
        _news(held=["S3"], newly_at_risk=["S1", "S2"], letters_failed=["S9"]),
        RosterNews("broken.xlsx", "rejected", "/in/rejected/broken.xlsx"),
    ]
    composed = compose_note(news, date(2026, 11, 24))
    assert composed is not None
    subject, text = composed
    assert subject == ("Residency advising 2026-11-24: 1 roster processed, 1 not processed, "
                       "1 row held, 2 newly at risk, 1 letter failed")
    assert "Newly at risk (level 1-2; see the Summary's list): S1, S2" in text
    assert "Letters failed or uncertain (see the Letter column): S9" in text
    assert "broken.xlsx: not read, so nothing was sent. It was moved to /in/rejected/" in text


def test_a_long_list_of_ids_is_cut_with_a_count() -> None:
    ids = [f"S{i:03d}" for i in range(100)]
    composed = compose_note([_news(held=ids)], date(2026, 11, 24))
    assert composed is not None and "S039 and 60 more" in composed[1]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_to_the_outbox_the_note_is_a_file_beside_the_letters(
    workdir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _drop(workdir)
    monkeypatch.setenv("ADVISING_OFFICE_EMAIL", OFFICE)
    _run()
    [note] = (workdir / "output" / ".advising" / "outbox").glob("office-note-*.eml")
    message = email.message_from_bytes(note.read_bytes(), policy=email.policy.default)
    assert message["To"] == OFFICE and "0999999" in message.get_content()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_without_the_setting_there_is_no_note(workdir: Path) -> None:
    _drop(workdir)
    _run()
    assert not list((workdir / "output").rglob("office-note-*.eml"))


def test_the_office_address_must_be_one_address() -> None:
    from flows.settings import load_settings

    with pytest.raises(SettingsError, match="ADVISING_OFFICE_EMAIL"):
        load_settings(office_email="a@x.edu, b@x.edu")
    assert Settings(office_email=" office@x.edu ").office_email == "office@x.edu"
