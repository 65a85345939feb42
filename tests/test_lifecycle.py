"""The drop folder: what is picked up, what waits, where files go; nothing is ever lost."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from flows import drop_folder
from flows.intake.demo import write_demo_roster


def _old(path: Path) -> Path:
    past = time.time() - 3600
    os.utime(path, (past, past))
    return path


def test_lock_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    """Lock files and hidden files are never taken for rosters, and each is listed with why."""
    roster = _old(write_demo_roster(tmp_path / "roster.xlsx", 3))
    for name in ("~$roster.xlsx", ".~lock.roster.xlsx#", ".DS_Store", "get.xlsx.crdownload"):
        (tmp_path / name).write_bytes(b"lock")
        _old(tmp_path / name)
    (tmp_path / "old rosters").mkdir()
    (tmp_path / "processed").mkdir()  # the product's own: not listed
    found = drop_folder.scan(tmp_path, quiet_seconds=0)
    assert [d.path for d in found if d.ready] == [roster]
    skipped = {d.path.name: d.reason for d in found if d.kind == "skipped"}
    assert set(skipped) == {"~$roster.xlsx", ".~lock.roster.xlsx#", ".DS_Store",
                            "get.xlsx.crdownload", "old rosters"}
    assert "Excel" in skipped["~$roster.xlsx"] and "hidden" in skipped[".DS_Store"]


def test_rosters_whose_names_start_with_dots_are_rosters(tmp_path: Path) -> None:
    """`...xlsx` and `..up.xlsx` are processed like any roster, not skipped as hidden (#16)."""
    dotted = [_old(write_demo_roster(tmp_path / n, 2)) for n in ("...xlsx", "..up.xlsx")]
    found = drop_folder.scan(tmp_path, quiet_seconds=0)
    assert sorted(d.path for d in found if d.ready) == sorted(dotted)


def test_a_symlink_is_not_followed_but_marked_for_rejection(tmp_path: Path) -> None:
    """A link in input/ is never read: scan marks it, whatever it points to (#16)."""
    elsewhere = write_demo_roster(tmp_path / "elsewhere.xlsx", 2)
    drop = tmp_path / "input"
    drop.mkdir()
    (drop / "linked.xlsx").symlink_to(elsewhere)
    (drop / "dangling.xlsx").symlink_to(tmp_path / "nothing.xlsx")
    found = drop_folder.scan(drop, quiet_seconds=0)
    assert [(d.path.name, d.kind, d.ready) for d in found] == [
        ("dangling.xlsx", "link", False), ("linked.xlsx", "link", False)]


def test_a_file_still_growing_waits(tmp_path: Path) -> None:
    """A roster whose size changes during the quiet period is left for the next run."""
    target = tmp_path / "copying.xlsx"
    target.write_bytes(b"PK\x03\x04" + b"x" * 100)

    def grow() -> None:
        time.sleep(0.2)
        with target.open("ab") as fh:
            fh.write(b"y" * 100)

    writer = threading.Thread(target=grow)
    writer.start()
    found = drop_folder.scan(tmp_path, quiet_seconds=0.6)
    writer.join()
    assert len(found) == 1 and not found[0].ready
    assert "copied" in found[0].reason


def test_a_fresh_but_settled_roster_is_taken_after_the_quiet_period(tmp_path: Path) -> None:
    """A roster written a moment ago but no longer changing is processed in the same run."""
    roster = write_demo_roster(tmp_path / "fresh.xlsx", 2)
    started = time.monotonic()
    found = drop_folder.scan(tmp_path, quiet_seconds=0.3)
    assert [d.ready for d in found] == [True]
    assert time.monotonic() - started >= 0.3
    assert found[0].path == roster


def test_processed_rosters_are_moved_byte_for_byte_and_never_overwritten(tmp_path: Path) -> None:
    """Moving twice a roster of the same name at the same second keeps both files."""
    moment = datetime(2026, 11, 24, 2, 0, 0)
    first = tmp_path / "roster.xlsx"
    first.write_bytes(b"first")
    a = drop_folder.move_processed(first, tmp_path, moment)
    first.write_bytes(b"second")
    b = drop_folder.move_processed(first, tmp_path, moment)
    assert a != b
    assert a.read_bytes() == b"first" and b.read_bytes() == b"second"
    assert a.parent == tmp_path / "processed" / "2026-11-24"
    assert not first.exists()


def test_rejected_roster_gets_a_plain_language_note(tmp_path: Path) -> None:
    """A rejected roster keeps its bytes and a .problems.txt names every problem."""
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"not a workbook")
    target = drop_folder.move_rejected(
        bad, tmp_path, datetime(2026, 11, 24, 2, 0), ["Column 'Student ID' is missing."]
    )
    assert target.read_bytes() == b"not a workbook"
    note = target.with_name(target.name + ".problems.txt").read_text(encoding="utf-8")
    assert "Column 'Student ID' is missing." in note
    assert "bad.xlsx" in note


def test_two_runs_cannot_hold_the_same_roster(tmp_path: Path) -> None:
    """While one run holds a roster's lock, a second one is told it is busy."""
    with drop_folder.roster_lock(tmp_path, Path("roster.xlsx")):
        with pytest.raises(drop_folder.RosterBusy):
            with drop_folder.roster_lock(tmp_path, Path("roster.xlsx")):
                pass
    with drop_folder.roster_lock(tmp_path, Path("roster.xlsx")):  # released afterwards
        pass


def test_a_staged_folder_replaces_the_published_one_whole(tmp_path: Path) -> None:
    """Readers see the old letters or the new ones; the old folder goes once swapped out."""
    final = tmp_path / "letters"
    first = drop_folder.staging_dir(final)
    (first / "A.html").write_text("old A")
    (first / "B.html").write_text("old B")
    assert not final.exists() and first.name.startswith(".")
    assert drop_folder.publish_dir(first, final) is None  # nothing to remove the first time
    second = drop_folder.staging_dir(final)
    (second / "A.html").write_text("new A")
    assert sorted(p.name for p in final.iterdir()) == ["A.html", "B.html"]  # not yet swapped
    remover = drop_folder.publish_dir(second, final)
    assert remover is not None
    remover.join(10)
    assert {p.name: p.read_text() for p in final.iterdir()} == {"A.html": "new A"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["letters"]


def test_the_sweep_removes_only_our_hidden_temporary_files(tmp_path: Path) -> None:
    """A killed run's staging folder and dot-temp files go; everything else stays."""
    out = tmp_path / "class-2027"
    staging = drop_folder.staging_dir(out / "letters")
    (staging / "A.html").write_text("half")
    (out / ".run.json.123.tmp").write_text("{")
    (out / "notes.tmp").write_text("the office's own file")
    (out / "letters").mkdir()
    (out / "letters" / "A.html").write_text("whole")
    drop_folder.sweep_temporary(out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "letters", "letters/A.html", "notes.tmp",
    ]
