"""Write the corpus of rosters as offices really keep them, one file per feature (issue 15).

Run from the repository root: `.venv/bin/python tests/data/corpus/make_corpus.py` (xlsxwriter
and openpyxl from the `test` extra; LibreOffice's `soffice` for its own saves, skipped with a
note when it is missing). The files are committed, so the tests never need to run this.

Each file holds the same students (BASE_ROWS), so the tests can check that every feature gives
the same outlook to every student; a file whose feature changes a student says so in EXPECTED.
Excel's features are written with xlsxwriter (it writes what Excel writes: tables, data bars,
comments with VML, header images, chartsheets), openpyxl's own saves with openpyxl, and
LibreOffice's with soffice; a zip rewrite where none of them can (zip64, inline strings).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path

import openpyxl
import xlsxwriter
from PIL import Image

HERE = Path(__file__).resolve().parent
MACRO_SOURCE = HERE.parent / "macro_enabled.xlsm"
FIXED_TIME = datetime(2026, 11, 1, 9, 0, 0)
ZIP_TIME = (2026, 11, 1, 9, 0, 0)

HEADERS = ["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK", "Step 2 CK Date",
           "Specialty", "Advisor", "Notes"]
BASE_ROWS: list[list[object]] = [
    ["S001", "Ana Lima", "ana.lima@school.edu", "Pass", 262, date(2026, 7, 14),
     "Internal Medicine", "Dr. Maria Alvarez", "Line one\nline two"],
    ["S002", "Bo Chen", "bo.chen@school.edu", "Pass", 231, date(2026, 8, 2),
     "Dermatology", "Dr. James Chen", ""],
    ["S003", "Cy Diaz", "cy.diaz@school.edu", "Fail", None, None, "Family Medicine",
     "Dr. Ruth Okonkwo", "Retake planned"],
    ["S004", "Dee O'Neil", "dee.oneil@school.edu", "Pass", 248, date(2026, 6, 30),
     "Emergency Medicine", "Dr. Samuel Park", ""],
    ["S005", "Eli Ito", "eli.ito@school.edu", "Pass", None, date(2026, 12, 5),
     "Orthopaedic Surgery", "Dr. Maria Alvarez", ""],
    ["S006", "Fay Ng", "fay.ng@school.edu", "Pass", 255, date(2026, 7, 1), "Psychiatry",
     "Dr. James Chen", ""],
]
# Rows a file means to change, by student ID: what the test expects instead of the base outlook.
EXPECTED: dict[str, dict[str, str]] = {
    "formulas_uncached.xlsx": {"S004": "held"},
}


def _save(name: str, data: bytes) -> None:
    (HERE / name).write_bytes(data)
    print(f"wrote tests/data/corpus/{name} ({len(data)} bytes)")


def _png(colour: tuple[int, int, int] = (200, 30, 30), size: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _rewrite(data: bytes, edit: Callable[[str, bytes], bytes] = lambda n, b: b,
             zip64: bool = False) -> bytes:
    """Copy a zip part by part with fixed timestamps, editing parts on the way."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = edit(info.filename, src.read(info.filename))
            if zip64:
                with dst.open(zipfile.ZipInfo(info.filename, ZIP_TIME), "w",
                              force_zip64=True) as fh:
                    fh.write(body)
            else:
                dst.writestr(zipfile.ZipInfo(info.filename, ZIP_TIME), body, zipfile.ZIP_DEFLATED)
    return out.getvalue()


class _Book:
    """An xlsxwriter workbook in memory with the roster written on a sheet, as Excel would."""

    def __init__(self, options: dict[str, object] | None = None, vba: bool = False) -> None:
        self.buffer = io.BytesIO()
        self.wb = xlsxwriter.Workbook(self.buffer, {"in_memory": True, **(options or {})})
        self.wb.set_properties({"created": FIXED_TIME})
        self.bold = self.wb.add_format({"bold": True, "bg_color": "#1F4E78",
                                        "font_color": "#FFFFFF"})
        self.date = self.wb.add_format({"num_format": "m/d/yyyy"})
        self.wrap = self.wb.add_format({"text_wrap": True})

    def roster(self, title: str = "Roster", rows: Sequence[Sequence[object]] = BASE_ROWS,
               headers: Sequence[str] = HEADERS, first_row: int = 0,
               ) -> xlsxwriter.worksheet.Worksheet:
        ws = self.wb.add_worksheet(title)
        ws.write_row(first_row, 0, headers, self.bold)
        for r, row in enumerate(rows, start=first_row + 1):
            for c, value in enumerate(row):
                if isinstance(value, date):
                    ws.write_datetime(r, c, datetime(value.year, value.month, value.day),
                                      self.date)
                elif isinstance(value, str) and "\n" in value:
                    ws.write_string(r, c, value, self.wrap)
                elif value is not None and value != "":
                    ws.write(r, c, value)
        ws.set_column(0, 0, 10)
        ws.set_column(1, 2, 24)
        ws.set_column(6, 7, 22)
        return ws

    def bytes(self) -> bytes:
        self.wb.close()
        return _rewrite(self.buffer.getvalue())


