"""The morning note to the office: one short email after a run that had news.

News is a roster processed or rejected, rows held, students newly at risk, letters that failed
or whose delivery is uncertain. The note carries counts and student IDs only (names, scores and
grades stay in the workbook, which it points to) and goes to ADVISING_OFFICE_EMAIL alone, through
the same delivery settings as the letters: a file in output/.advising/outbox/ (where no roster's
output folder can be) or the relay. Nothing is
attached. A note that cannot be sent is logged and never stops the run: the workbook is there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

from flows.delivery.dispatch import resolve_smtp_password
from flows.delivery.jobs import sender
from flows.delivery.ledger import Ledger, ledger_path
from flows.delivery.smtp import send_one
from flows.errors import AdvisingError
from flows.files import product_dir, write_atomic
from flows.letters.review import REVIEW_NAME
from flows.outcome import RosterOutcome, RosterStatus
from flows.settings import Settings
from residency_rules.rulebook import Level, at_risk_span
from residency_rules.specialties import load_default_table

log = logging.getLogger(__name__)

MAX_IDS = 40  # student IDs listed per line; the rest are counted, and are in the workbook


@dataclass
class RosterNews:
    """What one roster's run means for the office, in counts and student IDs."""

    file: str
    status: RosterStatus
    where: str = ""  # the annotated workbook, or where a rejected roster was moved
    rows: int = 0
    evaluated: int = 0
    held: list[str] = field(default_factory=list)  # IDs of the rows held for a problem
    held_rows: int = 0  # rows held: the count the console, Summary and run.json give
    held_for_reason: list[str] = field(default_factory=list)  # no Match result, office's hold
    newly_at_risk: list[str] = field(default_factory=list)
    letters_failed: list[str] = field(default_factory=list)  # failed or uncertain
    waiting: int = 0  # letters waiting for the office's approval
    review: str = ""  # the roster's review page


_NEWS = (RosterStatus.DONE, RosterStatus.REJECTED, RosterStatus.FAILED)


def gather_news(
    outcomes: Sequence[RosterOutcome], settings: Settings, levels: Mapping[int, Level]
) -> list[RosterNews]:
    """Say what each roster's run means for the office, from its outcome and the ledger.

    The outcome's digest names who was held, who is at risk and whose letter failed; the
    ledger says who was at risk already before this run (their last letter's level).
    """
    where = ledger_path(settings.output_dir)
    ledger = Ledger(where) if where.exists() else None
    try:
        return [_news(o, ledger, levels) for o in outcomes if o.status in _NEWS]
    finally:
        if ledger is not None:
            ledger.close()


def _news(outcome: RosterOutcome, ledger: Ledger | None, levels: Mapping[int, Level]) -> RosterNews:
    if outcome.status is not RosterStatus.DONE:
        return RosterNews(outcome.file, outcome.status, outcome.output)
    counts, digest = outcome.counts, outcome.digest
    at_risk = list(digest.at_risk)
    if ledger is not None and outcome.started:
        before = ledger.levels_before(at_risk, outcome.started)
        # At risk already: the last letter before this run told an at-risk level.
        at_risk = [sid for sid in at_risk
                   if sid not in before or not levels[before[sid]].at_risk]
    return RosterNews(
        outcome.file, outcome.status, outcome.workbook,
        rows=counts.rows if counts else 0,
        evaluated=counts.evaluated if counts else 0,
        held=list(digest.held),
        held_rows=counts.held_with_problems if counts else len(digest.held),
        held_for_reason=list(digest.held_for_reason),
        newly_at_risk=at_risk,
        letters_failed=list(digest.failed),
        waiting=len(digest.waiting),
        review=str(Path(outcome.output) / REVIEW_NAME) if outcome.output else "",
    )


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:MAX_IDS])
    return shown + (f" and {len(ids) - MAX_IDS} more" if len(ids) > MAX_IDS else "")


