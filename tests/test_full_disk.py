"""Out of disk at every stage (#16): one plain sentence, nothing half-written, the ledger right.

The ledger's refusals are SQLite's own error ("database or disk is full"), raised by a thin
wrapper around the real connection at a chosen moment; files meet a real ENOSPC from os.write.
Delivery goes to the real aiosmtpd sink.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from flows import files
from flows.delivery.ledger import Ledger, LedgerUnwritable
from flows.errors import AdvisingError, DeliveryError
from flows.files import write_atomic
from flows.intake.demo import write_demo_roster
from flows.outcome import LetterStatus, tally
from residency_rules.specialties import SpecialtyTable
from tests.support.delivery import SHORT_WAITS, deliver_now, make_letters, smtp_settings
from tests.support.smtp_sink import Sink, running_sink

_WRITES = ("UPDATE", "INSERT", "COMMIT", "BEGIN")


class _FullDisk:
    """The real SQLite connection, refusing writes as SQLite does on a full disk while full()."""

    def __init__(self, db: sqlite3.Connection, full: Callable[[], bool]) -> None:
        object.__setattr__(self, "_db", db)
        object.__setattr__(self, "full", full)
        object.__setattr__(self, "refused", 0)

    def _check(self, sql: str) -> None:
        if sql.lstrip().upper().startswith(_WRITES) and self.full():
            object.__setattr__(self, "refused", self.refused + 1)
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._db.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._db, name, value)


def _statuses(ledger: Ledger, ids: list[str]) -> dict[str, list[str]]:
    return {sid: [e.status for e in ledger.entries(sid)] for sid in ids}


@pytest.mark.parametrize("connections", [1, 3])
def test_a_letter_the_relay_accepted_is_recorded_sent_once_the_disk_takes_it(
    tmp_path: Path, table: SpecialtyTable, connections: int
) -> None:
    """The ledger refuses a write after the 3rd 250: delivery stops, the accepted letters are
    recorded as sent when a retry succeeds, and the next run sends the rest, each once."""
    letters = make_letters(tmp_path, table, 12 if connections == 1 else 230)
    ids = [lt.student_id for lt in letters]
    with Ledger(tmp_path / "ledger.sqlite") as ledger, running_sink() as sink:
        refusals = {"left": 2}  # the step, then the first retry; the second retry succeeds

        def full() -> bool:
            if len(sink.received) < 3 or refusals["left"] == 0:
                return False
            refusals["left"] -= 1
            return True

        ledger._db = _FullDisk(ledger._db, full)  # type: ignore[assignment]
        settings = smtp_settings(sink, smtp_connections=connections)
        with pytest.raises(DeliveryError) as stopped:
            deliver_now(letters, settings, ledger, tmp_path / "outbox")
        message = str(stopped.value)
        assert "database or disk is full" in message and "recorded as sent" in message
        assert "\n" not in message and "Traceback" not in message
        accepted = {r for m in sink.received for r in m.rcpt_tos}
        statuses = _statuses(ledger, ids)
        sent = {lt.to for lt in letters if statuses[lt.student_id] == ["sent"]}
        assert sent == accepted  # every 250 seen is recorded, nothing else
        assert not any("sending" in s or "uncertain" in s for s in statuses.values())

        again = deliver_now(letters, settings, ledger, tmp_path / "outbox")
        assert tally(again) == {LetterStatus.UNCHANGED: len(accepted),
                                LetterStatus.SENT: len(letters) - len(accepted)}
        assert set(sink.handler.per_recipient().values()) == {1}
        assert len(sink.handler.per_recipient()) == len(letters)


def test_when_the_disk_stays_full_the_accepted_letter_is_named_and_never_sent_twice(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """No retry succeeds: the sentence names the student whose letter arrived; the next run
    holds it as uncertain (not sent again) and sends every other letter."""
    letters = make_letters(tmp_path, table, 8)
    with Ledger(tmp_path / "ledger.sqlite") as ledger, running_sink() as sink:
        disk = {"full": False}
        ledger._db = _FullDisk(  # type: ignore[assignment]
            ledger._db, lambda: disk["full"] or len(sink.received) >= 2
        )
        disk_full_from_now = ledger._db
        with pytest.raises(DeliveryError) as stopped:
            deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        second = letters[1].student_id
        assert f"students {second}" in str(stopped.value)
        assert "do not release them" in str(stopped.value)
        assert disk_full_from_now.refused == 1 + len(SHORT_WAITS.ledger)
        ledger._db = ledger._db._db  # type: ignore[attr-defined]  # space freed

        again = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(again) == {LetterStatus.UNCHANGED: 1, LetterStatus.SENT: len(letters) - 2,
                                LetterStatus.UNCERTAIN: 1}
        assert [e.status for e in ledger.entries(second)] == ["uncertain"]
        assert set(sink.handler.per_recipient().values()) == {1}


def test_a_ledger_that_cannot_plan_says_so_and_sends_nothing(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """A full disk before the first letter: one sentence, no message sent, no row left open."""
    letters = make_letters(tmp_path, table, 3)
    with Ledger(tmp_path / "ledger.sqlite") as ledger, running_sink() as sink:
        ledger._db = _FullDisk(ledger._db, lambda: True)  # type: ignore[assignment]
        with pytest.raises(LedgerUnwritable, match="cannot record deliveries"):
            deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert sink.received == []
        ledger._db = ledger._db._db  # type: ignore[attr-defined]
        assert all(ledger.entries(lt.student_id) == [] for lt in letters)


def _enospc_after(limit: int, under: Path) -> Callable[..., int]:
    """An os.write that fails with ENOSPC once `limit` bytes went to files under `under`."""
    real = os.write
    written = {"n": 0}

    def write(fd: int, data: Any) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(str(under)):
            if written["n"] + len(data) > limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written["n"] += len(data)
        return real(fd, data)

    return write


def test_a_file_the_disk_cannot_take_is_never_left_under_its_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC part way: one sentence naming the file, the old content kept, no temporary."""
    target = tmp_path / "out" / "run.json"
    write_atomic(target, b"old")
    monkeypatch.setattr(files.os, "write", _enospc_after(10, tmp_path))
    with pytest.raises(AdvisingError) as full:
        write_atomic(target, b"x" * 1000)
    assert str(full.value).startswith(f"{target}: cannot write it (No space left on device)")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]


