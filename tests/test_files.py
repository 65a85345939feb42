"""The one atomic writer and the one file hasher every stage uses."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.files import (
    PRODUCT_DIR,
    roster_file_stem,
    roster_folder_name,
    sha256_file,
    student_file_stem,
    write_atomic,
)
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


# --- names (#16) ----------------------------------------------------------------------------

_PORTABLE = re.compile(r"[0-9A-Za-z_.~-]+")


def _portable(name: str) -> bool:
    """A name any disk or SMB share opens: safe characters, no device name, no dot or space
    at the end, not hidden, not "." or "..", short enough with an extension."""
    return (
        bool(_PORTABLE.fullmatch(name))
        and not name.startswith((".", "~"))
        and not name.endswith((".", " "))
        and name.split(".", 1)[0].casefold() not in DEVICES
        and len(name) + len(".html") <= 255
    )


DEVICES = {"con", "prn", "aux", "nul", *(f"{d}{n}" for d in ("com", "lpt") for n in range(1, 10))}
_NASTY = st.sampled_from(
    ["CON", "nul", "Aux", "com1", "LPT9", "con.txt", "A/1", "A_1", "a b", "x.", "x ", "a\nb",
     "..", ".", "", "...", "~$x", "S001", "s001", "delivery-ledger.sqlite", ".advising"]
)
_IDS = st.one_of(_NASTY, st.text(max_size=80), st.text(alphabet="Aa1_-./~ \n", max_size=12))


@settings(max_examples=400, deadline=None)
@given(st.lists(_IDS, unique=True, min_size=1, max_size=30))
def test_student_file_stems_are_portable_and_never_shared(ids: list[str]) -> None:
    """Distinct IDs never share a file, even compared ignoring case; every stem is portable."""
    stems = [student_file_stem(i) for i in ids]
    assert all(_portable(s) for s in stems), stems
    assert len({s.casefold() for s in stems}) == len(ids)


def _a_file_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_IDS.map(lambda s: s + ".xlsx"), _IDS.map(lambda s: s + ".xlsm"),
                          _IDS).filter(_a_file_name), unique=True, min_size=1, max_size=30))
def test_roster_folders_are_portable_and_never_shared(names: list[str]) -> None:
    """Distinct input files never share an output folder; none reaches output/.advising/."""
    folders = [roster_folder_name(n) for n in names]
    assert all(_portable(f) for f in folders), folders
    assert len({f.casefold() for f in folders}) == len(names)
    assert all(f.casefold() != PRODUCT_DIR for f in folders)


def test_a_literal_id_cannot_take_the_name_of_a_cleaned_one() -> None:
    """`A/1` is cleaned with a hash; an ID spelled like that result gets a name of its own."""
    cleaned = student_file_stem("A/1")
    assert cleaned.startswith("A_1~")
    assert student_file_stem(cleaned) != cleaned
    assert student_file_stem("A_1") == "A_1"
    assert student_file_stem("S001") == "S001" and student_file_stem("s001") != "s001"
    assert student_file_stem("CON") != "CON" and student_file_stem("LPT1") != "LPT1"


def test_rosters_keep_readable_folders_and_twins_are_kept_apart() -> None:
    """class-2027.xlsx keeps its stem; twin.xlsm gets its own folder, not twin.xlsx's."""
    assert roster_folder_name("class-2027.xlsx") == "class-2027"
    assert roster_folder_name("twin.xlsx") == "twin"
    assert roster_folder_name("twin.xlsm") not in ("twin", "twin.xlsm")
    assert roster_folder_name("delivery-ledger.sqlite.xlsx") == "delivery-ledger.sqlite"
    for hostile in ("...xlsx", "..up.xlsx", ".xlsx", "CON.xlsx", "nul.xlsx", "a\nb.xlsx"):
        assert not roster_folder_name(hostile).startswith("."), hostile
        assert _portable(roster_folder_name(hostile)), hostile
        assert _portable(roster_file_stem(hostile) + "-annotated"), hostile
    assert roster_file_stem("twin.xlsm") == roster_file_stem("twin.xlsx") == "twin"
