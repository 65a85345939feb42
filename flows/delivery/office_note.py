"""The morning note to the office: one short email after a run that had news.

News is a roster processed or rejected, rows held, students newly at risk, letters that failed
or whose delivery is uncertain. The note carries counts and student IDs only (names, scores and
grades stay in the workbook, which it points to) and goes to ADVISING_OFFICE_EMAIL alone, through
the same delivery settings as the letters: a file in output/.advising/outbox/ (where no roster's
output folder can be) or the relay. Nothing is
attached. A note that cannot be sent is logged and never stops the run: the workbook is there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

import python_calamine as calamine

from flows.delivery.dispatch import resolve_smtp_password
from flows.delivery.jobs import sender
from flows.delivery.ledger import Ledger
from flows.delivery.smtp import _Relay, _Unreachable
from flows.files import product_dir, write_atomic
from flows.run_record import RUN_JSON, RosterOutcome, ledger_path
from flows.settings import Settings
from flows.workbook import annotated_path
from flows.workbook.summary import AT_RISK_HEADERS, PROBLEM_HEADERS
from residency_rules.errors import AdvisingError

log = logging.getLogger(__name__)

MAX_IDS = 40  # student IDs listed per line; the rest are counted, and are in the workbook
HELD = "Row held: no letter"  # the Problems sheet's Effect for a held row


@dataclass
class RosterNews:
    """What one roster's run means for the office, in counts and student IDs."""

    file: str
    status: str  # "done", "rejected", "failed"
    where: str = ""  # the annotated workbook, or where a rejected roster was moved
    rows: int = 0
    evaluated: int = 0
    held: list[str] = field(default_factory=list)
    newly_at_risk: list[str] = field(default_factory=list)
    letters_failed: list[str] = field(default_factory=list)  # failed or uncertain

    @property
    def has_news(self) -> bool:
        return self.status in ("done", "rejected", "failed")


def gather_news(outcomes: Sequence[RosterOutcome], settings: Settings) -> list[RosterNews]:
    """Read what each roster's run left behind (its workbook, run.json and the ledger)."""
    news: list[RosterNews] = []
    where = ledger_path(settings.output_dir)
    ledger = Ledger(where) if where.exists() else None
    try:
        for outcome in outcomes:
            if outcome.status == "done":
                news.append(_processed(outcome, ledger))
            elif outcome.status in ("rejected", "failed"):
                news.append(RosterNews(outcome.file, outcome.status, outcome.output))
    finally:
        if ledger is not None:
            ledger.close()
    return news


def _processed(outcome: RosterOutcome, ledger: Ledger | None) -> RosterNews:
    out_dir = Path(outcome.output)
    workbook = annotated_path(Path(outcome.file), out_dir)
    counts = outcome.counts
    item = RosterNews(outcome.file, "done", str(workbook),
                      rows=counts.rows if counts else 0,
                      evaluated=counts.evaluated if counts else 0)
    at_risk: list[str] = []
    try:
        book = calamine.CalamineWorkbook.from_path(str(workbook))
        for name in book.sheet_names:
            rows = book.get_sheet_by_name(name).to_python()
            if rows and tuple(rows[0][: len(PROBLEM_HEADERS)]) == PROBLEM_HEADERS:
                effect, sid = PROBLEM_HEADERS.index("Effect"), PROBLEM_HEADERS.index("Student ID")
                item.held = _unique(str(r[sid]) for r in rows[1:]
                                    if len(r) > effect and r[effect] == HELD and r[sid] != "")
            at_risk = at_risk or _at_risk_ids(rows)
    except (calamine.CalamineError, OSError) as exc:
        log.warning("%s: the office note could not read the workbook (%s)", outcome.file,
                    type(exc).__name__)
    window = _run_window(out_dir)
    if ledger is not None and window is not None:
        start, end = window
        before = ledger.levels_before(at_risk, start)
        item.newly_at_risk = [sid for sid in at_risk if before.get(sid, 99) > 2]
        item.letters_failed = ledger.failed_between(start, end)
    else:
        item.newly_at_risk = at_risk
    return item


