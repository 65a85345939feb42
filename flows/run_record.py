"""What a run leaves behind (run.json), and how a later run knows a roster is unchanged since.

Kept free of Prefect and Great Expectations on purpose: `advising run` asks these questions
before it starts either, so a nightly re-run of an unchanged roster costs a file hash and a
rename instead of seconds of server and library start-up.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sqlite3
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows import drop_folder
from flows.files import no_space, product_dir, roster_output_dir, sha256_file, write_atomic
from flows.settings import Settings
from residency_rules.calendar import Cycle, phase, season_key
from residency_rules.errors import AdvisingError
from residency_rules.explain import plural
from residency_rules.specialties import SpecialtyTable, load_default_table, parse_table

if TYPE_CHECKING:  # the types only: this module runs before Prefect, GX and the stages load
    from flows.delivery import DeliveryReport
    from flows.intake import Roster
    from residency_rules.records import Evaluation

LEDGER_NAME = "delivery-ledger.sqlite"
RUN_JSON = "run.json"
LAST_RUN = "last-run.json"  # in output/.advising/: every file the last run found, and its fate
ERROR_LOG = "error.log"
ERROR_LOG_MODE = 0o600  # a traceback may quote row values: the office's account only


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
    emails_sent: int = 0
    emails_unchanged: int = 0
    emails_failed: int = 0
    emails_skipped: int = 0
    # Pending students above level 2 whose exam date is late, whose score is overdue, or who
    # have a failure on the record: at risk too (docs/rules.md, Pending scores and timing).
    pending_at_risk: int = 0

    @property
    def at_risk(self) -> int:
        """Students at level 1 or 2, and pending students at risk."""
        levels = self.by_outlook_level
        return levels.get("1", 0) + levels.get("2", 0) + self.pending_at_risk

    @classmethod
    def from_json(cls, data: Any) -> RosterCounts:
        """Read the counts of a run.json, keeping only what this version knows."""
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RosterOutcome:
    """What happened to one roster, for the CLI summary and the run artifact."""

    file: str
    status: RosterStatus
    message: str = ""  # for the office, on the console
    counts: RosterCounts | None = None
    output: str = ""
    delivery: str = ""
    notice: str = ""  # for the office, e.g. the configured cycle is over; letters still went
    reason: str = ""  # why it was rejected or stopped, in words fit for Prefect (no row values)
    problems: str = ""  # the .problems.txt beside a rejected roster

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
        if c.rows and c.emails_sent + c.emails_unchanged == 0:
            return (
                f"no student could get a letter: {c.held_with_problems} of {c.rows} held for "
                f"problems, {c.emails_skipped} without a usable address"
            )
        return None


def exit_status(outcomes: list[RosterOutcome]) -> int:
    """Return the run's exit status: 1 when any roster needs attention, else 0 (README)."""
    return 1 if any(o.attention() for o in outcomes) else 0


def run_verdict(outcomes: list[RosterOutcome]) -> str | None:
    """Name every roster that needs attention and why, for the flow run's Failed state."""
    needy = [(o.file, why) for o in outcomes if (why := o.attention())]
    if not needy:
        return None
    verb = "needs" if len(needy) == 1 else "need"
    head = f"{len(needy)} of {plural(len(outcomes), 'roster')} {verb} attention"
    return f"{head}: " + "; ".join(f"{file} {why}" for file, why in needy)


def plain_reason(message: str) -> str:
    """Keep what is wrong from a product message: its first clause, without quoted details.

    The product's messages say what is wrong, then after a semicolon what to do; details in
    parentheses may quote a library's words about the file. Prefect gets the first part only.
    """
    first = message.split(";", 1)[0]
    return " ".join(re.sub(r"\s*\([^()]*\)", "", first).split())