# --- a real full disk: output/ on a small tmpfs (root only) ----------------------------------

STUDENTS = 12


def _mount(point: Path, kib: int, remount: bool = False) -> None:
    options = f"{'remount,' if remount else ''}size={kib}k"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True,
                   capture_output=True)


@pytest.fixture
def small_output(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """output/ on its own tmpfs, which tests size; skipped where mounting is not allowed."""
    out = workdir / "output"
    try:
        _mount(out, 64 * 1024)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield out
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def _smtp_env(monkeypatch: pytest.MonkeyPatch, sink: Sink) -> None:
    for key, value in {
        "ADVISING_DELIVERY": "smtp", "ADVISING_SMTP_HOST": sink.host,
        "ADVISING_SMTP_PORT": str(sink.port), "ADVISING_SMTP_SECURITY": "none",
        "ADVISING_MAIL_FROM": "advising@example.edu",
        "ADVISING_ALLOWED_EMAIL_DOMAINS": "students.example.edu",
    }.items():
        monkeypatch.setenv(key, value)


def _whole(out: Path) -> None:
    """Every file under a final name is complete (temporary names start with a dot)."""
    for path in out.rglob("*"):
        parts = path.relative_to(out).parts
        if not path.is_file() or any(p.startswith(".") for p in parts):
            continue
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as zf:
                assert zf.testzip() is None, path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".html" and parts[-2] == "letters":
            assert path.read_text(encoding="utf-8").rstrip().endswith("</html>"), path


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
# Sizes measured for this roster: where each fills (if the outputs grow, adjust the sizes).
@pytest.mark.parametrize(("kib", "stage"), [
    (8, "validation"),  # the validation page: 4-8
    (64, "cannot open the delivery ledger"),  # 12-96 (32 gives SQLite's "disk I/O error")
    (192, ".letters."),  # the letters' staging folder: 112-272
    # SMTP delivery: the ledger refuses the commit after a 250; with this run's letters
    # removed (rendered again next run), the accepted letter is recorded as sent after all.
    (312, "are recorded as sent"),  # 288-336 (the ledger holds the approval tables too)
    (352, "-annotated.xlsx"),  # the workbook: 344-368; from 376 the run finishes
])
def test_a_real_full_disk_stops_the_roster_in_one_sentence_and_loses_nothing(
    workdir: Path, small_output: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], kib: int, stage: str,
) -> None:
    """output/ on a tmpfs of `kib` KiB fills at a different stage for each size (validation
    pages, letters, the ledger, the workbook, run.json). Each time: one plain sentence on
    stderr, the roster left in input/, nothing half-written, the ledger sound; with space
    again, the next run finishes and no student is mailed twice."""
    from flows.cli import report
    from flows.pipeline import RunIncomplete, advising_run

    roster = write_demo_roster(workdir / "input" / "class.xlsx", STUDENTS, seed=7)
    os.utime(roster, (0, 0))
    _mount(small_output, kib, remount=True)
    with running_sink() as sink:
        _smtp_env(monkeypatch, sink)
        with pytest.raises(RunIncomplete) as stopped:
            advising_run()
        (outcome,) = stopped.value.outcomes
        capsys.readouterr()
        report(outcome)
        said = capsys.readouterr()
        assert said.out == "" and said.err.count("\n") == 1, said
        assert "No space left on device" in said.err or "disk is full" in said.err, said.err
        assert "Traceback" not in said.err and stage in said.err
        assert roster.exists()  # left for the next run
        _whole(small_output)
        ledger = small_output / ".advising" / "delivery-ledger.sqlite"
        accepted = {r for m in sink.received for r in m.rcpt_tos}
        if ledger.exists():
            with closing(sqlite3.connect(ledger)) as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        _mount(small_output, 64 * 1024, remount=True)  # space freed
        (done,) = advising_run()
        assert done.status == "done", done.message
        counts = sink.handler.per_recipient()
        assert set(counts.values()) == {1}  # nobody twice
        assert len(counts) == done.counts.letters_written - done.counts.emails_skipped
        assert accepted <= set(counts)
        assert done.counts.emails_failed == 0  # no letter left "uncertain"
        _whole(small_output)