def table_total_row() -> None:
    book = _Book()
    ws = book.wb.add_worksheet("Roster")
    n = len(BASE_ROWS)
    data = [[datetime(v.year, v.month, v.day) if isinstance(v, date) else v for v in row]
            for row in BASE_ROWS]
    columns = [{"header": h} for h in HEADERS]
    columns[0]["total_string"] = "Total"
    columns[4]["total_function"] = "average"
    columns[5]["format"] = book.date
    ws.add_table(0, 0, n + 1, len(HEADERS) - 1, {
        "data": data, "columns": columns, "total_row": True, "name": "Roster2027",
        "style": "Table Style Medium 2"})
    _save("table_total_row.xlsx", book.bytes())


def conditional_formats() -> None:
    book = _Book()
    ws = book.roster()
    last = len(BASE_ROWS) + 1
    ws.conditional_format(f"E2:E{last}", {"type": "data_bar", "bar_color": "#63BE7B"})
    ws.conditional_format(f"E2:E{last}", {"type": "cell", "criteria": "<", "value": 240,
                                          "format": book.wb.add_format({"bg_color": "#FFC7CE"})})
    ws.conditional_format(f"D2:D{last}", {"type": "text", "criteria": "containing",
                                          "value": "Fail",
                                          "format": book.wb.add_format({"bold": True})})
    ws.conditional_format(f"E2:E{last}", {"type": "3_color_scale"})
    _save("conditional_formats_data_bars.xlsx", book.bytes())


def data_validation_lists() -> None:
    book = _Book()
    ws = book.roster()
    lists = book.wb.add_worksheet("Lists")
    for i, name in enumerate(["Internal Medicine", "Dermatology", "Family Medicine",
                              "Emergency Medicine", "Orthopaedic Surgery", "Psychiatry"]):
        lists.write(i, 0, name)
    last = len(BASE_ROWS) + 1
    ws.data_validation(f"D2:D{last}", {"validate": "list",
                                       "source": ["Pass", "Fail", "Not taken"]})
    ws.data_validation(f"G2:G{last}", {"validate": "list", "source": "=Lists!$A$1:$A$6"})
    ws.data_validation(f"E2:E{last}", {"validate": "integer", "criteria": "between",
                                       "minimum": 1, "maximum": 300,
                                       "input_message": "Three-digit score"})
    lists.hide()
    _save("data_validation_lists.xlsx", book.bytes())


def comments() -> None:
    book = _Book()
    ws = book.roster()
    ws.write_comment("A2", "Transferred in from another school", {"author": "Registrar"})
    ws.write_comment("E3", "Score report pending a recheck", {"author": "Dean", "visible": True})
    _save("comments.xlsx", book.bytes())


def image_and_header_logo() -> None:
    book = _Book()
    ws = book.roster()
    ws.insert_image("K2", "crest.png", {"image_data": io.BytesIO(_png())})
    ws.set_header("&L&G&CClass of 2027", {"image_left": "logo.png",
                                          "image_data_left": io.BytesIO(_png((30, 60, 200)))})
    _save("image_and_header_logo.xlsx", book.bytes())


def chart_and_chartsheet() -> None:
    book = _Book()
    ws = book.roster()
    last = len(BASE_ROWS) + 1
    chart = book.wb.add_chart({"type": "column"})
    chart.add_series({"name": "Step 2 CK", "categories": f"=Roster!$A$2:$A${last}",
                      "values": f"=Roster!$E$2:$E${last}"})
    ws.insert_chart("K2", chart)
    sheet_chart = book.wb.add_chart({"type": "bar"})
    sheet_chart.add_series({"name": "Step 2 CK", "categories": f"=Roster!$A$2:$A${last}",
                            "values": f"=Roster!$E$2:$E${last}"})
    chartsheet = book.wb.add_chartsheet("Scores chart")
    chartsheet.set_chart(sheet_chart)
    _save("chart_and_chartsheet.xlsx", book.bytes())


def defined_names_print_titles() -> None:
    book = _Book()
    ws = book.roster()
    last = len(BASE_ROWS) + 1
    book.wb.define_name("Scores", f"=Roster!$E$2:$E${last}")
    book.wb.define_name("Roster!Advisors", f"=Roster!$H$2:$H${last}")
    ws.repeat_rows(0)
    ws.print_area(0, 0, last - 1, len(HEADERS) - 1)
    _save("defined_names_print_titles.xlsx", book.bytes())


