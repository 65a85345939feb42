"""The one atomic writer and the one file hasher every stage uses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flows.files import sha256_file, write_atomic
from residency_rules.errors import AdvisingError


def test_write_atomic_leaves_only_the_final_file(tmp_path: Path) -> None:
    """An atomic write leaves the final file and no temporary one, with or without fsync."""
    write_atomic(tmp_path / "run.json", b"{}")
    write_atomic(tmp_path / "letter.eml", b"x" * 70_000, fsync=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["letter.eml", "run.json"]
    assert (tmp_path / "letter.eml").read_bytes() == b"x" * 70_000


def test_write_atomic_takes_a_writer_for_files_written_by_a_library(tmp_path: Path) -> None:
    """The workbook writers get a temporary path to fill; the final name appears only after."""
    final = tmp_path / "out" / "book.xlsx"
    seen: list[bool] = []

    def writer(tmp: Path) -> None:
        seen.append(final.exists())
        tmp.write_bytes(b"PK")

    write_atomic(final, writer)
    assert seen == [False] and final.read_bytes() == b"PK"
    assert [p.name for p in final.parent.iterdir()] == ["book.xlsx"]


def test_a_failed_write_keeps_the_old_file_and_says_which_file(tmp_path: Path) -> None:
    """A writer that fails leaves the previous content whole, no temporary file, one sentence."""
    final = tmp_path / "book.xlsx"
    final.write_bytes(b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(AdvisingError, match=r"book\.xlsx: cannot write it \(No space left"):
        write_atomic(final, broken)
    assert final.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["book.xlsx"]


def test_an_unwritable_place_is_one_plain_sentence(tmp_path: Path) -> None:
    """A folder that cannot be made (a file is in the way) names the file and what to check."""
    (tmp_path / "output").write_text("not a folder")
    with pytest.raises(AdvisingError, match="check the free space and the permissions"):
        write_atomic(tmp_path / "output" / "run.json", b"{}")


def test_sha256_file_matches_hashlib_over_chunks(tmp_path: Path) -> None:
    """The chunked hash equals the hash of the whole content (3 MB: several chunks)."""
    data = bytes(range(256)) * 12_000
    path = tmp_path / "roster.xlsx"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
