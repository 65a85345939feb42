"""Replace the specialty table's NRMP figures from a CSV the office typed from its report.

Pure: the CSV and the data file come in as text, the new data file goes out as text, and the
caller reads and writes the files. Every CSV row is checked before anything is rewritten; the
rewritten file is read back and compared with what was meant before the caller may save it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass

from residency_rules.errors import NrmpImportError, RulesError
from residency_rules.schema import SCORE_RANGE, header_key
from residency_rules.specialties import SpecialtyTable, parse_table

# Canonical CSV column -> header keys accepted for it (header_key: letters and digits only,
# "step 2 ck" and "usmle" dropped first, so "USMLE Step 2 CK Q1" reads as "q1").
_COLUMNS: dict[str, frozenset[str]] = {
    "specialty": frozenset(
        ("specialty", "speciality", "specialtyname", "name", "preferredspecialty", "program")
    ),
    "q1": frozenset(
        ("q1", "quartile1", "1stquartile", "firstquartile", "lowerquartile", "25thpercentile",
         "p25", "matchedq1", "q1matched")
    ),
    "median": frozenset(
        ("median", "med", "matchedmedian", "medianmatched", "50thpercentile", "p50")
    ),
    "q3": frozenset(
        ("q3", "quartile3", "3rdquartile", "thirdquartile", "upperquartile", "75thpercentile",
         "p75", "matchedq3", "q3matched")
    ),
    "unmatched_median": frozenset(
        ("unmatchedmedian", "unmatched", "medianunmatched", "notmatchedmedian",
         "mediannotmatched", "unmatchedmed", "medianofunmatched", "medianofthosenotmatched")
    ),
}
REQUIRED_COLUMNS = ("specialty", "q1", "median", "q3")
# How messages name a column the office did not write (it wrote none).
_COLUMN_WORDS = {
    "specialty": "specialty", "q1": "q1", "median": "median", "q3": "q3",
    "unmatched_median": "unmatched median",
}
_NOISE = re.compile(r"usmle|step2ck|step2|score|scores|ofmatched")
_BLANKS = frozenset(("", "-", "—", "–", "n/a", "na", "none", "not reported"))


@dataclass(frozen=True, slots=True)
class NrmpRow:
    """One specialty's figures from the office's CSV, checked."""

    specialty: str  # canonical name in the table
    q1: int
    median: int
    q3: int
    unmatched_median: int | None
    row: int  # the row number a spreadsheet shows (the header is row 1)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The rewritten data file, the table it parses to, and what changed, for the report."""

    text: str
    table: SpecialtyTable
    old_version: str
    dropped: tuple[str, ...]  # specialties that had figures and got no row: none now


def column_for(header: str) -> str | None:
    """Return the canonical column a CSV header names, or None for a column to ignore."""
    key = _NOISE.sub("", header_key(header))
    for name, keys in _COLUMNS.items():
        if key in keys:
            return name
    return None


