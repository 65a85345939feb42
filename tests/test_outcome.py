"""A run's account as values: letter outcomes, roster counts and digest, rendered at the edges.

Each figure of a run is derived from the letters' typed outcomes, and each edge (the
workbook's Letter column, the Summary, the console, the Prefect artifact, the office's note)
renders words from them; nothing parses another's text. These tests need no flow run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from flows.delivery.ledger import Ledger
from flows.delivery.office_note import compose_note, gather_news
from flows.letters.model import LetterSummary
from flows.outcome import (
    DELIVERED,
    TROUBLE,
    UNADDRESSED,
    LetterOutcome,
    LetterStatus,
    RosterOutcome,
    RosterStatus,
    count_roster,
    roster_letters,
    tally,
)
from flows.report import DELIVERED as DELIVERED_WORDS
from flows.report import describe, run_artifact
from flows.settings import Settings
from flows.workbook.content import LETTER_WORDS, letter_text
from residency_rules.specialties import SpecialtyTable
from tests.support.workbooks import LEVELS, evaluation

S = LetterStatus


def test_every_letter_status_has_its_words_and_one_kind() -> None:
    """Each status renders to words in the Letter column; the kinds partition the statuses."""
    assert set(LETTER_WORDS) == set(LetterStatus)
    assert not (DELIVERED & TROUBLE) and not (DELIVERED & UNADDRESSED)
    assert not (TROUBLE & UNADDRESSED)
    cases = {
        LetterOutcome(S.SENT): "Sent",
        LetterOutcome(S.OUTBOX): "Written to outbox",
        LetterOutcome(S.UNCHANGED, when="2026-11-20"): "Unchanged (sent 2026-11-20)",
        LetterOutcome(S.HELD): "Held: see Problems",
        LetterOutcome(S.NO_ADDRESS): "No email address",
        LetterOutcome(S.FAILED, "550 5.1.1 Mailbox unavailable (3 tries)"):
            "Failed: 550 5.1.1 Mailbox unavailable (3 tries)",
        LetterOutcome(S.UNCERTAIN, when="2026-11-20", message_id="<a@b>"):
            "Failed: delivery uncertain since 2026-11-20 (Message-ID <a@b>); not re-sent to "
            "avoid a duplicate: check the relay's log",
        LetterOutcome(S.UNCERTAIN, "connection lost after DATA", message_id="<a@b>"):
            "Failed: delivery uncertain (connection lost after DATA; Message-ID <a@b>); not "
            "re-sent to avoid a duplicate: check the relay's log",
    }
    for outcome, words in cases.items():
        assert letter_text(outcome) == words


def test_every_student_of_the_roster_gets_one_outcome() -> None:
    """Held rows and students not evaluated are HELD; the rest get delivery's outcome."""
    row_ids = {2: "A", 3: "B", 4: "C", 5: "D", 6: "B"}  # B twice: its second row is held
    delivered = {"A": LetterOutcome(S.SENT), "D": LetterOutcome(S.NO_ADDRESS)}
    letters = roster_letters(row_ids, {6}, {"A", "B", "D"}, delivered)
    assert letters == {
        "A": LetterOutcome(S.SENT),
        "B": LetterOutcome(S.WRITTEN),  # evaluated, delivery said nothing of it
        "C": LetterOutcome(S.HELD),  # not evaluated
        "D": LetterOutcome(S.NO_ADDRESS),
    }


def test_the_counts_and_the_digest_come_from_the_outcomes() -> None:
    """Outbox and relay both count as delivered; failed and uncertain both need a look."""
    evaluations = [
        evaluation("A", "Internal Medicine", 5, "Very competitive", 262),
        evaluation("B", "General Surgery", 1, "At risk: plan a parallel specialty", 238),
        evaluation("C", "Emergency Medicine", 3, "Competitive", None, pending_at_risk=True),
        evaluation("D", "Emergency Medicine", 2, "Reach", 240),
    ]
    letters = {"A": LetterOutcome(S.OUTBOX), "B": LetterOutcome(S.UNCERTAIN),
               "C": LetterOutcome(S.FAILED, "550"), "D": LetterOutcome(S.UNCHANGED),
               "E": LetterOutcome(S.HELD), "F": LetterOutcome(S.OUTSIDE_DOMAINS)}
    counts, digest = count_roster(rows=6, held=1, problems=2, evaluations=evaluations,
                                  letters=letters)
    assert (counts.rows, counts.evaluated, counts.held_with_problems, counts.problems) == (
        6, 4, 1, 2)
    assert counts.by_outlook_level == {"1": 1, "2": 1, "3": 1, "4": 0, "5": 1}
    assert (counts.letters_written, counts.outbox_written, counts.emails_unchanged,
            counts.emails_failed, counts.emails_skipped) == (5, 1, 1, 2, 1)
    assert counts.emails_sent == 0  # written to the outbox is never "sent" (#25)
    # At risk: levels [levels] marks at risk, and pending at risk; level first, then specialty.
    assert counts.at_risk == 3 and digest.at_risk == ("B", "D", "C")
    assert digest.held == ("E",) and digest.failed == ("B", "C")
    assert sum(tally(letters).values()) == len(letters)