def test_the_outbox_on_a_full_disk_keeps_what_it_wrote_and_finishes_next_time(
    tmp_path: Path, table: SpecialtyTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC part way through the outbox: one sentence naming the .eml; the files written are
    whole and recorded, the rest queued; with space again, the rest are written, none twice."""
    from tests.support.letters import make_settings

    letters = make_letters(tmp_path, table, 6)
    outbox = tmp_path / "outbox"
    settings = make_settings()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        monkeypatch.setattr(files.os, "write", _enospc_after(3 * len(letters[0].html), outbox))
        with pytest.raises(AdvisingError, match=r"\.eml: cannot write it \(No space left"):
            deliver_now(letters, settings, ledger, outbox)
        monkeypatch.undo()
        written = sorted(p.name for p in outbox.iterdir())
        assert 0 < len(written) < len(letters) and all(n.endswith(".eml") for n in written)
        statuses = {lt.student_id: [e.status for e in ledger.entries(lt.student_id)]
                    for lt in letters}
        assert sorted(s for s, st in statuses.items() if st == ["sent"]) == [
            n.removesuffix(".eml") for n in written]

        again = deliver_now(letters, settings, ledger, outbox)
        assert tally(again) == {LetterStatus.OUTBOX: len(letters) - len(written),
                                LetterStatus.UNCHANGED: len(written)}
        assert len(list(outbox.iterdir())) == len(letters)


def test_a_bug_whose_error_log_cannot_be_written_is_still_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error.log write fails too (a full disk): the outcome says both, in one line."""
    from flows.crash import crash_outcome, record_crash

    roster = tmp_path / "input" / "class.xlsx"
    monkeypatch.setattr(files.os, "write", _enospc_after(0, tmp_path / "output"))
    try:
        raise KeyError("a bug")
    except KeyError as bug:
        outcome = crash_outcome(roster, record_crash(roster, tmp_path / "output", bug))
    assert outcome.status == "failed"
    assert "unexpected error (KeyError)" in outcome.message
    assert "No space left on device" in outcome.message and "\n" not in outcome.message
    assert not list((tmp_path / "output").rglob("error.log"))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_run_json_on_a_full_disk_stops_the_roster_and_the_next_run_finishes_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last write of a roster (run.json) meets ENOSPC: the roster stays in input/ with one
    sentence naming run.json; the next run writes it and delivers nothing a second time."""
    from flows import pipeline
    from flows.pipeline import RunIncomplete, advising_run

    roster = write_demo_roster(workdir / "input" / "class.xlsx", 5, seed=7)
    os.utime(roster, (0, 0))
    real = pipeline.write_run_json

    def full(out_dir: Path, *args: Any) -> None:
        raise files.unwritable(out_dir / "run.json", OSError(errno.ENOSPC, "No space left on "
                                                             "device"))

    monkeypatch.setattr(pipeline, "write_run_json", full)
    with pytest.raises(RunIncomplete) as stopped:
        advising_run()
    (outcome,) = stopped.value.outcomes
    assert outcome.status == "failed" and "run.json: cannot write it (No space" in outcome.message
    assert roster.exists()
    out = workdir / "output" / "class"
    assert not (out / "run.json").exists()

    monkeypatch.setattr(pipeline, "write_run_json", real)
    (done,) = advising_run()
    assert done.status == "done"
    assert (done.counts.emails_sent, done.counts.emails_unchanged) == (0, 5)
    assert json.loads((out / "run.json").read_text())["input"]["file"] == "class.xlsx"
