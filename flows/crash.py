"""What a bug in a stage leaves behind: error.log for IT, and a stripped error for Prefect.

Prefect logs a failed task's exception and keeps its message in the task run's state, where
anyone with the UI reads it; an exception's message may quote a cell (a name, an address, a
score). So every stage runs inside `stage_guard`: the product's own errors pass (plain words
naming files and settings), any other exception becomes a StageCrash carrying only its type,
the roster file and the student ID, and the traceback goes to output/<roster>/error.log.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from flows.errors import AdvisingError, StageCrash, StudentFailed
from flows.files import no_space, roster_output_dir, write_atomic
from flows.outcome import RosterOutcome, RosterStatus

ERROR_LOG = "error.log"
ERROR_LOG_MODE = 0o600  # a traceback may quote row values: the office's account only


def record_crash(
    path: Path, output_dir: Path, exc: BaseException, stage: str = "the run"
) -> StageCrash:
    """Keep a bug's details for IT in error.log (mode 600), and return what Prefect may see.

    The traceback may quote row values, so it goes to output/ (office eyes only), never to the
    console or Prefect. The roster stays in input/ and the next run starts it again. When even
    error.log cannot be written (a full disk), the crash says so instead (`unkept`).
    """
    student = ""
    if isinstance(exc, StudentFailed):
        student, exc = exc.student_id, exc.cause
    log = roster_output_dir(output_dir, path) / ERROR_LOG
    details = "".join(traceback.format_exception(exc))
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    kind = type(exc).__name__
    about = f" (student {student})" if student else ""
    try:
        write_atomic(log, f"{stamp} {stage}, {path.name}{about}\n{details}".encode(),
                     mode=ERROR_LOG_MODE)
        written, unkept = str(log), ""
    except AdvisingError as unwritable:  # a full disk, most likely: say so, do not raise
        written, unkept = "", f"its details could not be kept either ({unwritable})"
    told = f"the details are in {written}" if written else unkept
    return StageCrash(f"{stage} stopped by an unexpected {kind}", told, file=path.name,
                      student_id=student, kind=kind, log=written, unkept=unkept)


def crash_outcome(path: Path, crash: StageCrash) -> RosterOutcome:
    """Tell the office that a bug stopped a roster, and where IT finds the details."""
    send = f"Please send {crash.log} to IT." if crash.log else f"Please tell IT: {crash.unkept}."
    return RosterOutcome(
        file=path.name,
        status=RosterStatus.FAILED,
        message=f"stopped by an unexpected error ({crash.kind}); the roster stays in the input "
        f"folder for the next run. {send}",
        reason=crash.message(),  # product words: the stage, the type, the file, the student
    )


@contextmanager
def stage_guard(stage: str, roster: Path, output_dir: Path) -> Iterator[None]:
    """Let the product's own errors through; turn any other into a StageCrash first.

    Used inside every stage task, so the exception Prefect sees (and logs, and keeps in the
    task run's state) is already stripped of any value it quoted.
    """
    try:
        yield
    except AdvisingError:
        raise  # anticipated: plain words the product wrote, naming files and settings only
    except Exception as exc:  # noqa: BLE001 - any bug, whatever it quotes
        if (full := no_space(exc)) is not None:  # a library's write found the disk full
            raise disk_full(full, output_dir) from None
        raise record_crash(roster, output_dir, exc, stage) from None


def disk_full(exc: OSError, output_dir: Path) -> AdvisingError:
    """Say in one sentence that a write found the disk full, and what to do: not a bug."""
    where = exc.filename or output_dir
    return AdvisingError(
        "stopped: the disk is full",
        "free space and run again: the roster stays in the input folder, no file is left "
        "half-written, and no letter already delivered goes out twice",
        detail=f"{exc.strerror or exc}, writing {where}",
    )
