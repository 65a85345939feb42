"""The Summary, Problems and Columns sheets: what the office reads first the next morning."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from openpyxl.chart import BarChart, Reference, Series
from openpyxl.chart.data_source import AxDataSource, StrRef
from openpyxl.utils import get_column_letter, quote_sheetname

from flows.intake.columns import columns_read
from flows.outcome import LetterStatus
from flows.workbook.content import (
    LETTER_WORDS,
    LEVEL_FILLS,
    AnnotationContent,
    Cell,
    ChartSpec,
    SheetSpec,
    cell,
    sheet_location,
)
from residency_rules.records import Evaluation, Problem
from residency_rules.rulebook import TIER_NAMES, TIERS, at_risk_span

PROBLEM_HEADERS = (
    "Row",
    "Student ID",
    "Column",
    "Value",
    "What is wrong",
    "What to do",
    "Effect",
    "Sheet",
    "File",
)
PROBLEM_WIDTHS = (8, 14, 20, 24, 60, 60, 20, 14, 24)
_ROW_CM = 0.53  # height of a default 15 pt row, to place the lists below the charts


@dataclass(frozen=True)
class SheetTitles:
    """The titles of the roster sheet and of the sheets we add (suffixed on a clash)."""

    roster: str
    summary: str
    problems: str
    columns: str = "Columns"


def _ref(title: str, col: int, first: int, last: int) -> Reference:
    letter = get_column_letter(col)
    return Reference(range_string=f"{quote_sheetname(title)}!${letter}${first}:${letter}${last}")


def _categories(title: str, col: int, first: int, last: int) -> AxDataSource:
    letter = get_column_letter(col)
    ref = f"{quote_sheetname(title)}!${letter}${first}:${letter}${last}"
    return AxDataSource(strRef=StrRef(f=ref))


def _outlook_chart(title: str, first: int, last: int, level_col: int) -> BarChart:
    """Stacked horizontal bars: one bar per specialty, one segment per outlook level."""
    chart = BarChart()
    chart.type = "bar"
    chart.grouping = "stacked"
    chart.overlap = 100
    chart.gapWidth = 60
    chart.title = "Outlook level by specialty"
    chart.y_axis.title = "Students"
    chart.x_axis.scaling.orientation = "maxMin"  # first specialty at the top, as in the table
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.legend.position = "b"
    for level in LEVEL_FILLS:
        series = Series(_ref(title, level_col + level - 1, first, last), title=f"Level {level}")
        series.graphicalProperties.solidFill = LEVEL_FILLS[level]
        series.graphicalProperties.line.solidFill = LEVEL_FILLS[level]
        series.cat = _categories(title, 1, first, last)
        chart.series.append(series)
    return chart


def _tier_chart(title: str, first: int, last: int, lowest: float | None) -> BarChart:
    """Clustered columns per tier: median Step 2 CK score beside the solid and excellent marks."""
    chart = BarChart()
    chart.type = "col"
    chart.grouping = "clustered"
    chart.title = "Step 2 CK: median score per tier vs the tier's marks"
    chart.y_axis.title = "Step 2 CK score"
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.legend.position = "b"
    if lowest is not None:
        chart.y_axis.scaling.min = max(0, int(lowest // 10) * 10 - 10)
    for col, name, colour in ((5, "Median score", "4472C4"), (7, "Solid mark", "A9D08E"),
                              (8, "Excellent mark", "548235")):
        series = Series(_ref(title, col, first, last), title=name)
        series.graphicalProperties.solidFill = colour
        series.cat = _categories(title, 1, first, last)
        chart.series.append(series)
    return chart


def _header(sheet: SheetSpec, row: int, col: int, names: tuple[str, ...]) -> None:
    for i, name in enumerate(names):
        sheet.put(row, col + i, name, "header")


def _mode(values: list[int]) -> int:
    return Counter(values).most_common(1)[0][0]


def build_summary(content: AnnotationContent, titles: SheetTitles) -> SheetSpec:
    """Lay out totals, the level legend, the two tables with their charts, and the three lists."""
    roster = content.roster
    sheet = SheetSpec(title=titles.summary, tab_color="2F5597")
    # A-H hold the tables and lists (the at-risk list needs room for specialty, advisor and
    # outlook in D-F); the charts start at J.
    sheet.widths = {1: 34, 2: 12, 3: 11, 4: 20, 5: 20, 6: 30, 7: 11, 8: 11, 9: 3}
    evaluated: list[tuple[int, Evaluation]] = sorted(content.evaluation_by_row.items())
    # An at-risk level, or pending with a late date, an overdue score or a failure (the rules).
    at_risk = [(r, ev) for r, ev in evaluated if ev.at_risk]
    span = at_risk_span(content.levels)
    no_score = [(r, ev) for r, ev in evaluated if ev.step2_score is None]
    late = [(r, ev) for r, ev in evaluated if ev.timing_late]
    overdue = [(r, ev) for r, ev in evaluated if ev.exam_overdue]
    few = [(r, ev) for r, ev in evaluated if ev.interviews_low]
    held = roster.held_rows() & set(roster.row_ids)
    versions = sorted({ev.rules_version for _, ev in evaluated})

    sheet.put(1, 1, f"Summary: {roster.name}", "title")
    sheet.put(
        2,
        1,
        f"Roster {roster.source.name}, sheet {roster.sheet}"
        + (f"; rules {', '.join(versions)}" if versions else ""),
        "subtitle",
    )
    if content.notice:
        sheet.put(3, 1, content.notice, "subtitle")

    # Totals (A-B); the list counts link to their lists further down.
    sheet.put(4, 1, "Totals", "section")
    # Held rows are counted once, as rows, above; a letter held for a reason of its own (no
    # Match result yet, the office's hold) is counted here under its own word.
    letters = Counter(
        "Held back (no Match result, or the office's hold)"
        if c.outcome.status is LetterStatus.HELD else LETTER_WORDS[c.outcome.status]
        for c in content.letters.values()
        if not (c.outcome.status is LetterStatus.HELD and not c.outcome.detail)
    )
    totals: list[tuple[str, int, str | None]] = [
        ("Students in the roster", len(roster.row_ids), None),
        ("Evaluated", len(evaluated), None),
        ("Rows held back (see Problems)", len(held), titles.problems),
        ("Problems listed", len(roster.problems), titles.problems),
        (f"At risk (level {span}, or pending at risk)", len(at_risk), "at_risk"),
        ("Without a Step 2 CK score", len(no_score), "no_score"),
        ("Step 2 CK date too late", len(late), "late"),
        ("Exam date passed, no score", len(overdue), "overdue"),
        ("Few interview invitations", len(few), "few"),
    ]
    totals += [(f"Letters: {kind}", n, None) for kind, n in sorted(letters.items())]
    total_links: dict[int, tuple[int, str]] = {}
    for i, (label, n, target) in enumerate(totals):
        sheet.put(5 + i, 1, label)
        if target is None:
            sheet.put(5 + i, 2, n, "count")
        else:
            total_links[5 + i] = (n, target)
    row = 5 + len(totals) + 1

    # Legend: the colour of each level as the roster shows it, with its count.
    sheet.put(row, 1, "Outlook levels (colours in the roster)", "section")
    _header(sheet, row + 1, 1, ("Level", "Students", "Meaning"))
    levels = Counter(ev.level for _, ev in evaluated)
    for level in LEVEL_FILLS:
        r = row + 1 + level
        sheet.put(r, 1, level, f"level{level}")
        sheet.put(r, 2, levels.get(level, 0), "number")
        sheet.put(r, 3, content.levels[level].meaning)
    row += 1 + len(LEVEL_FILLS) + 2

    # Outlook level by specialty: counts, and the stacked bar chart that reads them.
    sheet.put(row, 1, "Outlook level by specialty", "section")
    _header(sheet, row + 1, 1, ("Specialty", "Tier", *(f"Level {n}" for n in LEVEL_FILLS),
                                "Total"))
    by_specialty: dict[str, Counter[int]] = {}
    tier_of: dict[str, str] = {}
    for _, ev in evaluated:
        by_specialty.setdefault(ev.specialty, Counter())[ev.level] += 1
        tier_of[ev.specialty] = ev.tier
    order = sorted(by_specialty, key=lambda s: (_tier_rank(tier_of[s]), s))
    first = row + 2
    for i, specialty in enumerate(order):
        r = first + i
        sheet.put(r, 1, specialty)
        sheet.put(r, 2, TIER_NAMES.get(tier_of[specialty], tier_of[specialty]))
        for level in LEVEL_FILLS:
            sheet.put(r, 2 + level, by_specialty[specialty].get(level, 0), "number")
        sheet.put(r, 8, sum(by_specialty[specialty].values()), "number")
    last = first + len(order) - 1
    total_row = last + 1
    sheet.put(total_row, 1, "Total", "total")
    for level in LEVEL_FILLS:
        sheet.put(total_row, 2 + level, levels.get(level, 0), "number")
    sheet.put(total_row, 8, len(evaluated), "number")
    chart_row = 4
    if order:
        height = max(7.5, 2.5 + 0.55 * len(order))
        sheet.charts.append(ChartSpec(_outlook_chart(titles.summary, first, last, 3), 10,
                                      chart_row, 20.0, height))
        chart_row += int(height / _ROW_CM) + 2
    row = total_row + 2

    # Step 2 CK scores per tier against the tier's marks.
    sheet.put(row, 1, "Step 2 CK scores by tier", "section")
    _header(sheet, row + 1, 1, ("Tier", "Students", "With a score", "Q1", "Median", "Q3",
                                "Solid mark", "Excellent mark"))
    first = row + 2
    tiers = [t for t in TIERS if any(ev.tier == t for _, ev in evaluated)]
    tiers += sorted({ev.tier for _, ev in evaluated} - set(TIERS))
    plotted: list[float] = []
    for i, tier in enumerate(tiers):
        r = first + i
        group = [ev for _, ev in evaluated if ev.tier == tier]
        scores = sorted(ev.step2_score for ev in group if ev.step2_score is not None)
        sheet.put(r, 1, TIER_NAMES.get(tier, tier))
        sheet.put(r, 2, len(group), "number")
        sheet.put(r, 3, len(scores), "number")
        if scores:
            q1, median, q3 = _quartiles(scores)
            for col, value in ((4, q1), (5, median), (6, q3)):
                sheet.put(r, col, value, "number")
            plotted.append(median)
        solid, excellent = _mode([ev.solid for ev in group]), _mode([ev.excellent for ev in group])
        sheet.put(r, 7, solid, "number")
        sheet.put(r, 8, excellent, "number")
        plotted += [solid, excellent]
    if tiers:
        sheet.charts.append(ChartSpec(
            _tier_chart(titles.summary, first, first + len(tiers) - 1, min(plotted)),
            10, chart_row, 20.0, 7.5))
        chart_row += int(7.5 / _ROW_CM) + 2
    row = max(first + len(tiers) + 1, chart_row + 1)

    # The three lists, one under the other; the totals above link to each.
    anchors: dict[str, int] = {}
    anchors["at_risk"] = row
    sheet.print_break = row - 1  # the lists start a page: the tables and charts stay whole above
    row = _at_risk_list(sheet, content, titles, row, at_risk)
    anchors["no_score"] = row
    row = _student_list(
        sheet, content, titles, row, f"Without a Step 2 CK score: {len(no_score)}",
        ("Specialty", "Student ID", "Row", "Step 2 CK date", "Date too late"),
        [(r, ev, (_exam_date(content, r), cell("yes" if ev.timing_late else "")))
         for r, ev in no_score],
    )
    anchors["late"] = row
    row = _student_list(
        sheet, content, titles, row, f"Step 2 CK date too late: {len(late)}",
        ("Specialty", "Student ID", "Row", "Step 2 CK date", "Outlook"),
        [(r, ev, (_exam_date(content, r), cell(ev.label))) for r, ev in late],
    )
    anchors["overdue"] = row
    row = _student_list(
        sheet, content, titles, row, f"Exam date passed, no score: {len(overdue)}",
        ("Specialty", "Student ID", "Row", "Step 2 CK date", "Outlook"),
        [(r, ev, (_exam_date(content, r), cell(ev.label))) for r, ev in overdue],
    )
    anchors["few"] = row
    _student_list(
        sheet, content, titles, row, f"Few interview invitations: {len(few)}",
        ("Specialty", "Student ID", "Row", "Invitations", "Outlook"),
        [(r, ev, (_invitations(content, r), cell(ev.label))) for r, ev in few],
    )
    for r, (n, target) in total_links.items():
        if target in anchors:
            sheet.put_link(r, 2, n, sheet_location(titles.summary, anchors[target]))
        else:
            sheet.put_link(r, 2, n, sheet_location(target, 1))
    return sheet


def _tier_rank(tier: str) -> int:
    return TIERS.index(tier) if tier in TIERS else len(TIERS)


def _quartiles(scores: list[int]) -> tuple[float, float, float]:
    if len(scores) == 1:
        return float(scores[0]), float(scores[0]), float(scores[0])
    q1, median, q3 = statistics.quantiles(scores, n=4, method="inclusive")
    return round(q1, 1), round(median, 1), round(q3, 1)


def _invitations(content: AnnotationContent, row: int) -> Cell:
    record = content.record_by_row.get(row)
    return cell(record.interviews if record is not None else None, "number")


def _exam_date(content: AnnotationContent, row: int) -> Cell:
    record = content.record_by_row.get(row)
    return cell(record.step2_date if record is not None else None, "date")


def _student_list(
    sheet: SheetSpec,
    content: AnnotationContent,
    titles: SheetTitles,
    row: int,
    heading: str,
    headers: tuple[str, ...],
    items: list[tuple[int, Evaluation, tuple[Cell, Cell]]],
) -> int:
    """Write one list sorted by specialty then ID, each row number linking to the roster.

    Returns the next free row, one blank row below the list.
    """
    sheet.put(row, 1, heading, "section")
    _header(sheet, row + 1, 1, headers)
    items = sorted(items, key=lambda item: (item[1].specialty, item[1].student_id, item[0]))
    r = row + 2
    for excel_row, ev, extra in items:
        sheet.put(r, 1, ev.specialty)
        sheet.put(r, 2, content.roster.row_ids.get(excel_row) or ev.student_id)
        sheet.put_link(r, 3, excel_row, sheet_location(titles.roster, excel_row))
        for col, value in enumerate(extra, start=4):
            if value.value is not None and value.value != "":
                sheet.cells[(r, col)] = value
        r += 1
    if not items:
        sheet.put(r, 1, "None.")
        r += 1
    return r + 1


AT_RISK_HEADERS = ("Name", "Level", "Student ID", "Specialty", "Advisor", "Outlook", "Row")


def _at_risk_list(sheet: SheetSpec, content: AnnotationContent, titles: SheetTitles, row: int,
                  at_risk: list[tuple[int, Evaluation]]) -> int:
    """Write the morning's call list: level 1 first, then by specialty; each name and row
    number opens the student's roster row. Returns the next free row, one blank row below."""
    span = at_risk_span(content.levels)
    heading = (f"At risk (level {span}, or pending with a late date or a failure): "
               f"{len(at_risk)}")
    sheet.put(row, 1, heading, "section")
    _header(sheet, row + 1, 1, AT_RISK_HEADERS)
    r = row + 2

    def name(excel_row: int) -> str:
        record = content.record_by_row.get(excel_row)
        return record.name if record is not None else ""

    for excel_row, ev in sorted(at_risk, key=lambda item: (item[1].level, item[1].specialty,
                                                           name(item[0]), item[0])):
        record = content.record_by_row.get(excel_row)
        location = sheet_location(titles.roster, excel_row)
        sheet.put_link(r, 1, name(excel_row) or content.roster.row_ids.get(excel_row) or "?",
                       location)
        sheet.put(r, 2, ev.level, f"level{ev.level}" if ev.level in LEVEL_FILLS else "number")
        sheet.put(r, 3, content.roster.row_ids.get(excel_row) or ev.student_id)
        sheet.put(r, 4, ev.specialty, "wrap")
        sheet.put(r, 5, record.advisor if record is not None else None, "wrap")
        sheet.put(r, 6, ev.label, "wrap")
        sheet.put_link(r, 7, excel_row, location)
        r += 1
    if not at_risk:
        sheet.put(r, 1, "None.")
        r += 1
    return r + 1


