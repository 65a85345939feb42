"""The errors of the product's I/O: rosters, settings, delivery, and the stages' crashes.

All under the domain's root error (residency_rules.errors.AdvisingError), so the CLI and the
flow catch one class at the edge, and every error carries its parts as fields.
"""

from __future__ import annotations

from residency_rules.errors import AdvisingError

__all__ = [
    "AdvisingError",
    "DeliveryError",
    "RosterBusy",
    "RosterError",
    "SettingsError",
    "StageCrash",
    "StudentFailed",
]


class RosterError(AdvisingError):
    """A roster cannot be read at all; the file goes to input/rejected/ with these problems."""

    def __init__(
        self, what: str, fix: str = "", *, problems: list[str] | None = None, detail: str = "",
        file: str = "", sheet: str = "", row: int | None = None, column: str = "",
    ) -> None:
        super().__init__(what, fix, detail=detail, file=file, sheet=sheet, row=row, column=column)
        self.problems: list[str] = problems if problems is not None else [self.message()]


class SettingsError(AdvisingError):
    """A setting is missing or wrong; the message names the setting and how to fix it."""


class DeliveryError(AdvisingError):
    """Mail could not be handed to the relay at all (not a per-recipient failure)."""


class RosterBusy(AdvisingError):
    """Another run holds this roster's lock: it is being processed right now."""


class StageCrash(AdvisingError):
    """An unexpected error, reduced to what Prefect may keep: type, roster file, student ID.

    Prefect logs a failed task's exception and stores its message in the task run's state,
    where anyone with the UI reads it; an exception's message may quote a cell (a name, an
    address, a score). The original, with its traceback, is only in error.log (`log`); when
    even that could not be written, `unkept` says why.
    """

    def __init__(
        self, what: str, fix: str = "", *, file: str = "", student_id: str = "", kind: str = "",
        log: str = "", unkept: str = "",
    ) -> None:
        super().__init__(what, fix, file=file, student_id=student_id)
        self.kind = kind
        self.log = log
        self.unkept = unkept


class StudentFailed(Exception):
    """A bug met while working on one student: carries the student's ID beside the cause.

    Not an AdvisingError: it is a bug, and stage_guard turns it into a StageCrash naming the
    student (the ID only, never the row's values), with the cause's traceback in error.log.
    """

    def __init__(self, student_id: str, cause: BaseException) -> None:
        super().__init__(student_id)
        self.student_id = student_id
        self.cause = cause
