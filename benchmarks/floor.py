"""The floor: the least work the pipeline's outputs need, timed on the same roster and machine.

Run by the benchmark in its own process
(``python -m benchmarks.floor ROSTER WORKDIR OUT.json [REPEAT]``), with the same ADVISING_*
environment as the pipeline run, so the settings are the same. Each part runs REPEAT times in
this one process (medians reported), so the untimed preparation below is paid once.

- read: the roster's rows with the fastest reader there is (python-calamine, cached values).
- write: those rows plus the nine annotation columns, with openpyxl in write-only mode.
- render: every letter (HTML, text, subject) with the project's own templates and context,
  through ``flows.letters.render.render_letters``, written to disk as the product must.

Untimed, between read and write: the project's own intake, validation and rules produce the
records and evaluations the floor writes and renders, so it renders exactly the letters the
pipeline renders. Afterwards the rendered letters become the mailmerge peer's inputs: a CSV
database (email, subject, reply-to, text, HTML) and templates that only place them (PEER_TEMPLATES).
"""

from __future__ import annotations

import csv
import gc
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

_HWM = re.compile(r"^VmHWM:\s+(\d+) kB", re.M)

MAILMERGE_TEMPLATE = """\
TO: {{email}}
FROM: {{sender}}
REPLY-TO: {{reply_to}}
SUBJECT: {{subject}}
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_bench_boundary_a7c3"

--=_bench_boundary_a7c3
Content-Type: text/plain; charset="utf-8"

{{text}}
--=_bench_boundary_a7c3
Content-Type: text/html; charset="utf-8"

{{html}}
--=_bench_boundary_a7c3--
"""

# The same letters as one text/html part only: what the independent run of issue #17 sent.
# mailmerge 2.x parses the HTML part of every multipart message with html5lib (to point inline
# images at attachments); a single-part message skips that. Here, 983 letters: 7.7 s of
# mailmerge CPU multipart, 2.8 s HTML only.
MAILMERGE_TEMPLATE_HTML = """\
TO: {{email}}
FROM: {{sender}}
REPLY-TO: {{reply_to}}
SUBJECT: {{subject}}
MIME-Version: 1.0
Content-Type: text/html; charset="utf-8"

{{html}}
"""

# name -> (template file, template, what it sends); the benchmark times the peer with each.
PEER_TEMPLATES = {
    "multipart": ("mailmerge_template.txt", MAILMERGE_TEMPLATE,
                  "text + HTML in one multipart/alternative message, as ours sends"),
    "html": ("mailmerge_template_html.txt", MAILMERGE_TEMPLATE_HTML,
             "the HTML part alone (text/html): less than ours sends; the independent run's"),
}


def _peak() -> int:
    try:
        found = _HWM.search(Path("/proc/self/status").read_text())
    except OSError:
        return 0
    return int(found.group(1)) * 1024 if found else 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


class _Parts:
    """Time each part (every repetition) and read its peak RSS."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self.peak: dict[str, int] = {}

    def run(self, name: str, fn: Any, *args: Any) -> Any:
        os.sync()  # earlier parts' files are written back now, not during this part
        gc.collect()
        _reset_peak()
        start = time.perf_counter()
        result = fn(*args)
        self.seconds.setdefault(name, []).append(round(time.perf_counter() - start, 3))
        self.peak[name] = max(self.peak.get(name, 0), _peak())
        return result

    def medians(self) -> dict[str, float]:
        return {name: round(statistics.median(v), 3) for name, v in self.seconds.items()}


def read_rows(path: Path) -> list[list[Any]]:
    """Read the roster sheet's cached values with python-calamine."""
    import python_calamine as calamine

    book = calamine.CalamineWorkbook.from_path(str(path))
    names = book.sheet_names
    name = next((n for n in names if n.strip().lower() == "roster"), names[0])
    # skip_empty_area=False: row i of the result is Excel row i + 1, as intake numbers them.
    return book.get_sheet_by_name(name).to_python(skip_empty_area=False)


def annotation_cells(ev: Any, problems: str) -> list[Any]:
    """The nine annotation columns of a student row (see flows.workbook.content)."""
    if ev is None:
        return [None] * 7 + ["Held: see Problems", problems]
    steps = "; ".join(a.text for a in ev.advice[:3])
    return [ev.tier, ev.band, ev.step1_status, ev.level, ev.label, ev.impact, steps,
            "Written", problems]