def _outcome(workbook: str = "/out/class/class-annotated.xlsx", **changes: object) -> RosterOutcome:
    evaluations = [evaluation("S1", "General Surgery", 1, "At risk", 238),
                   evaluation("S2", "Internal Medicine", 5, "Very competitive", 262)]
    letters = {"S1": LetterOutcome(S.SENT), "S2": LetterOutcome(S.FAILED, "550"),
               "S3": LetterOutcome(S.HELD)}
    counts, digest = count_roster(rows=3, held=1, problems=1, evaluations=evaluations,
                                  letters=letters)
    outcome = RosterOutcome(file="class.xlsx", status=RosterStatus.DONE, message="kept",
                            counts=counts, digest=digest, output="/out/class",
                            workbook=workbook, delivery="smtp",
                            started="2026-11-24T02:00:00-05:00")
    return replace(outcome, **changes)  # type: ignore[arg-type]


def test_the_office_note_is_composed_from_the_digest_and_the_ledger(tmp_path: Path) -> None:
    """No workbook is read: held, at-risk and failed IDs ride in the outcome; the ledger says
    who was at risk before this run (a student whose last letter was at level 1 is not new)."""
    settings = Settings(output_dir=tmp_path / "output", allowed_email_domains=("school.edu",))
    outcome = _outcome(workbook=str(tmp_path / "never-written.xlsx"))
    news = gather_news([outcome], settings, LEVELS)  # no ledger yet: every at-risk is new
    assert news[0].held == ["S3"] and news[0].newly_at_risk == ["S1"]
    assert news[0].letters_failed == ["S2"] and news[0].where == outcome.workbook
    from flows.delivery.ledger import ledger_path

    with Ledger(ledger_path(settings.output_dir)) as ledger:
        summary = LetterSummary(level=1, label="At risk", band="below", score=238,
                                specialty="General Surgery")
        (plan,) = ledger.plan([("S1", "h1", summary)], "smtp", iter(["<m1@x>"]))
        ledger.record_many([(plan.row_id, "sent", "")])
    news = gather_news([replace(outcome, started="2999-01-01T00:00:00")], settings, LEVELS)
    assert news[0].newly_at_risk == []
    subject, text = compose_note(news, date(2026, 11, 24), LEVELS) or ("", "")
    assert subject == ("Residency advising 2026-11-24: 1 roster processed, 1 row held, "
                       "1 letter failed")
    assert "Letters failed or uncertain (see the Letter column): S2" in text


def test_console_and_artifact_say_outbox_or_emailed_from_the_counts(
    table: SpecialtyTable,
) -> None:
    """The same counts, in words that fit the delivery mode, on the console and in Prefect."""
    outcome = _outcome()
    said = describe(outcome)
    assert said.startswith("class.xlsx: processed: 3 students, 2 evaluated, 1 at risk")
    assert "email: 1 sent, 0 unchanged since the last letter, 1 failed" in said
    assert "needs attention: 1 letter failed or uncertain" in said
    artifact = run_artifact([outcome], "smtp", table)
    assert artifact.startswith("**1 of 1 roster needs attention: class.xlsx 1 letter failed")
    assert f"| {DELIVERED_WORDS['smtp']} |" in artifact
    assert "| class.xlsx | done | 1 letter failed or uncertain | 3 | 1 | 2 |" in artifact
    assert outcome.counts is not None
    outbox = describe(replace(outcome, delivery="outbox", counts=replace(
        outcome.counts, emails_sent=0, outbox_written=1)))
    assert "outbox: 1 new .eml files" in outbox and "nothing is sent in outbox mode" in outbox


@pytest.mark.parametrize("status", list(RosterStatus))
def test_every_roster_status_has_a_line_on_the_console(status: RosterStatus) -> None:
    """Whatever became of a file, the console has one line for it, naming the file."""
    said = describe(RosterOutcome(file="a.xlsx", status=status, message="why"))
    assert said.startswith("a.xlsx: ")
