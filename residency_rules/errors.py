"""One error hierarchy, caught once at the edge (the CLI or the flow), never a traceback."""

from __future__ import annotations


class AdvisingError(Exception):
    """A problem a user can act on; the message says what is wrong and what to do."""


class RulesError(AdvisingError):
    """The specialty/rules data file is wrong: the message names the file, the entry and the fix."""


class RosterError(AdvisingError):
    """A roster cannot be read at all; the file goes to input/rejected/ with these problems."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class SettingsError(AdvisingError):
    """A setting is missing or wrong; the message names the setting and how to fix it."""


class DeliveryError(AdvisingError):
    """Mail could not be handed to the relay at all (not a per-recipient failure)."""


class NrmpImportError(AdvisingError):
    """The office's NRMP CSV cannot be imported; `problems` has one sentence per bad row."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else []