def filter_and_frozen_panes() -> None:
    book = _Book()
    ws = book.roster()
    ws.autofilter(0, 0, len(BASE_ROWS), len(HEADERS) - 1)
    ws.freeze_panes(1, 2)
    _save("filter_and_frozen_panes.xlsx", book.bytes())


def hidden_columns_to_xfd() -> None:
    book = _Book()
    ws = book.roster()
    ws.set_column("C:C", None, None, {"hidden": True})
    ws.set_column("J:XFD", None, None, {"hidden": True})
    _save("hidden_columns_to_xfd.xlsx", book.bytes())


def rich_text() -> None:
    book = _Book()
    ws = book.roster()
    red = book.wb.add_format({"font_color": "red", "bold": True})
    ws.write_rich_string("I3", "Needs ", red, "urgent", " advising")
    ws.write_rich_string("B4", red, "Cy", " Diaz")
    _save("rich_text.xlsx", book.bytes())


def formulas_cached() -> None:
    book = _Book()
    ws = book.roster()
    # Bo Chen's score is a formula Excel calculated (cached 231); a helper column beside it.
    ws.write_formula("E3", "=200+31", None, 231)
    ws.write("J1", "Name length", book.bold)
    for r in range(2, len(BASE_ROWS) + 2):
        ws.write_formula(f"J{r}", f"=LEN(B{r})", None, len(str(BASE_ROWS[r - 2][1])))
    _save("formulas_cached.xlsx", book.bytes())


