"""A realistic synthetic roster, for trying the product and for the benchmark.

The specialty mix follows the share of US MD seniors applying to each specialty (NRMP 2026,
rounded); headers and values use the spellings offices really type (aliases, shorthands, blanks).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

# (how the office writes it, weight in percent of applicants)
SPECIALTY_MIX: tuple[tuple[str, float], ...] = (
    ("Internal Medicine", 14), ("IM", 6), ("Family Medicine", 5), ("FM", 3),
    ("Pediatrics", 5), ("Peds", 2), ("Emergency Medicine", 4), ("EM", 3),
    ("Psychiatry", 5), ("Psych", 2), ("Anesthesiology", 5), ("Anesthesia", 2),
    ("General Surgery", 4), ("Gen Surg", 3), ("OB/GYN", 5), ("Diagnostic Radiology", 3),
    ("Rads", 1), ("Orthopaedic Surgery", 3), ("Ortho", 1), ("Neurology", 3), ("PM&R", 2),
    ("Dermatology", 2), ("Derm", 0.5), ("ENT", 1.5), ("Plastic Surgery", 1),
    ("Neurosurgery", 1), ("Pathology", 1.5), ("Urology", 1.5), ("Ophthalmology", 2),
    ("Med-Peds", 1.5), ("Interventional Radiology", 1), ("Vascular Surgery", 0.5),
    ("Thoracic Surgery", 0.3), ("Radiation Oncology", 0.5), ("Child Neurology", 0.5),
)

# Mean Step 2 CK by what the student aims for: ambitious students tend to score higher.
_AIM = {"Dermatology": 258, "Derm": 258, "Orthopaedic Surgery": 257, "Ortho": 257, "ENT": 258,
        "Plastic Surgery": 257, "Neurosurgery": 255, "Thoracic Surgery": 258,
        "Vascular Surgery": 253, "Urology": 254, "Ophthalmology": 255}

FIRST = ("Ava", "Liam", "Zoë", "José", "Mia", "Noah", "Chloé", "Mateo", "Aisha", "Wei",
         "Priya", "Oluwaseun", "Sofía", "Hiroshi", "Fatima", "Łukasz", "Ingrid", "Kwame",
         "Nguyễn Thị", "Elif", "Sean", "Grace", "Omar", "Hannah", "Dmitri", "Amara", "Ethan")
LAST = ("Smith", "García", "O'Brien", "Nguyen", "Müller", "Patel", "Kim", "Okafor", "Rossi",
        "Johnson", "Kowalski", "Haddad", "Chen", "Singh", "Brown", "Dubois", "Yamamoto",
        "Andersson", "Mensah", "Lopez", "李", "Ivanova", "Cohen", "Williams", "Ahmed")
ADVISORS = (("Dr. Maria Alvarez", "m.alvarez"), ("Dr. James Chen", "j.chen"),
            ("Dr. Ruth Okonkwo", "r.okonkwo"), ("Dr. Samuel Park", "s.park"))
CLERKSHIP_HEADERS = ("IM Clerkship", "Surgery Clerkship", "Pediatrics Clerkship",
                     "OB/GYN Clerkship", "Psychiatry Clerkship", "Neurology Clerkship",
                     "Family Medicine Clerkship")
HEADERS = ("Student ID", "Last Name", "First Name", "Email", "Step 1 Result",
           "Step 1 Attempts", "Step 1 Margin", "Step 2 CK", "Step 2 CK Date",
           "Preferred Specialty", *CLERKSHIP_HEADERS, "Research Items", "LOR Strength",
           "Advisor", "Advisor Email", "Notes")
DOMAIN = "students.example.edu"
STAFF_DOMAIN = "example.edu"


def demo_rows(n: int, seed: int = 2027) -> list[list[object]]:
    """Return n realistic roster rows (values as an office types them), deterministic per seed."""
    rng = random.Random(seed)
    names = [s for s, _ in SPECIALTY_MIX]
    weights = [w for _, w in SPECIALTY_MIX]
    rows: list[list[object]] = []
    exam_base = date(2026, 6, 1)
    for i in range(n):
        sid = f"{100000 + i:07d}"  # leading zero kept: IDs are text
        first, last = rng.choice(FIRST), rng.choice(LAST)
        specialty = rng.choices(names, weights)[0]
        roll = rng.random()
        attempts: object = None
        margin: object = None
        if roll < 0.03:
            result, attempts = "Fail", 1
        elif roll < 0.08:
            result, attempts = "Pass", rng.choice((2, 2, 2, 3))
        elif roll < 0.09:
            result = "Not taken"
        else:
            result = rng.choice(("Pass", "Pass", "Pass", "P"))
            margin = rng.choices(("Marginal", "Comfortable", None), (2, 3, 5))[0]
        aim = _AIM.get(specialty, 247)
        score: object = None
        exam_date: object = None
        if result in ("Pass", "P") and rng.random() > 0.18:
            s = int(rng.gauss(aim, 11))
            s = max(200, min(280, s))
            score = str(s) + " " if rng.random() < 0.05 else s  # some typed as text
        if score is None and result != "Fail":
            exam_date = exam_base + timedelta(days=rng.randint(0, 150))
        grades: list[str | None] = []
        for _ in CLERKSHIP_HEADERS:
            g = rng.random()
            if g < 0.12:
                grades.append(None)  # not graded yet
            elif g < 0.15:
                grades.append("IP")
            else:
                grades.append(rng.choices(("Honors", "H", "High Pass", "HP", "Pass", "P",
                                           "Conditional Pass", "Fail"),
                                          (14, 8, 18, 8, 30, 12, 1, 0.6))[0])
        research: object = rng.choices((0, 1, 2, 3, 5, 8, None), (20, 25, 20, 15, 10, 5, 5))[0]
        letters = rng.choices(("Strong", "Average", "Weak", None), (40, 40, 8, 12))[0]
        adv_name, adv_user = rng.choice(ADVISORS)
        if i % 97 == 96:
            specialty = "Dermatolgy"  # a typo, as offices make: the Problems sheet explains it
        if i % 113 == 112 and score is not None:
            score = 2450  # an extra digit typed
        rows.append([
            sid, last, first, f"{first[0].lower()}{i}@{DOMAIN}".replace("ł", "l"),
            result, attempts, margin, score, exam_date, specialty, *grades, research, letters,
            adv_name, f"{adv_user}@{STAFF_DOMAIN}", None,
        ])
    return rows


def write_demo_roster(path: Path, students: int = 150, seed: int = 2027) -> Path:
    """Write a synthetic roster shaped like a real office's (title rows above the header)."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Roster")
    ws.append(["Class of 2027: residency advising roster (synthetic demo data)"])
    ws.append([f"Exported {date.today():%Y-%m-%d}; {students} students"])
    bold = Font(bold=True)
    from openpyxl.cell import WriteOnlyCell

    header = []
    for text in HEADERS:
        cell = WriteOnlyCell(ws, value=text)
        cell.font = bold
        header.append(cell)
    ws.append(header)
    for row in demo_rows(students, seed):
        ws.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    wb.save(tmp)
    tmp.replace(path)
    return path