def write_rows(
    rows: list[list[Any]], header_index: int, ids_by_index: dict[int, str],
    by_id: dict[str, Any], problems: dict[int, str], out: Path,
) -> None:
    """Write the rows and the annotation columns with openpyxl's write-only workbook."""
    from openpyxl import Workbook  # type: ignore[import-untyped]

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Roster")
    extra = ["Tier", "Step 2 CK band", "Step 1 status", "Outlook level", "Outlook",
             "Step 2 CK impact", "Next steps", "Letter", "Problems"]
    for index, row in enumerate(rows):
        if index == header_index:
            ws.append([*row, *extra])
        elif index in ids_by_index:
            sid = ids_by_index[index]
            ws.append([*row, *annotation_cells(by_id.get(sid), problems.get(index, ""))])
        else:
            ws.append(row)
    wb.save(out)


def write_mailmerge_inputs(letters: list[Any], sender: str, folder: Path) -> int:
    """Write the mailmerge templates and CSV database of the pre-rendered letters."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, template, _ in PEER_TEMPLATES.values():
        (folder / name).write_text(template, encoding="utf-8")
    sent = 0
    with open(folder / "mailmerge_database.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL)
        # mailmerge sniffs the CSV dialect from the first 1 KiB; without a doubled quote there it
        # guesses doublequote=False and splits letters that contain a quote. The first column's
        # name (never used by the template) carries one.
        writer.writerow(['sniff "dq"', "email", "sender", "reply_to", "subject", "text", "html"])
        for letter in letters:
            if not letter.to:
                continue
            writer.writerow(["", letter.to, sender, letter.reply_to or sender, letter.subject,
                             letter.text, letter.html])
            sent += 1
    return sent


def main(argv: list[str]) -> int:
    """Time the floor for one roster (each part `repeat` times); write the figures as JSON."""
    roster_path, workdir, out_json = Path(argv[0]), Path(argv[1]), Path(argv[2])
    repeat = int(argv[3]) if len(argv) > 3 else 1
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    from flows.intake import read as intake
    from flows.intake import validation
    from flows.letters.render import render_letters
    from flows.settings import load_settings
    from residency_rules.rules import evaluate_all
    from residency_rules.specialties import load_default_table

    settings = load_settings()
    table = load_default_table()
    parts = _Parts()
    imports = time.perf_counter() - started

    for _ in range(repeat):
        rows = parts.run("read", read_rows, roster_path)

    # Untimed: the project's own intake, validation and rules, for the records to render.
    prep_start = time.perf_counter()
    roster = intake.ingest(roster_path, settings, table)
    roster = validation.validate(roster, settings, table, None)
    evaluations = evaluate_all(
        roster.records, table, cycle=settings.cycle(table), today=settings.run_date()
    )
    by_id = {e.student_id: e for e in evaluations}
    header_index = roster.header_row - 1
    ids_by_index = {row - 1: sid for row, sid in roster.row_ids.items()}
    problems: dict[int, str] = {}
    for p in roster.problems:
        if p.row is not None:
            problems[p.row - 1] = (problems.get(p.row - 1, "") + p.what + "; ")[:500]
    prep = time.perf_counter() - prep_start

    letters: list[Any] = []
    for i in range(repeat):
        parts.run("write", write_rows, rows, header_index, ids_by_index, by_id, problems,
                  workdir / f"floor-annotated-{i}.xlsx")
        # Each repetition renders into a fresh folder, like a first run. The previous one is
        # kept: creating files just after deleting 40,000 is slower on ext4 (benchmarks.benchmark).
        letters_dir = workdir / f"letters-{i}"
        letters = []  # let the previous repetition's letters go before the next render
        letters = parts.run("render", render_letters, roster.records, by_id, table, settings,
                            {}, letters_dir)

    mm_count = write_mailmerge_inputs(letters, settings.mail_from or "advising@example.edu",
                                      workdir / "mailmerge")
    sizes = [len(letter.html.encode()) for letter in letters] or [0]
    result = {
        "students": len(roster.row_ids),
        "rows_read": len(rows),
        "letters": len(letters),
        "mailmerge_messages": mm_count,
        "repeat": repeat,
        "seconds": parts.medians(),
        "all_seconds": parts.seconds,
        "total_seconds": round(sum(parts.medians().values()), 3),
        "peak_rss": parts.peak,
        "untimed_prep_seconds": round(prep, 3),
        "import_seconds": round(imports, 3),
        "html_bytes_max": max(sizes),
        "html_bytes_mean": round(sum(sizes) / len(sizes)),
    }
    out_json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
