"""The office between a letter and the student (#24): approve, hold, release, a test letter.

Every decision is a row in the delivery ledger (who, when, which roster by its sha256, which
letter by its hash), so the next run sends exactly what was approved, once, and a letter that
changed after its approval waits again. Nothing here sends a student anything: the run does.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import format_datetime
from pathlib import Path

from flows.delivery.dispatch import resolve_smtp_password
from flows.delivery.jobs import sender
from flows.delivery.ledger import Ledger, ledger_path
from flows.delivery.mime import MessageBuilder, make_message_id
from flows.delivery.smtp import send_one
from flows.drop_folder import prune_processed
from flows.errors import AdvisingError
from flows.files import product_dir, roster_output_dir, sha256_file, student_file_stem, write_atomic
from flows.run_record import RUN_JSON, previous_run
from flows.settings import Settings
from residency_rules.schema import domain_allowed, is_address


def _who() -> str:
    """Name the person acting: the login (the ledger keeps it beside each decision)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown user"


def _roster_name(roster: str) -> str:
    """Accept the roster as its file name or its path; the ledger keys it by file name."""
    return Path(roster).name


@dataclass(frozen=True)
class Approved:
    """What `advising approve` did: letters approved, students held, where the roster waits."""

    approved: tuple[str, ...]
    held: tuple[str, ...]
    left_waiting: tuple[str, ...]
    queued: Path | None  # the roster copied back into input/ for the next run to send


def approve(settings: Settings, roster: str, *, only: tuple[str, ...] = (),
            hold: tuple[str, ...] = (), by: str | None = None) -> Approved:
    """Approve a roster's waiting letters (all, or `only` these), holding `hold` instead.

    Refused, with one sentence, when the roster was never run, nothing waits, or the roster's
    file changed since its letters were written (the office would approve letters it has not
    read). The roster's kept copy goes back into input/ so the next run sends the approved
    letters (a copy: the file the office dropped is never touched).
    """
    name = _roster_name(roster)
    out_dir = roster_output_dir(settings.output_dir, name)
    record = previous_run(out_dir)
    if not record:
        raise AdvisingError(f"{name}: no run of this roster yet",
                            fix="run `advising run`, read its review.html, then approve")
    sha = str(record.get("input", {}).get("sha256", ""))
    path = ledger_path(settings.output_dir)
    with Ledger(path) as ledger:
        waiting = ledger.waiting(name)
        if not waiting:
            raise AdvisingError(f"{name}: no letter of this roster waits for approval",
                                fix="`advising run` shows what each roster's letters did")
        dropped = settings.input_dir / name
        if dropped.is_file() and sha256_file(dropped) != sha:
            raise AdvisingError(
                f"{name}: the roster in {settings.input_dir} changed since its letters were "
                "written, so these are not the letters the next run would send",
                fix="run `advising run`, read the new review.html, then approve")
        stale = {sid for sid, _, roster_sha in waiting if roster_sha != sha}
        if stale:
            raise AdvisingError(f"{name}: the waiting letters come from an older copy of "
                                "the roster", fix="run `advising run` again, then approve")
        ids = {sid for sid, _, _ in waiting}
        unknown = sorted((set(only) | set(hold)) - ids)
        if unknown:
            raise AdvisingError(
                f"{name}: no waiting letter for {', '.join(unknown[:10])}",
                fix="name students whose letters wait (review.html lists them)")
        chosen = [w for w in waiting if (not only or w[0] in only) and w[0] not in hold]
        who = by or _who()
        ledger.approve(name, chosen, who)
        held = tuple(ledger.hold(hold, who))
    approved = tuple(sid for sid, _, _ in chosen)
    left = tuple(sorted(ids - set(approved) - set(hold)))
    return Approved(approved, held, left, _queue_again(settings, name, sha))


def _kept_roster(settings: Settings, name: str, sha: str) -> Path | None:
    """Find the roster file with this sha256: in input/, or its copy kept in processed/."""
    dropped = settings.input_dir / name
    if dropped.is_file() and sha256_file(dropped) == sha:
        return dropped
    stem, suffix = Path(name).stem, Path(name).suffix
    kept = sorted((settings.input_dir / "processed").glob(f"*/{stem}-*{suffix}"), reverse=True)
    return next((c for c in kept if sha256_file(c) == sha), None)


