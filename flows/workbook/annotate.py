"""The annotated workbook: the office's own file, plus what it needs to act tomorrow morning.

The office's workbook is kept whole (every sheet, style, validation, comment, image, name and
macro); on the roster sheet, after their columns, come the annotation columns; then a Summary
and a Problems sheet. The fast writer edits the file's XML in place (`workbook_xml`); when it
meets XML it cannot edit with certainty it says so, and openpyxl writes the file instead.

Formulas: no value we write is ever a formula, and the office's text cells that start with
= + - @ get quotePrefix so retyping them keeps them text. The office's own real formulas in
their other columns are kept as they are: they are their work, not data from a form.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flows.files import roster_file_stem, sha256_file, write_atomic
from flows.intake.roster import Roster
from flows.workbook.content import ANNOTATION_HEADERS, build_content
from flows.workbook.fast_writer import write_with_xml
from flows.workbook.ooxml import UnsupportedWorkbook
from flows.workbook.openpyxl_writer import write_with_openpyxl
from residency_rules.errors import RosterError
from residency_rules.records import Evaluation

__all__ = ["ANNOTATION_HEADERS", "LetterCell", "annotated_path", "write_annotated"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LetterCell:
    """What happened to a student's letter, and where its file is, for the Letter column."""

    status: str  # e.g. "Sent", "Unchanged (sent 2026-11-20)", "Held: see Problems"
    path: str | None  # relative to the workbook's folder, e.g. "letters/000123.html"


def annotated_path(source: Path, out_dir: Path) -> Path:
    """Return <out_dir>/<name>-annotated with the roster file's own suffix (.xlsm keeps macros).

    The name is portable (see flows.files.roster_file_stem): `CON.xlsx` is no device name.
    """
    return out_dir / f"{roster_file_stem(source)}-annotated{source.suffix.lower()}"


def write_annotated(
    roster: Roster,
    evaluations: Mapping[str, Evaluation],
    letters: Mapping[str, LetterCell],
    out_path: Path,
    notice: str = "",
) -> None:
    """Write the office's workbook, annotated, with Summary and Problems sheets, atomically.

    notice: one line for the office on the Summary (e.g. the configured cycle is over).
    """
    source_suffix = roster.source.suffix.lower()
    if out_path.suffix.lower() != source_suffix:
        raise ValueError(
            f"{out_path.name}: the annotated workbook must keep the roster's suffix "
            f"({source_suffix}); Excel refuses a macro workbook named .xlsx and the reverse. "
            "Use flows.workbook.annotate.annotated_path()"
        )
    if out_path.resolve() == roster.source.resolve():
        raise ValueError(f"{out_path}: the annotated workbook must not replace the office's roster")
    _check_unchanged(roster)
    content = build_content(roster, evaluations, letters, notice)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(out_path, lambda tmp: write_with_xml(content, tmp))
    except UnsupportedWorkbook as exc:
        # Slower, and openpyxl drops what it does not model (shapes, slicers): say so.
        log.warning("%s: writing through openpyxl (%s)", roster.source.name, exc)
        write_atomic(out_path, lambda tmp: write_with_openpyxl(content, tmp))


def _check_unchanged(roster: Roster) -> None:
    """Refuse to annotate a roster edited since intake read it: rows may have moved."""
    if len(roster.sha256) != 64:
        return
    if sha256_file(roster.source) != roster.sha256.lower():
        raise RosterError(
            f"{roster.source.name}: the file changed while it was being processed, so its rows "
            "may have moved; it will be processed again on the next run"
        )
