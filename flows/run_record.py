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
import sqlite3
from collections import Counter
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows import drop_folder
from flows.files import product_dir, roster_output_dir, sha256_file, write_atomic
from flows.settings import Settings
from residency_rules.errors import AdvisingError
from residency_rules.specialties import SpecialtyTable, load_default_table, parse_table

if TYPE_CHECKING:  # the types only: this module runs before Prefect, GX and the stages load
    from flows.delivery import DeliveryReport
    from flows.intake import Roster
    from residency_rules.records import Evaluation

LEDGER_NAME = "delivery-ledger.sqlite"
RUN_JSON = "run.json"
LAST_RUN = "last-run.json"  # in output/.advising/: every file the last run found, and its fate
ERROR_LOG = "error.log"


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

    @property
    def at_risk(self) -> int:
        """Students at level 1 or 2."""
        return self.by_outlook_level.get("1", 0) + self.by_outlook_level.get("2", 0)

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
    message: str = ""
    counts: RosterCounts | None = None
    output: str = ""
    delivery: str = ""


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
    )


def write_run_json(
    out_dir: Path, file: str, sha: str, rules_version: str, print_fp: str, delivery: str,
    counts: RosterCounts, timings: dict[str, float], started: datetime, ended: datetime,
) -> None:
    """Write run.json: what ran, on which input, with which rules; the no-op check reads it."""
    record = {
        "status": "complete",
        "input": {"file": file, "sha256": sha},
        "rules_version": rules_version,
        "fingerprint": print_fp,
        "delivery": delivery,
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


def record_crash(path: Path, output_dir: Path, exc: BaseException) -> RosterOutcome:
    """Keep a bug's details for IT in the roster's output folder, out of the logs.

    The traceback may quote row values, so it goes to output/ (office eyes only), never to the
    console or Prefect. The roster stays in input/ and the next run starts it again. When even
    error.log cannot be written (a full disk), the outcome says so in one sentence instead.
    """
    import traceback

    log = roster_output_dir(output_dir, path) / ERROR_LOG
    details = "".join(traceback.format_exception(exc))
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        write_atomic(log, f"{stamp} processing {path.name}\n{details}".encode())
    except AdvisingError as unwritable:
        return RosterOutcome(
            path.name, RosterStatus.FAILED,
            f"stopped by an unexpected error ({type(exc).__name__}), and its details could not "
            f"be kept either ({unwritable}); the roster stays in the input folder for the next "
            "run",
        )
    return RosterOutcome(
        path.name, RosterStatus.FAILED,
        f"stopped by an unexpected error ({type(exc).__name__}); the roster stays in the input "
        f"folder for the next run. Please send {log} to IT.",
    )
