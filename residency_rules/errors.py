"""One error hierarchy, caught once at the edge (the CLI or the flow), never a traceback.

The root error carries its parts as fields (what is wrong, the detail a library gave, what to
do, and where: file, sheet, row, column, student), so a caller that needs one of them (the
Prefect state keeps only what is wrong and where) reads the field instead of splitting the
message. The errors of reading files, settings and delivery live with that I/O, in flows.errors.
"""

from __future__ import annotations

from typing import Any


class AdvisingError(Exception):
    """A problem a user can act on: what is wrong, what to do, and where.

    what: what is wrong, in the product's words (when no `where` field is given it may name
    the file itself); detail: a library's words about it (a zip or XML error), shown to the
    office in parentheses, never kept by Prefect; fix: what to do.
    """

    def __init__(
        self,
        what: str,
        fix: str = "",
        *,
        detail: str = "",
        file: str = "",
        sheet: str = "",
        row: int | None = None,
        column: str = "",
        student_id: str = "",
    ) -> None:
        self.what = what
        self.fix = fix
        self.detail = detail
        self.file = file
        self.sheet = sheet
        self.row = row
        self.column = column
        self.student_id = student_id
        super().__init__(self.message())

    def where(self) -> str:
        """Name the place: "roster.xlsx, sheet 'Roster', row 4, column 'Step 2 CK'"."""
        parts = [self.file] if self.file else []
        if self.sheet:
            parts.append(f"sheet '{self.sheet}'")
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(f"column '{self.column}'")
        if self.student_id:
            parts.append(f"student {self.student_id}")
        return ", ".join(parts)

    def summary(self) -> str:
        """Say what is wrong and where, without the library's detail or the fix.

        What Prefect keeps of a rejected or stopped roster: product words naming files and
        settings only, never a value a library quoted from the file.
        """
        where = self.where()
        return f"{where}: {self.what}" if where else self.what

    def message(self) -> str:
        """The whole sentence for the office: where, what, the detail, and what to do."""
        text = self.summary() + (f" ({self.detail})" if self.detail else "")
        return f"{text}; {self.fix}" if self.fix else text

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect and process pools pickle exceptions; the fields must survive the trip.
        return (_restore, (type(self), self.__dict__.copy()))


def _restore(cls: type[AdvisingError], state: dict[str, Any]) -> AdvisingError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error.message())
    return error


class RulesError(AdvisingError):
    """The specialty/rules data file is wrong: the message names the file, the entry and the fix."""


class NrmpImportError(AdvisingError):
    """The office's NRMP CSV cannot be imported; `problems` has one sentence per bad row."""

    def __init__(self, what: str, problems: list[str] | None = None) -> None:
        super().__init__(what)
        self.problems: list[str] = problems if problems is not None else []
