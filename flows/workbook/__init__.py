"""The annotated workbook: the office's own file, with outlook columns, Summary and Problems.

The flow calls `write_annotated`; it tries the fast XML writer (edits the office's parts in
place) and falls back to openpyxl for workbooks the fast writer does not handle.
"""

from flows.workbook.annotate import LetterCell, annotated_path, letter_cells, write_annotated

__all__ = ["LetterCell", "annotated_path", "letter_cells", "write_annotated"]