def _at_risk_ids(rows: Sequence[Sequence[object]]) -> list[str]:
    """Return the student IDs of the Summary's at-risk list (empty for any other sheet)."""
    for i, row in enumerate(rows[:-1]):
        if tuple(rows[i + 1][: len(AT_RISK_HEADERS)]) == AT_RISK_HEADERS and row \
                and str(row[0]).startswith("At risk"):
            col = AT_RISK_HEADERS.index("Student ID")
            out = []
            for below in rows[i + 2 :]:
                if len(below) <= col or below[0] in ("", None) or below[col] in ("", None):
                    break
                out.append(str(below[col]))
            return _unique(out)
    return []


def _run_window(out_dir: Path) -> tuple[str, str] | None:
    try:
        record = json.loads((out_dir / RUN_JSON).read_text(encoding="utf-8"))
        return str(record["start"]), str(record["end"])
    except (OSError, ValueError, KeyError):
        return None


def _unique(items: object) -> list[str]:
    return list(dict.fromkeys(items))  # type: ignore[call-overload]


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:MAX_IDS])
    return shown + (f" and {len(ids) - MAX_IDS} more" if len(ids) > MAX_IDS else "")


def compose_note(news: Sequence[RosterNews], today: date) -> tuple[str, str] | None:
    """Return the note's subject and text, or None when the run had no news for the office."""
    news = [n for n in news if n.has_news]
    if not news:
        return None
    done = [n for n in news if n.status == "done"]
    held = sum(len(n.held) for n in done)
    new_risk = sum(len(n.newly_at_risk) for n in done)
    failed = sum(len(n.letters_failed) for n in done)
    parts = [f"{len(done)} roster{'s' * (len(done) != 1)} processed"] if done else []
    rejected = [n for n in news if n.status != "done"]
    if rejected:
        parts.append(f"{len(rejected)} not processed")
    if held:
        parts.append(f"{held} row{'s' * (held != 1)} held")
    if new_risk:
        parts.append(f"{new_risk} newly at risk")
    if failed:
        parts.append(f"{failed} letter{'s' * (failed != 1)} failed")
    subject = f"Residency advising {today.isoformat()}: " + ", ".join(parts)
    lines = [f"Last night's residency advising run ({today.isoformat()}).", ""]
    for n in news:
        if n.status == "rejected":
            lines += [f"{n.file}: not read, so nothing was sent. It was moved to {n.where}; "
                      "the .problems.txt beside it says what to fix.", ""]
            continue
        if n.status == "failed":
            lines += [f"{n.file}: stopped before it finished; it stays in the input folder for "
                      "the next run (see the run's log or error.log for IT).", ""]
            continue
        lines.append(f"{n.file}: {n.rows} student rows, {n.evaluated} evaluated, "
                     f"{len(n.held)} held.")
        if n.held:
            lines.append(f"  Held (no letter until fixed; see the Problems sheet): {_ids(n.held)}")
        if n.newly_at_risk:
            lines.append(f"  Newly at risk (level 1-2; see the Summary's list): "
                         f"{_ids(n.newly_at_risk)}")
        if n.letters_failed:
            lines.append(f"  Letters failed or uncertain (see the Letter column): "
                         f"{_ids(n.letters_failed)}")
        lines += [f"  Workbook: {n.where}", ""]
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


def send_office_note(outcomes: Sequence[RosterOutcome], settings: Settings) -> Path | None:
    """Send the morning note when ADVISING_OFFICE_EMAIL is set and the run had news.

    Returns the outbox file written (outbox delivery), else None. Never raises for a relay
    that cannot take it: the run's work is done and the workbook says everything the note does.
    """
    if not settings.office_email:
        return None
    composed = compose_note(gather_news(outcomes, settings), settings.run_date())
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
    relay = _Relay(settings, resolve_smtp_password(settings))
    try:
        relay.open()
        assert relay.smtp is not None
        relay.smtp.sendmail(sender(settings)[1], [settings.office_email], data)
    except (AdvisingError, _Unreachable, OSError) as exc:
        log.warning("The office note was not sent (%s): the workbook has everything it says",
                    type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - smtplib's refusals; the run is already done
        log.warning("The office note was not sent (%s): the workbook has everything it says",
                    type(exc).__name__)
    finally:
        relay.close()
    return None