def rosters_still_needed(settings: Settings) -> set[str]:
    """The sha256 of every kept roster approve, release or resend may still copy back.

    Those of rosters whose letters wait for approval (the ledger), and each roster's last run
    (its run.json: resend and release read the roster the letters came from).
    """
    needed: set[str] = set()
    path = ledger_path(settings.output_dir)
    if path.is_file():
        with Ledger(path) as ledger:
            needed |= ledger.waiting_roster_shas()
    for record_path in settings.output_dir.glob(f"*/{RUN_JSON}"):
        sha = str(previous_run(record_path.parent).get("input", {}).get("sha256", ""))
        if sha:
            needed.add(sha)
    return needed


def prune_kept_rosters(settings: Settings, today: date) -> int:
    """Apply ADVISING_KEEP_PROCESSED_DAYS to input/processed/; return the rosters deleted.

    Unset, nothing is deleted. Never a roster approval may still need (rosters_still_needed),
    nor the newest kept copy of each roster name.
    """
    if settings.keep_processed_days is None or not (settings.input_dir / "processed").is_dir():
        return 0
    return prune_processed(settings.input_dir, settings.keep_processed_days, today,
                           rosters_still_needed(settings))


def pruned_line(count: int, settings: Settings) -> str:
    """The one console line saying what pruning deleted."""
    return (f"pruned {count} roster{'s' if count != 1 else ''} kept more than "
            f"{settings.keep_processed_days} days from {settings.input_dir / 'processed'}/")


def _queue_again(settings: Settings, name: str, sha: str) -> Path | None:
    """Copy the processed roster with this sha256 back into input/ (unless it is there)."""
    target = settings.input_dir / name
    if target.exists():
        return target
    kept = _kept_roster(settings, name, sha)
    if kept is None:
        return None
    write_atomic(target, kept.read_bytes())
    return target


