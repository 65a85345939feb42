"""Student data at rest (#26): no file the product writes is readable by other users.

Real output without a flow run: the annotated workbook, a letter (.html and .txt), an .eml as the
outbox writes it, run.json and the ledger, all under umask 000 (the worst a server may have).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from flows.delivery.ledger import Ledger
from flows.files import FILE_MODE, write_atomic
from flows.outcome import RosterCounts
from flows.run_record import write_run_json
from flows.workbook.annotate import write_annotated
from residency_rules.specialties import load_default_table
from tests.support.letters import render_one
from tests.support.workbooks import LEVELS, make_office_workbook, make_run


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000: every mode below comes from the product, none from the umask."""
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_every_student_data_file_is_the_owners_and_its_groups_only(tmp_path: Path) -> None:
    source = tmp_path / "class2027.xlsx"
    make_office_workbook(source)
    out = tmp_path / "output" / "class2027"
    write_annotated(*make_run(source), out / "class2027-annotated.xlsx", levels=LEVELS)
    render_one(out, load_default_table())
    (out / "outbox").mkdir()
    write_atomic(out / "outbox" / "S001.eml", b"Subject: x\r\n\r\nbody", fsync=False)
    now = datetime.now().astimezone()
    write_run_json(out, source.name, "0" * 64, "2026.1", "fp", "outbox", RosterCounts(), {},
                   now, now, {})
    ledger_file = tmp_path / "output" / ".advising" / "delivery-ledger.sqlite"
    with Ledger(ledger_file) as ledger:
        ledger.record_many([])
        written = {p.relative_to(tmp_path / "output").as_posix(): _mode(p)
                   for p in (tmp_path / "output").rglob("*") if p.is_file()}

    assert {Path(name).suffix for name in written} >= {".xlsx", ".html", ".txt", ".eml", ".json",
                                                       ".sqlite"}
    assert FILE_MODE == 0o640
    ledger_files = {name: mode for name, mode in written.items() if "delivery-ledger" in name}
    assert {name.rsplit(".", 1)[-1] for name in ledger_files} == {"sqlite", "sqlite-wal",
                                                                    "sqlite-shm"}
    assert set(ledger_files.values()) == {0o600}  # outlooks and scores: the owner's only
    others = {name: mode for name, mode in written.items() if name not in ledger_files}
    assert set(others.values()) == {FILE_MODE}, others


@pytest.mark.usefixtures("open_umask")
def test_rewriting_a_world_readable_file_takes_the_products_mode(tmp_path: Path) -> None:
    """A file left 644 by an older version (or copied in) is 640 once the product rewrites it."""
    target = tmp_path / "run.json"
    target.write_bytes(b"{}")
    target.chmod(0o666)
    write_atomic(target, b'{"status": "complete"}')
    assert _mode(target) == FILE_MODE

    book = tmp_path / "book.xlsx"
    book.write_bytes(b"old")
    book.chmod(0o666)
    write_atomic(book, lambda tmp: tmp.write_bytes(b"PK"))  # a library writing the workbook
    assert _mode(book) == FILE_MODE
