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
from pathlib import Path

from flows.errors import RosterError
from flows.files import roster_file_stem, sha256_file, student_file_stem, write_atomic
from flows.intake.roster import Roster
from flows.ooxml import UnsupportedWorkbook
from flows.outcome import LetterOutcome, LetterStatus
from flows.workbook.content import ANNOTATION_HEADERS, LetterCell, build_content
from flows.workbook.fast_writer import write_with_xml
from flows.workbook.openpyxl_writer import write_with_openpyxl
from residency_rules.records import Evaluation
from residency_rules.rulebook import Level

__all__ = ["ANNOTATION_HEADERS", "LetterCell", "annotated_path", "letter_cells", "write_annotated"]

log = logging.getLogger(__name__)


def letter_cells(letters: Mapping[str, LetterOutcome]) -> dict[str, LetterCell]:
    """Give each student's Letter cell its outcome and, when a letter was written, its link.

    The letters sit in letters/ beside the workbook, named for the student ID (portable:
    flows.files.student_file_stem); a held student has no letter, so no link.
    """
    return {
        sid: LetterCell(outcome, None if outcome.status is LetterStatus.HELD
                        else f"letters/{student_file_stem(sid)}.html")
        for sid, outcome in letters.items()
    }


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
    *,
    levels: Mapping[int, Level],
) -> None:
    """Write the office's workbook, annotated, with Summary and Problems sheets, atomically.

    notice: one line for the office on the Summary (e.g. the configured cycle is over);
    levels: what each level means ([levels] of the specialty table), for the legend.
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
    content = build_content(roster, evaluations, letters, notice, levels=levels)
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