def hold_students(settings: Settings, student_ids: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Hold students: no letter until released. Returns (newly held, already held)."""
    with Ledger(ledger_path(settings.output_dir)) as ledger:
        before = ledger.held()
        added = ledger.hold(student_ids, _who())
    return added, [sid for sid in student_ids if sid in before]


def release_students(settings: Settings, student_ids: tuple[str, ...]) -> tuple[list[str], int]:
    """Release held students, and uncertain letters of these students (checked in the relay
    log). Returns (released holds, released uncertain letters); a student neither held nor
    uncertain changes nothing."""
    path = ledger_path(settings.output_dir)
    if not path.is_file():
        return [], 0
    with Ledger(path) as ledger:
        held, uncertain = ledger.release_held(student_ids), ledger.release_uncertain(student_ids)
    if held or uncertain:
        _queue_rosters_of(settings, set(student_ids))
    return held, uncertain


def _queue_rosters_of(settings: Settings, student_ids: set[str]) -> None:
    """Put back into input/ each roster whose last run wrote a letter for these students, so
    the next run sends what was released (the roster's kept copy; nothing is touched)."""
    stems = {student_file_stem(sid) for sid in student_ids}
    for record_path in settings.output_dir.glob(f"*/{RUN_JSON}"):
        letters = record_path.parent / "letters"
        if not any((letters / f"{stem}.html").is_file() for stem in stems):
            continue
        given = previous_run(record_path.parent).get("input", {})
        name, sha = str(given.get("file", "")), str(given.get("sha256", ""))
        if name and sha:
            _queue_again(settings, name, sha)


def _letter_files(settings: Settings, name: str, student_id: str) -> tuple[str, str]:
    """Read one student's letter (HTML and text) from the roster's last run."""
    stem = roster_output_dir(settings.output_dir, name) / "letters" / student_file_stem(student_id)
    try:
        return (stem.with_name(stem.name + ".html").read_text(encoding="utf-8"),
                stem.with_name(stem.name + ".txt").read_text(encoding="utf-8"))
    except OSError:
        raise AdvisingError(f"{name}: no letter for student {student_id} in its last run",
                            fix="check the ID on the workbook's Roster sheet") from None


def _message(settings: Settings, to: str, subject: str, html: str, text: str,
             reply_to: str | None = None) -> tuple[bytes, str]:
    from_name, from_address = sender(settings)
    builder = MessageBuilder(from_name, from_address)
    message_id = make_message_id(builder.domain)
    data = builder.build(to=to, reply_to=reply_to, subject=subject, text=text, html=html,
                         message_id=message_id,
                         date=format_datetime(datetime.now().astimezone()))
    return data, message_id


def resend(settings: Settings, roster: str, student_id: str) -> Path | None:
    """Send the student's last delivered letter again, once per call, recorded as a resend.

    Refused when nothing was delivered to the student yet, or when a newer letter waits for
    approval (approve that one instead). The address is the roster's, read again from the kept
    roster file; in outbox mode the .eml goes to the roster's outbox and its path is returned.
    """
    from flows.intake import ingest
    from flows.settings import load_table

    name = _roster_name(roster)
    out_dir = roster_output_dir(settings.output_dir, name)
    sha = str(previous_run(out_dir).get("input", {}).get("sha256", ""))
    with Ledger(ledger_path(settings.output_dir)) as ledger:
        if not any(e.status == "sent" for e in ledger.entries(student_id)):
            raise AdvisingError(f"{name}: no letter was delivered to {student_id} yet, so "
                                "there is nothing to resend", fix="`advising run` sends it")
        if student_id in {sid for sid, _, _ in ledger.waiting(name)}:
            raise AdvisingError(f"{name}: a newer letter for {student_id} waits for approval",
                                fix=f"approve it: advising approve {name} --only {student_id}")
    kept = _kept_roster(settings, name, sha) if sha else None
    if kept is None:
        raise AdvisingError(f"{name}: the roster its letters came from is not in "
                            f"{settings.input_dir} or its processed/ folder",
                            fix="drop the roster again and run `advising run` first")
    found = [r for r in ingest(kept, settings, load_table(settings)).records
             if r.student_id == student_id]
    to = (found[0].email or "").strip() if found else ""
    if not is_address(to) or not domain_allowed(to, settings.allowed_email_domains):
        raise AdvisingError(f"{name}: student {student_id} has no usable address in the roster",
                            fix="check the Email column")
    html, text = _letter_files(settings, name, student_id)
    reply = settings.reply_to.strip() or None
    data, message_id = _message(settings, to, "Your residency advising letter (sent again)",
                                html, text, reply if reply and is_address(reply) else None)
    path: Path | None = None
    if settings.delivery == "smtp":
        send_one(settings, resolve_smtp_password(settings), to, data)
    else:
        path = out_dir / "outbox" / f"{student_file_stem(student_id)}-resent-{message_id[:8]}.eml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    with Ledger(ledger_path(settings.output_dir)) as ledger:
        ledger.record_resend(student_id, settings.delivery, message_id, _who())
    return path


def send_test(settings: Settings, roster: str, student_id: str, to: str) -> Path | None:
    """Send one student's latest letter to an office address, marked as a test.

    Only ADVISING_OFFICE_EMAIL or an address in ADVISING_ALLOWED_EMAIL_DOMAINS; never recorded
    as the student's delivery. In outbox mode the .eml is written under output/.advising/test/
    and its path returned.
    """
    to = to.strip()
    office = settings.office_email.strip().lower()
    if not is_address(to) or not (to.lower() == office
                                  or domain_allowed(to, settings.allowed_email_domains)):
        raise AdvisingError(
            f"--to {to!r}: a test letter goes only to ADVISING_OFFICE_EMAIL or an address in "
            "ADVISING_ALLOWED_EMAIL_DOMAINS", fix="give the office's own address")
    html, text = _letter_files(settings, _roster_name(roster), student_id)
    data, _ = _message(settings, to,
                       f"[TEST, not sent to the student] Advising letter for student {student_id}",
                       html, text)
    if settings.delivery != "smtp":
        path = product_dir(settings.output_dir) / "test" / f"{student_file_stem(student_id)}.eml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return path
    send_one(settings, resolve_smtp_password(settings), to, data)
    return None
