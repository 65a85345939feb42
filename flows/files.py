"""Files the product writes and reads whole: written so no reader sees half, hashed in chunks.

One implementation for every stage: letters, .eml files, the workbook, run.json, the notes
beside rejected rosters. A full disk or a missing permission becomes one plain sentence
(AdvisingError naming the file), never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from residency_rules.errors import AdvisingError

# rw for the owner and the group (the office), nothing for others: outputs hold student records.
FILE_MODE = 0o640


def write_file(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write data to path, all of it: a nearly full disk may take only part of one write."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise unwritable(path, exc) from None


def write_atomic(
    path: Path, data: bytes | Callable[[Path], None], *, fsync: bool = True,
    mode: int = FILE_MODE,
) -> None:
    """Write a file so a reader never sees half of it: a temporary name beside it, then rename.

    data is the content, or a function that writes the temporary file it is given (the
    workbook writers). fsync makes the content durable before the rename; files swapped in
    later as part of a whole folder (letters, .eml files) skip it, since a crash redoes them.
    mode applies to content given as bytes (error.log: 0o600, for the office's eyes only).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(data):
            with open(tmp, "xb"):  # created with the umask's permissions, unlike mkstemp's
                pass
            data(tmp)
        else:
            write_file(tmp, data, mode)
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


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks so large rosters stay cheap."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
