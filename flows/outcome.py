"""What a run did, as values: each letter's outcome, each roster's, and the digest of both.

Delivery decides a letter's status once, as a LetterStatus; the workbook, the Summary, the
office's note, the Prefect artifact and the console each render it to words at their edge,
and none of them parses another's text to learn what happened. Nothing here imports Prefect,
a stage or an I/O library: every stage and report may import it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from residency_rules.explain import plural
from residency_rules.records import Evaluation


class LetterStatus(StrEnum):
    """What became of one student's letter in a run."""

    WRITTEN = "written"  # rendered; delivery has not decided anything about it
    OUTBOX = "outbox"  # written to the outbox folder as an .eml: nothing was sent
    SENT = "sent"  # accepted by the school's relay
    UNCHANGED = "unchanged"  # the same letter went out before: not delivered again
    HELD = "held"  # the student's row has a problem (the Problems sheet): no letter
    NO_ADDRESS = "no address"  # no email address in the row
    BAD_ADDRESS = "bad address"  # an address that is not valid
    OUTSIDE_DOMAINS = "outside domains"  # an address outside ADVISING_ALLOWED_EMAIL_DOMAINS
    FAILED = "failed"  # the relay refused it, or could not be reached: the next run tries again
    UNCERTAIN = "uncertain"  # cut off while the relay took it: never re-sent on its own
    WAITING = "waiting"  # new or changed, waiting for the office's approval (ADVISING_APPROVAL)


# Statuses that mean the letter reached its destination for this run (or did before).
DELIVERED = frozenset({LetterStatus.OUTBOX, LetterStatus.SENT})
# No usable address: the letter was written but cannot be delivered.
UNADDRESSED = frozenset(
    {LetterStatus.NO_ADDRESS, LetterStatus.BAD_ADDRESS, LetterStatus.OUTSIDE_DOMAINS}
)
# Needs someone to look: the relay refused it, or its delivery is uncertain.
TROUBLE = frozenset({LetterStatus.FAILED, LetterStatus.UNCERTAIN})


@dataclass(frozen=True, slots=True)
class LetterOutcome:
    """One letter's status, with what the office needs to act on it.

    detail: the relay's reply or why delivery failed (product words and SMTP codes, never a
    name, an address or a score); when: the day it was sent (unchanged) or interrupted
    (uncertain); message_id: to look an uncertain letter up in the relay's log.
    """

    status: LetterStatus
    detail: str = ""
    when: str = ""
    message_id: str = ""


WRITTEN = LetterOutcome(LetterStatus.WRITTEN)
HELD = LetterOutcome(LetterStatus.HELD)


def tally(letters: Mapping[str, LetterOutcome]) -> Counter[LetterStatus]:
    """Count the letters by status: every figure of a run is derived from this one count."""
    return Counter(outcome.status for outcome in letters.values())


def roster_letters(
    row_ids: Mapping[int, str],
    held_rows: Set[int],
    evaluated: Container[str],
    delivered: Mapping[str, LetterOutcome],
) -> dict[str, LetterOutcome]:
    """Give every student of the roster one outcome: held, or what delivery made of the letter.

    A student whose row is held (a problem on the Problems sheet) or who was not evaluated
    gets no letter; the others get what delivery returned (WRITTEN if it returned nothing).
    """
    letters: dict[str, LetterOutcome] = {}
    for row, sid in row_ids.items():
        if row in held_rows or sid not in evaluated:
            letters.setdefault(sid, HELD)
        else:
            letters[sid] = delivered.get(sid, WRITTEN)
    return letters


class RosterStatus(StrEnum):
    """What became of one roster in a run."""

    DONE = "done"  # processed: workbook, letters, delivery
    UNCHANGED = "unchanged"  # identical to the last run: nothing written or sent again
    REJECTED = "rejected"  # could not be read at all: moved to input/rejected/
    BUSY = "busy"  # another run holds its lock
    FAILED = "failed"  # stopped by an error: left in input/ for the next run
    WAITING = "waiting"  # still being copied, or too new to be sure it is complete
    SKIPPED = "skipped"  # not a roster at all (a lock file, a hidden file, a folder): left alone


@dataclass(frozen=True)
class RosterCounts:
    """The counts run.json keeps for a roster, and the CLI and the artifact show."""

    rows: int = 0
    evaluated: int = 0
    held_with_problems: int = 0
    problems: int = 0
    by_outlook_level: dict[str, int] = field(default_factory=dict)  # "1".."5" -> students
    letters_written: int = 0
    emails_sent: int = 0  # accepted by the school's relay (never the outbox: nothing is sent)
    outbox_written: int = 0  # written to the outbox as .eml files
    emails_unchanged: int = 0
    emails_failed: int = 0
    emails_skipped: int = 0
    # Students the rules put at risk: an at-risk level ([levels] in the data file), or pending
    # with a late date, an overdue score or a failure on the record (docs/rules.md).
    at_risk: int = 0
    # New or changed letters waiting for the office's approval: nothing sent (#24).
    waiting: int = 0
    # Letters held for a reason of their own (the office's hold, no Match result yet), not a
    # row problem: a release or an approval may free them without the roster changing.
    held_for_reason: int = 0

    @property
    def delivered(self) -> int:
        """Letters that reached their destination in this run: the relay, or the outbox."""
        return self.emails_sent + self.outbox_written

    @classmethod
    def from_json(cls, data: Any) -> RosterCounts:
        """Read the counts of a run.json, keeping only what this version knows."""
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RosterDigest:
    """The student IDs behind a roster's counts, for the office's note: IDs only, no names."""

    held: tuple[str, ...] = ()  # rows held for a problem: no letter until fixed
    # Letters held for a reason of their own (no Match result yet, the office's hold).
    held_for_reason: tuple[str, ...] = ()
    at_risk: tuple[str, ...] = ()  # the Summary's at-risk list, in its order
    failed: tuple[str, ...] = ()  # letters failed or uncertain
    waiting: tuple[str, ...] = ()  # letters waiting for the office's approval
    delivered: tuple[str, ...] = ()  # letters sent (or written to the outbox) in this run


