"""The drop folder: which files are ready, where they go afterwards, and who may process them.

Nothing here ever rewrites a roster: files are moved (renamed) byte for byte, and a name already
taken gets a suffix instead of being overwritten. The one deletion is prune_processed, of kept
copies in input/processed/ older than ADVISING_KEEP_PROCESSED_DAYS (never a dropped file).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
import time
import zipfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from flows.errors import RosterBusy
from flows.files import product_dir, roster_folder_name, sha256_file, write_atomic

ROSTER_SUFFIXES = (".xlsx", ".xlsm")


OWN_FOLDERS = ("processed", "rejected")  # input/'s sub-folders the product itself fills


@dataclass(frozen=True)
class DropFile:
    """A file found in the input folder and whether it can be processed now."""

    path: Path
    ready: bool
    reason: str = ""  # why it waits or is skipped, in plain words
    # "" = a candidate roster (ready, or waiting for its copy to finish); "skipped" = never
    # processed (lock files, hidden files, folders); "link" = a symbolic link, to be rejected.
    kind: str = ""


def skip_reason(path: Path) -> str | None:
    """Why a file in input/ is not a roster at all, or None when it may be one.

    Only files that are certainly not rosters: Excel's and LibreOffice's lock files, partial
    downloads, and hidden files such as .DS_Store. A name that merely starts with a dot but ends
    in .xlsx or .xlsm (`...xlsx`, `..up.xlsx`) is a roster like any other.
    """
    name = path.name
    lower = name.lower()
    if name.startswith("~$"):
        return "Excel's lock file, there while the workbook is open in Excel"
    if name.startswith(".~lock."):
        return "LibreOffice's lock file, there while the workbook is open"
    if lower.endswith((".tmp", ".part", ".crdownload")):
        return "a temporary file or a download not finished yet"
    if name.startswith(".") and not lower.endswith(ROSTER_SUFFIXES):
        return "a hidden file, not a roster"
    return None


def is_ignored(path: Path) -> bool:
    """Return True for lock files, hidden files and partial downloads (see skip_reason)."""
    return skip_reason(path) is not None


LINK_PROBLEM = (
    "it is a symbolic link, not a file: the product does not follow links, so that nothing "
    "outside the input folder is ever read or moved. Copy the roster itself into the input "
    "folder"
)


def entries(input_dir: Path) -> list[DropFile]:
    """Everything in input/ but the product's own folders, each classified without waiting.

    Symbolic links are never followed (not even to see what they point to): they are marked
    "link" for the run to reject. Candidates come back as ready; scan() checks their copying.
    """
    if not input_dir.is_dir():
        return []
    found: list[DropFile] = []
    for path in sorted(input_dir.iterdir()):
        if path.is_symlink():
            found.append(DropFile(path, False, LINK_PROBLEM, "link"))
        elif path.is_dir():
            if path.name not in OWN_FOLDERS:
                found.append(DropFile(path, False, "a folder: rosters are read from the input "
                                      "folder itself, not from folders inside it", "skipped"))
        elif not path.is_file():
            found.append(DropFile(path, False, "not a regular file", "skipped"))
        elif (reason := skip_reason(path)) is not None:
            found.append(DropFile(path, False, reason, "skipped"))
        else:
            found.append(DropFile(path, True))
    return found


def scan(input_dir: Path, quiet_seconds: float) -> list[DropFile]:
    """List every entry of input/, telling apart ready rosters from those still being copied.

    A file is settled when its size and mtime stay the same across the quiet period; files
    older than that are taken at once, fresh ones are looked at again after one short wait.
    Skipped files and links come back as entries() gives them, for the run's summary.
    """
    listed = entries(input_dir)
    candidates = [d.path for d in listed if d.ready]
    first = {p: _signature(p) for p in candidates}
    now = time.time()
    fresh = [p for p, sig in first.items() if sig and now - sig[1] < quiet_seconds]
    if fresh:
        time.sleep(quiet_seconds)
    found: list[DropFile] = []
    for drop in listed:
        path = drop.path
        if not drop.ready:
            found.append(drop)
            continue
        sig = _signature(path)
        if sig is None:  # moved away meanwhile (another run took it)
            continue
        if path in fresh and sig != first[path]:
            found.append(DropFile(path, False, "still being copied (it changed a moment ago)"))
        elif path.suffix.lower() in ROSTER_SUFFIXES and not _zip_complete(path):
            found.append(_incomplete_or_broken(path, time.time()))
        else:
            # Anything else dropped here (a .csv, an .xls) is a mistake that intake explains.
            found.append(DropFile(path, True))
    return found


def _signature(path: Path) -> tuple[int, float] | None:
    """Return (size, mtime), or None when the file is gone."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime)


def _zip_complete(path: Path) -> bool:
    """Return True when the workbook's zip directory can be read (a half-copied file fails).

    Only the central directory at the end is read: decompressing members here would let a
    zip bomb cost time before intake's size guard sees it.
    """
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def _incomplete_or_broken(path: Path, now: float) -> DropFile:
    """Wait on a recently changed broken zip (still copying); let intake reject an old one."""
    age = now - path.stat().st_mtime
    if age < 60:
        return DropFile(path, False, "not a complete workbook yet (still being copied?)")
    return DropFile(path, True)


def free_name(target: Path) -> Path:
    """Return target, or target with a -2, -3 ... suffix when taken (never overwrite).

    Taken includes a link pointing nowhere: a rejected link must never be replaced.
    """
    if not os.path.lexists(target):
        return target
    n = 2
    while True:
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d-%H%M%S")


