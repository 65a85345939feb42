"""Read a roster workbook into normalised student records, and say what could not be read.

The file is read once into memory and never written: its size and zip directory are checked
before any XML is parsed (zip bombs, entity expansion), cached formula values are read with
python-calamine (fast, and macros are never run), and every cell goes through the normalisers of
`residency_rules.schema`. Range and cross-field rules are the Great Expectations suite's job
(`flows.intake.validation`); here a row is held only when a cell cannot be read as its field at all.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import python_calamine as calamine

from flows.errors import RosterError
from flows.intake.roster import Roster
from flows.intake.sheet_parts import SheetParts, sheet_parts
from flows.settings import Settings, load_column_map
from residency_rules.records import Grade, Problem, Step1Result, StudentRecord
from residency_rules.schema import (
    CLERKSHIP_FIELDS,
    FIELD_BY_NAME,
    Cell,
    HeaderMatch,
    Invalid,
    accepted_headers,
    cell_text,
    column_map_index,
    find_header,
    missing_required,
    norm_date,
    norm_email,
    norm_grade,
    norm_letters,
    norm_margin,
    norm_match_result,
    norm_step1_result,
    norm_student_id,
    norm_text,
    norm_whole,
)
from residency_rules.specialties import SpecialtyTable

logger = logging.getLogger(__name__)

MB = 1024 * 1024
HEADER_SCAN_ROWS = 30  # title rows above the header: offices use a few, never dozens
MAX_ZIP_MEMBERS = 10_000
# A member that inflates more than this many times and is large is a zip bomb's shape; real
# sheet XML compresses 5-30x, Excel's most repetitive parts stay well under 100x.
MAX_RATIO = 200
RATIO_MIN_BYTES = 1 * MB
OLE_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
ZIP_MAGIC = b"PK\x03\x04"
ROSTER_SHEET = "roster"

# Step 1 attempts when the cell is blank: passed or failed means sat at least once.
_DEFAULT_ATTEMPTS: dict[Step1Result, int] = {"pass": 1, "fail": 1, "not taken": 0}


def ingest(path: Path, settings: Settings, table: SpecialtyTable) -> Roster:
    """Read one roster workbook; rows whose cells all read become records, the rest problems.

    Raises RosterError (with one plain-language line per problem) when the file cannot be read
    as a roster at all: not a workbook, encrypted, too large, no header, required columns missing.
    """
    data = read_guarded(path, settings)
    book = _open_workbook(path, data)
    custom = column_map_index(load_column_map(settings))
    sheet_name, rows, header = _choose_sheet(path, book, custom)
    _require_columns(path, sheet_name, header)

    roster = Roster(
        source=path,
        sha256=hashlib.sha256(data).hexdigest(),
        sheet=sheet_name,
        header_row=header.row + 1,
        headers=dict(header.written),
        column_index={name: col + 1 for name, col in header.columns.items()},
        last_column=max(len(rows[header.row]) if rows else 0, max(header.columns.values()) + 1),
        unread={col + 1: text for col, text in header.unread},
        mapped=header.mapped,
    )
    roster.problems.extend(_header_problems(path, sheet_name, header))
    _read_rows(roster, rows, header, table, sheet_parts(data, sheet_name, path.name))
    logger.info(
        "Roster %s: sheet %r, header on row %d, %d student rows, %d readable, %d problems",
        path.name, sheet_name, roster.header_row, len(roster.row_ids), len(roster.records),
        len(roster.problems),
    )
    return roster


# ---------------------------------------------------------------------------------------------
# The file: size guard, format sniffing, zip directory checks
# ---------------------------------------------------------------------------------------------


def read_guarded(path: Path, settings: Settings) -> bytes:
    """Return the file's bytes after checking it is a plausible, safe .xlsx/.xlsm workbook."""
    name = path.name
    if name.startswith("~$"):
        real = name[2:]
        raise RosterError(
            f"{name} is the lock file Excel keeps while {real} is open, not a roster",
            f"close {real} in Excel and use {real} itself",
        )
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise RosterError("no such file", "give the path of a roster workbook",
                          file=name) from None
    if not path.is_file():
        raise RosterError(f"{name} is a folder, not a roster workbook")
    limit = settings.max_roster_mb * MB
    if size > limit:
        raise RosterError(
            f"{name} is {size / MB:.1f} MB, over the {settings.max_roster_mb:g} MB limit for a "
            "roster",
            "remove pictures or extra sheets and save it again "
            "(IT can raise ADVISING_MAX_ROSTER_MB)",
        )
    data = path.read_bytes()  # read-only: the office's file is never opened for writing
    if not data:
        raise RosterError(f"{name} is empty (0 bytes)", "save the roster from Excel again")
    if data.startswith(OLE_MAGIC):
        raise _ole_error(name, data)
    if not data.startswith(ZIP_MAGIC):
        raise _not_zip_error(name, data)
    _check_zip(name, data, settings)
    return data


