"""Hostile drops (#16): names that collide, links, dotted names, the product's own files.

Each case is a real run of the nightly flow over real .xlsx files in a real drop folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import openpyxl
import pytest

from flows.delivery.ledger import Ledger
from flows.files import PRODUCT_DIR, roster_output_dir, student_file_stem
from flows.intake.demo import write_demo_roster

_FLOW = pytest.mark.usefixtures("prefect_harness")
DATA = Path(__file__).parent / "data"


def _run() -> dict[str, object]:
    """Run the flow; a run that needs attention raises RunIncomplete, which holds the outcomes."""
    from flows.pipeline import RunIncomplete, advising_run

    try:
        outcomes = advising_run()
    except RunIncomplete as exc:
        outcomes = exc.outcomes
    return {o.file: o for o in outcomes}


def _old(path: Path) -> Path:
    os.utime(path, (0, 0), follow_symlinks=False)
    return path


def _letter_links(workbook: Path) -> set[str]:
    """The letters the annotated workbook links to."""
    ws = openpyxl.load_workbook(workbook)["Roster"]
    return {c.hyperlink.target for row in ws.iter_rows() for c in row if c.hyperlink}


@pytest.mark.slow
@_FLOW
def test_twins_and_a_roster_named_like_the_ledger_keep_their_own_folders(workdir: Path) -> None:
    """twin.xlsx and twin.xlsm, delivery-ledger.sqlite.xlsx and ...xlsx: each its own folder.

    Before #16 the .xlsm deleted the .xlsx's letters and the ledger's name crashed the run.
    """
    inp, out = workdir / "input", workdir / "output"
    write_demo_roster(inp / "twin.xlsx", 4, seed=7)
    shutil.copy(DATA / "macro_enabled.xlsm", inp / "twin.xlsm")
    write_demo_roster(inp / "delivery-ledger.sqlite.xlsx", 3, seed=8)
    write_demo_roster(inp / "...xlsx", 2, seed=9)
    for p in inp.iterdir():
        _old(p)

    outcomes = _run()

    assert {f: o.status for f, o in outcomes.items()} == {
        "twin.xlsx": "done", "twin.xlsm": "done", "delivery-ledger.sqlite.xlsx": "done",
        "...xlsx": "done"}
    folders = {f: roster_output_dir(out, f) for f in outcomes}
    assert len(set(folders.values())) == 4
    assert all(p.parent == out and not p.name.startswith(".") for p in folders.values())
    for file, folder in folders.items():
        run = json.loads((folder / "run.json").read_text())
        assert run["input"]["file"] == file  # each run.json describes its own roster
        letters = {p.name for p in (folder / "letters").iterdir()}
        assert len(letters) == 2 * run["counts"]["letters_written"] > 0
        workbook = next(folder.glob("*-annotated.xls[xm]"))
        linked = {Path(t).name for t in _letter_links(workbook)}
        assert linked and linked <= letters  # every link finds its letter
    assert (out / PRODUCT_DIR / "delivery-ledger.sqlite").is_file()
    assert (out / "delivery-ledger.sqlite").is_dir()  # that roster's own folder, nothing else


@pytest.mark.slow
@_FLOW
def test_a_symlink_is_rejected_and_what_it_points_to_is_left_alone(workdir: Path) -> None:
    """A link in input/ is moved to rejected/ as a link, with a note; its target is untouched."""
    elsewhere = write_demo_roster(workdir / "elsewhere.xlsx", 3, seed=7)
    before = elsewhere.read_bytes()
    link = workdir / "input" / "linked.xlsx"
    link.symlink_to(elsewhere)
    write_demo_roster(workdir / "input" / "good.xlsx", 2, seed=8)
    _old(workdir / "input" / "good.xlsx")

    outcomes = _run()

    assert {f: o.status for f, o in outcomes.items()} == {"linked.xlsx": "rejected",
                                                           "good.xlsx": "done"}
    assert elsewhere.read_bytes() == before and not link.exists()
    rejected = sorted((workdir / "input" / "rejected").iterdir())
    moved = [p for p in rejected if p.is_symlink()]
    assert len(moved) == 1 and moved[0].resolve() == elsewhere.resolve()
    note = next(p for p in rejected if p.name.endswith(".problems.txt")).read_text()
    assert "symbolic link" in note
    assert not (workdir / "output" / "linked").exists()
    assert not any((workdir / "input" / "processed").rglob("linked*"))


@pytest.mark.slow
@_FLOW
def test_every_file_in_the_drop_folder_gets_a_line(workdir: Path) -> None:
    """Skipped files are listed with their reason, in the outcomes the CLI and artifact show."""
    inp = workdir / "input"
    write_demo_roster(inp / "roster.xlsx", 2, seed=7)
    (inp / ".DS_Store").write_bytes(b"\0")
    (inp / "~$roster.xlsx").write_bytes(b"owner")
    (inp / "notes").mkdir()
    for p in inp.iterdir():
        _old(p)

    outcomes = _run()

    assert {f: o.status for f, o in outcomes.items()} == {
        "roster.xlsx": "done", ".DS_Store": "skipped", "~$roster.xlsx": "skipped",
        "notes": "skipped"}
    assert "Excel" in outcomes["~$roster.xlsx"].message
    kept = json.loads((workdir / "output" / PRODUCT_DIR / "last-run.json").read_text())
    assert {f["file"]: f["status"] for f in kept["files"]} == {
        f: str(o.status) for f, o in outcomes.items()}
    from flows.report import describe

    assert describe(outcomes[".DS_Store"]) == ".DS_Store: skipped: a hidden file, not a roster"


@pytest.mark.slow
@_FLOW
def test_an_old_ledger_is_moved_with_its_history(workdir: Path) -> None:
    """output/delivery-ledger.sqlite of an earlier version moves to output/.advising/ whole:
    a letter it records as sent is not sent again."""
    inp, out = workdir / "input", workdir / "output"
    write_demo_roster(inp / "class.xlsx", 3, seed=7)
    _old(inp / "class.xlsx")
    first = _run()
    assert first["class.xlsx"].status == "done"
    ledger = out / PRODUCT_DIR / "delivery-ledger.sqlite"
    with sqlite3.connect(ledger) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sent = db.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()[0]
    assert sent == 3
    os.replace(ledger, out / "delivery-ledger.sqlite")  # as an earlier version left it
    shutil.rmtree(out / PRODUCT_DIR)
    shutil.rmtree(out / "class")
    for p in (inp / "processed").rglob("*.xlsx"):
        os.replace(p, inp / "class.xlsx")

    again = _run()

    assert again["class.xlsx"].counts.emails_unchanged == 3
    assert again["class.xlsx"].counts.delivered == 0
    assert not (out / "delivery-ledger.sqlite").exists()
    with Ledger(ledger) as moved:
        assert moved.entries(next(iter(_ids(inp))))
    assert (out / PRODUCT_DIR / "moved-from-output.delivery-ledger.sqlite").is_file()


def _ids(inp: Path) -> list[str]:
    roster = next((inp / "processed").rglob("*.xlsx"))
    ws = openpyxl.load_workbook(roster)["Roster"]
    header = [c.value for c in ws[3]]
    col = header.index("Student ID")
    return [str(row[col]) for row in ws.iter_rows(min_row=4, values_only=True) if row[col]]


@pytest.mark.slow
@_FLOW
def test_a_literal_id_spelled_like_a_cleaned_one_gets_its_own_letter(workdir: Path) -> None:
    """`A/1` and a student whose ID is literally what `A/1` used to become: two letters."""
    roster = write_demo_roster(workdir / "input" / "ids.xlsx", 2, seed=7)
    wb = openpyxl.load_workbook(roster)
    ws = wb["Roster"]
    header = [c.value for c in ws[3]]
    col = header.index("Student ID") + 1
    cleaned = student_file_stem("A/1")
    ws.cell(4, col, "A/1")
    ws.cell(5, col, cleaned)
    wb.save(roster)
    _old(roster)

    outcomes = _run()

    assert outcomes["ids.xlsx"].counts.letters_written == 2
    folder = roster_output_dir(workdir / "output", "ids.xlsx")
    assert len(list((folder / "letters").glob("*.html"))) == 2
    assert len(list((folder / "outbox").glob("*.eml"))) == 2


def test_uncertain_reads_the_ledger_of_the_output_folder_it_is_given(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`advising uncertain --output DIR` lists and releases that folder's letters only."""
    from flows.cli import main
    from flows.delivery.ledger import ledger_path

    school = workdir / "school-b"
    with Ledger(ledger_path(school)) as ledger:
        ledger._db.execute(
            "INSERT INTO deliveries (student_id, channel, content_hash, status, message_id, "
            "created_at, updated_at, level, label, band, specialty) VALUES ('S9', 'smtp', 'h', "
            "'uncertain', '<m1@example.edu>', 'now', '2026-11-24T02:00', 3, 'l', 'b', 's')"
        )
    assert main(["uncertain"]) == 0  # output/ (ADVISING_OUTPUT_DIR) has no ledger
    assert "nothing is uncertain" in capsys.readouterr().out
    assert main(["uncertain", "--output", str(school)]) == 1
    assert "S9  <m1@example.edu>" in capsys.readouterr().out
    assert main(["uncertain", "--output", str(school), "--release", "S9"]) == 0
    assert "Released 1 letter(s)" in capsys.readouterr().out


def test_a_drop_folder_with_only_skipped_files_lists_them(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No roster: the CLI says so, and still gives each file its line with the reason."""
    from flows.cli import main

    (workdir / "input" / ".DS_Store").write_bytes(b"\0")
    (workdir / "input" / "~$class.xlsx").write_bytes(b"owner")
    assert main(["run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("No roster in")
    assert out[1:] == [".DS_Store: skipped: a hidden file, not a roster",
                       "~$class.xlsx: skipped: Excel's lock file, there while the workbook is "
                       "open in Excel"]
    kept = json.loads((workdir / "output" / PRODUCT_DIR / "last-run.json").read_text())
    assert [(f["file"], f["status"]) for f in kept["files"]] == [
        (".DS_Store", "skipped"), ("~$class.xlsx", "skipped")]


def test_a_file_name_with_a_line_break_stays_on_its_line() -> None:
    """The summary gives each file one line, whatever its name holds."""
    from flows.outcome import RosterOutcome, RosterStatus
    from flows.report import describe

    said = describe(RosterOutcome(file="a\nb.xlsx", status=RosterStatus.SKIPPED,
                                  message="a hidden file"))
    assert said == "'a\\nb.xlsx': skipped: a hidden file"
