"""Deliver letters to the outbox folder: one .eml file per letter, nothing sent."""

from __future__ import annotations

from pathlib import Path

from flows.delivery.jobs import Job, build_message, now_dates
from flows.delivery.ledger import Ledger, Status
from flows.delivery.mime import MessageBuilder
from flows.files import student_file_stem, write_atomic
from flows.outcome import LetterOutcome, LetterStatus

_IN_OUTBOX = LetterOutcome(LetterStatus.OUTBOX)

_OUTBOX_BATCH = 500  # outbox files written per ledger transaction


def write_outbox(
    jobs: list[Job], builder: MessageBuilder, ledger: Ledger, outbox_dir: Path,
    outcomes: dict[str, LetterOutcome],
) -> None:
    """Write one .eml per letter; rewriting the same file after a crash is harmless."""
    outbox_dir.mkdir(parents=True, exist_ok=True)
    dates = now_dates()
    done: list[tuple[int, Status, str]] = []
    try:
        for job in jobs:
            data = build_message(job, builder, dates.now(), eight_bit=True)  # a file: no relay
            write_atomic(
                outbox_dir / f"{student_file_stem(job.letter.student_id)}.eml", data, fsync=False
            )
            done.append((job.plan.row_id, "sent", "outbox"))
            outcomes[job.letter.student_id] = _IN_OUTBOX
            if len(done) >= _OUTBOX_BATCH:
                ledger.record_many(done)
                done = []
    finally:
        ledger.record_many(done)  # what was written stays written, even if a later file fails
