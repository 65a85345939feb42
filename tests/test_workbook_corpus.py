"""Every roster of the corpus (tests/data/corpus) through intake, the rules and both writers.

The oracle is openxml-audit, a pure-Python OOXML validator that encodes what makes Excel offer a
repair: the annotated workbook may carry no finding its input did not already have (the
validator reports a few false positives on files Excel opens happily, e.g. openpyxl's font
children, so the input's own findings are the baseline). Every student keeps the outlook the
plain roster gives, and the office's parts we do not edit come back byte for byte.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pytest

import flows.workbook.annotate as workbook_module
from flows import intake
from flows.ooxml import UnsupportedWorkbook
from flows.outcome import LetterStatus, roster_letters
from flows.settings import Settings
from flows.workbook.annotate import annotated_path, letter_cells, write_annotated
from residency_rules.rules import evaluate_all
from residency_rules.specialties import SpecialtyTable, load_default_table
from tests.conftest import RUN_DATE

openxml_audit = pytest.importorskip("openxml_audit")

CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
FILES = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".xlsx", ".xlsm"))
SLOW = {"rows_2000.xlsx"}  # the validator takes ~17 s on a 2,000-row sheet
BASE = "openpyxl_saved.xlsx"  # the plain roster every file's students are compared with
# What a file means to change, by student ID (see make_corpus.EXPECTED).
EXPECTED: dict[str, dict[str, str]] = {"formulas_uncached.xlsx": {"S004": "held"}}
# Parts we edit or add; everything else in the office's package must come back byte for byte.
EDITED = ("xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/styles.xml",
          "xl/sharedStrings.xml", "[Content_Types].xml", "docProps/app.xml")


def _params() -> list[object]:
    out = []
    for name in FILES:
        for writer in ("xml", "openpyxl"):
            marks = [pytest.mark.slow] if name in SLOW else []
            out.append(pytest.param(name, writer, marks=marks, id=f"{name}-{writer}"))
    return out


@functools.cache
def _table() -> SpecialtyTable:
    return load_default_table()


def _settings() -> Settings:
    return Settings(allowed_email_domains=("school.edu",), today=RUN_DATE)


def annotate(source: Path, out_dir: Path) -> tuple[intake.Roster, dict[str, str], Path]:
    """Run a roster through intake, validation, the rules and the writer, as the flow does.

    Returns the validated roster, each student's outcome by ID (outlook label, or "held"),
    and the annotated workbook.
    """
    settings, table = _settings(), _table()
    roster = intake.ingest(source, settings, table)
    roster = intake.validate(roster, settings, table)
    evaluations = evaluate_all(roster.records, table, review_start=settings.review_start,
                               today=settings.run_date())
    by_id = {e.student_id: e for e in evaluations}
    letters = roster_letters(roster.row_ids, roster.held_rows(), by_id, {})
    outcome = {sid: "held" if o.status is LetterStatus.HELD else by_id[sid].label
               for sid, o in letters.items()}
    out = annotated_path(roster.source, out_dir)
    write_annotated(roster, by_id, letter_cells(letters), out, levels=table.rules.levels)
    return roster, outcome, out


@functools.cache
def findings(path: str) -> frozenset[tuple[str, str, str]]:
    """Return openxml-audit's findings as (part, severity, description), paths left out.

    The XPath of a finding moves when we insert an element before it; the part and the
    message say what is wrong.
    """
    result = openxml_audit.OpenXmlValidator().validate(path)
    return frozenset((e.part_uri, e.severity.value, e.description) for e in result.errors)


def _new_findings(source: Path, out: Path) -> set[tuple[str, str, str]]:
    before = findings(str(source))
    before_text = {(severity, _generic(text)) for _, severity, text in before}
    return {f for f in findings(str(out)) - before
            if (f[1], _generic(f[2])) not in before_text}


def _generic(text: str) -> str:
    """Drop part names and counts from a message, to match a finding the input already had
    on a part that got a new name or more cells (inline strings: 47 cells -> 55 cells)."""
    import re

    return re.sub(r"sheet\d+\.xml|\d+", "#", text)


def _force_openpyxl(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise UnsupportedWorkbook("forced by the test")

    monkeypatch.setattr(workbook_module, "write_with_xml", refuse)


@functools.lru_cache(maxsize=1)
def _base_outcome() -> dict[str, str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return annotate(CORPUS / BASE, Path(tmp))[1]


@pytest.mark.parametrize(("name", "writer"), _params())
def test_every_corpus_roster_opens_clean_with_the_right_outlooks(
    name: str, writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    workdir: Path,
) -> None:
    source = tmp_path / name
    shutil.copyfile(CORPUS / name, source)
    if writer == "openpyxl":
        _force_openpyxl(monkeypatch)
    else:
        monkeypatch.setattr(workbook_module, "write_with_openpyxl", None)  # must not be needed
    roster, outcome, out = annotate(source, tmp_path / "out")

    new = _new_findings(CORPUS / name, out)
    assert not new, "\n".join(f"{p} [{s}] {d}" for p, s, d in sorted(new))

    expected = dict(_base_outcome())
    expected.update(EXPECTED.get(name, {}))
    assert {sid: outcome[sid] for sid in expected} == expected

    wb = openpyxl.load_workbook(out)  # the annotation is there, on the roster's own sheet
    ws = wb[roster.sheet]
    header = [c.value for c in ws[roster.header_row]]
    assert "Outlook" in header and "Next steps" in header
    if writer == "xml":
        with zipfile.ZipFile(CORPUS / name) as src, zipfile.ZipFile(out) as dst:
            sheet = _roster_part(src, roster.sheet)
            folder, base = sheet.rsplit("/", 1)
            ours = set(EDITED) | {sheet, f"{folder}/_rels/{base}.rels"}
            for info in src.infolist():
                if info.filename not in ours:
                    assert dst.read(info.filename) == src.read(info), info.filename


def _roster_part(zf: zipfile.ZipFile, title: str) -> str:
    """Return the zip name of a sheet by title."""
    import re

    wb = zf.read("xl/workbook.xml").decode()
    rels = zf.read("xl/_rels/workbook.xml.rels").decode()
    for m in re.finditer(r"<(?:\w+:)?sheet\b[^>]*>", wb):
        tag = m.group(0)
        found = re.search(r'name="([^"]*)"', tag)
        if found and found.group(1).replace("&apos;", "'") == title:
            rid = re.search(r'r:id="([^"]+)"', tag)
            assert rid is not None
            for rel in re.finditer(r"<Relationship\b[^>]*>", rels):
                if f'Id="{rid.group(1)}"' in rel.group(0):
                    target = re.search(r'Target="([^"]+)"', rel.group(0))
                    assert target is not None
                    t = target.group(1).lstrip("/")
                    return t if t.startswith("xl/") else "xl/" + t
    raise AssertionError(title)


def test_the_macro_project_is_kept_byte_for_byte(tmp_path: Path, workdir: Path) -> None:
    source = tmp_path / "macro_vba.xlsm"
    shutil.copyfile(CORPUS / "macro_vba.xlsm", source)
    _, _, out = annotate(source, tmp_path / "out")
    assert out.suffix == ".xlsm"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(out) as dst:
        assert dst.read("xl/vbaProject.bin") == src.read("xl/vbaProject.bin")
        assert b"macroEnabled" in dst.read("[Content_Types].xml")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
@pytest.mark.parametrize("writer", ["xml", "openpyxl"])
def test_libreoffice_opens_and_prints_every_corpus_output(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workdir: Path,
) -> None:
    """soffice converts every annotated workbook to PDF: it opened and laid out every page."""
    if writer == "openpyxl":
        _force_openpyxl(monkeypatch)
    outs = []
    for name in FILES:
        source = tmp_path / "in" / name
        source.parent.mkdir(exist_ok=True)
        shutil.copyfile(CORPUS / name, source)
        outs.append(annotate(source, tmp_path / "out" / Path(name).stem)[2])
    pdf_dir = tmp_path / "pdf"
    profile = tmp_path / "lo-profile"
    subprocess.run(
        ["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to",
         "pdf", "--outdir", str(pdf_dir), *map(str, outs)],
        check=True, capture_output=True, timeout=600,
    )
    for out in outs:
        pdf = pdf_dir / (out.stem + ".pdf")
        assert pdf.exists() and pdf.read_bytes().startswith(b"%PDF"), out.name


def test_a_tables_total_row_is_not_a_student(workdir: Path) -> None:
    """xlsxwriter's table with a total row ("Total", an average) as Excel writes it."""
    roster = intake.ingest(CORPUS / "table_total_row.xlsx", _settings(), _table())
    assert list(roster.row_ids.values()) == ["S001", "S002", "S003", "S004", "S005", "S006"]
    assert 8 not in roster.row_ids  # the total row under the six students
    assert not [p for p in roster.problems if p.row == 8]


def test_a_score_formula_excel_never_calculated_holds_its_row(workdir: Path) -> None:
    roster = intake.ingest(CORPUS / "formulas_uncached.xlsx", _settings(), _table())
    [problem] = [p for p in roster.problems if p.row == 5]
    assert (problem.column, problem.student_id, problem.holds_row) == ("Step 2 CK", "S004", True)
    assert f"{problem.what}: {problem.fix[0].lower()}{problem.fix[1:]}" == (
        "The Step 2 CK cell holds a formula Excel has not calculated: open the roster in Excel, "
        "save it, and drop it again")
    assert "S004" not in {r.student_id for r in roster.records}
    # The office's helper column of uncalculated formulas is no field of ours: no problem.
    assert all(p.column != "Name length" for p in roster.problems)
