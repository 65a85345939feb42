"""The delivery ledger (SQLite): what each student was sent, so nothing is ever mailed twice.

One row per letter version and channel: (student, content hash, channel, status, Message-ID,
times, a summary of the outlook it told). A row moves queued -> sending -> sent | failed |
uncertain, and each SMTP session has at most one row "sending": the status change of its
message and the start of its next one are committed together, before that next transaction.

A run killed after the relay accepted a message but before the ledger said so leaves that
row "sending" (one per open session at most). The next run marks it "uncertain" and does NOT
send it again (at-most-once: a student never gets the same letter twice; the office checks the
relay log for its Message-ID and calls `release_uncertain` to send it after all). A letter that
changes is a new letter and goes out normally. Commits use WAL with synchronous=NORMAL: they
survive the process being killed; a power cut may lose the last commits (then that letter can
go out a second time).
"""

from __future__ import annotations

import fcntl
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, ParamSpec, TypeVar

from flows.errors import AdvisingError
from flows.files import product_dir
from flows.letters.model import LetterSummary

LEDGER_NAME = "delivery-ledger.sqlite"

Channel = Literal["smtp", "outbox"]
Status = Literal["queued", "sending", "sent", "failed", "uncertain"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    student_id TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('smtp', 'outbox')),
    content_hash TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'uncertain')),
    message_id TEXT NOT NULL UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    level INTEGER NOT NULL,
    label TEXT NOT NULL,
    band TEXT NOT NULL,
    score INTEGER,
    specialty TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_student ON deliveries (student_id, channel, id);
-- Letters waiting for the office's approval (#24): tonight's set per roster, replaced each run.
CREATE TABLE IF NOT EXISTS waiting (
    roster TEXT NOT NULL,
    student_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    roster_sha TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (roster, student_id)
);
-- Who approved which letter (its hash) of which roster (its sha256), and when.
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY,
    roster TEXT NOT NULL,
    roster_sha TEXT NOT NULL,
    student_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_roster ON approvals (roster, student_id);
-- Students the office holds: no letter goes to them until released.
CREATE TABLE IF NOT EXISTS holds (
    student_id TEXT PRIMARY KEY,
    held_by TEXT NOT NULL,
    held_at TEXT NOT NULL
);
"""
_CHUNK = 500  # student IDs per IN (...) query, well under SQLite's variable limit


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger row, as delivery needs it."""

    row_id: int
    student_id: str
    channel: str
    content_hash: str
    status: str
    message_id: str
    attempts: int
    detail: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Planned:
    """What to do with one letter: send it (row_id), or why not."""

    student_id: str
    action: Literal["send", "unchanged", "uncertain"]
    row_id: int
    message_id: str
    when: str  # for "unchanged": when it was sent; for "uncertain": when it was interrupted


_P = ParamSpec("_P")
_R = TypeVar("_R")


class LedgerUnwritable(AdvisingError):
    """The ledger cannot record a change (a full disk, a read-only folder): stop delivering.

    A letter sent without a record could go out twice, so delivery stops at the first one.
    """

    def __init__(self, path: Path, exc: sqlite3.Error) -> None:
        super().__init__(
            f"{path}: cannot record deliveries in the ledger ({exc}); free space on that disk "
            f"(or check the permissions of {path.parent}) and run again"
        )


