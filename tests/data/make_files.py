"""Write the small roster files the intake and validation tests read, each named for its edge case.

Run from the repository root: `.venv/bin/python tests/data/make_files.py`. The files are real
workbooks (openpyxl, then a zip rewrite where Excel does something openpyxl cannot: cached formula
values, a VBA part, an entity declaration, a zip-bomb-shaped part) or real non-workbooks
(a CSV with an .xlsx name, a password-protected OLE container, an Excel lock file).
"""

from __future__ import annotations

import io
import re
import sys
import zipfile
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

HERE = Path(__file__).resolve().parent
FIXED_TIME = datetime(2026, 11, 1, 9, 0, 0)
ZIP_TIME = (2026, 11, 1, 9, 0, 0)

Row = Sequence[object]


def _book(sheets: Sequence[tuple[str, Sequence[Row]]]) -> Workbook:
    wb = Workbook()
    wb.remove(wb.worksheets[0])
    for title, rows in sheets:
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(list(row))
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    return wb


def _bytes(wb: Workbook) -> bytes:
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def _rewrite(
    data: bytes,
    edit: Callable[[str, bytes], bytes] = lambda name, body: body,
    extra: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """Copy a zip part by part with fixed timestamps, editing parts and adding new ones."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(
        out, "w", zipfile.ZIP_DEFLATED
    ) as dst:
        for info in src.infolist():
            body = edit(info.filename, src.read(info.filename))
            dst.writestr(zipfile.ZipInfo(info.filename, ZIP_TIME), body, zipfile.ZIP_DEFLATED)
        for name, body in extra:
            dst.writestr(zipfile.ZipInfo(name, ZIP_TIME), body, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _save(name: str, data: bytes) -> None:
    (HERE / name).write_bytes(data)
    print(f"wrote tests/data/{name} ({len(data)} bytes)")


# A clean roster the structural edge cases reuse.
BASIC_HEADER = ["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK Score", "Specialty"]
BASIC_ROWS: list[Row] = [
    ["S001", "Ana Lima", "ana.lima@school.edu", "Pass", 252, "Internal Medicine"],
    ["S002", "Bo Chen", "bo.chen@school.edu", "Pass", 248, "Emergency Medicine"],
    ["S003", "Cy Diaz", "cy.diaz@school.edu", "Fail", None, "Family Medicine"],
]


def merged_title_rows() -> None:
    wb = _book([("Advising", [])])
    ws = wb["Advising"]
    ws["A1"] = "School of Medicine: Class of 2027"
    ws.merge_cells("A1:H1")
    ws["A2"] = "Residency advising roster (updated 1 Nov 2026)"
    ws.merge_cells("A2:H2")
    ws["F4"] = "Clerkship grades"  # a group label merged over the clerkship columns
    ws.merge_cells("F4:G4")
    header = ["Student ID", "Name", "E-mail Address", "USMLE Step 1", "Step 2 CK",
              "IM Clerkship", "Surgery Clerkship", "Target Specialty", "Notes"]
    rows: list[Row] = [
        ["S101", "Ana Lima", "ana.lima@school.edu", "Pass", 255, "H", "HP", "IM", "call back"],
        ["S102", "Bo Chen", "bo.chen@school.edu", "P", 250, "HP", "P", "EM", ""],
        ["S103", "Cy Diaz", "cy.diaz@school.edu", "Pass", 245, "P", "P", "Psych", ""],
    ]
    for col, text in enumerate(header, start=1):
        ws.cell(row=5, column=col, value=text)
    for r, row in enumerate(rows, start=6):
        for col, value in enumerate(row, start=1):
            ws.cell(row=r, column=col, value=value)
    _save("merged_title_rows.xlsx", _bytes(wb))


def text_numbers() -> None:
    header = ["AAMC ID", "Student Name", "E-mail Address", "USMLE Step 1", "Step 1 Attempts",
              "Step 1 Score", "USMLE Step 2 CK Score", "Step 2 CK Date", "Preferred Specialty",
              "Internal Medicine Clerkship", "OB/GYN", "Psych", "Research Items", "LOR Strength",
              "Step 1 Margin"]
    rows: list[Row] = [
        ["00123", "Ana Lima", " ana.lima@School.EDU ", "P", None, None, " 245 ", 46218, "IM",
         "HP", "Conditional Pass", "IP", " 3 ", "Strong", "Marginal"],
        [4567, "Bo Chen", "bo.chen@school.edu", "Pass", " 2 ", None, "250\u00a0", "7/15/2026",
         "Emergency Medicine", "H", "P", "", "0", "average", "Comfortable"],
        [890.0, "Cy Diaz", "cy.diaz@school.edu", "F", None, None, None, "2026-08-01", "OB/GYN",
         "Honors", "High Pass", "Fail", 2, "W", None],
        ["000077", "Dee Eve", "dee.eve@school.edu", "Not taken", None, None, None, None, "Peds",
         None, None, None, None, None, None],
        ["S0005", "Eli Fox", "eli.fox@school.edu", "Pass", None, "231 ", "262",
         date(2026, 6, 30), "Gen Surg", "H/P", "pass", "h", "1,024", "S", "m"],
    ]
    _save("text_numbers.xlsx", _bytes(_book([("Roster", [header, *rows])])))


def duplicate_ids() -> None:
    rows: list[Row] = [
        ["001", "Ana Lima", "ana.lima@school.edu", "Pass", 252, "Internal Medicine"],
        ["002", "Bo Chen", "bo.chen@school.edu", "Pass", 248, "Emergency Medicine"],
        ["001", "Cy Diaz", "cy.diaz@school.edu", "Pass", 240, "Family Medicine"],
        ["003", "Dee Eve", "dee.eve@school.edu", "Pass", 250, "Pediatrics"],
    ]
    _save("duplicate_ids.xlsx", _bytes(_book([("Roster", [BASIC_HEADER, *rows])])))


def missing_columns() -> None:
    header = ["Student ID", "Name", "Email", "Step1 Reslt", "Step 2 CK Score", "Notes"]
    rows: list[Row] = [["S001", "Ana Lima", "ana.lima@school.edu", "Pass", 252, ""]]
    _save("missing_columns.xlsx", _bytes(_book([("Roster", [header, *rows])])))


def not_a_zip() -> None:
    _save("not_a_zip.xlsx", b"Student ID,Name,Step 1 Result\r\nS001,Ana Lima,Pass\r\n")


def encrypted() -> None:
    """An OLE compound file like Excel writes for a password-protected workbook (header only)."""
    header = bytearray(512)
    header[:8] = bytes.fromhex("D0CF11E0A1B11AE1")
    header[24:26] = (0x003E).to_bytes(2, "little")  # minor version
    header[26:28] = (0x0003).to_bytes(2, "little")  # major version 3
    header[28:30] = (0xFFFE).to_bytes(2, "little")  # little-endian byte order mark
    header[30:32] = (9).to_bytes(2, "little")  # 512-byte sectors
    directory = bytearray(512)
    for index, name in enumerate(("Root Entry", "EncryptionInfo", "EncryptedPackage")):
        entry = bytearray(128)
        encoded = (name + "\0").encode("utf-16-le")
        entry[: len(encoded)] = encoded
        entry[64:66] = len(encoded).to_bytes(2, "little")
        entry[66] = 5 if index == 0 else 2  # root storage, then streams
        directory[index * 128:(index + 1) * 128] = entry
    _save("encrypted.xlsx", bytes(header) + bytes(directory) + bytes(1024))


def huge_ratio() -> None:
    """A valid roster plus one part of 20 MB of zeros: inflates ~1000x, the shape of a zip bomb."""
    base = _bytes(_book([("Roster", [BASIC_HEADER, *BASIC_ROWS])]))
    _save("huge_ratio.xlsx", _rewrite(base, extra=[("xl/media/padding.bin", bytes(20 * 2**20))]))


def lock_file() -> None:
    """What Excel leaves beside roster.xlsx while it is open: the owner's name, padded."""
    owner = "jdoe"
    body = bytes([len(owner)]) + owner.encode().ljust(53) + owner.encode("utf-16-le")
    _save("~$roster.xlsx", body.ljust(165, b"\x00"))


def macro_enabled() -> None:
    """A .xlsm: the roster plus a vbaProject.bin part (never run; intake reads values only)."""
    base = _bytes(_book([("Roster", [BASIC_HEADER, *BASIC_ROWS])]))

    def edit(name: str, body: bytes) -> bytes:
        if name == "[Content_Types].xml":
            text = body.decode()
            text = text.replace(
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
            )
            text = text.replace(
                "<Default Extension=\"xml\"",
                "<Default Extension=\"bin\" ContentType=\"application/vnd.ms-office.vbaProject\"/>"
                "<Default Extension=\"xml\"",
            )
            return text.encode()
        if name == "xl/_rels/workbook.xml.rels":
            return body.replace(
                b"</Relationships>",
                b'<Relationship Id="rIdVba" Type="http://schemas.microsoft.com/office/2006/'
                b'relationships/vbaProject" Target="vbaProject.bin"/></Relationships>',
            )
        return body

    vba = bytes.fromhex("D0CF11E0A1B11AE1") + b"Attribute VB_Name = \"Module1\"" + bytes(480)
    _save("macro_enabled.xlsm", _rewrite(base, edit, [("xl/vbaProject.bin", vba)]))


def out_of_range() -> None:
    """One GX rule broken per row (rows 3-11); rows 2 and 10 are fine (10 has no email)."""
    header = ["Student ID", "Name", "Email", "Step 1 Result", "Step 1 Attempts",
              "Step 2 CK Score", "Step 2 CK Date", "Specialty", "Research Items"]
    rows: list[Row] = [
        ["R02", "Ana Lima", "ana.lima@school.edu", "Pass", None, 252, None, "IM", 1],
        ["R03", "Bo Chen", "bo.chen@school.edu", "Pass", None, 320, None, "EM", 1],
        ["R04", "Cy Diaz", "cy.diaz@school.edu", "Pass", 9, 240, None, "FM", 1],
        ["R05", "Dee Eve", "dee.eve@gmail.com", "Pass", None, 250, None, "Psych", 1],
        ["R06", "Eli Fox", "eli.fox@school.edu", "Pass", None, 250, None, "Emergancy Medicine", 1],
        ["R07", "Fay Gil", "fay.gil@school.edu", "Not taken", 2, None, None, "Peds", 0],
        ["R08", "Gus Ho", "gus.ho@school.edu", "Pass", None, 250, None, "Neurology", -1],
        ["R09", "Hal Ito", "hal ito at school", "Pass", None, 250, None, "Anesthesiology", 0],
        ["R10", "Ivy Jo", None, "Pass", None, 250, None, "Pathology", 0],
        ["R11", "Jon Ka", "jon.ka@school.edu", "Pass", None, None, 245, "IM", 0],
    ]
    _save("out_of_range.xlsx", _bytes(_book([("Roster", [header, *rows])])))


def formulas() -> None:
    """Formulas with the cached values Excel stores (openpyxl writes none: patched in)."""
    header = ["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK Score", "Specialty",
              "Research Items"]
    rows: list[Row] = [
        ['="00"&"321"', "Ana Lima", "ana.lima@school.edu", "Pass", "=240+5", "IM", "=1+1"],
        ["S002", "Bo Chen", "bo.chen@school.edu", "Pass", "=250", "EM", "=SUM(Z1:Z3)"],
    ]
    base = _bytes(_book([("Roster", [header, *rows])]))
    cached = {"A2": ("str", "00321"), "E2": (None, "245"), "G2": (None, "2"),
              "E3": (None, "250")}  # G3 has no cached value: a formula Excel never calculated

    def edit(name: str, body: bytes) -> bytes:
        if name != "xl/worksheets/sheet1.xml":
            return body
        text = body.decode()
        for ref, (kind, value) in cached.items():
            pattern = re.compile(rf'<c r="{ref}"([^>]*)><f>(.*?)</f><v\s*/?>(?:</v>)?')
            attrs = ' t="str"' if kind == "str" else ""
            text, count = pattern.subn(
                lambda m, r=ref, a=attrs, v=value: f"<c r=\"{r}\"{a}><f>{m.group(2)}</f><v>{v}</v>",
                text,
            )
            if count != 1:
                raise SystemExit(f"formulas.xlsx: could not patch the cached value of {ref}")
        return text.encode()

    _save("formulas.xlsx", _rewrite(base, edit))


def hidden_sheet() -> None:
    """The first sheet is a hidden old roster; the visible second sheet is the one to read."""
    old: list[Row] = [BASIC_HEADER, ["OLD1", "Old Student", "old@school.edu", "Pass", 200, "IM"]]
    wb = _book([("Old roster", old), ("Class of 2027", [BASIC_HEADER, *BASIC_ROWS])])
    wb["Old roster"].sheet_state = "hidden"
    wb.active = 1
    _save("hidden_sheet.xlsx", _bytes(wb))


def hidden_only() -> None:
    """The only roster is on a hidden sheet; the visible sheet is a cover page."""
    wb = _book([("Cover", [["Advising roster"], ["See the other sheet"]]),
                ("Data", [BASIC_HEADER, *BASIC_ROWS])])
    wb["Data"].sheet_state = "hidden"
    _save("hidden_only.xlsx", _bytes(wb))


def blank_and_ragged_rows() -> None:
    """Blank rows, a spaces-only row, a row with only a note, and rows of different lengths."""
    wb = _book([("Roster", [BASIC_HEADER + ["Notes"]])])
    ws: Worksheet = wb["Roster"]
    ws.append(BASIC_ROWS[0])
    ws.append([])
    ws.append(["   ", " ", None, "\u00a0"])
    ws.append(BASIC_ROWS[1][:4] + [None, "EM"])
    ws.append([None, None, None, None, None, None, "only a note here"])
    ws.append(["S004", "Dee Eve", "dee.eve@school.edu", "Pass"])  # ragged: stops early
    ws.append([])
    ws.append([])
    ws.append(BASIC_ROWS[2])
    _save("blank_and_ragged_rows.xlsx", _bytes(wb))


def first_last_names() -> None:
    header = ["Student ID", "First Name", "Last Name", "Email", "Step 1", "Specialty"]
    rows: list[Row] = [
        ["U1", "José", "Núñez", "jose.nunez@school.edu", "Pass", "IM"],
        ["U2", "Thảo", "Nguyễn", "thao.nguyen@school.edu", "Pass", "Peds"],
        ["U3", "李", "小龙", "li@school.edu", "Pass", "Psychiatry"],
        ["U4", "ليلى", "حداد", "layla@school.edu", "Pass", "FM"],
        ["U5", "Madonna", None, "madonna@school.edu", "Pass", "EM"],
    ]
    _save("first_last_names.xlsx", _bytes(_book([("Roster", [header, *rows])])))


def near_miss_header() -> None:
    """Headers that almost match (a typo) and one that duplicates another field."""
    header = ["Student ID", "Name", "Emial", "Step 1 Result", "Step 2 CK Scroe", "Specialty",
              "AAMC ID", "Notes"]
    rows: list[Row] = [
        ["S001", "Ana Lima", "ana.lima@school.edu", "Pass", 252, "IM", "A-1", "x"],
        ["S002", "Bo Chen", "bo.chen@school.edu", "Pass", 248, "EM", "A-2", ""],
    ]
    _save("near_miss_header.xlsx", _bytes(_book([("Roster", [header, *rows])])))


def unparseable_values() -> None:
    """Cells that cannot be read as their field at all: each holds its row (rows 3-8)."""
    header = ["Student ID", "Name", "Email", "Step 1 Result", "Step 2 CK Score",
              "Step 2 CK Date", "Specialty", "Surgery Clerkship", "Research Items", "Letters"]
    rows: list[Row] = [
        ["V02", "Ana Lima", "ana.lima@school.edu", "Pass", 252, None, "IM", "H", 1, "Strong"],
        ["V03", "Bo Chen", "bo.chen@school.edu", "Pass", "abc", None, "EM", "H", 1, "Strong"],
        ["V04", "Cy Diaz", "cy.diaz@school.edu", "Pass", 250, "soon", "IM", "H", 1, "Strong"],
        ["V05", "Dee Eve", "dee.eve@school.edu", "Pass", 250, None, "IM", "Excellent", 1, None],
        ["V06", "Eli Fox", "eli.fox@school.edu", "Pass", 250, None, "IM", "H", 1.5, None],
        ["V07", "Fay Gil", "fay.gil@school.edu", "Maybe", 250, None, "IM", "H", 1, None],
        ["V08", "Gus Ho", "gus.ho@school.edu", None, 250, None, "IM", "H", 1, "Great"],
    ]
    _save("unparseable_values.xlsx", _bytes(_book([("Roster", [header, *rows])])))


def no_header() -> None:
    rows: list[Row] = [["S001", "Ana Lima", "Pass", 252], ["S002", "Bo Chen", "Pass", 248]]
    _save("no_header.xlsx", _bytes(_book([("Sheet1", rows)])))


def empty_roster() -> None:
    _save("empty_roster.xlsx", _bytes(_book([("Roster", [BASIC_HEADER])])))


def entity_expansion() -> None:
    """A sheet that declares XML entities (the billion-laughs shape), which Excel never writes."""
    base = _bytes(_book([("Roster", [BASIC_HEADER, *BASIC_ROWS])]))
    dtd = (
        b'<!DOCTYPE worksheet [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    )

    def edit(name: str, body: bytes) -> bytes:
        if name == "xl/worksheets/sheet1.xml":
            return dtd + body if not body.startswith(b"<?xml") else body.replace(
                b"?>", b"?>" + dtd, 1)
        return body

    _save("entity_expansion.xlsx", _rewrite(base, edit))


MAKERS: tuple[Callable[[], None], ...] = (
    merged_title_rows, text_numbers, duplicate_ids, missing_columns, not_a_zip, encrypted,
    huge_ratio, lock_file, macro_enabled, out_of_range, formulas, hidden_sheet, hidden_only,
    blank_and_ragged_rows, first_last_names, no_header, empty_roster, entity_expansion,
    near_miss_header, unparseable_values,
)


def main() -> int:
    """Write every edge-case file into tests/data/."""
    for make in MAKERS:
        make()
    return 0


if __name__ == "__main__":
    sys.exit(main())
