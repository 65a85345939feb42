"""Replace the NRMP figures of the office's specialty table from a CSV it typed from the report.

Every row is checked first (residency_rules.nrmp_import); then the office's table is written
with the day and a new version, the previous file kept beside it. The shipped table inside the
installed product is never changed: an update would replace it silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from flows.errors import AdvisingError
from flows.files import write_atomic
from flows.settings import Settings
from residency_rules.nrmp_import import apply_nrmp_import, read_nrmp_csv
from residency_rules.specialties import nrmp_citation, packaged_text, parse_table


@dataclass(frozen=True)
class Imported:
    """What an import wrote, for the CLI to say."""

    rows: int
    checked_on: date
    target: Path
    created: bool  # the office's table was created from the shipped one
    old_version: str
    new_version: str
    kept: Path | None  # the previous table, kept beside it
    citation: str  # how letters now cite the figures
    dropped: tuple[str, ...]  # specialties left without NRMP figures (no row in the file)


def import_nrmp(settings: Settings, csv_path: Path, report: str | None) -> Imported:
    """Check the CSV, rewrite the office's table, keep the previous file beside it."""
    target = settings.specialty_table
    if target is None:
        # The shipped file lives inside the installed package: an update replaces it, and runs
        # would not know an office edit from ours. The office's table is its own file.
        raise AdvisingError(
            "ADVISING_SPECIALTY_TABLE is not set, so runs use the table shipped with the "
            "product, and an import never changes that file. Set it to where the office keeps "
            "its own table (for example ADVISING_SPECIALTY_TABLE=office/specialties.toml in "
            ".env): the import creates that file from the shipped table. Nothing was written."
        )
    if report is not None and not report.strip():
        raise AdvisingError("--report is blank; name the report, e.g. \"NRMP Charting "
                            "Outcomes 2027, Table 5\". Nothing was written.")
    csv_text = _read_csv(csv_path)
    created = not target.exists()
    try:
        base = packaged_text() if created else target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdvisingError(
            f"ADVISING_SPECIALTY_TABLE: cannot read {target}",
            "fix the path or the file. Nothing was written.", detail=str(exc),
        ) from None
    table = parse_table(base, str(target))
    rows = read_nrmp_csv(csv_text, str(csv_path), table)
    checked_on = settings.run_date()
    result = apply_nrmp_import(base, str(target), rows, checked_on, report)
    kept = None
    if not created:
        kept = _free_name(target, result.old_version)
        write_atomic(kept, base.encode("utf-8"))
    write_atomic(target, result.text.encode("utf-8"))
    return Imported(
        rows=len(rows), checked_on=checked_on, target=target, created=created,
        old_version=result.old_version, new_version=result.table.version, kept=kept,
        citation=nrmp_citation(result.table), dropped=tuple(result.dropped),
    )


def _read_csv(path: Path) -> str:
    """Read the office's CSV: UTF-8 as Excel's "CSV UTF-8" writes it, else Windows-1252."""
    if not path.is_file():
        raise AdvisingError(f"{path}: no such file; give the path of the CSV with the NRMP "
                            "figures. Nothing was written.")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _free_name(target: Path, version: str) -> Path:
    """Name the copy of the previous table after its version, never over an older copy."""
    candidate = target.with_name(f"{target.stem}.{version}{target.suffix}")
    n = 2
    while candidate.exists():
        candidate = target.with_name(f"{target.stem}.{version}-{n}{target.suffix}")
        n += 1
    return candidate