def count_roster(
    *, rows: int, held: int, problems: int, evaluations: Sequence[Evaluation],
    letters: Mapping[str, LetterOutcome],
) -> tuple[RosterCounts, RosterDigest]:
    """Count what one roster's run did and name the students behind the counts.

    The at-risk list is in the Summary's order (level, then specialty); every figure comes
    from the evaluations and the letters' outcomes, nothing from a file a stage wrote.
    """
    levels = Counter(e.level for e in evaluations)
    by_status = tally(letters)
    at_risk = [e for e in evaluations if e.at_risk]
    at_risk.sort(key=lambda e: (e.level, e.specialty))
    counts = RosterCounts(
        rows=rows,
        evaluated=len(evaluations),
        held_with_problems=held,
        problems=problems,
        by_outlook_level={str(k): levels.get(k, 0) for k in range(1, 6)},
        letters_written=sum(n for s, n in by_status.items() if s is not LetterStatus.HELD),
        emails_sent=by_status[LetterStatus.SENT],
        outbox_written=by_status[LetterStatus.OUTBOX],
        emails_unchanged=by_status[LetterStatus.UNCHANGED],
        emails_failed=sum(by_status[s] for s in TROUBLE),
        emails_skipped=sum(by_status[s] for s in UNADDRESSED),
        at_risk=len(at_risk),
        waiting=by_status[LetterStatus.WAITING],
        held_for_reason=sum(o.status is LetterStatus.HELD and bool(o.detail)
                            for o in letters.values()),
    )
    digest = RosterDigest(
        held=tuple(sid for sid, o in letters.items()
                   if o.status is LetterStatus.HELD and not o.detail),
        held_for_reason=tuple(sid for sid, o in letters.items()
                              if o.status is LetterStatus.HELD and o.detail),
        at_risk=tuple(dict.fromkeys(e.student_id for e in at_risk)),
        failed=tuple(sid for sid, o in letters.items() if o.status in TROUBLE),
        waiting=tuple(sid for sid, o in letters.items() if o.status is LetterStatus.WAITING),
        delivered=tuple(sid for sid, o in letters.items() if o.status in DELIVERED),
    )
    return counts, digest


@dataclass(frozen=True, kw_only=True)
class RosterOutcome:
    """What happened to one roster, for the console, run.json, the note and the artifact."""

    file: str
    status: RosterStatus
    message: str = ""  # for the office, on the console
    counts: RosterCounts | None = None
    digest: RosterDigest = field(default_factory=RosterDigest)
    output: str = ""  # the roster's output folder, or where a rejected roster was moved
    workbook: str = ""  # the annotated workbook, once written
    delivery: str = ""
    notice: str = ""  # for the office, e.g. the configured cycle is over; letters still went
    columns: str = ""  # one line: columns read, not read, fields not found (headers only)
    reason: str = ""  # why it was rejected or stopped, in words fit for Prefect (no row values)
    problems: str = ""  # the .problems.txt beside a rejected roster
    started: str = ""  # ISO times of the roster's run, to ask the ledger what changed
    ended: str = ""

    def attention(self) -> str | None:
        """Say why this roster makes the run need attention (exit 1, flow run Failed), or None.

        Every letter delivered, unchanged, or held for a row problem the Problems sheet lists
        is a good night. A roster rejected or stopped, a letter failed or uncertain, or a roster
        where no student could get a letter at all (all held, say, because the allowed domain
        does not match the roster's addresses) is not, even though nothing crashed.
        """
        if self.status is RosterStatus.REJECTED:
            where = f"; see {self.problems}" if self.problems else ""
            return f"rejected ({self.reason}){where}"
        if self.status is RosterStatus.FAILED:
            return f"stopped ({self.reason})"
        c = self.counts
        if self.status is not RosterStatus.DONE or c is None:
            return None
        if c.emails_failed:
            return f"{plural(c.emails_failed, 'letter')} failed or uncertain"
        if c.rows and c.delivered + c.emails_unchanged + c.waiting == 0:
            return (
                f"no student could get a letter: {c.held_with_problems} of {c.rows} held for "
                f"problems, {c.emails_skipped} without a usable address"
            )
        return None


def exit_status(outcomes: Iterable[RosterOutcome]) -> int:
    """Return the run's exit status: 1 when any roster needs attention, else 0 (README)."""
    return 1 if any(o.attention() for o in outcomes) else 0


def run_verdict(outcomes: Iterable[RosterOutcome]) -> str | None:
    """Name every roster that needs attention and why, for the flow run's Failed state."""
    outcomes = list(outcomes)
    needy = [(o.file, why) for o in outcomes if (why := o.attention())]
    if not needy:
        return None
    verb = "needs" if len(needy) == 1 else "need"
    head = f"{len(needy)} of {plural(len(outcomes), 'roster')} {verb} attention"
    return f"{head}: " + "; ".join(f"{file} {why}" for file, why in needy)