def _problem_sort_key(problem: Problem) -> tuple[int, int, str]:
    return (0 if problem.row is None else 1, problem.row or 0, problem.column or "")


def build_problems(content: AnnotationContent, titles: SheetTitles) -> SheetSpec:
    """List every problem with what is wrong and what to do; each row number links to the roster."""
    roster = content.roster
    sheet = SheetSpec(title=titles.problems, freeze_row=1, print_rows=(1, 1),
                      tab_color="C00000" if roster.problems else "70AD47")
    sheet.widths = {i + 1: w for i, w in enumerate(PROBLEM_WIDTHS)}
    _header(sheet, 1, 1, PROBLEM_HEADERS)
    problems = sorted(roster.problems, key=_problem_sort_key)
    for r, problem in enumerate(problems, start=2):
        if problem.row is not None:
            sheet.put_link(r, 1, problem.row, sheet_location(titles.roster, problem.row))
        student_id = problem.student_id
        if student_id is None and problem.row is not None:
            student_id = roster.row_ids.get(problem.row) or None
        sheet.put(r, 2, student_id)
        sheet.put(r, 3, problem.column)
        sheet.put(r, 4, problem.value)
        sheet.put(r, 5, problem.what, "wrap")
        sheet.put(r, 6, problem.fix, "wrap")
        if problem.row is None:
            effect = "Whole file" if problem.holds_row else "Warning"
        else:
            effect = "Row held: no letter" if problem.holds_row else "Warning only"
        sheet.put(r, 7, effect)
        sheet.put(r, 8, problem.sheet)
        sheet.put(r, 9, problem.file)
    if not problems:
        sheet.put(2, 1, "No problems found.")
    last = max(1, len(problems)) + 1
    sheet.autofilter = (1, 1, len(PROBLEM_HEADERS), last)
    return sheet