def read_nrmp_csv(text: str, origin: str, table: SpecialtyTable) -> tuple[NrmpRow, ...]:
    """Check every row of the CSV; raise NrmpImportError with one sentence per bad row."""
    records = _records(text.lstrip("\ufeff"))
    header_at = next((i for i, r in enumerate(records) if any(c.strip() for c in r)), None)
    if header_at is None:
        raise NrmpImportError(
            f"{origin} is empty. Type one row per specialty under a header row "
            "(specialty, q1, median, q3, unmatched median), then import again."
        )
    header = records[header_at]
    where = _columns(header, header_at + 1, origin)
    rows: list[NrmpRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index in range(header_at + 1, len(records)):
        cells = records[index]
        if not any(c.strip() for c in cells):
            continue
        row = index + 1
        found = _row(cells, row, where, header, origin, table, seen)
        if isinstance(found, str):
            problems.append(found)
        else:
            seen[found.specialty] = row
            rows.append(found)
    if problems:
        raise NrmpImportError(
            f"{origin}: {len(problems)} row(s) cannot be imported; nothing was written. "
            "Correct them and import again:\n" + "\n".join(f"  - {p}" for p in problems),
            problems,
        )
    if not rows:
        raise NrmpImportError(
            f"{origin} has a header row but no specialty under it. Type one row per "
            "specialty from the report, then import again."
        )
    return tuple(rows)


def _records(text: str) -> list[list[str]]:
    """Read CSV records; Excel writes ; or tab instead of , in some countries."""
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def _columns(header: list[str], row: int, origin: str) -> dict[str, int]:
    where: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = column_for(cell)
        if name is None:
            continue
        if name in where:
            raise NrmpImportError(
                f'{origin}, row {row}: the columns "{header[where[name]].strip()}" and '
                f'"{cell.strip()}" both read as {_COLUMN_WORDS[name]}. Rename or delete one '
                "of them, then import again."
            )
        where[name] = index
    missing = [_COLUMN_WORDS[n] for n in REQUIRED_COLUMNS if n not in where]
    if missing:
        shown = ", ".join(f'"{c.strip()}"' for c in header if c.strip())
        raise NrmpImportError(
            f"{origin}, row {row}: no column for {', '.join(missing)} among the headers "
            f"({shown}). Name the columns specialty, q1, median, q3 and unmatched median, "
            "then import again."
        )
    return where


def _row(
    cells: list[str],
    row: int,
    where: dict[str, int],
    header: list[str],
    origin: str,
    table: SpecialtyTable,
    seen: dict[str, int],
) -> NrmpRow | str:
    """Read one row, or return the one sentence that says what is wrong with it."""

    def cell(name: str) -> str:
        index = where[name]
        return cells[index].strip() if index < len(cells) else ""

    def at(name: str) -> str:
        written = header[where[name]].strip() or _COLUMN_WORDS[name]
        return f'{origin}, row {row}, column "{written}"'

    text = cell("specialty")
    if not text:
        return f"{at('specialty')}: the specialty is blank; type its name, or delete the row."
    spec = table.resolve(text)
    if spec is None:
        guess = table.suggest(text)
        hint = f" (did you mean {guess}?)" if guess else ""
        return (
            f'{at("specialty")}: "{text}" is not a specialty in the table{hint}; write the '
            "name `advising specialties` shows, or one of its aliases."
        )
    if spec.name in seen:
        return (
            f"{at('specialty')}: {spec.name} is already on row {seen[spec.name]}; keep one "
            "row per specialty."
        )
    figures: dict[str, int | None] = {}
    for name in ("q1", "median", "q3", "unmatched_median"):
        raw = cell(name) if name in where else ""
        if raw.casefold() in _BLANKS:
            if name == "unmatched_median":
                figures[name] = None
                continue
            return (
                f"{at(name)}: the {_COLUMN_WORDS[name]} for {spec.name} is blank; type it from "
                "the report."
            )
        value = _whole(raw)
        low, high = SCORE_RANGE
        if value is None or not low <= value <= high:
            return (
                f'{at(name)}: "{raw}" is not a Step 2 CK score; type the '
                f"{_COLUMN_WORDS[name]} for {spec.name} from the report, a whole number "
                f"{low}-{high}."
            )
        figures[name] = value
    q1, median, q3 = figures["q1"], figures["median"], figures["q3"]
    assert q1 is not None and median is not None and q3 is not None  # checked above
    if not q1 <= median <= q3:
        names = ", ".join(f'"{header[where[n]].strip()}"' for n in ("q1", "median", "q3"))
        return (
            f"{origin}, row {row}, columns {names}: {q1}, {median}, {q3} are not in order "
            f"for {spec.name} (q1 <= median <= q3); copy the three figures again from the "
            "report."
        )
    return NrmpRow(spec.name, q1, median, q3, figures["unmatched_median"], row)


def _whole(raw: str) -> int | None:
    """Read "245" or Excel's "245.0"; anything else is not a score."""
    try:
        number = float(raw)
    except ValueError:
        return None
    if number != number or not number.is_integer():  # NaN, or a fraction
        return None
    return int(number)


# ---------------------------------------------------------------------------------------------
# Rewriting the data file
# ---------------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def next_version(version: str) -> str:
    """Raise a version: "2026.1" -> "2026.2"; one without a dotted counter gains ".1"."""
    found = re.fullmatch(r"(.*\.)(\d+)", version)
    if found:
        return f"{found.group(1)}{int(found.group(2)) + 1}"
    return f"{version}.1"


def apply_nrmp_import(
    text: str,
    origin: str,
    rows: Sequence[NrmpRow],
    checked_on: _dt.date,
    report: str | None = None,
) -> ImportResult:
    """Return the data file with these NRMP figures, checked on this day, its version raised.

    Specialties without a row lose their figures: checked and unchecked figures never mix.
    Comments and layout are kept; the result is parsed back and compared with what was meant.
    """
    before = parse_table(text, origin)
    new_version = next_version(before.version)
    by_name = {r.specialty: r for r in rows}
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    out: list[str] = []
    section: str | None = None  # None = top of the file
    block: list[str] = []
    saw_nrmp = False

    def flush() -> None:
        nonlocal block
        if section == "specialty":
            out.extend(_specialty_block(block, by_name, newline))
        elif section == "nrmp":
            out.extend(_nrmp_block(block, checked_on, report, newline))
        else:
            out.extend(block)
        block = []

    dropping = False  # inside a [specialty.nrmp] sub-table: the old figures, written anew
    for line in lines:
        header = _HEADER.match(line)
        if header is not None:
            name = header.group(1)
            dropping = name == "specialty.nrmp"
            if dropping:
                continue
            flush()
            section = name
            if name == "nrmp":
                saw_nrmp = True
            elif name == "specialty" and not saw_nrmp:
                out.extend(_new_nrmp_block(checked_on, report or before.nrmp_report, newline))
                saw_nrmp = True
            block.append(line)
            continue
        if dropping:
            continue
        if section is None:
            key = _KEY.match(line)
            if key is not None and key.group(1) == "version":
                line = f"version = {json.dumps(new_version)}{newline}"
        block.append(line)
    flush()
    new_text = "".join(out)
    return ImportResult(
        text=new_text,
        table=_verified(new_text, origin, before, by_name, new_version, checked_on, report),
        old_version=before.version,
        dropped=tuple(
            s.name
            for s in before.specialties
            if s.nrmp_median is not None and s.name not in by_name
        ),
    )


def _specialty_block(
    block: list[str], by_name: dict[str, NrmpRow], newline: str
) -> list[str]:
    """Drop the old figures (and comments about them) of one [[specialty]]; write the new."""
    name = None
    for line in block:
        key = _KEY.match(line)
        if key is not None and key.group(1) == "name":
            try:
                found = tomllib.loads(line.strip())["name"]
            except tomllib.TOMLDecodeError:
                found = None
            name = found if isinstance(found, str) else None
            break
    kept: list[str] = []
    insert_at: int | None = None
    for line in block:
        key = _KEY.match(line)
        if key is not None and key.group(1) == "nrmp":
            # Comments just above the old figures speak of them ("NRMP reports no ...").
            while kept and kept[-1].lstrip().startswith("#") and "nrmp" in kept[-1].casefold():
                kept.pop()
            if insert_at is None:
                insert_at = len(kept)
            continue
        kept.append(line)
    row = by_name.get(name.strip()) if name else None
    if row is None:
        return kept
    if insert_at is None:  # after the last key (or closing bracket), before trailing blanks
        insert_at = len(kept)
        while insert_at > 1 and (
            not kept[insert_at - 1].strip() or kept[insert_at - 1].lstrip().startswith("#")
        ):
            insert_at -= 1
    unmatched = (
        f", unmatched_median = {row.unmatched_median}" if row.unmatched_median is not None else ""
    )
    line = (
        f"nrmp = {{ q1 = {row.q1}, median = {row.median}, q3 = {row.q3}{unmatched} }}{newline}"
    )
    if insert_at > 0 and not kept[insert_at - 1].endswith(("\n", "\r")):
        kept[insert_at - 1] += newline
    return [*kept[:insert_at], line, *kept[insert_at:]]


def _nrmp_block(
    block: list[str], checked_on: _dt.date, report: str | None, newline: str
) -> list[str]:
    """Rewrite [nrmp]: status checked, the day, and the report when a new one is named."""
    replaced = {"status", "checked_on"} | ({"report"} if report else set())
    kept = [block[0]]
    for line in block[1:]:
        key = _KEY.match(line)
        if key is not None and key.group(1) in replaced:
            continue
        kept.append(line)
    new = [f'status = "checked"{newline}', f"checked_on = {checked_on.isoformat()}{newline}"]
    if report:
        new.append(f"report = {json.dumps(report, ensure_ascii=False)}{newline}")
    if not kept[0].endswith(("\n", "\r")):
        kept[0] += newline
    return [kept[0], *new, *kept[1:]]


def _new_nrmp_block(checked_on: _dt.date, report: str, newline: str) -> list[str]:
    """Write the [nrmp] block into a copy made before it existed."""
    cited = report or "NRMP Charting Outcomes"
    return [
        f"# The NRMP figures as a whole: imported by `advising specialties --import`.{newline}",
        f"[nrmp]{newline}",
        f'status = "checked"{newline}',
        f"checked_on = {checked_on.isoformat()}{newline}",
        f"report = {json.dumps(cited, ensure_ascii=False)}{newline}",
        newline,
    ]


def _verified(
    text: str,
    origin: str,
    before: SpecialtyTable,
    by_name: dict[str, NrmpRow],
    version: str,
    checked_on: _dt.date,
    report: str | None,
) -> SpecialtyTable:
    """Parse the rewritten file and compare it with what was meant, field by field."""
    try:
        after = parse_table(text, origin)
    except RulesError as exc:
        raise _unsafe(origin, str(exc)) from None
    if (after.version, after.nrmp_status, after.nrmp_checked_on) != (
        version, "checked", checked_on
    ):
        raise _unsafe(origin, "the version or the [nrmp] block did not come out as meant")
    if report and after.nrmp_report != report:
        raise _unsafe(origin, "the report's name did not come out as meant")
    if after.rules != before.rules or after.cycle != before.cycle:
        raise _unsafe(origin, "the rules changed")
    if len(after.specialties) != len(before.specialties):
        raise _unsafe(origin, "a specialty was lost")
    for old, new in zip(before.specialties, after.specialties, strict=True):
        row = by_name.get(old.name)
        meant = dataclasses.replace(
            old,
            nrmp_q1=row.q1 if row else None,
            nrmp_median=row.median if row else None,
            nrmp_q3=row.q3 if row else None,
            nrmp_unmatched_median=row.unmatched_median if row else None,
        )
        if new != meant:
            raise _unsafe(origin, f"{old.name} did not come out as meant")
    return after


def _unsafe(origin: str, detail: str) -> RulesError:
    return RulesError(
        f"{origin}: the import could not rewrite this file safely ({detail}); nothing was "
        "written. Fix: compare its layout with the packaged specialties.toml (one "
        "nrmp = { ... } line per specialty), or send the file and the CSV to IT."
    )
