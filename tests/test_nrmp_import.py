"""Honest NRMP figures: the table's status, `advising specialties` and its --import of a CSV."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from flows.cli import main
from flows.settings import Settings, load_table
from residency_rules.errors import NrmpImportError, RulesError
from residency_rules.nrmp_import import (
    apply_nrmp_import,
    column_for,
    next_version,
    read_nrmp_csv,
)
from residency_rules.specialties import (
    SpecialtyTable,
    describe_table,
    load_default_table,
    nrmp_citation,
    packaged_text,
    parse_table,
)
from tests.conftest import RUN_DATE
from tests.support.specialty_files import ORIGIN, PACKAGED, changed

GOOD_CSV = (
    "Specialty,USMLE Step 2 CK Q1,Median,Q3,Unmatched Median,Notes\r\n"
    "Family Medicine,234,245,255,231,typed from page 12\r\n"
    "IM,243,254,262,,\r\n"
    "Child Neurology,241,250,260,-,\r\n"
    ",,,,,\r\n"
    "Derm,251,259,266,252,\r\n"
)
BAD_CSV = (
    "Specialty;Step 2 CK Q1;Step 2 CK Median;Step 2 CK Q3\n"
    "Family Medicine;234;245;255\n"
    "Pediatrics;250;245;260\n"
    "Psychiatry;236;247;256\n"
)


def office_table(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = workdir / "office" / "specialties.toml"
    monkeypatch.setenv("ADVISING_SPECIALTY_TABLE", str(path))
    return path


# --- the table's status and the one citation --------------------------------------------------


def test_the_shipped_figures_are_marked_unchecked_and_cited_as_approximate() -> None:
    table = load_default_table()
    assert table.nrmp_status == "unchecked" and table.nrmp_checked_on is None
    citation = nrmp_citation(table)
    assert citation.startswith("approximate NRMP figures")
    assert "Table" not in citation and "Charting" not in citation


def test_checked_figures_are_cited_with_the_report_and_the_day() -> None:
    text = changed('status = "unchecked"', 'status = "checked"\nchecked_on = 2026-12-01')
    table = parse_table(text, ORIGIN)
    assert nrmp_citation(table) == "NRMP Charting Outcomes 2026, Table 5, checked on 1 Dec 2026"


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ('status = "unchecked"', 'status = "maybe"', 'the status "maybe" is unknown'),
        ('status = "unchecked"', 'status = "checked"', 'the field "checked_on" is missing'),
        ('status = "unchecked"', 'status = "unchecked"\nchecked_on = 2026-12-01',
         "checked_on is given but the status is unchecked"),
    ],
)
def test_a_wrong_nrmp_block_is_refused(old: str, new: str, fragment: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_table(changed(old, new), ORIGIN)
    assert str(caught.value).startswith(f"{ORIGIN}: [nrmp]: ")
    assert fragment in str(caught.value)


def test_a_copy_from_before_the_nrmp_block_counts_as_unchecked() -> None:
    start = PACKAGED.index("[nrmp]")
    text = PACKAGED[:start] + PACKAGED[PACKAGED.index("# Families", start):]
    assert parse_table(text, ORIGIN).nrmp_status == "unchecked"


# --- reading the CSV --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("Specialty", "specialty"), ("SPECIALITY ", "specialty"), ("Q1", "q1"),
        ("Step 2 CK Q1", "q1"), ("25th percentile", "q1"), ("Median", "median"),
        ("USMLE Step 2 CK median score", "median"), ("q3", "q3"), ("75th Percentile", "q3"),
        ("Unmatched median", "unmatched_median"), ("Median (unmatched)", "unmatched_median"),
        ("unmatched_median", "unmatched_median"), ("Notes", None), ("Mean", None),
    ],
)
def test_headers_match_forgivingly(header: str, column: str | None) -> None:
    assert column_for(header) == column


def test_a_good_csv_reads_every_row_through_aliases(table: SpecialtyTable) -> None:
    rows = read_nrmp_csv(GOOD_CSV, "nrmp.csv", table)
    got = [(r.specialty, r.q1, r.median, r.q3, r.unmatched_median, r.row) for r in rows]
    assert got == [
        ("Family Medicine", 234, 245, 255, 231, 2),
        ("Internal Medicine", 243, 254, 262, None, 3),
        ("Child Neurology", 241, 250, 260, None, 4),
        ("Dermatology", 251, 259, 266, 252, 6),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("Dermatolgy,251,258,266,", 'nrmp.csv, row 3, column "Specialty": "Dermatolgy" is not '
         "a specialty in the table (did you mean Dermatology?)"),
        (",251,258,266,", 'nrmp.csv, row 3, column "Specialty": the specialty is blank'),
        ("Fam Med,251,258,266,", 'nrmp.csv, row 3, column "Specialty": Family Medicine is '
         "already on row 2; keep one row per specialty."),
        ("Pathology,24O,247,258,", 'nrmp.csv, row 3, column "Q1": "24O" is not a Step 2 CK '
         "score; type the q1 for Pathology from the report, a whole number 1-300."),
        ("Pathology,240,247,301,", 'nrmp.csv, row 3, column "Q3": "301" is not a Step 2 CK'),
        ("Pathology,240,247.5,258,", 'column "Median": "247.5" is not a Step 2 CK score'),
        ("Pathology,240,,258,", 'column "Median": the median for Pathology is blank'),
        ("Pathology,240,247,258,0", 'column "Unmatched": "0" is not a Step 2 CK score'),
        ("Pathology,250,247,258,", 'nrmp.csv, row 3, columns "Q1", "Median", "Q3": 250, 247, '
         "258 are not in order for Pathology (q1 <= median <= q3); copy the three figures "
         "again from the report."),
    ],
)
def test_each_bad_row_is_one_sentence_naming_file_row_and_column(
    table: SpecialtyTable, row: str, message: str
) -> None:
    text = f"Specialty,Q1,Median,Q3,Unmatched\nFamily Medicine,234,245,255,231\n{row}\n"
    with pytest.raises(NrmpImportError) as caught:
        read_nrmp_csv(text, "nrmp.csv", table)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("nrmp.csv, row 3, column")
    assert message in caught.value.problems[0]
    assert "nothing was written" in str(caught.value)


def test_a_missing_column_is_named_with_the_headers_found(table: SpecialtyTable) -> None:
    with pytest.raises(NrmpImportError) as caught:
        read_nrmp_csv("Specialty,Q1,Q3\nPathology,240,258\n", "nrmp.csv", table)
    assert str(caught.value).startswith(
        'nrmp.csv, row 1: no column for median among the headers ("Specialty", "Q1", "Q3")'
    )


def test_an_empty_file_or_one_without_rows_is_refused(table: SpecialtyTable) -> None:
    with pytest.raises(NrmpImportError, match="nrmp.csv is empty"):
        read_nrmp_csv("\n\n", "nrmp.csv", table)
    with pytest.raises(NrmpImportError, match="no specialty under it"):
        read_nrmp_csv("Specialty,Q1,Median,Q3\n", "nrmp.csv", table)


# --- rewriting the data file ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"), [("2026.1", "2026.2"), ("2026.9", "2026.10"), ("2027", "2027.1"),
                     ("office-a.3", "office-a.4")],
)
def test_the_version_is_raised(old: str, new: str) -> None:
    assert next_version(old) == new


def test_the_rewritten_file_keeps_everything_but_the_figures_and_reads_back(
    table: SpecialtyTable,
) -> None:
    rows = read_nrmp_csv(GOOD_CSV, "nrmp.csv", table)
    result = apply_nrmp_import(packaged_text(), ORIGIN, rows, date(2026, 12, 1))
    after = parse_table(result.text, ORIGIN)
    assert (after.version, after.nrmp_status, after.nrmp_checked_on) == (
        "2026.2", "checked", date(2026, 12, 1)
    )
    fm = after.get("Family Medicine")
    assert (fm.nrmp_q1, fm.nrmp_median, fm.nrmp_q3, fm.nrmp_unmatched_median) == (
        234, 245, 255, 231
    )
    assert after.get("Internal Medicine").nrmp_unmatched_median is None
    assert after.get("Psychiatry").nrmp_median is None  # no row: no figures, and said so
    assert "Psychiatry" in result.dropped and "Urology" not in result.dropped
    # Comments, rules and the other fields are untouched.
    assert after.rules == table.rules
    assert after.get("Dermatology").parallel == table.get("Dermatology").parallel
    assert "# The specialty table and the outlook rules" in result.text
    assert "NRMP reports no unmatched median for Child Neurology" not in result.text


def test_a_copy_with_figures_as_sub_tables_and_no_nrmp_block_is_rewritten(
    table: SpecialtyTable,
) -> None:
    """An office copy from before [nrmp], its figures written as [specialty.nrmp] tables."""
    start = PACKAGED.index("[nrmp]")
    text = PACKAGED[:start] + PACKAGED[PACKAGED.index("# Families", start):]
    text = re.sub(
        r"^nrmp = \{ q1 = (\d+), median = (\d+), q3 = (\d+)(.*) \}\n",
        lambda m: "",
        text,
        flags=re.M,
    )
    text = text.replace(
        'aliases = ["Derm"]\n',
        'aliases = ["Derm"]\n\n[specialty.nrmp]\nq1 = 250\nmedian = 257\nq3 = 265\n',
    )
    assert parse_table(text, ORIGIN).get("Dermatology").nrmp_median == 257
    rows = read_nrmp_csv(GOOD_CSV, "nrmp.csv", table)
    result = apply_nrmp_import(text, ORIGIN, rows, date(2026, 12, 1), "NRMP 2027, Table 5")
    after = parse_table(result.text, ORIGIN)
    assert after.get("Dermatology").nrmp_median == 259
    assert nrmp_citation(after) == "NRMP 2027, Table 5, checked on 1 Dec 2026"


# --- the command ------------------------------------------------------------------------------


def test_specialties_prints_every_figure_with_its_source_and_status(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["specialties"]) == 0
    out = capsys.readouterr().out
    assert "NRMP figures: NOT CHECKED" in out
    assert "the table shipped with the product (ADVISING_SPECIALTY_TABLE is not set;" in out
    assert "advising specialties --import FILE.csv" in out
    assert re.search(r"Dermatology +hyper +255 +265 +article +251/258/266 +252 +medical", out)
    assert re.search(r"Urology +hyper +255 +265 +assigned +- +- +surgical", out)
    assert "article: Residency Advisor" in out
    assert "Dermatology: Internal Medicine, Pathology, Family Medicine, Pediatrics " \
           "(office-curated default)" in out


def test_import_without_an_office_table_writes_nothing_and_says_what_to_set(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = workdir / "nrmp.csv"
    csv_file.write_text(GOOD_CSV, encoding="utf-8")
    before = packaged_text()
    assert main(["specialties", "--import", str(csv_file)]) == 2
    err = capsys.readouterr().err
    assert "ADVISING_SPECIALTY_TABLE is not set" in err and "Nothing was written." in err
    assert packaged_text() == before
    assert sorted(p.name for p in workdir.iterdir()) == ["input", "nrmp.csv", "output"]


def test_import_with_a_bad_row_reports_it_by_row_and_column_and_writes_nothing(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = office_table(workdir, monkeypatch)
    csv_file = workdir / "nrmp-2027.csv"
    csv_file.write_text(BAD_CSV, encoding="utf-8")
    assert main(["specialties", "--import", str(csv_file)]) == 2
    err = capsys.readouterr().err
    assert f"{csv_file}: 1 row(s) cannot be imported; nothing was written." in err
    assert (
        f'{csv_file}, row 3, columns "Step 2 CK Q1", "Step 2 CK Median", "Step 2 CK Q3": '
        "250, 245, 260 are not in order for Pediatrics" in err
    )
    assert "Traceback" not in err
    assert not target.exists()


def test_import_writes_the_office_table_that_runs_then_read(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """First import: the office's table is created from the shipped one, checked on the run
    date, version raised; the next run's table (load_table) is that one. A second import keeps
    the previous file beside it."""
    target = office_table(workdir, monkeypatch)
    csv_file = workdir / "nrmp.csv"
    csv_file.write_bytes(GOOD_CSV.encode("utf-8-sig"))  # Excel's "CSV UTF-8" adds a BOM
    assert main(["specialties", "--import", str(csv_file)]) == 0
    out = capsys.readouterr().out
    assert "Imported the NRMP figures of 4 specialties" in out
    assert "version 2026.1 -> 2026.2" in out
    assert "No NRMP figures now for" in out and "Psychiatry" in out
    table = load_table(Settings())
    assert (table.version, table.nrmp_status, table.nrmp_checked_on) == (
        "2026.2", "checked", RUN_DATE
    )
    assert table.get("Dermatology").nrmp_median == 259
    assert nrmp_citation(table) == "NRMP Charting Outcomes 2026, Table 5, checked on 24 Nov 2026"

    assert main(["specialties", "--import", str(csv_file), "--report",
                 "NRMP Charting Outcomes 2027, Table 5"]) == 0
    capsys.readouterr()
    assert load_table(Settings()).version == "2026.3"
    kept = target.with_name("specialties.2026.2.toml")
    assert parse_table(kept.read_text(encoding="utf-8"), str(kept)).version == "2026.2"

    assert main(["specialties"]) == 0
    out = capsys.readouterr().out
    assert "NRMP figures: CHECKED: imported on 24 Nov 2026" in out
    assert "NRMP Charting Outcomes 2027, Table 5, checked on 24 Nov 2026" in out
    assert f"Read from: {target} (ADVISING_SPECIALTY_TABLE)" in out


def test_describe_table_names_where_it_was_read_from() -> None:
    text = describe_table(load_default_table(), "somewhere.toml")
    assert text.splitlines()[1] == "Read from: somewhere.toml"
