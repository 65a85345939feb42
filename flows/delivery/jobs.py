"""What delivery works on: one job per letter to send; shared by the outbox and the relay.

What became of each letter is a flows.outcome.LetterOutcome, one per student.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from flows.delivery.ledger import EverySecond, Planned
from flows.delivery.mime import (
    PLACEHOLDER_FROM,
    MessageBuilder,
    date_header,
    make_message_id,
)
from flows.letters.model import Letter, LetterSummary
from flows.settings import Settings
from residency_rules.schema import is_address, parse_sender


def short_reply(code: int, text: str) -> str:
    words = " ".join(text.split())
    return f"{code} {words[:100]}".strip() if code else words[:100]


def now_dates() -> EverySecond:
    """The Date header, formatted once per second rather than once per message."""
    return EverySecond(lambda: date_header(datetime.now().astimezone()))


def message_ids(domain: str) -> Iterator[str]:
    """Yield a new Message-ID for each letter the ledger plans to send."""
    while True:
        yield make_message_id(domain)


def no_summary() -> LetterSummary:
    return LetterSummary(level=0, label="", band="", score=None, specialty="")


@dataclass
class Job:
    letter: Letter
    plan: Planned
    tries: int = 0  # transactions the relay answered (4xx counts)
    drops: int = 0  # transactions that lost the connection before the message was handed over

    def reply_to(self) -> str | None:
        value = self.letter.reply_to
        return value if value and is_address(value) else None


def build_message(job: Job, builder: MessageBuilder, date: str, eight_bit: bool) -> bytes:
    letter = job.letter
    assert letter.to is not None
    return builder.build(
        to=letter.to,
        reply_to=job.reply_to(),
        subject=letter.subject,
        text=letter.text,
        html=letter.html,
        message_id=job.plan.message_id,
        date=date,
        eight_bit=eight_bit,
    )


def sender(settings: Settings) -> tuple[str, str]:
    """Return the From name and address: ADVISING_MAIL_FROM, or the outbox placeholder."""
    parsed = parse_sender(settings.mail_from) if settings.mail_from else None
    if parsed is None:
        return settings.office_name, PLACEHOLDER_FROM
    name, address = parsed
    return name or settings.office_name, address