def _ole_error(name: str, data: bytes) -> RosterError:
    """Explain an OLE file: Excel writes password-protected workbooks and old .xls files so."""
    if "EncryptedPackage".encode("utf-16-le") in data[:1 << 20] or b"EncryptionInfo" in data:
        return RosterError(
            f"{name} is protected with a password (encrypted), so it cannot be read",
            "in Excel use File > Info > Protect Workbook > Encrypt with Password, clear the "
            "password, save, and drop the file again",
        )
    return RosterError(
        f"{name} is an old-format Excel file (Excel 97-2003 .xls) or another Office file",
        "open it in Excel and use File > Save As > Excel Workbook (.xlsx)",
    )


def _not_zip_error(name: str, data: bytes) -> RosterError:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<html", b"<!doctype html", b"<?xml", b"<table")):
        kind = "a web page or XML file saved with a spreadsheet name"
    elif b"," in head or b"\t" in head or b";" in head:
        kind = "a text (CSV) file"
    else:
        kind = "not an Excel workbook"
    return RosterError(
        f"{name} is {kind}, not an .xlsx workbook",
        "open it in Excel and use File > Save As > Excel Workbook (.xlsx)",
    )


def _check_zip(name: str, data: bytes, settings: Settings) -> None:
    """Refuse zip bombs and crafted XML from the directory and the first bytes of each part."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                raise RosterError(
                    f"{name} holds {len(members)} parts, far more than any roster workbook, "
                    "so it was not opened",
                    "save the roster again from Excel",
                )
            names = {m.filename for m in members}
            if "xl/workbook.xml" not in names:
                raise RosterError(
                    f"{name} is a zip file but not an Excel workbook",
                    "open it in Excel and save it as .xlsx", detail="no xl/workbook.xml",
                )
            total = sum(m.file_size for m in members)
            if total > settings.max_uncompressed_mb * MB:
                raise RosterError(
                    f"{name} would unpack to {total / MB:.0f} MB, over the "
                    f"{settings.max_uncompressed_mb:g} MB limit, so it was not opened",
                    "remove pictures or extra sheets (IT can raise "
                    "ADVISING_MAX_UNCOMPRESSED_MB)",
                )
            for member in members:
                if member.flag_bits & 0x1:
                    raise RosterError(
                        f"the part {member.filename} is encrypted",
                        "remove the password in Excel and save the workbook again", file=name,
                    )
                ratio = member.file_size / max(member.compress_size, 1)
                if member.file_size > RATIO_MIN_BYTES and ratio > MAX_RATIO:
                    raise RosterError(
                        f"the part {member.filename} would inflate {ratio:.0f} times "
                        f"to {member.file_size / MB:.0f} MB, the shape of a zip bomb, so it was "
                        "not opened",
                        "save the roster again from Excel", file=name,
                    )
            for member in members:
                if member.filename.endswith((".xml", ".rels", ".vml")):
                    with archive.open(member) as part:
                        head = part.read(2048)
                    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                        raise RosterError(
                            f"the part {member.filename} declares XML entities, which "
                            "Excel never writes, so it was not opened",
                            "save the roster again from Excel", file=name,
                        )
    except (zipfile.BadZipFile, EOFError, NotImplementedError, ValueError) as exc:
        raise RosterError(
            f"{name} is damaged or was not copied completely",
            "save it again from Excel and drop it again", detail=str(exc),
        ) from None


def _open_workbook(path: Path, data: bytes) -> calamine.CalamineWorkbook:
    try:
        return calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except calamine.PasswordError:
        raise RosterError(
            f"{path.name} is protected with a password",
            "remove the password in Excel and save it again",
        ) from None
    except calamine.CalamineError as exc:
        raise RosterError(
            f"{path.name} could not be read as an Excel workbook",
            "open it in Excel, save it again as .xlsx, and drop it again", detail=str(exc),
        ) from None


# ---------------------------------------------------------------------------------------------
# The sheet and its header
# ---------------------------------------------------------------------------------------------


def _load_sheet(path: Path, book: calamine.CalamineWorkbook, sheet: str) -> calamine.CalamineSheet:
    try:
        return book.get_sheet_by_name(sheet)
    except calamine.CalamineError as exc:
        raise RosterError(
            "the sheet could not be read",
            "open the workbook in Excel, save it again, and drop it again",
            detail=str(exc), file=path.name, sheet=sheet,
        ) from None


def _rows(path: Path, sheet: calamine.CalamineSheet, nrows: int | None = None) -> list[list[Cell]]:
    try:
        # skip_empty_area=False keeps absolute positions: row 0 is Excel row 1, column 0 is A.
        return cast(list[list[Cell]], sheet.to_python(skip_empty_area=False, nrows=nrows))
    except calamine.CalamineError as exc:
        raise RosterError(
            "the sheet could not be read",
            "open the workbook in Excel, save it again, and drop it again",
            detail=str(exc), file=path.name, sheet=sheet.name,
        ) from None


def _choose_sheet(
    path: Path, book: calamine.CalamineWorkbook, custom: dict[str, str]
) -> tuple[str, list[list[Cell]], HeaderMatch]:
    """Pick the visible sheet named Roster, else the first visible sheet with a header we know."""
    sheets = [
        m for m in book.sheets_metadata if m.typ == calamine.SheetTypeEnum.WorkSheet
    ]
    visible = [m.name for m in sheets if m.visible == calamine.SheetVisibleEnum.Visible]
    hidden = [m.name for m in sheets if m.visible != calamine.SheetVisibleEnum.Visible]
    named = [n for n in visible if n.strip().casefold() == ROSTER_SHEET]
    looked = ", ".join(f"'{n}'" for n in visible) or "(none visible)"
    for name in named or visible:
        sheet = _load_sheet(path, book, name)
        header = find_header(_rows(path, sheet, HEADER_SCAN_ROWS), HEADER_SCAN_ROWS,
                             custom=custom)
        if header is not None:
            return name, _rows(path, sheet), header
        if named:
            raise RosterError(
                f"no header row we recognise in its first {HEADER_SCAN_ROWS} rows",
                "put the column headers (Student ID, Name, Step 1 Result, Specialty ...) in "
                "one row above the students",
                problems=[_no_header_line(path.name, f"sheet '{name}'")],
                file=path.name, sheet=name,
            )
    for name in hidden:
        if find_header(_rows(path, _load_sheet(path, book, name), HEADER_SCAN_ROWS),
                       custom=custom) is not None:
            raise RosterError(
                f"the roster seems to be on the hidden sheet '{name}'",
                "unhide it (right-click a sheet tab > Unhide) or move the students to a "
                "visible sheet named Roster", file=path.name,
            )
    raise RosterError(
        f"no sheet has a header row we recognise (looked at {looked})",
        "put the students on a sheet named Roster under a header row",
        problems=[_no_header_line(path.name, f"the sheets {looked}")], file=path.name,
    )


def _no_header_line(file: str, where: str) -> str:
    return (
        f"{file}: no header row was found in {where} (first {HEADER_SCAN_ROWS} rows). "
        "The roster needs one row of column headers such as Student ID, Name, Step 1 Result, "
        "Specialty, Email, Step 2 CK Score; `advising template PATH` writes a blank roster "
        "with the expected headers."
    )


def _require_columns(path: Path, sheet: str, header: HeaderMatch) -> None:
    missing = missing_required(header.columns)
    if not missing:
        return
    row = header.row + 1
    lines = []
    for field in missing:
        line = (
            f"{path.name}, sheet '{sheet}': no {field.label} column in the header row "
            f"(row {row}). Add a column headed '{field.label}' (also accepted: "
            f"{accepted_headers(field)})."
        )
        if field.name == "name":
            line = (
                f"{path.name}, sheet '{sheet}': no Name column in the header row (row {row}). "
                "Add a column headed 'Name', or two columns 'First Name' and 'Last Name'."
            )
        close = [written for _, written, f in header.near_misses if f == field.name]
        if close:
            line += f" The column '{close[0]}' looks close: rename it to '{field.label}' if so."
        lines.append(line)
    labels = ", ".join(f.label for f in missing)
    raise RosterError(
        f"required column(s) missing from the header row (row {row}): {labels}",
        "add them and save the roster again", problems=lines, file=path.name, sheet=sheet,
    )


def _header_problems(path: Path, sheet: str, header: HeaderMatch) -> list[Problem]:
    """Warn (without holding anyone) about near-miss and duplicate headers and a missing email."""
    row = header.row + 1
    problems = []
    for _col, written, name in header.near_misses:
        label = FIELD_BY_NAME[name].label
        problems.append(Problem(
            file=path.name, sheet=sheet, row=row, column=written, value=written,
            what=f"Column '{written}' is not one we know, so it was passed through unread",
            fix=f"Did you mean '{label}'? If so, rename the header to '{label}'.",
            holds_row=False,
        ))
    for _col, written, name in header.duplicates:
        first = header.written[name]
        problems.append(Problem(
            file=path.name, sheet=sheet, row=row, column=written, value=written,
            what=(f"Column '{written}' names the same thing as column '{first}'; "
                  f"only '{first}' was read"),
            fix="Delete or rename one of the two columns so the right one is used.",
            holds_row=False,
        ))
    if "email" not in header.columns:
        problems.append(Problem(
            file=path.name, sheet=sheet, row=None, column=None,
            what="The roster has no email column, so letters are written but none is sent",
            fix="Add a column headed 'Email' with each student's school address.",
            holds_row=False,
        ))
    return problems


# ---------------------------------------------------------------------------------------------
# The rows
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _RowReader:
    """Turn one sheet row into a StudentRecord or the problems that stop it."""

    roster: Roster
    header: HeaderMatch
    table: SpecialtyTable
    specialty_cache: dict[str, str]


    def problem(self, excel_row: int, name: str, value: Cell, bad: Invalid, sid: str | None
                ) -> Problem:
        what = bad.what[:1].upper() + bad.what[1:]
        return Problem(
            file=self.roster.source.name, sheet=self.roster.sheet, row=excel_row,
            column=self.header.written.get(name, FIELD_BY_NAME[name].label),
            value=cell_text(value), what=what, fix=bad.fix, student_id=sid,
        )

    def specialty(self, text: str) -> str:
        """Resolve aliases to the canonical name; leave unknown text for validation to name."""
        found = self.specialty_cache.get(text)
        if found is None:
            spec = self.table.resolve(text)
            found = spec.name if spec is not None else text
            self.specialty_cache[text] = found
        return found

    def read(self, excel_row: int, cells: dict[str, Cell],
             uncalculated: tuple[str, ...] = ()) -> None:
        problems: list[Problem] = []
        raw_id = cells.get("student_id")
        sid_value = norm_student_id(raw_id)
        sid = sid_value if isinstance(sid_value, str) else None
        self.roster.row_ids[excel_row] = sid if sid is not None else cell_text(raw_id)
        if isinstance(sid_value, Invalid):
            problems.append(self.problem(excel_row, "student_id", raw_id, sid_value, None))
        for name in uncalculated:  # it reads as blank: never let it pass as a blank
            column = self.header.written.get(name, FIELD_BY_NAME[name].label)
            problems.append(Problem(
                file=self.roster.source.name, sheet=self.roster.sheet, row=excel_row,
                column=column, value="(a formula with no value)",
                what=f"The {column} cell holds a formula Excel has not calculated",
                fix="Open the roster in Excel, save it, and drop it again", student_id=sid,
            ))

        def whole(name: str) -> int | None:
            value = cells.get(name)
            out = norm_whole(value, FIELD_BY_NAME[name].noun)
            if isinstance(out, Invalid):
                problems.append(self.problem(excel_row, name, value, out, sid))
                return None
            return out

        if "name" in self.header.columns:
            name = norm_text(cells.get("name")) or ""
        else:
            first = norm_text(cells.get("first_name"))
            last = norm_text(cells.get("last_name"))
            name = " ".join(p for p in (first, last) if p)

        raw_result = cells.get("step1_result")
        result = norm_step1_result(raw_result)
        if isinstance(result, Invalid):
            problems.append(self.problem(excel_row, "step1_result", raw_result, result, sid))

        attempts = whole("step1_attempts")
        step1_score = whole("step1_score")
        step2_score = whole("step2_score")
        step2_attempts = whole("step2_attempts")
        research = whole("research_count")
        invitations = whole("interviews")

        raw_margin = cells.get("step1_margin")
        margin = norm_margin(raw_margin)
        if isinstance(margin, Invalid):
            problems.append(self.problem(excel_row, "step1_margin", raw_margin, margin, sid))
        raw_letters = cells.get("letters")
        letters = norm_letters(raw_letters)
        if isinstance(letters, Invalid):
            problems.append(self.problem(excel_row, "letters", raw_letters, letters, sid))
        raw_match = cells.get("match_result")
        match_result = norm_match_result(raw_match)
        if isinstance(match_result, Invalid):
            problems.append(self.problem(excel_row, "match_result", raw_match, match_result,
                                         sid))
        raw_date = cells.get("step2_date")
        step2_date = norm_date(raw_date, FIELD_BY_NAME["step2_date"].noun)
        if isinstance(step2_date, Invalid):
            problems.append(self.problem(excel_row, "step2_date", raw_date, step2_date, sid))

        grades: list[tuple[str, Grade | None]] = []
        conditional: list[str] = []
        for field_name, clerkship in CLERKSHIP_FIELDS.items():
            if field_name not in self.header.columns:
                continue
            raw = cells.get(field_name)
            grade = norm_grade(raw)
            if isinstance(grade, Invalid):
                problems.append(self.problem(excel_row, field_name, raw, grade, sid))
                continue
            grades.append((clerkship, grade[0]))
            if grade[1]:
                conditional.append(clerkship)

        specialty_text = norm_text(cells.get("specialty"))
        specialty = self.specialty(specialty_text) if specialty_text else ""

        self.roster.problems.extend(problems)
        if problems or isinstance(result, Invalid) or isinstance(margin, Invalid) \
                or isinstance(letters, Invalid) or isinstance(step2_date, Invalid) \
                or isinstance(match_result, Invalid):
            return
        self.roster.records.append(StudentRecord(
            student_id=sid or "",
            name=name,
            email=norm_email(cells.get("email")),
            step1_result=result,
            step1_attempts=attempts if attempts is not None else _DEFAULT_ATTEMPTS[result],
            specialty=specialty,
            step1_score=step1_score,
            step1_margin=margin,
            step2_score=step2_score,
            step2_date=step2_date,
            step2_attempts=step2_attempts,
            clerkships=tuple(grades),
            conditional_pass=tuple(conditional),
            research_count=research,
            letters=letters,
            interviews=invitations,
            match_result=match_result,
            advisor=norm_text(cells.get("advisor")),
            advisor_email=norm_email(cells.get("advisor_email")),
            row=excel_row,
        ))


def _read_rows(
    roster: Roster, rows: list[list[Cell]], header: HeaderMatch, table: SpecialtyTable,
    parts: SheetParts | None = None,
) -> None:
    """Read every non-blank row under the header; a row blank in every known column is skipped,
    and so is a table's total row (its "Total" and averages are not a student)."""
    reader = _RowReader(roster, header, table, {})
    names = list(header.columns)
    cols = [header.columns[n] for n in names]
    parts = parts or SheetParts()
    formula_rows = {r for r, _ in parts.uncalculated}
    for index in range(header.row + 1, len(rows)):
        if index + 1 in parts.total_rows:
            continue
        row = rows[index]
        width = len(row)
        values = [row[c] if c < width else None for c in cols]
        uncalculated: tuple[str, ...] = ()
        if index + 1 in formula_rows:
            uncalculated = tuple(n for n, c in zip(names, cols, strict=True)
                                 if (index + 1, c + 1) in parts.uncalculated)
        if all(_blank(v) for v in values) and not uncalculated:
            continue
        reader.read(index + 1, {n: v for n, v in zip(names, values, strict=True) if v != ""},
                    uncalculated)


def _blank(value: Cell) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
