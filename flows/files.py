"""Files the product writes and reads whole: written so no reader sees half, hashed in chunks.

One implementation for every stage: letters, .eml files, the workbook, run.json, the notes
beside rejected rosters. A full disk or a missing permission becomes one plain sentence
(AdvisingError naming the file), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from residency_rules.errors import AdvisingError

# rw for the owner and the group (the office), nothing for others: outputs hold student records.
FILE_MODE = 0o640


def write_file(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write data to path, all of it: a nearly full disk may take only part of one write."""
    try:
        _write_all(path, data, mode)
    except OSError as exc:
        raise unwritable(path, exc) from None


def _write_all(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_atomic(
    path: Path, data: bytes | Callable[[Path], None], *, fsync: bool = True,
    mode: int = FILE_MODE,
) -> None:
    """Write a file so a reader never sees half of it: a temporary name beside it, then rename.

    data is the content, or a function that writes the temporary file it is given (the
    workbook writers). fsync makes the content durable before the rename; files swapped in
    later as part of a whole folder (letters, .eml files) skip it, since a crash redoes them.
    mode applies whatever the umask (FILE_MODE: the owner and its group; error.log: 0o600).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(data):
            with open(tmp, "xb"):
                pass
            data(tmp)
            os.chmod(tmp, mode)  # student data (the workbook): never for other users
        else:
            _write_all(tmp, data, mode)  # an error names the final file: the temporary is ours
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise unwritable(path, exc) from None
    finally:
        with contextlib.suppress(OSError):  # best effort: the error raised is what matters
            tmp.unlink(missing_ok=True)


def unwritable(path: Path, exc: OSError) -> AdvisingError:
    """Say in one sentence that a file could not be written, and what to check."""
    return AdvisingError(
        f"{path}: cannot write it ({exc.strerror or exc}); check the free space and the "
        f"permissions of {path.parent}"
    )


def no_space(exc: BaseException | None) -> OSError | None:
    """Return the "disk full" (or quota) OSError behind exc, if that is what stopped it.

    Libraries wrap it (Great Expectations, openpyxl, zipfile): the cause chain is followed.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks so large rosters stay cheap."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- names: student IDs and roster names as file and folder names ------------------------------
#
# Kept as they are when already portable and unambiguous; otherwise cleaned and given a short
# hash of the exact text after a "~", a character no kept name holds. So `A/1` (cleaned to
# `A_1~<hash>`) can never meet a student whose ID is literally `A_1~...`: that ID is not kept
# either, and its own hash differs. Case: Windows and SMB shares compare names ignoring case,
# so only one case is kept as is (capitals for student IDs, small letters for roster names,
# what each usually is); a name with the other case gets a hash, and `S001` and `s001` stay
# two files on every share.

PRODUCT_DIR = ".advising"  # output/.advising/: ledger, locks; no portable name starts with "."
_HASH_CHARS = 12  # hex digits of sha256: 48 bits
_CLEANED_CHARS = 48
_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"{d}{n}" for d in ("com", "lpt") for n in "123456789"]
    + [f"{d}{n}" for d in ("com", "lpt") for n in "¹²³"]
)
_KEPT_ID = re.compile(r"[0-9A-Z_-]{1,64}")
_KEPT_ROSTER = re.compile(r"[0-9a-z_-](?:[0-9a-z_.-]{0,62}[0-9a-z_-])?")


def _is_device(name: str) -> bool:
    """True for a Windows device name, alone or before an extension (CON, nul.txt, Com1.x)."""
    return name.split(".", 1)[0].casefold() in _WINDOWS_DEVICES


def _hashed(text: str) -> str:
    """The cleaned text (letters, digits, "-", "_": never a device name) and a hash of the text."""
    cleaned = re.sub(r"[^0-9A-Za-z_-]+", "_", text)[:_CLEANED_CHARS].strip("_-") or "_"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{cleaned}~{digest}"


def student_file_stem(student_id: str) -> str:
    """Name a student's files (letter, .eml) on any disk or share, one name per ID.

    The ID itself when it is capitals, digits, "-" and "_" (at most 64) and not a Windows
    device name; otherwise the ID cleaned, "~" and a hash of the exact ID. Two IDs never share
    a name, even compared ignoring case.
    """
    if _KEPT_ID.fullmatch(student_id) and not _is_device(student_id):
        return student_id
    return _hashed(student_id)


def roster_folder_name(roster: Path | str) -> str:
    """Name the output folder of an input file: the same every night, one folder per file.

    The stem of an .xlsx roster when it is small letters, digits, "-", "_" and inner dots (at
    most 64) and no device name; any other name (an .xlsm twin of an .xlsx, capitals, spaces,
    `...xlsx`) is cleaned and given a hash of the whole file name. No result starts with a dot,
    so none can reach output/.advising/, and none is "." or "..".
    """
    name = Path(roster).name
    stem, dot, suffix = name.rpartition(".")
    if dot and suffix == "xlsx" and _KEPT_ROSTER.fullmatch(stem) and not _is_device(stem):
        return stem
    return _hashed(name)


def roster_file_stem(roster: Path | str) -> str:
    """Name files after the roster inside its own folder (`class-2027-annotated.xlsx`).

    The folder already tells twins apart, so only portability matters here: the stem is
    treated as an .xlsx's, and `twin.xlsm` writes `twin-annotated.xlsm` in its own folder.
    """
    return roster_folder_name(f"{Path(roster).stem}.xlsx")


def roster_output_dir(output_dir: Path, roster: Path | str) -> Path:
    """Return output/<folder> for an input file (see roster_folder_name)."""
    return output_dir / roster_folder_name(roster)


def product_dir(output_dir: Path) -> Path:
    """Return output/.advising/, where the product keeps its own files (ledger, locks)."""
    return output_dir / PRODUCT_DIR