COLUMN_HEADERS = ("Your column", "Your header", "Read as", "How")
COLUMN_WIDTHS = (12, 34, 34, 70)


def build_columns(content: AnnotationContent, titles: SheetTitles) -> SheetSpec:
    """Say which of the office's columns fed which field, which were not read, which fields
    were not found and what the letters do without them (#25)."""
    account = columns_read(content.roster)
    sheet = SheetSpec(title=titles.columns, freeze_row=1, print_rows=(1, 1),
                      tab_color="FFC000" if account.unread else "70AD47")
    sheet.widths = {i + 1: w for i, w in enumerate(COLUMN_WIDTHS)}
    _header(sheet, 1, 1, COLUMN_HEADERS)
    row = 2
    for c in account.read:
        sheet.put(row, 1, c.letter)
        sheet.put(row, 2, c.header)
        sheet.put(row, 3, c.field)
        sheet.put(row, 4, "your column map (ADVISING_COLUMN_MAP)" if c.mapped else "read")
        row += 1
    for letter, header in account.unread:
        sheet.put(row, 1, letter)
        sheet.put(row, 2, header)
        sheet.put(row, 3, "(not read)")
        sheet.put(row, 4, "Kept as it is. To use it, rename the header or map it in "
                  "ADVISING_COLUMN_MAP.", "wrap")
        row += 1
    for field, effect in account.absent:
        sheet.put(row, 1, "-")
        sheet.put(row, 3, field)
        sheet.put(row, 4, f"Not found: {effect}.", "wrap")
        row += 1
    sheet.autofilter = (1, 1, len(COLUMN_HEADERS), row - 1)
    return sheet