def _writes(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn SQLite's refusal to write (disk full, I/O error, read-only) into LedgerUnwritable.

    The transaction is rolled back first when SQLite has not done so itself.
    """

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            ledger = args[0]
            assert isinstance(ledger, Ledger)
            if ledger._db.in_transaction:
                ledger._db.execute("ROLLBACK")
            raise LedgerUnwritable(ledger.path, exc) from None

    return wrapper


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class EverySecond:
    """A timestamp text made at most once per second: it is written per message, 20k a run."""

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, self._make()
        return self._text


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class Ledger:
    """The SQLite delivery ledger at a path the caller chooses (under output/)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._clock = EverySecond(_now)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit (BEGIN ... COMMIT) below.
            # Shared by delivery's session threads, which take turns under their own lock.
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            # Outlooks and scores per student: the owner's only (and its -wal/-shm beside it,
            # which SQLite creates with the database file's permissions).
            os.chmod(path, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise AdvisingError(
                    f"{path}: cannot open the delivery ledger ({exc}); free space on that disk "
                    "and run again (the ledger is unchanged)"
                ) from None
            raise AdvisingError(
                f"{path}: cannot open the delivery ledger ({exc}); check that the folder is "
                "writable, or move a damaged file aside (a new ledger would re-send every letter)"
            ) from None

    def close(self) -> None:
        """Close the database; committed work is kept."""
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------------

    def _latest(self, student_ids: Sequence[str], where: str, params: tuple[object, ...] = ()
                ) -> dict[str, sqlite3.Row]:
        """Return, per student, the newest row matching `where`."""
        found: dict[str, sqlite3.Row] = {}
        self._db.row_factory = sqlite3.Row
        try:
            for chunk in _chunks(student_ids):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT * FROM deliveries WHERE id IN (SELECT MAX(id) FROM deliveries "
                    f"WHERE student_id IN ({marks}) AND {where} GROUP BY student_id)",
                    (*chunk, *params),
                )
                for row in rows:
                    found[row["student_id"]] = row
        finally:
            self._db.row_factory = None
        return found

    def previous_summaries(self, student_ids: Iterable[str]) -> dict[str, LetterSummary]:
        """Return what the last letter sent to each student said, to tell them what changed."""
        rows = self._latest(list(student_ids), "status = 'sent'")
        return {
            sid: LetterSummary(
                level=row["level"],
                label=row["label"],
                band=row["band"],
                score=row["score"],
                specialty=row["specialty"],
                sent_on=date.fromisoformat(row["updated_at"][:10]),
            )
            for sid, row in rows.items()
        }

    def levels_before(self, student_ids: Iterable[str], when: str) -> dict[str, int]:
        """Return the outlook level of each student's last letter sent before `when` (an ISO
        time), to tell a student newly at risk from one the office already knew about."""
        rows = self._latest(list(student_ids), "status = 'sent' AND updated_at < ?", (when,))
        return {sid: int(row["level"]) for sid, row in rows.items()}

    def entries(self, student_id: str) -> list[Entry]:
        """Return every row for one student, oldest first (for tests and support)."""
        rows = self._db.execute(
            "SELECT id, student_id, channel, content_hash, status, message_id, attempts, "
            "detail, updated_at FROM deliveries WHERE student_id = ? ORDER BY id",
            (student_id,),
        )
        return [Entry(*row) for row in rows]

    def uncertain(self) -> list[Entry]:
        """Return the letters whose delivery was interrupted, for the office to check."""
        rows = self._db.execute(
            "SELECT id, student_id, channel, content_hash, status, message_id, attempts, "
            "detail, updated_at FROM deliveries WHERE status = 'uncertain' ORDER BY id"
        )
        return [Entry(*row) for row in rows]

    # --- planning -----------------------------------------------------------------------------

    @_writes
    def plan(
        self,
        letters: Sequence[tuple[str, str, LetterSummary]],
        channel: Channel,
        new_message_id: Iterator[str],
    ) -> list[Planned]:
        """Decide for each (student, hash, summary) whether to send, in one transaction.

        Unchanged = the newest letter sent to the student (by smtp; for the outbox, by either
        channel) has this hash. Otherwise the student's newest open row for this channel is
        reused when it holds the same letter (same Message-ID on a retry), else a new row is
        queued. An smtp row left "sending" by a killed run becomes "uncertain" and is held.
        """
        ids = [sid for sid, _, _ in letters]
        sent_where = "status = 'sent'" + (" AND channel = 'smtp'" if channel == "smtp" else "")
        last_sent = self._latest(ids, sent_where)
        newest = self._latest(ids, "channel = ?", (channel,))
        now = _now()
        plans: list[Planned] = []
        to_uncertain: list[tuple[str, int]] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sid, content_hash, summary in letters:
                sent = last_sent.get(sid)
                if sent is not None and sent["content_hash"] == content_hash:
                    plans.append(
                        Planned(sid, "unchanged", sent["id"], sent["message_id"],
                                sent["updated_at"])
                    )
                    continue
                row = newest.get(sid)
                reusable = (
                    row is not None
                    and row["content_hash"] == content_hash
                    and row["status"] != "sent"
                    and (sent is None or row["id"] > sent["id"])
                )
                if reusable:
                    assert row is not None
                    held = channel == "smtp" and row["status"] in ("sending", "uncertain")
                    if held and row["status"] == "sending":
                        to_uncertain.append((now, row["id"]))
                    when = now if row["status"] == "sending" else row["updated_at"]
                    plans.append(
                        Planned(sid, "uncertain" if held else "send", row["id"],
                                row["message_id"], when)
                    )
                    continue
                message_id = next(new_message_id)
                cur = self._db.execute(
                    "INSERT INTO deliveries (student_id, channel, content_hash, status, "
                    "message_id, created_at, updated_at, level, label, band, score, specialty) "
                    "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sid, channel, content_hash, message_id, now, now, summary.level,
                     summary.label, summary.band, summary.score, summary.specialty),
                )
                assert cur.lastrowid is not None
                plans.append(Planned(sid, "send", cur.lastrowid, message_id, now))
            if to_uncertain:
                self._db.executemany(
                    "UPDATE deliveries SET status = 'uncertain', updated_at = ?, detail = "
                    "'interrupted while sending' WHERE id = ?",
                    to_uncertain,
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back itself (a full disk)
                self._db.execute("ROLLBACK")
            raise
        return plans

    # --- recording ----------------------------------------------------------------------------

    @_writes
    def step(
        self,
        finished: tuple[int, Status, str] | None,
        starting: int | None,
    ) -> None:
        """Record one message's outcome and mark the next one 'sending', in one commit."""
        done_id, status, detail = finished if finished is not None else (0, "sent", "")
        # One statement, so one implicit transaction: ~4x cheaper than BEGIN/UPDATE/UPDATE/COMMIT
        # at one commit per message. Row ids start at 1, so 0 matches nothing.
        self._db.execute(
            "UPDATE deliveries SET "
            "status = CASE WHEN id = :start THEN 'sending' ELSE :status END, "
            "detail = CASE WHEN id = :done THEN :detail ELSE detail END, "
            "attempts = CASE WHEN id = :start THEN attempts + 1 ELSE attempts END, "
            "updated_at = :now "
            "WHERE id IN (:done, :start)",
            {"done": done_id, "status": status, "detail": detail,
             "start": starting if starting is not None else 0, "now": self._clock.now()},
        )

    @_writes
    def record_many(
        self, outcomes: Sequence[tuple[int, Status, str]], *, attempt: bool = True
    ) -> None:
        """Record many outcomes in one transaction (the outbox: rewriting a file is harmless).

        attempt=False for outcomes whose try was counted when it started (SMTP outcomes that
        step() could not commit, recorded again once the disk takes them).
        """
        if not outcomes:
            return
        now = _now()
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "UPDATE deliveries SET status = ?, detail = ?, updated_at = ?, "
                f"attempts = attempts + {int(attempt)} WHERE id = ?",
                [(status, detail, now, row_id) for row_id, status, detail in outcomes],
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back itself (a full disk)
                self._db.execute("ROLLBACK")
            raise

    @_writes
    def release_uncertain(self, student_ids: Iterable[str] | None = None) -> int:
        """Let uncertain letters go out on the next run (after the relay log shows no delivery)."""
        now = _now()
        if student_ids is None:
            cur = self._db.execute(
                "UPDATE deliveries SET status = 'failed', detail = 'released by the office', "
                "updated_at = ? WHERE status = 'uncertain'",
                (now,),
            )
            return cur.rowcount
        total = 0
        for chunk in _chunks(list(student_ids)):
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                "UPDATE deliveries SET status = 'failed', detail = 'released by the office', "
                f"updated_at = ? WHERE status = 'uncertain' AND student_id IN ({marks})",
                (now, *chunk),
            )
            total += cur.rowcount
        return total


    # --- the office's review: waiting, approved, held (#24) -----------------------------------

    def last_sent_hashes(self, student_ids: Iterable[str], channel: Channel) -> dict[str, str]:
        """Return the hash of each student's newest delivered letter (what "unchanged" means)."""
        where = "status = 'sent'" + (" AND channel = 'smtp'" if channel == "smtp" else "")
        return {sid: row["content_hash"]
                for sid, row in self._latest(list(student_ids), where).items()}

    def held(self) -> set[str]:
        """Return the students the office holds."""
        return {row[0] for row in self._db.execute("SELECT student_id FROM holds")}

    @_writes
    def hold(self, student_ids: Iterable[str], by: str) -> list[str]:
        """Hold students (no letter until released); return those not held before."""
        now = _now()
        added = []
        for sid in student_ids:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO holds (student_id, held_by, held_at) VALUES (?, ?, ?)",
                (sid, by, now))
            if cur.rowcount:
                added.append(sid)
        return added

    @_writes
    def release_held(self, student_ids: Iterable[str]) -> list[str]:
        """Release held students; return those that were held."""
        released = []
        for sid in student_ids:
            if self._db.execute("DELETE FROM holds WHERE student_id = ?", (sid,)).rowcount:
                released.append(sid)
        return released

    def approved(self, roster: str) -> set[tuple[str, str]]:
        """Return the (student, letter hash) pairs the office approved for a roster."""
        rows = self._db.execute(
            "SELECT student_id, content_hash FROM approvals WHERE roster = ?", (roster,))
        return {(sid, h) for sid, h in rows}

    @_writes
    def set_waiting(self, roster: str, roster_sha: str, letters: Sequence[tuple[str, str]],
                    *, replace: bool) -> None:
        """Record tonight's waiting letters (student, hash) of a roster; replace: a new run."""
        now = _now()
        self._db.execute("BEGIN")
        try:
            if replace:
                self._db.execute("DELETE FROM waiting WHERE roster = ?", (roster,))
            self._db.executemany(
                "INSERT OR REPLACE INTO waiting (roster, student_id, content_hash, roster_sha, "
                "since) VALUES (?, ?, ?, ?, ?)",
                [(roster, sid, h, roster_sha, now) for sid, h in letters])
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def waiting(self, roster: str) -> list[tuple[str, str, str]]:
        """Return the roster's waiting letters: (student, letter hash, roster sha256)."""
        rows = self._db.execute(
            "SELECT student_id, content_hash, roster_sha FROM waiting WHERE roster = ? "
            "ORDER BY student_id", (roster,))
        return [(sid, h, sha) for sid, h, sha in rows]

    def waiting_roster_shas(self) -> set[str]:
        """Return the sha256 of every roster file some waiting letter was written from.

        Pruning input/processed/ keeps these: approving the letters copies that file back.
        """
        return {sha for (sha,) in self._db.execute("SELECT DISTINCT roster_sha FROM waiting")}

    @_writes
    def approve(self, roster: str, letters: Sequence[tuple[str, str, str]], by: str) -> int:
        """Record the approval of waiting letters (student, hash, roster sha256) by `by`."""
        now = _now()
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT INTO approvals (roster, roster_sha, student_id, content_hash, "
                "approved_by, approved_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(roster, sha, sid, h, by, now) for sid, h, sha in letters])
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return len(letters)


    @_writes
    def record_resend(self, student_id: str, channel: Channel, message_id: str, by: str) -> str:
        """Record a resend of the student's last delivered letter (a row of its own, 'sent',
        the same hash and outlook); return that hash. KeyError when nothing was delivered."""
        rows = self._latest([student_id], "status = 'sent'")
        row = rows[student_id]
        now = _now()
        self._db.execute(
            "INSERT INTO deliveries (student_id, channel, content_hash, status, message_id, "
            "attempts, detail, created_at, updated_at, level, label, band, score, specialty) "
            "VALUES (?, ?, ?, 'sent', ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (student_id, channel, row["content_hash"], message_id, f"resent by {by}", now, now,
             row["level"], row["label"], row["band"], row["score"], row["specialty"]),
        )
        return str(row["content_hash"])


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
