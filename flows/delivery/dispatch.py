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

import ipaddress
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flows.delivery.jobs import (
    INVALID,
    NO_ADDRESS,
    OUTSIDE,
    DeliveryReport,
    Job,
    no_summary,
    sender,
)
from flows.delivery.ledger import Ledger
from flows.delivery.mime import (
    MessageBuilder,
    make_message_id,
    parse_sender,
)
from flows.delivery.outbox import write_outbox
from flows.delivery.smtp import SmtpRun
from flows.letters.model import Letter
from flows.settings import Settings
from residency_rules.errors import SettingsError
from residency_rules.schema import domain_allowed, is_address, is_domain

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_host(host: str) -> bool:
    if not host or any(c.isspace() or c in "/@" for c in host):
        return False
    if ":" in host:  # only an IPv6 literal may hold a colon; "relay:25" puts the port here
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
    return True


def check_delivery_settings(settings: Settings) -> None:
    """Check the delivery settings once at start; SettingsError says which one and how to fix."""
    problems: list[str] = []
    if settings.mail_from and parse_sender(settings.mail_from) is None:
        problems.append(
            "ADVISING_MAIL_FROM: not one email address; write it as advising@school.edu or "
            '"Office of Student Affairs <advising@school.edu>"'
        )
    if settings.reply_to and not is_address(settings.reply_to.strip()):
        problems.append(
            "ADVISING_REPLY_TO: not one email address; write it as advising@school.edu, "
            "or leave it blank"
        )
    for domain in settings.allowed_email_domains:
        if not is_domain(domain):
            problems.append(
                f"ADVISING_ALLOWED_EMAIL_DOMAINS: {domain!r} is not a domain; list domains "
                "separated by commas, e.g. school.edu,med.school.edu"
            )
    if settings.delivery == "smtp":
        host = settings.smtp_host.strip()
        if not _valid_host(host):
            problems.append(
                "ADVISING_SMTP_HOST: give the relay's host name only, e.g. smtp.school.edu "
                "(the port goes in ADVISING_SMTP_PORT)"
            )
        has_password = bool(
            settings.smtp_password.get_secret_value() or settings.smtp_password_block
        )
        if settings.smtp_username and not has_password:
            problems.append(
                "ADVISING_SMTP_USERNAME is set but there is no password: set "
                "ADVISING_SMTP_PASSWORD, or ADVISING_SMTP_PASSWORD_BLOCK to the name of a "
                "Prefect Secret block"
            )
        if has_password and not settings.smtp_username:
            problems.append(
                "a password is set but ADVISING_SMTP_USERNAME is blank: set the user name "
                "the relay expects, or remove the password"
            )
        if settings.smtp_username and settings.smtp_security == "none" and not _is_loopback(host):
            problems.append(
                "ADVISING_SMTP_SECURITY=none would send the SMTP password unencrypted to "
                f"{host}: use starttls (port 587) or tls (port 465)"
            )
    if problems:
        raise SettingsError("Delivery settings are not valid:\n  " + "\n  ".join(problems))


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




def _address_problem(letter: Letter, allowed: Sequence[str]) -> str | None:
    if not letter.to:
        return NO_ADDRESS
    if not is_address(letter.to):
        return INVALID
    if not domain_allowed(letter.to, allowed):
        return OUTSIDE
    return None



def _day(stamp: str) -> str:
    return stamp[:10]



def _message_ids(domain: str) -> Iterator[str]:
    while True:
        yield make_message_id(domain)


def deliver(
    letters: Sequence[Letter],
    settings: Settings,
    ledger: Ledger,
    outbox_dir: Path,
    smtp_password: str | None = None,
) -> DeliveryReport:
    """Hand every changed letter to the outbox or the relay, once; return the counts."""
    check_delivery_settings(settings)
    report = DeliveryReport()
    allowed = settings.allowed_email_domains
    deliverable: list[Letter] = []
    for letter in letters:
        problem = _address_problem(letter, allowed)
        if problem is None:
            deliverable.append(letter)
        else:
            report.skipped += 1
            report.status[letter.student_id] = problem
    name, address = sender(settings)
    builder = MessageBuilder(name, address)
    channel = settings.delivery
    plans = ledger.plan(
        [(lt.student_id, lt.content_hash, lt.summary or no_summary()) for lt in deliverable],
        channel,
        _message_ids(builder.domain),
    )
    jobs: list[Job] = []
    for letter, plan in zip(deliverable, plans, strict=True):
        if plan.action == "unchanged":
            report.unchanged += 1
            report.status[letter.student_id] = f"Unchanged (sent {_day(plan.when)})"
        elif plan.action == "uncertain":
            report.failed += 1
            report.status[letter.student_id] = (
                f"Failed: delivery uncertain since {_day(plan.when)} (Message-ID "
                f"{plan.message_id}); not re-sent to avoid a duplicate: check the relay's log"
            )
        else:
            jobs.append(Job(letter, plan))
    if jobs and channel == "outbox":
        write_outbox(jobs, builder, ledger, outbox_dir, report)
    elif jobs:
        password = smtp_password if smtp_password is not None else resolve_smtp_password(settings)
        SmtpRun(settings, password, builder, ledger, report).run(jobs)
    log.info(
        "Delivery (%s): %d sent, %d unchanged, %d failed, %d skipped",
        channel, report.sent, report.unchanged, report.failed, report.skipped,
    )
    return report