def compose_note(
    news: Sequence[RosterNews], today: date, levels: Mapping[int, Level] | None = None
) -> tuple[str, str] | None:
    """Return the note's subject and text, or None when the run had no news for the office.

    levels: what each level means ([levels] of the office's table; the shipped one if None).
    """
    news = [n for n in news if n.status in _NEWS]
    if not news:
        return None
    span = at_risk_span(levels if levels is not None else load_default_table().rules.levels)
    done = [n for n in news if n.status == RosterStatus.DONE]
    held = sum(max(n.held_rows, len(n.held)) for n in done)  # rows: at least one per ID
    kept = sum(len(n.held_for_reason) for n in done)
    new_risk = sum(len(n.newly_at_risk) for n in done)
    failed = sum(len(n.letters_failed) for n in done)
    parts = [f"{len(done)} roster{'s' * (len(done) != 1)} processed"] if done else []
    rejected = [n for n in news if n.status != RosterStatus.DONE]
    if rejected:
        parts.append(f"{len(rejected)} not processed")
    if held:
        parts.append(f"{held} row{'s' * (held != 1)} held")
    if kept:
        parts.append(f"{kept} letter{'s' * (kept != 1)} held back")
    if new_risk:
        parts.append(f"{new_risk} newly at risk")
    if failed:
        parts.append(f"{failed} letter{'s' * (failed != 1)} failed")
    waiting = sum(n.waiting for n in done)
    if waiting:
        parts.append(f"{waiting} letter{'s' * (waiting != 1)} to approve")
    subject = f"Residency advising {today.isoformat()}: " + ", ".join(parts)
    lines = [f"Last night's residency advising run ({today.isoformat()}).", ""]
    for n in news:
        if n.status == RosterStatus.REJECTED:
            lines += [f"{n.file}: not read, so nothing was sent. It was moved to {n.where}; "
                      "the .problems.txt beside it says what to fix.", ""]
            continue
        if n.status == RosterStatus.FAILED:
            lines += [f"{n.file}: stopped before it finished; it stays in the input folder for "
                      "the next run (see the run's log or error.log for IT).", ""]
            continue
        lines.append(f"{n.file}: {n.rows} student rows, {n.evaluated} evaluated, "
                     f"{max(n.held_rows, len(n.held))} held.")
        if n.held:
            lines.append(f"  Held (no letter until fixed; see the Problems sheet): {_ids(n.held)}")
        if n.held_for_reason:
            lines.append("  Letters held back for a reason of their own (no Match result yet, "
                         f"or held by the office; see the Letter column): "
                         f"{_ids(n.held_for_reason)}")
        if n.newly_at_risk:
            lines.append(f"  Newly at risk (level {span}; see the Summary's list): "
                         f"{_ids(n.newly_at_risk)}")
        if n.letters_failed:
            lines.append(f"  Letters failed or uncertain (see the Letter column): "
                         f"{_ids(n.letters_failed)}")
        if n.waiting:
            lines.append(f"  Waiting for your approval: {n.waiting} letters (nothing was sent "
                         f"to them); read the review page, then `advising approve {n.file}`")
        lines += [f"  Workbook: {n.where}"]
        if n.review:
            lines.append(f"  Review page (tonight's letters, grouped): {n.review}")
        lines.append("")
    lines.append("Student IDs only: names, scores and letters are in the workbook.")
    return subject, "\n".join(lines) + "\n"


def build_note(settings: Settings, subject: str, text: str, when: datetime) -> EmailMessage:
    """Return the note as one plain-text message to the office address, nothing attached."""
    name, address = sender(settings)
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((name, address))
    message["To"] = settings.office_email
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message["Message-ID"] = make_msgid(domain=address.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message.set_content(text)
    return message


def send_office_note(
    outcomes: Sequence[RosterOutcome], settings: Settings, levels: Mapping[int, Level]
) -> Path | None:
    """Send the morning note when ADVISING_OFFICE_EMAIL is set and the run had news.

    Returns the outbox file written (outbox delivery), else None. Never raises for a relay
    that cannot take it: the run's work is done and the workbook says everything the note does.
    """
    if not settings.office_email:
        return None
    composed = compose_note(gather_news(outcomes, settings, levels), settings.run_date(), levels)
    if composed is None:
        return None
    now = datetime.now().astimezone()
    message = build_note(settings, *composed, now)
    data = message.as_bytes()
    if settings.delivery == "outbox":
        path = product_dir(settings.output_dir) / "outbox" / f"office-note-{now:%Y%m%d-%H%M%S}.eml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return path
    try:
        send_one(settings, resolve_smtp_password(settings), settings.office_email, data)
    except AdvisingError as exc:
        log.warning("The office note was not sent (%s): the workbook has everything it says",
                    exc.summary())
    return None
