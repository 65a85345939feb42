"""Typed reads from the parsed data file, each failure a RulesError naming file, entry and fix."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from residency_rules.errors import RulesError

Table = Mapping[str, Any]


class Where:
    """A place in the data file (file and entry) that error messages name."""

    __slots__ = ("origin", "entry")

    def __init__(self, origin: str, entry: str) -> None:
        self.origin = origin
        self.entry = entry

    def error(self, what: str, fix: str) -> RulesError:
        """Build the error for this place, so every message reads file: entry: what. Fix: ..."""
        return RulesError(f"{self.origin}: {self.entry}: {what}. Fix: {fix}.")

    def child(self, entry: str) -> Where:
        """Name a place inside this one."""
        return Where(self.origin, f"{self.entry}, {entry}")


def table(parent: Table, key: str, where: Where, fix: str) -> Table:
    """Read a sub-table that must be there."""
    value = parent.get(key)
    if value is None:
        raise where.error(f'the table "{key}" is missing', fix)
    if not isinstance(value, Mapping):
        raise where.error(f'"{key}" must be a table, not {_kind(value)}', fix)
    return value


def text(parent: Table, key: str, where: Where, fix: str) -> str:
    """Read a non-empty string that must be there."""
    value = _present(parent, key, where, fix)
    if not isinstance(value, str) or not value.strip():
        raise where.error(f'the field "{key}" must be non-empty text, not {value!r}', fix)
    return value.strip()


def integer(
    parent: Table, key: str, where: Where, fix: str, *, low: int, high: int
) -> int:
    """Read a whole number in [low, high] that must be there."""
    value = _present(parent, key, where, fix)
    # bool is an int in Python; `true` is never a score.
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(f'the field "{key}" must be a whole number, not {value!r}', fix)
    if not low <= value <= high:
        raise where.error(f'the field "{key}" is {value}, outside {low}-{high}', fix)
    return value


def optional_integer(
    parent: Table, key: str, where: Where, fix: str, *, low: int, high: int
) -> int | None:
    """Read a whole number in [low, high] that may be left out."""
    if key not in parent:
        return None
    return integer(parent, key, where, fix, low=low, high=high)


def flag(parent: Table, key: str, where: Where, fix: str) -> bool:
    """Read a true/false that must be there."""
    value = _present(parent, key, where, fix)
    if not isinstance(value, bool):
        raise where.error(f'the field "{key}" must be true or false, not {value!r}', fix)
    return value


def day(parent: Table, key: str, where: Where, fix: str) -> _dt.date:
    """Read a TOML date (YYYY-MM-DD, unquoted) that must be there."""
    value = _present(parent, key, where, fix)
    if isinstance(value, _dt.datetime) or not isinstance(value, _dt.date):
        raise where.error(f'the field "{key}" must be a date like 2025-07-01, not {value!r}', fix)
    return value


def texts(parent: Table, key: str, where: Where, fix: str) -> tuple[str, ...]:
    """Read a list of non-empty strings that must be there (it may be empty)."""
    value = _present(parent, key, where, fix)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise where.error(f'the field "{key}" must be a list of names in quotes', fix)
    return tuple(v.strip() for v in value)


def _present(parent: Table, key: str, where: Where, fix: str) -> Any:
    if key not in parent:
        raise where.error(f'the field "{key}" is missing', fix)
    return parent[key]


def _kind(value: object) -> str:
    return type(value).__name__
