"""ADVISING_KEEP_PROCESSED_DAYS: old kept rosters go, what approval may still read stays (#26).

Fast: real folders, a real ledger and run.json; no flow run.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from flows.approval import prune_kept_rosters, rosters_still_needed
from flows.cli import main
from flows.delivery.ledger import Ledger, ledger_path
from flows.drop_folder import prune_processed
from flows.files import roster_output_dir
from flows.run_record import RUN_JSON
from flows.settings import Settings, load_settings

TODAY = date(2026, 12, 7)


def _kept(input_dir: Path, days_ago: int, name: str, stamp: str = "020001",
          content: bytes | None = None) -> Path:
    """A roster as move_processed keeps it: processed/<date>/<stem>-<date>-<time><suffix>."""
    day = TODAY - timedelta(days=days_ago)
    stem, suffix = Path(name).stem, Path(name).suffix
    path = input_dir / "processed" / day.isoformat() / f"{stem}-{day:%Y%m%d}-{stamp}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if content is not None else f"{name} {days_ago}".encode())
    return path


def _left(input_dir: Path) -> list[str]:
    root = input_dir / "processed"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_old_dated_folders_go_and_everything_else_stays(tmp_path: Path) -> None:
    """Older than keep_days: deleted with their folder; recent ones, odd names, notes: kept."""
    old_a = _kept(tmp_path, 40, "cohort-a.xlsx")
    _kept(tmp_path, 35, "cohort-a.xlsx", content=b"a second copy")
    _kept(tmp_path, 31, "cohort-b.xlsm")
    recent_b = _kept(tmp_path, 30, "cohort-b.xlsm")  # exactly keep_days old: kept
    newest_a = _kept(tmp_path, 2, "cohort-a.xlsx")
    processed = tmp_path / "processed"
    (processed / "2026-13-40").mkdir()  # a date-like name that is no date
    (processed / "2026-13-40" / "x.xlsx").write_bytes(b"x")
    (processed / "office notes").mkdir()
    (processed / "office notes" / "n.xlsx").write_bytes(b"n")
    (processed / "README.txt").write_text("ours", encoding="utf-8")
    (old_a.parent / "kept by hand").mkdir()  # a folder inside an old dated folder

    assert prune_processed(tmp_path, 30, TODAY) == 3
    assert _left(tmp_path) == sorted([
        "2026-13-40/x.xlsx", "office notes/n.xlsx", "README.txt",
        str(recent_b.relative_to(processed)), str(newest_a.relative_to(processed)),
    ])
    assert old_a.parent.is_dir() and not old_a.exists()  # its sub-folder is not ours to delete
    assert not (processed / (TODAY - timedelta(days=35)).isoformat()).exists()
    assert not (processed / (TODAY - timedelta(days=31)).isoformat()).exists()
    assert prune_processed(tmp_path, 30, TODAY) == 0  # nothing left to prune


def test_the_newest_copy_of_each_roster_stays_however_old(tmp_path: Path) -> None:
    """resend reads the roster its last letters came from: the newest copy is never pruned."""
    _kept(tmp_path, 90, "cohort-a.xlsx", stamp="010000")
    later_same_day = _kept(tmp_path, 90, "cohort-a.xlsx", stamp="230000")
    again = _kept(tmp_path, 90, "cohort-a.xlsx", stamp="230000").with_name(
        "cohort-a-20260908-230000-2.xlsx")  # free_name's suffix for a second copy that second
    again.write_bytes(b"the very last copy")
    only_c = _kept(tmp_path, 60, "cohort-c.xlsx")
    assert prune_processed(tmp_path, 7, TODAY) == 2
    assert _left(tmp_path) == sorted(
        str(p.relative_to(tmp_path / "processed")) for p in (again, only_c))
    assert not later_same_day.exists()


def test_rosters_approval_still_needs_stay(workdir: Path) -> None:
    """A roster whose letters wait, and each roster's last run, are kept whatever their age."""
    settings = load_settings(keep_processed_days=14)
    input_dir = settings.input_dir
    waiting = _kept(input_dir, 50, "cohort-w.xlsx", content=b"letters wait for this one")
    _kept(input_dir, 20, "cohort-w.xlsx")  # newer copy of the same name, also old
    last_run = _kept(input_dir, 45, "cohort-r.xlsx", content=b"its letters were sent")
    _kept(input_dir, 44, "cohort-r.xlsx", content=b"an identical re-drop is not the run")
    gone = _kept(input_dir, 40, "cohort-r.xlsx", stamp="000000", content=b"superseded")
    newest_r = _kept(input_dir, 15, "cohort-r.xlsx")
    waiting_sha = hashlib.sha256(waiting.read_bytes()).hexdigest()
    run_sha = hashlib.sha256(last_run.read_bytes()).hexdigest()
    ledger = ledger_path(settings.output_dir)
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with Ledger(ledger) as book:
        book.set_waiting("cohort-w.xlsx", waiting_sha, [("S1", "h1"), ("S2", "h2")],
                         replace=True)
    record = roster_output_dir(settings.output_dir, "cohort-r.xlsx") / RUN_JSON
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"input": {"file": "cohort-r.xlsx", "sha256": run_sha}}),
                      encoding="utf-8")

    assert rosters_still_needed(settings) == {waiting_sha, run_sha}
    assert prune_kept_rosters(settings, TODAY) == 2
    assert waiting.exists() and last_run.exists() and newest_r.exists()
    assert not gone.exists()
    assert len(_left(input_dir)) == 4  # the two needed, and the newest copy of each name


def test_unset_keeps_everything(workdir: Path) -> None:
    settings = load_settings()
    assert settings.keep_processed_days is None
    old = _kept(settings.input_dir, 3650, "cohort-a.xlsx")
    _kept(settings.input_dir, 1, "cohort-a.xlsx")
    assert prune_kept_rosters(settings, TODAY) == 0
    assert old.exists()


@pytest.mark.parametrize("value", ["0", "-3", "thirty"])
def test_a_wrong_value_stops_at_the_settings_gate(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ADVISING_KEEP_PROCESSED_DAYS", value)
    with pytest.raises(Exception, match="ADVISING_KEEP_PROCESSED_DAYS"):
        load_settings()


def test_blank_means_keep(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVISING_KEEP_PROCESSED_DAYS", " ")
    assert Settings().keep_processed_days is None


def test_run_prunes_and_says_so_in_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`advising run` with nothing new still prunes, by the clock's date, and prints one line."""
    monkeypatch.setenv("ADVISING_KEEP_PROCESSED_DAYS", "30")
    input_dir = workdir / "input"
    real_today = date.today()
    for days_ago, stamp in ((400, "010101"), (45, "020202")):
        day = real_today - timedelta(days=days_ago)
        path = input_dir / "processed" / day.isoformat() / f"r-{day:%Y%m%d}-{stamp}.xlsx"
        path.parent.mkdir(parents=True)
        path.write_bytes(stamp.encode())
    newest = (input_dir / "processed" / real_today.isoformat()
              / f"r-{real_today:%Y%m%d}-030303.xlsx")
    newest.parent.mkdir()
    newest.write_bytes(b"today")
    main(["run"])
    out = capsys.readouterr().out.splitlines()
    assert (f"pruned 2 rosters kept more than 30 days from {input_dir / 'processed'}/"
            in out)
    assert _left(input_dir) == [str(newest.relative_to(input_dir / "processed"))]
