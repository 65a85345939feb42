"""Deliver the rendered letters: to the outbox (.eml files, the default) or the school's relay.

Both go through the ledger, so a letter already delivered is never delivered again. SMTP uses
one session for a small batch and up to ADVISING_SMTP_CONNECTIONS for a large one (each
reopened if the relay drops it), retries 4xx replies with a bounded backoff while the other
letters go on, records 5xx per student and goes on, and keeps to the relay's rate limit.
Delivery is at-most-once (see flows/ledger.py): when the connection breaks after the message
was handed over, the letter is marked uncertain, never re-sent blind.
Logs carry student IDs and SMTP codes only: never a name, an address or a score.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.delivery.jobs import Job, message_ids, no_summary, sender
from flows.delivery.ledger import Ledger
from flows.delivery.mime import MessageBuilder
from flows.delivery.outbox import write_outbox
from flows.delivery.smtp import SmtpRun, Waits
from flows.errors import SettingsError
from flows.letters.model import Letter
from flows.outcome import LetterOutcome, LetterStatus, tally
from flows.settings import Settings
from residency_rules.schema import domain_allowed, is_address

log = logging.getLogger(__name__)

REAL_WAITS = Waits()  # minutes, as a relay needs; tests pass shorter ones


def resolve_smtp_password(settings: Settings) -> str | None:
    """Return the SMTP password from the environment or a Prefect Secret block (only if set)."""
    if settings.delivery != "smtp":
        return None
    password = settings.smtp_password.get_secret_value()
    if password:
        return password
    name = settings.smtp_password_block.strip()
    if not name:
        return None
    try:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(name)  # a sync call outside an event loop
        value = block.get()
    except Exception as exc:  # noqa: BLE001 - any failure to read the block is a setup problem
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SettingsError(
            f"ADVISING_SMTP_PASSWORD_BLOCK: cannot load the Prefect Secret block {name!r} "
            f"({reason}). Create it (Secret(value=...).save({name!r}) or in the Prefect UI) "
            "on the Prefect server this job uses, or set ADVISING_SMTP_PASSWORD instead"
        ) from None
    if not isinstance(value, str) or not value:
        raise SettingsError(
            f"ADVISING_SMTP_PASSWORD_BLOCK: the Secret block {name!r} does not hold a text "
            "password; save the password itself as the block's value"
        )
    return value


def _address_problem(letter: Letter, allowed: Sequence[str]) -> LetterStatus | None:
    """Say why a letter cannot be delivered to its address, or None when it can."""
    if not letter.to:
        return LetterStatus.NO_ADDRESS
    if not is_address(letter.to):
        return LetterStatus.BAD_ADDRESS
    if not domain_allowed(letter.to, allowed):
        return LetterStatus.OUTSIDE_DOMAINS
    return None


@dataclass(frozen=True, slots=True)
class Source:
    """Which roster a batch of letters comes from: its file name and its bytes' sha256."""

    name: str
    sha: str


HELD_BY_OFFICE = "held by the office (`advising release ID` lets it go)"


def _gate(
    letters: list[Letter], settings: Settings, ledger: Ledger, roster: Source | None,
    outcomes: dict[str, LetterOutcome],
) -> list[Letter]:
    """Keep back the letters the office holds, and those that wait for its approval; return
    the rest.

    ADVISING_APPROVAL=always: every new or changed letter waits until that letter (its hash)
    is approved. first: a student's first letter from a roster waits until the office approved
    one for that student (approving the roster once approves every waiting letter); after
    that, changed letters go on their own. Unchanged letters never wait: nothing is sent.
    """
    held = ledger.held()
    mode = settings.approval_mode()
    ids = [lt.student_id for lt in letters]
    gated = roster is not None and mode != "off"
    approved = ledger.approved(roster.name) if roster is not None and gated else set()
    sent = ledger.last_sent_hashes(ids, settings.delivery) if gated else {}
    known = {sid for sid, _ in approved} | set(sent)  # "first": students the office saw
    passed: list[Letter] = []
    waiting: list[tuple[str, str]] = []
    for letter in letters:
        sid, digest = letter.student_id, letter.content_hash
        waits = gated and sent.get(sid) != digest and (
            (sid, digest) not in approved if mode == "always" else sid not in known)
        if sid in held:
            outcomes[sid] = LetterOutcome(LetterStatus.HELD, HELD_BY_OFFICE)
        elif waits and roster is not None:
            outcomes[sid] = LetterOutcome(
                LetterStatus.WAITING, f"read review.html, then `advising approve {roster.name}`")
            waiting.append((sid, digest))
        else:
            passed.append(letter)
    if roster is not None and waiting:
        ledger.set_waiting(roster.name, roster.sha, waiting, replace=False)
    return passed


def deliver(
    letters: Sequence[Letter],
    settings: Settings,
    ledger: Ledger,
    outbox_dir: Path,
    smtp_password: str | None = None,
    waits: Waits = REAL_WAITS,
    roster: Source | None = None,
) -> dict[str, LetterOutcome]:
    """Hand every changed letter to the outbox or the relay, once; return each one's outcome.

    waits: how long the relay's retries and reconnections wait (tests make them short).
    roster: where the letters come from, for the office's approval; None (a resend, a test)
    skips the approval gate but never the office's holds.
    """
    outcomes: dict[str, LetterOutcome] = {}
    allowed = settings.allowed_email_domains
    deliverable: list[Letter] = []
    for letter in letters:
        problem = _address_problem(letter, allowed)
        if problem is None:
            deliverable.append(letter)
        else:
            outcomes[letter.student_id] = LetterOutcome(problem)
    deliverable = _gate(deliverable, settings, ledger, roster, outcomes)
    name, address = sender(settings)
    builder = MessageBuilder(name, address)
    channel = settings.delivery
    plans = ledger.plan(
        [(lt.student_id, lt.content_hash, lt.summary or no_summary()) for lt in deliverable],
        channel,
        message_ids(builder.domain),
    )
    jobs: list[Job] = []
    for letter, plan in zip(deliverable, plans, strict=True):
        if plan.action == "unchanged":
            outcomes[letter.student_id] = LetterOutcome(LetterStatus.UNCHANGED, when=plan.when[:10])
        elif plan.action == "uncertain":
            outcomes[letter.student_id] = LetterOutcome(
                LetterStatus.UNCERTAIN, when=plan.when[:10], message_id=plan.message_id
            )
        else:
            jobs.append(Job(letter, plan))
    if jobs and channel == "outbox":
        write_outbox(jobs, builder, ledger, outbox_dir, outcomes)
    elif jobs:
        password = smtp_password if smtp_password is not None else resolve_smtp_password(settings)
        SmtpRun(settings, password, builder, ledger, outcomes, waits).run(jobs)
    log.info("Delivery (%s): %s", channel,
             ", ".join(f"{n} {status}" for status, n in sorted(tally(outcomes).items())))
    return outcomes