def move_processed(path: Path, input_dir: Path, moment: datetime) -> Path:
    """Move a processed roster to input/processed/<date>/, keeping its bytes and its name."""
    folder = input_dir / "processed" / moment.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    target = free_name(folder / f"{path.stem}-{_stamp(moment)}{path.suffix}")
    os.replace(path, target)
    return target


_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")
_KEPT_STAMP = re.compile(r"-(\d{8}-\d{6})(?:-(\d+))?$")  # what move_processed adds to the stem


def _dated_folders(processed: Path) -> list[tuple[date, Path]]:
    """The dated folders of input/processed/ (YYYY-MM-DD, a real date, not a link), oldest first."""
    found = []
    for folder in processed.iterdir() if processed.is_dir() else ():
        if not _DATED.fullmatch(folder.name) or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            found.append((date.fromisoformat(folder.name), folder))
        except ValueError:  # 2026-13-40: not ours
            continue
    return sorted(found)


def _dropped_name(kept: Path) -> str:
    """The roster's name as dropped: the kept copy's name without move_processed's stamp."""
    return _KEPT_STAMP.sub("", kept.stem) + kept.suffix


def _kept_order(kept: Path) -> tuple[str, int, str]:
    """Order a folder's kept copies as they were moved: by stamp, then free_name's -2, -3."""
    found = _KEPT_STAMP.search(kept.stem)
    if found is None:
        return ("", 0, kept.name)
    return (found.group(1), int(found.group(2) or 1), kept.name)


def prune_processed(input_dir: Path, keep_days: int, today: date,
                    needed: Collection[str] = ()) -> int:
    """Delete the dated folders of input/processed/ older than keep_days; return rosters gone.

    A folder dated before today - keep_days goes, except what approval may still copy back:
    the newest kept copy of each roster name, and any file whose sha256 is in `needed` (the
    rosters whose letters wait, each roster's last run). A folder left with such a file keeps
    it and loses the rest. Only YYYY-MM-DD folders and the plain files in them are touched:
    anything else in processed/ (the office's own notes, a folder inside) stays.
    """
    dated = _dated_folders(input_dir / "processed")
    newest: dict[str, Path] = {}
    for _, folder in dated:  # oldest first: a later copy replaces an earlier one
        for kept in sorted(folder.iterdir(), key=_kept_order):
            if kept.is_file() and not kept.is_symlink():
                newest[_dropped_name(kept)] = kept
    keep = set(newest.values())
    cutoff = today - timedelta(days=keep_days)
    removed = 0
    for day, folder in dated:
        if day >= cutoff:
            break
        for kept in sorted(folder.iterdir()):
            if not kept.is_file() or kept.is_symlink() or kept in keep:
                continue
            if needed and sha256_file(kept) in needed:
                continue
            kept.unlink()
            if kept.suffix.lower() in ROSTER_SUFFIXES:
                removed += 1
        try:
            folder.rmdir()  # only when nothing is left in it
        except OSError:
            pass
    return removed


def move_rejected(path: Path, input_dir: Path, moment: datetime, problems: list[str]) -> Path:
    """Move an unreadable roster to input/rejected/ with a plain-language .problems.txt."""
    folder = input_dir / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    target = free_name(folder / f"{path.stem}-{_stamp(moment)}{path.suffix}")
    note = target.with_name(target.name + ".problems.txt")
    text = (
        f"The roster {path.name} could not be read, so no student in it was processed.\n"
        f"It was moved here unchanged on {moment:%Y-%m-%d at %H:%M}.\n\n"
        "What is wrong:\n"
        + "".join(f"  - {p}\n" for p in problems)
        + "\nWhat to do: fix the file in Excel and drop it into the input folder again.\n"
        "`advising check FILE` shows the same problems without processing anything,\n"
        "and `advising template PATH` writes a blank roster with the expected columns.\n"
    )
    write_atomic(note, text.encode("utf-8"))
    os.replace(path, target)
    return target


def staging_dir(final: Path) -> Path:
    """Return a new, empty hidden folder beside `final` to fill before publish_dir swaps it in.

    Writing 40,000 letter files each under a temporary name and renaming it costs twice the
    plain writes; one hidden folder renamed once gives readers the same guarantee.
    """
    staging = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def publish_dir(staging: Path, final: Path) -> threading.Thread | None:
    """Swap a filled staging folder in for `final`; returns the thread removing the old one.

    Readers see the old folder or the new one, never a half-filled one. The old folder is
    renamed out of the way first and removed in the background (unlinking many files takes a
    while); a crash meanwhile leaves a hidden .tmp folder that the next run sweeps.
    """
    old = final.with_name(f".{final.name}.{os.getpid()}.old.tmp")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(staging, final)
    if not old.exists():
        return None
    remover = threading.Thread(
        target=shutil.rmtree, args=(old,), kwargs={"ignore_errors": True},
        name="remove-old-letters", daemon=True,
    )
    remover.start()
    return remover


def sweep_temporary(out_dir: Path) -> None:
    """Remove our own temporary files and folders left by a run that was killed mid-write.

    Only dot-named *.tmp entries under output/ are touched: they are ours, never the office's.
    """
    if not out_dir.is_dir():
        return
    for stale in sorted(out_dir.rglob(".*.tmp"), key=lambda p: len(p.parts)):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextmanager
def roster_lock(output_dir: Path, roster: Path) -> Iterator[None]:
    """Hold an exclusive lock on one roster, so two runs at once never process the same one.

    One lock per output folder, kept in output/.advising/locks/ where no roster's folder is.
    """
    locks = product_dir(output_dir) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    fh = (locks / f"{roster_folder_name(roster)}.lock").open("a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RosterBusy(f"{roster.name}: another run is processing it") from None
        yield
    finally:
        # The kernel drops the lock when the file closes, also when the process is killed.
        fh.close()