def ledger_path(output_dir: Path) -> Path:
    """Return the delivery ledger's path, output/.advising/, moving an older one there first.

    Earlier versions kept it at output/delivery-ledger.sqlite, where a roster named
    delivery-ledger.sqlite.xlsx wanted its output folder. Its history is copied whole (SQLite's
    backup reads through the WAL) under a temporary name, renamed into place, and the old
    files are moved into output/.advising/ beside it, renamed, never deleted.
    """
    folder = product_dir(output_dir)
    new = folder / LEDGER_NAME
    old = output_dir / LEDGER_NAME
    if new.exists() or old.is_symlink() or not old.is_file():
        return new
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "move-ledger.lock").open("a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # two runs starting together: one moves
            if new.exists() or not old.is_file():
                return new
            tmp = folder / f".{LEDGER_NAME}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            with closing(sqlite3.connect(old)) as src, closing(sqlite3.connect(tmp)) as dst:
                src.backup(dst)
            os.replace(tmp, new)
            for suffix in ("", "-wal", "-shm"):
                leftover = output_dir / f"{LEDGER_NAME}{suffix}"
                if leftover.exists():
                    os.replace(leftover, folder / f"moved-from-output.{LEDGER_NAME}{suffix}")
    except (OSError, sqlite3.Error) as exc:
        raise AdvisingError(
            f"{old}: cannot move the delivery ledger to {new} ({exc}); check the free space "
            f"and the permissions of {output_dir}. Nothing was sent"
        ) from None
    return new


def load_table(settings: Settings) -> SpecialtyTable:
    """Load the office's edited specialty table when configured, else the packaged one."""
    if settings.specialty_table is None:
        return load_default_table()
    path = settings.specialty_table
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AdvisingError(
            f"ADVISING_SPECIALTY_TABLE: cannot read {path} ({exc.strerror}); "
            "fix the path or unset it to use the table shipped with the product"
        ) from None
    return parse_table(text, str(path))


def fingerprint(settings: Settings, table: SpecialtyTable) -> str:
    """Digest everything besides the roster that shapes the outputs, to recognise a no-op re-run."""
    digest = hashlib.sha256()
    # The whole table, rules included: an office may edit a label without raising `version`.
    digest.update(repr(table).encode())
    for path in sorted(settings.templates_dir.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    relevant = settings.model_dump(
        exclude={"smtp_password", "input_dir", "output_dir", "today", "quiet_seconds"}
    )
    digest.update(json.dumps(relevant, sort_keys=True, default=str).encode())
    # The phase of the run date, for every match, picks the letters' plan (docs/rules.md, The
    # application calendar): a re-drop in a new phase is a new run; the date moving within a
    # phase is not.
    digest.update(season_key(settings.run_date(), settings.cycle(table)).encode())
    return digest.hexdigest()[:16]


def previous_run(out_dir: Path) -> dict[str, Any]:
    """Return the roster's last run.json, or {} when there is none or it cannot be read."""
    try:
        data = json.loads((out_dir / RUN_JSON).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def settle_if_unchanged(
    path: Path, settings: Settings, print_fp: str, sha: str | None = None
) -> RosterOutcome | None:
    """Move an identical re-drop to processed/ and say so; None when the roster needs a run.

    Identical means: same bytes, same table, templates and settings, and the last run finished
    with no failed email (a failed one must be retried). The caller holds the roster's lock.
    """
    out_dir = roster_output_dir(settings.output_dir, path)
    previous = previous_run(out_dir)
    if (
        previous.get("status") != "complete"
        or previous.get("fingerprint") != print_fp
        or RosterCounts.from_json(previous.get("counts")).emails_failed != 0
        or previous.get("input", {}).get("sha256") != (sha or sha256_file(path))
    ):
        return None
    moved = drop_folder.move_processed(path, settings.input_dir, datetime.now().astimezone())
    return RosterOutcome(
        path.name, RosterStatus.UNCHANGED,
        f"identical to the roster processed {str(previous.get('end', ''))[:16].replace('T', ' ')}"
        f"; no letter written or sent again; roster kept in {moved.parent}",
        RosterCounts.from_json(previous.get("counts")), str(out_dir),
        str(previous.get("delivery", "")),
    )


def settle_unchanged_drops(settings: Settings) -> tuple[list[RosterOutcome], bool]:
    """Settle every identical re-drop in the input folder without starting the flow.

    Returns the outcomes and whether anything is left for the flow to look at. Busy or
    not-yet-settled files are left in place: the flow reports them in its own words.
    """
    table = load_table(settings)
    print_fp = fingerprint(settings, table)
    outcomes: list[RosterOutcome] = []
    skipped: list[RosterOutcome] = []
    left = False
    for drop in drop_folder.scan(settings.input_dir, settings.quiet_seconds):
        if drop.kind == "skipped":
            skipped.append(RosterOutcome(drop.path.name, RosterStatus.SKIPPED, drop.reason))
            continue
        if not drop.ready or drop.path.suffix.lower() not in drop_folder.ROSTER_SUFFIXES:
            left = True
            continue
        try:
            with drop_folder.roster_lock(settings.output_dir, drop.path):
                if not drop.path.exists():  # another run finished it while we waited
                    continue
                outcome = settle_if_unchanged(drop.path, settings, print_fp)
        except drop_folder.RosterBusy:
            left = True
            continue
        if outcome is None:
            left = True
        else:
            outcomes.append(outcome)
    # When the flow runs, it lists the skipped files itself; otherwise they are listed here.
    return (outcomes if left else outcomes + skipped), left


def count_roster(
    roster: Roster, evaluations: list[Evaluation], report: DeliveryReport, letters_written: int
) -> RosterCounts:
    """Count what one roster's run did, for run.json, the CLI and the artifact."""
    levels = Counter(e.level for e in evaluations)
    return RosterCounts(
        rows=len(roster.row_ids),
        evaluated=len(evaluations),
        held_with_problems=len(roster.held_rows()),
        problems=len(roster.problems),
        by_outlook_level={str(k): levels.get(k, 0) for k in range(1, 6)},
        letters_written=letters_written,
        emails_sent=report.sent,
        emails_unchanged=report.unchanged,
        emails_failed=report.failed,
        emails_skipped=report.skipped,
        pending_at_risk=sum(1 for e in evaluations if e.pending_at_risk and e.level > 2),
    )


def cycle_record(cycle: Cycle, today: date, warning: str) -> dict[str, Any]:
    """Describe the cycle the letters were written for, for run.json."""
    return {
        "name": cycle.name,
        "review_start": cycle.review_start.isoformat(),
        "rank_deadline": cycle.rank_deadline.isoformat(),
        "match_day": cycle.match_day.isoformat(),
        "confirmed": cycle.confirmed,
        "letters_written_for": today.isoformat(),
        "phase": phase(today, cycle),
        "stale": warning,
    }


def write_run_json(
    out_dir: Path, file: str, sha: str, rules_version: str, print_fp: str, delivery: str,
    counts: RosterCounts, timings: dict[str, float], started: datetime, ended: datetime,
    cycle: dict[str, Any],
) -> None:
    """Write run.json: what ran, on which input, with which rules; the no-op check reads it."""
    record = {
        "status": "complete",
        "input": {"file": file, "sha256": sha},
        "rules_version": rules_version,
        "fingerprint": print_fp,
        "delivery": delivery,
        "cycle": cycle,
        "counts": asdict(counts),
        "timings_seconds": timings,
        "start": started.isoformat(timespec="seconds"),
        "end": ended.isoformat(timespec="seconds"),
    }
    write_atomic(out_dir / RUN_JSON, json.dumps(record, indent=2).encode("utf-8"))


def write_run_summary(output_dir: Path, outcomes: list[RosterOutcome]) -> str | None:
    """Keep the whole run's summary, one entry per file in input/, in output/.advising/.

    run.json describes one roster; this says what became of every file the run found,
    skipped ones with the reason. Returns a sentence when it cannot be written (a full disk):
    the summary on the console and in Prefect must not be lost for it.
    """
    record = {
        "end": datetime.now().astimezone().isoformat(timespec="seconds"),
        "files": [
            {"file": o.file, "status": str(o.status), "message": o.message, "output": o.output}
            for o in outcomes
        ],
    }
    try:
        write_atomic(product_dir(output_dir) / LAST_RUN,
                     json.dumps(record, indent=2).encode("utf-8"))
    except AdvisingError as exc:
        return f"the run's summary was not kept: {exc}"
    return None


class StageCrash(Exception):
    """An unexpected error, reduced to what Prefect may keep: type, roster file, student ID.

    Prefect logs a failed task's exception and stores its message in the task run's state,
    where anyone with the UI reads it; an exception's message may quote a cell (a name, an
    address, a score). The original, with its traceback, is only in error.log.
    """

    def __init__(
        self, message: str, *, file: str = "", kind: str = "", log: str = ""
    ) -> None:
        super().__init__(message)  # one argument, so it pickles like any exception
        self.file = file
        self.kind = kind
        self.log = log


def record_crash(
    path: Path, output_dir: Path, exc: BaseException, stage: str = "the run"
) -> StageCrash:
    """Keep a bug's details for IT in error.log (mode 600), and return what Prefect may see.

    The traceback may quote row values, so it goes to output/ (office eyes only), never to the
    console or Prefect. The roster stays in input/ and the next run starts it again. When even
    error.log cannot be written (a full disk), the outcome says so in one sentence instead.
    """
    log = roster_output_dir(output_dir, path) / ERROR_LOG
    details = "".join(traceback.format_exception(exc))
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    kind = type(exc).__name__
    sid = getattr(exc, "student_id", None)
    student = f" (student {sid})" if isinstance(sid, str) and sid else ""
    written = str(log)
    try:
        write_atomic(log, f"{stamp} {stage}, {path.name}{student}\n{details}".encode(),
                     mode=ERROR_LOG_MODE)
        told = f"the details are in {log}"
    except AdvisingError as unwritable:  # a full disk, most likely: say so, do not raise
        told = f"its details could not be kept either ({unwritable})"
        written = ""
    return StageCrash(
        f"{stage} of {path.name} stopped by an unexpected {kind}{student}; {told}",
        file=path.name, kind=kind, log=written,
    )


def crash_outcome(path: Path, crash: StageCrash) -> RosterOutcome:
    """Tell the office that a bug stopped a roster, and where IT finds the details."""
    send = (f"Please send {crash.log} to IT." if crash.log
            else f"Please tell IT: {str(crash).split('; ', 1)[-1]}.")
    return RosterOutcome(
        path.name, RosterStatus.FAILED,
        f"stopped by an unexpected error ({crash.kind}); the roster stays in the input "
        f"folder for the next run. {send}",
        reason=str(crash),
    )


@contextmanager
def stage_guard(stage: str, roster: Path, output_dir: Path) -> Iterator[None]:
    """Let the product's own errors through; turn any other into a StageCrash first.

    Used inside every stage task, so the exception Prefect sees (and logs, and keeps in the
    task run's state) is already stripped of any value it quoted.
    """
    try:
        yield
    except (AdvisingError, StageCrash):
        raise  # anticipated: plain words the product wrote, naming files and settings only
    except Exception as exc:  # noqa: BLE001 - any bug, whatever it quotes
        if (full := no_space(exc)) is not None:  # a library's write found the disk full
            raise AdvisingError(disk_full_message(full, output_dir)) from None
        raise record_crash(roster, output_dir, exc, stage) from None


def disk_full_message(exc: OSError, output_dir: Path) -> str:
    """Say in one sentence that a write found the disk full, and what to do: not a bug."""
    where = exc.filename or output_dir
    return (
        f"stopped: the disk is full ({exc.strerror or exc}, writing {where}); free space and "
        "run again: the roster stays in the input folder, no file is left half-written, and "
        "no letter already delivered goes out twice"
    )