def formulas_uncached() -> None:
    """openpyxl writes formulas without a cached value, as a script or web export does."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Roster"
    ws.append(HEADERS)
    for row in BASE_ROWS:
        ws.append(row)
    ws["E5"] = "=240+8"  # Dee O'Neil's Step 2 CK: never calculated, so no value to read
    ws["J1"] = "Name length"
    for r in range(2, len(BASE_ROWS) + 2):
        ws[f"J{r}"] = f"=LEN(B{r})"
    for r in range(2, len(BASE_ROWS) + 2):
        ws[f"F{r}"].number_format = "m/d/yyyy"
    wb.properties.created = wb.properties.modified = FIXED_TIME
    buffer = io.BytesIO()
    wb.save(buffer)
    _save("formulas_uncached.xlsx", _rewrite(buffer.getvalue()))


def sheet_protection() -> None:
    book = _Book()
    ws = book.roster()
    ws.protect("", {"autofilter": True, "sort": True})
    _save("sheet_protection.xlsx", book.bytes())


def roster_third_sheet() -> None:
    book = _Book()
    notes = book.wb.add_worksheet("Read me")
    notes.write("A1", "How to fill in the roster")
    lists = book.wb.add_worksheet("Lists")
    lists.write_column("A1", ["Pass", "Fail", "Not taken"])
    book.roster("Roster")
    _save("roster_third_sheet.xlsx", book.bytes())


def apostrophe_sheet_name() -> None:
    book = _Book()
    ws = book.roster("Dean's list 2027")
    ws.autofilter(0, 0, len(BASE_ROWS), len(HEADERS) - 1)
    book.wb.define_name("Dean's list 2027!Names", "='Dean''s list 2027'!$B$2:$B$7")
    _save("apostrophe_sheet_name.xlsx", book.bytes())


# The same columns in an office's own words (#25): every one read through an alias, and two
# columns of the office's own that feed no field (named on the Columns sheet, kept as they are).
OWN_HEADERS = ["AAMC ID", "Student Full Name", "E-mail Address", "USMLE Step 1",
               "USMLE Step 2 CK Score", "Step 2 CK Test Date", "Intended Specialty",
               "Faculty Advisor", "Comments"]


def office_own_headers() -> None:
    book = _Book()
    headers = [*OWN_HEADERS, "Scholarly Work", "Photo on file"]
    rows = [[*row, "", "yes"] for row in BASE_ROWS]
    book.roster(rows=rows, headers=headers)
    _save("office_own_headers.xlsx", book.bytes())


def columns_past_z() -> None:
    book = _Book()
    headers = [*HEADERS, *(f"Extra {i}" for i in range(1, 22))]  # to AD
    rows = [[*row, *(f"x{i}" for i in range(1, 22))] for row in BASE_ROWS]
    book.roster(rows=rows, headers=headers)
    _save("columns_past_z.xlsx", book.bytes())


def rows_2000() -> None:
    book = _Book()
    specialties = ["Internal Medicine", "Family Medicine", "Psychiatry", "Pediatrics",
                   "Emergency Medicine", "Anesthesiology"]
    rows = [list(r) for r in BASE_ROWS]
    for i in range(len(rows), 2000):
        score = 225 + (i * 7) % 45
        rows.append([f"S{i + 1:04d}", f"Student {i + 1}", f"s{i + 1}@school.edu", "Pass",
                     score, date(2026, 6, 1 + i % 28), specialties[i % len(specialties)],
                     "Dr. James Chen", ""])
    book.roster(rows=rows)
    _save("rows_2000.xlsx", book.bytes())


def zip64() -> None:
    book = _Book()
    book.roster()
    _save("zip64.xlsx", _rewrite(book.bytes(), zip64=True))


def inline_strings() -> None:
    """Every text cell inline (<is><t>), as some exports write; no shared-string table."""
    book = _Book()
    book.roster()
    data = book.bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        sst = zf.read("xl/sharedStrings.xml")
    strings = [m.group(1) for m in re.finditer(rb"<si><t(?: [^>]*)?>(.*?)</t></si>", sst, re.S)]

    def edit(name: str, body: bytes) -> bytes:
        if name.startswith("xl/worksheets/sheet"):
            def inline(m: re.Match[bytes]) -> bytes:
                text = strings[int(m.group(2))]
                space = b' xml:space="preserve"' if text != text.strip() else b""
                return (b"<c " + m.group(1) + b't="inlineStr"><is><t' + space + b">" + text
                        + b"</t></is></c>")
            return re.sub(rb'<c ([^>]*?)t="s"><v>(\d+)</v></c>', inline, body)
        if name == "[Content_Types].xml":
            return re.sub(rb'<Override PartName="/xl/sharedStrings.xml"[^>]*/>', b"", body)
        if name == "xl/_rels/workbook.xml.rels":
            return re.sub(rb'<Relationship [^>]*Target="sharedStrings.xml"/>', b"", body)
        return body

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == "xl/sharedStrings.xml":
                continue
            dst.writestr(zipfile.ZipInfo(info.filename, ZIP_TIME),
                         edit(info.filename, src.read(info.filename)), zipfile.ZIP_DEFLATED)
    _save("inline_strings.xlsx", out.getvalue())


def date1904() -> None:
    book = _Book({"date_1904": True})
    book.roster()
    _save("date1904.xlsx", book.bytes())


def macro_vba() -> None:
    with zipfile.ZipFile(MACRO_SOURCE) as zf:
        vba = zf.read("xl/vbaProject.bin")
    book = _Book()
    book.wb.add_vba_project(io.BytesIO(vba), is_stream=True)
    book.roster()
    _save("macro_vba.xlsm", book.bytes())


def openpyxl_saved() -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Roster"
    ws.append(HEADERS)
    for row in BASE_ROWS:
        ws.append(row)
    for r in range(2, len(BASE_ROWS) + 2):
        ws[f"F{r}"].number_format = "m/d/yyyy"
    ws.freeze_panes = "A2"
    wb.properties.created = wb.properties.modified = FIXED_TIME
    buffer = io.BytesIO()
    wb.save(buffer)
    _save("openpyxl_saved.xlsx", _rewrite(buffer.getvalue()))


def libreoffice_saved() -> None:
    soffice = shutil.which("soffice")
    if soffice is None:
        print("skipped libreoffice_saved.xlsx: soffice is not installed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "libreoffice_saved.ods"
        book = _Book()
        ws = book.roster()
        ws.autofilter(0, 0, len(BASE_ROWS), len(HEADERS) - 1)
        ws.write_comment("A2", "Checked by the registrar")
        (Path(tmp) / "in.xlsx").write_bytes(book.bytes())
        profile = Path(tmp) / "profile"
        run = [soffice, f"-env:UserInstallation=file://{profile}", "--headless",
               "--convert-to"]
        subprocess.run([*run, "ods", "--outdir", tmp, str(Path(tmp) / "in.xlsx")], check=True,
                       capture_output=True, timeout=180)
        (Path(tmp) / "in.ods").rename(src)
        subprocess.run([*run, "xlsx:Calc MS Excel 2007 XML", "--outdir", tmp, str(src)],
                       check=True, capture_output=True, timeout=180)
        _save("libreoffice_saved.xlsx", (Path(tmp) / "libreoffice_saved.xlsx").read_bytes())


MAKERS: tuple[Callable[[], None], ...] = (
    table_total_row, conditional_formats, data_validation_lists, comments,
    image_and_header_logo, chart_and_chartsheet, defined_names_print_titles,
    filter_and_frozen_panes, hidden_columns_to_xfd, rich_text, formulas_cached,
    formulas_uncached, sheet_protection, roster_third_sheet, apostrophe_sheet_name,
    office_own_headers, columns_past_z, rows_2000, zip64, inline_strings, date1904, macro_vba,
    openpyxl_saved,
    libreoffice_saved,
)


def main() -> int:
    """Write every corpus file into tests/data/corpus/."""
    for make in MAKERS:
        make()
    return 0


if __name__ == "__main__":
    sys.exit(main())
