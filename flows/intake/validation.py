"""Check a read roster with a Great Expectations suite and turn every failure into a Problem.

Intake has already turned cells into typed values; the suite here checks those values (ranges,
known specialties and grades, email shape and domain, unique IDs, Step 1 attempts against the
result) on a frame with one row per student row, keyed by the Excel row number, so each failure
points at the row and column the office sees. A row with a holding problem loses its record:
no letter, no email. Great Expectations is started once per process (it takes ~3 s to import).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from flows.files import write_atomic
from flows.intake.read import ingest
from flows.intake.roster import Roster
from flows.settings import Settings
from residency_rules.records import Problem, StudentRecord
from residency_rules.schema import (
    ATTEMPTS_RANGE,
    CLERKSHIP_FIELDS,
    EMAIL_PATTERN,
    FIELD_BY_NAME,
    GRADES,
    LETTER_STRENGTHS,
    MARGINS,
    SCORE_RANGE,
    STEP1_RESULTS,
    domain_pattern,
    step2_date_range,
)
from residency_rules.specialties import SpecialtyTable

logger = logging.getLogger(__name__)

SUITE_NAME = "residency-roster"
ROW_ID = "excel_row"  # the frame column GX reports failing rows by
ID_KEY = "student_id_key"  # the student ID as uniqueness sees it (capitals ignored)
_STR_FIELDS = (
    "student_id", "name", "email", "email_domain", "step1_result", "step1_margin", "specialty",
    *CLERKSHIP_FIELDS, "letters", "advisor", "advisor_email",
)
_INT_FIELDS = (
    "step1_attempts", "step1_score", "step2_score", "step2_attempts", "research_count",
    "interviews",
)
_EMAIL = re.compile(EMAIL_PATTERN)


def validate(
    roster: Roster, settings: Settings, table: SpecialtyTable, docs_dir: Path | None = None
) -> Roster:
    """Run the suite; return the roster with its problems added and every held row's record gone."""
    started = time.perf_counter()
    frame, values = _frame(roster)
    checks = _checks(roster, settings, table)
    result = _run_suite(frame, checks)
    problems = list(roster.problems)
    problems.extend(_problems(roster, result, checks, values))
    problems.sort(key=_order(roster))
    held = {p.row for p in problems if p.holds_row and p.row is not None}
    checked = replace(
        roster,
        headers=dict(roster.headers),
        column_index=dict(roster.column_index),
        row_ids=dict(roster.row_ids),
        records=[r for r in roster.records if r.row not in held],
        problems=problems,
    )
    if docs_dir is not None:
        _write_docs(result, docs_dir, roster, problems, checks)
    logger.info(
        "Validated %s: %d rows, %d held, %d problems in %.2f s",
        roster.source.name, len(roster.row_ids), len(held), len(problems),
        time.perf_counter() - started,
    )
    return checked


def check_file(path: Path, settings: Settings, table: SpecialtyTable) -> Roster:
    """Read and validate one roster without writing anything (the `advising check` command)."""
    warm_up()
    return validate(ingest(path, settings, table), settings, table)


def warm_up() -> None:
    """Start Great Expectations in the background so its ~3 s import overlaps reading the file."""
    if _GX is None:
        threading.Thread(target=_warm, name="gx-warm-up", daemon=True).start()


def _warm() -> None:
    try:
        _gx()
    except Exception as exc:  # noqa: BLE001 (validate() starts GX again and raises it there)
        logger.debug("Great Expectations warm-up failed (%s); validation will retry", exc)


def format_problems(problems: Sequence[Problem]) -> str:
    """Lay problems out as an aligned plain-text table an advisor can read in a terminal."""
    if not problems:
        return "No problems found."
    heads = ("Row", "Column", "Value", "What is wrong", "What to do")
    rows = [
        (
            str(p.row) if p.row is not None else "-",
            _clip(p.column or "-", 28),
            _clip(p.value, 28),
            ("(warning) " if not p.holds_row else "") + p.what,
            p.fix,
        )
        for p in problems
    ]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


# ---------------------------------------------------------------------------------------------
# The frame: one row per student row, canonical values, plus flags
# ---------------------------------------------------------------------------------------------


def _frame(roster: Roster) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
    """Build the frame GX checks, and the same values as lists for the messages."""
    by_row = {r.row: r for r in roster.records}
    excel_rows = sorted(set(roster.row_ids) | set(by_row))
    cols: dict[str, list[Any]] = {name: [] for name in (
        ROW_ID, "readable", *_STR_FIELDS, *_INT_FIELDS, "step2_date",
    )}
    # Each student's files are named after the ID, and on a Windows or Mac share AB12.html and
    # ab12.html are one file: IDs that differ only in capitals are one student here.
    for excel_row in excel_rows:
        rec = by_row.get(excel_row)
        cols[ROW_ID].append(excel_row)
        cols["readable"].append(rec is not None)
        if rec is None:
            cols["student_id"].append(roster.row_ids.get(excel_row) or None)
            for name in cols:
                if name not in (ROW_ID, "readable", "student_id"):
                    cols[name].append(None)
            continue
        _append_record(cols, rec)
    cols[ID_KEY] = [sid.casefold() if sid else None for sid in cols["student_id"]]
    frame = pd.DataFrame({
        ROW_ID: pd.array(cols[ROW_ID], dtype="int64"),
        "readable": pd.array(cols["readable"], dtype="bool"),
        **{n: pd.Series(cols[n], dtype="object") for n in _STR_FIELDS},
        **{n: pd.array(cols[n], dtype="Int64") for n in _INT_FIELDS},
        "step2_date": pd.to_datetime(pd.Series(cols["step2_date"], dtype="object")),
        ID_KEY: pd.Series(cols[ID_KEY], dtype="object"),
    })
    return frame, cols


def _append_record(cols: dict[str, list[Any]], rec: StudentRecord) -> None:
    email = rec.email or None
    cols["student_id"].append(rec.student_id or None)
    cols["name"].append(rec.name or None)
    cols["email"].append(email)
    cols["email_domain"].append(_domain_of(email))
    cols["step1_result"].append(rec.step1_result)
    cols["step1_margin"].append(rec.step1_margin)
    cols["specialty"].append(rec.specialty or None)
    grades = dict(rec.clerkships)
    for field_name, clerkship in CLERKSHIP_FIELDS.items():
        cols[field_name].append(grades.get(clerkship))
    cols["letters"].append(rec.letters)
    cols["advisor"].append(rec.advisor)
    cols["advisor_email"].append(rec.advisor_email)
    cols["step1_attempts"].append(rec.step1_attempts)
    cols["step1_score"].append(rec.step1_score)
    cols["step2_score"].append(rec.step2_score)
    cols["step2_attempts"].append(rec.step2_attempts)
    cols["research_count"].append(rec.research_count)
    cols["interviews"].append(rec.interviews)
    cols["step2_date"].append(rec.step2_date)


def _domain_of(email: str | None) -> str | None:
    """Return the domain of a well-formed address; a malformed one gets one problem, not two."""
    if email is None or not _EMAIL.match(email):
        return None
    return email.rpartition("@")[2].lower()


# ---------------------------------------------------------------------------------------------
# The suite: each expectation carries a check key; the key says how to explain a failure
# ---------------------------------------------------------------------------------------------

Explain = Callable[[Any, dict[str, Any]], tuple[str, str]]


@dataclass(frozen=True)
class _Check:
    key: str
    field: str | None  # the frame column whose header and value a Problem shows
    expectation: Any
    explain: Explain
    holds: bool = True


def _checks(roster: Roster, settings: Settings, table: SpecialtyTable) -> list[_Check]:
    """Build the suite's checks: every field of the schema, and the cross-field rules."""
    gx = import_gx()
    from great_expectations.expectations.row_conditions import Column

    ex: Any = gx.expectations  # GX 1.x exports the classes without __all__ for type checkers
    readable = Column("readable") == True  # noqa: E712 (a GX condition, not a Python test)
    not_taken = Column("step1_result") == "not taken"
    taken = Column("step1_result") != "not taken"
    low, high = SCORE_RANGE
    earliest, latest = step2_date_range(settings.run_date())
    names = table.names()
    checks: list[_Check] = []

    def add(key: str, field: str | None, expectation: Any, explain: Explain,
            holds: bool = True) -> None:
        expectation.meta = {"check": key}
        checks.append(_Check(key, field, expectation, explain, holds))

    add("rows", None, ex.ExpectTableRowCountToBeBetween(min_value=1), lambda v, r: (
        "The roster has a header but no student rows under it",
        "Add one row per student under the header row.",
    ), holds=False)
    add("id.present", "student_id", ex.ExpectColumnValuesToNotBeNull(column="student_id"),
        lambda v, r: ("The student ID is blank",
                      "Enter the student's ID; the row is held until it has one."))
    add("id.unique", "student_id", ex.ExpectColumnValuesToBeUnique(column=ID_KEY),
        lambda v, r: (f"Student ID {v} is on more than one row (rows {r['_dup_rows']})"
                      + r["_dup_case"],
                      "Keep one row per student: delete the extra row or correct the ID."))
    add("name.present", "name",
        ex.ExpectColumnValuesToNotBeNull(column="name", row_condition=readable),
        lambda v, r: ("The student's name is blank", "Enter the student's name."))
    add("step1.known", "step1_result",
        ex.ExpectColumnValuesToBeInSet(column="step1_result", value_set=list(STEP1_RESULTS)),
        lambda v, r: (f"Step 1 result '{v}' is not Pass, Fail or Not taken",
                      "Enter Pass, Fail or Not taken."))
    add("step1.attempts", "step1_attempts", ex.ExpectColumnValuesToBeBetween(
        column="step1_attempts", min_value=ATTEMPTS_RANGE[0], max_value=ATTEMPTS_RANGE[1],
        row_condition=taken,
    ), lambda v, r: (
        f"Step 1 attempts {v} is outside {ATTEMPTS_RANGE[0]}-{ATTEMPTS_RANGE[1]}",
        "Enter how many times the student sat Step 1 (leave blank if passed the first time).",
    ))
    add("step1.attempts_not_taken", "step1_attempts", ex.ExpectColumnValuesToBeInSet(
        column="step1_attempts", value_set=[0], row_condition=not_taken,
    ), lambda v, r: (
        f"Step 1 is marked Not taken but the attempts cell says {v}",
        "Correct the Step 1 result (Pass or Fail), or clear the attempts cell.",
    ))
    add("step1.score_not_taken", "step1_score", ex.ExpectColumnValuesToBeNull(
        column="step1_score", row_condition=not_taken,
    ), lambda v, r: (
        f"Step 1 is marked Not taken but has a score ({v})",
        "Correct the Step 1 result, or clear the Step 1 score.",
    ))
    add("step1.score", "step1_score", ex.ExpectColumnValuesToBeBetween(
        column="step1_score", min_value=low, max_value=high,
    ), lambda v, r: (
        f"Step 1 score {v} is outside {low}-{high}",
        "Correct the score, or leave the cell blank (scores exist only before 26 Jan 2022).",
    ))
    add("step1.margin", "step1_margin", ex.ExpectColumnValuesToBeInSet(
        column="step1_margin", value_set=list(MARGINS),
    ), lambda v, r: (f"Step 1 margin '{v}' is not Marginal or Comfortable",
                     "Enter Marginal or Comfortable, or leave the cell blank."))
    add("step2.score", "step2_score", ex.ExpectColumnValuesToBeBetween(
        column="step2_score", min_value=low, max_value=high,
    ), lambda v, r: (
        f"Step 2 CK score {v} is outside {low}-{high}",
        "Correct the score, or leave the cell blank if it is not reported yet.",
    ))
    add("step2.attempts", "step2_attempts", ex.ExpectColumnValuesToBeBetween(
        column="step2_attempts", min_value=ATTEMPTS_RANGE[0], max_value=ATTEMPTS_RANGE[1],
    ), lambda v, r: (
        f"Step 2 CK attempts {v} is outside {ATTEMPTS_RANGE[0]}-{ATTEMPTS_RANGE[1]}",
        "Enter how many times the student sat Step 2 CK, this score included (leave blank if "
        "it is the first time).",
    ))
    add("step2.date", "step2_date", ex.ExpectColumnValuesToBeBetween(
        column="step2_date", min_value=pd.Timestamp(earliest),
        max_value=pd.Timestamp(latest),
    ), lambda v, r: (
        f"Step 2 CK date {v} is not a likely exam date "
        f"({earliest.year}-{latest.year})",
        "Correct the date (for example 7/15/2026), or leave it blank if not scheduled.",
    ))
    add("specialty.present", "specialty", ex.ExpectColumnValuesToNotBeNull(
        column="specialty", row_condition=readable,
    ), lambda v, r: ("No specialty is given",
                     "Enter the specialty the student is applying to (see the template's list)."))
    add("specialty.known", "specialty", ex.ExpectColumnValuesToBeInSet(
        column="specialty", value_set=list(names),
    ), lambda v, r: _unknown_specialty(str(v), table))
    for field_name in CLERKSHIP_FIELDS:
        if field_name not in roster.column_index:
            continue
        add(f"grade.{field_name}", field_name, ex.ExpectColumnValuesToBeInSet(
            column=field_name, value_set=list(GRADES),
        ), lambda v, r: (f"Clerkship grade '{v}' is not one we know",
                         "Use Honors, High Pass, Pass or Fail (H, HP, P, F), or IP / blank."))
    add("research", "research_count", ex.ExpectColumnValuesToBeBetween(
        column="research_count", min_value=0,
    ), lambda v, r: (f"Research items {v} is below 0",
                     "Enter the number of research items as a whole number, 0 or more."))
    add("interviews", "interviews", ex.ExpectColumnValuesToBeBetween(
        column="interviews", min_value=0, max_value=200,
    ), lambda v, r: (f"Interview invitations {v} is not between 0 and 200",
                     "Enter the number of interview invitations so far, or leave it blank."))
    add("letters", "letters", ex.ExpectColumnValuesToBeInSet(
        column="letters", value_set=list(LETTER_STRENGTHS),
    ), lambda v, r: (f"Letter strength '{v}' is not Strong, Average or Weak",
                     "Enter Strong, Average or Weak, or leave the cell blank."))
    if "email" in roster.column_index:
        add("email.present", "email", ex.ExpectColumnValuesToNotBeNull(
            column="email", row_condition=readable,
        ), lambda v, r: (
            "No email address: the letter is written but not sent",
            "Add the student's school email address so the letter can be sent.",
        ), holds=False)
    add("email.shape", "email", ex.ExpectColumnValuesToMatchRegex(
        column="email", regex=EMAIL_PATTERN,
    ), lambda v, r: (
        f"'{v}' is not one email address",
        "Enter one address such as jane.doe@school.edu (no names, spaces or second address).",
    ))
    domains = settings.allowed_email_domains
    if domains:
        shown = ", ".join(domains)
        add("email.domain", "email", ex.ExpectColumnValuesToMatchRegex(
            column="email_domain", regex=domain_pattern(domains),
        ), lambda v, r: (
            f"Email {r['email']} is not a school address ({shown})",
            f"Use the student's school address (@{domains[0]}); letters go to school "
            "addresses only.",
        ))
    add("advisor_email.shape", "advisor_email", ex.ExpectColumnValuesToMatchRegex(
        column="advisor_email", regex=EMAIL_PATTERN,
    ), lambda v, r: (
        f"Advisor email '{v}' is not one email address",
        "Enter one address such as advisor@school.edu, or leave the cell blank.",
    ))
    return checks


def _unknown_specialty(text: str, table: SpecialtyTable) -> tuple[str, str]:
    guess = table.suggest(text)
    what = f"Specialty '{text}' is not in the specialty table"
    if guess:
        return (
            f"{what}: did you mean {guess}?",
            f"Write '{guess}' if that is it, or ask for '{text}' to be added to the specialty "
            "table as an alias.",
        )
    return what, "Pick a specialty from the template's list, or ask for it to be added."


# ---------------------------------------------------------------------------------------------
# Running GX: one context per process, one datasource, one batch definition
# ---------------------------------------------------------------------------------------------


@dataclass
class _Gx:
    context: Any
    batch_definition: Any
    lock: threading.Lock


_GX: _Gx | None = None
_GX_START = threading.Lock()
_IMPORT = threading.Lock()


# What GX imports at module level for what this suite never runs. Lazy: put in place with the
# standard library's LazyLoader, loaded in full by the first attribute read (any caller, any
# day): scipy.stats (KL divergence, KS tests; about 0.9 s on the development machine). altair
# cannot be: `import altair` reads the module's __spec__, which loads it. Hidden: SQLAlchemy,
# which GX probes for its SQL datasources (about 0.4 s) and treats as not installed when the
# probe fails, as in an install without its SQL extras; the suite runs on a pandas frame.
# Hidden from GX's import in the importing thread only: Prefect imports it as usual.
_LAZY = ("scipy.stats",)
_HIDDEN = ("sqlalchemy",)


class _HideFromThread(importlib.abc.MetaPathFinder):
    """Make an import of the given packages fail in one thread, for as long as it is installed."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)
        self.thread = threading.get_ident()

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.names and threading.get_ident() == self.thread:
            raise ImportError(f"{fullname} is not used by the roster suite")
        return None


def _lazy(name: str) -> None:
    spec = importlib.util.find_spec(name)  # imports the parent package itself (light)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def import_gx() -> Any:
    """Import Great Expectations without what the suite never runs (_LAZY, _HIDDEN above).

    Only when this process has not imported GX yet; a module already imported (Prefect's
    SQLAlchemy, say) is GX's as usual.
    """
    with _IMPORT:
        if "great_expectations" not in sys.modules:
            for name in _LAZY:
                if name not in sys.modules:
                    _lazy(name)
            hide = _HideFromThread([n for n in _HIDDEN if n not in sys.modules])
            sys.meta_path.insert(0, hide)
            try:
                import great_expectations as gx
            finally:
                sys.meta_path.remove(hide)
        else:
            import great_expectations as gx

    return gx


def _gx() -> _Gx:
    """Start Great Expectations once per process: an ephemeral context, no progress bars."""
    global _GX
    with _GX_START:
        if _GX is None:
            # GX logs and warns about its own internals at INFO/WARNING; the office needs none.
            logging.getLogger("great_expectations").setLevel(logging.ERROR)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gx = import_gx()
                from great_expectations.data_context.types.base import (
                    DataContextConfig,
                    InMemoryStoreBackendDefaults,
                    ProgressBarsConfig,
                )

                config = DataContextConfig(
                    store_backend_defaults=InMemoryStoreBackendDefaults(),
                    analytics_enabled=False,
                    progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                )
                context = gx.get_context(mode="ephemeral", project_config=config)
                source = context.data_sources.add_pandas("roster")
                asset = source.add_dataframe_asset("students")
                batch_definition = asset.add_batch_definition_whole_dataframe("whole roster")
            _GX = _Gx(context, batch_definition, threading.Lock())
        return _GX


def _run_suite(frame: pd.DataFrame, checks: list[_Check]) -> Any:
    gx = import_gx()

    runtime = _gx()
    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=[c.expectation for c in checks])
    with runtime.lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [ROW_ID],
            "partial_unexpected_count": 20,
            "include_unexpected_rows": False,
            "return_unexpected_index_query": False,
        })
    for item in result.results:
        info = item.exception_info or {}
        if info.get("raised_exception"):
            key = (item.expectation_config.meta or {}).get("check", "?")
            raise RuntimeError(
                f"the validation check {key} could not run: {info.get('exception_message')}"
            )
    return result


def _problems(
    roster: Roster, result: Any, checks: list[_Check], values: dict[str, list[Any]]
) -> list[Problem]:
    by_key = {c.key: c for c in checks}
    position = {row: i for i, row in enumerate(values[ROW_ID])}
    problems: list[Problem] = []
    for item in result.results:
        if item.success:
            continue
        check = by_key[item.expectation_config.meta["check"]]
        rows = [int(hit[ROW_ID]) for hit in item.result.get("unexpected_index_list") or []]
        if check.field is None or not rows:
            what, fix = check.explain(None, {})
            problems.append(Problem(file=roster.source.name, sheet=roster.sheet, what=what,
                                    fix=fix, holds_row=False if check.field is None
                                    else check.holds))
            continue
        duplicates: dict[Any, list[int]] = {}
        if check.key == "id.unique":
            for excel_row in rows:
                duplicates.setdefault(values[ID_KEY][position[excel_row]], []).append(excel_row)
        for excel_row in rows:
            at = position[excel_row]
            value = values[check.field][at]
            context = {"email": values["email"][at]}
            if check.key == "id.unique":
                same = duplicates[values[ID_KEY][at]]
                context["_dup_rows"] = ", ".join(str(r) for r in same)
                spelt = {values["student_id"][position[r]] for r in same}
                context["_dup_case"] = (
                    f", written {' and '.join(sorted(spelt))}: IDs that differ only in capitals "
                    "are taken as one student" if len(spelt) > 1 else ""
                )
            what, fix = check.explain(_show(value), context)
            problems.append(Problem(
                file=roster.source.name,
                sheet=roster.sheet,
                row=excel_row,
                column=_column(roster, check.field),
                value=_show(value),
                what=what,
                fix=fix,
                student_id=values["student_id"][at],
                holds_row=check.holds,
            ))
    return problems


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _column(roster: Roster, field_name: str) -> str:
    """Name a field's column as the office wrote it (name may come from first + last)."""
    if field_name == "email_domain":
        field_name = "email"
    if field_name in roster.headers:
        return roster.headers[field_name]
    if field_name == "name" and "first_name" in roster.headers:
        return f"{roster.headers['first_name']} + {roster.headers.get('last_name', '')}".strip()
    return FIELD_BY_NAME[field_name].label


def _order(roster: Roster) -> Callable[[Problem], tuple[int, int]]:
    """Sort problems as the office reads the sheet: file-wide first, then by row and column."""
    col_of = {written: roster.column_index.get(name, 0) for name, written in roster.headers.items()}

    def key(problem: Problem) -> tuple[int, int]:
        return (problem.row or 0, col_of.get(problem.column or "", 0))

    return key


# ---------------------------------------------------------------------------------------------
# The validation page: one self-contained HTML page per run, for the office
# ---------------------------------------------------------------------------------------------


def _write_docs(result: Any, docs_dir: Path, roster: Roster, problems: Sequence[Problem],
                checks: Sequence[_Check]) -> None:
    """Write this run's validation page to docs_dir/index.html, rendered from the GX result.

    GX's own page loads its styles and scripts from public CDNs, and this page shows row
    values: ours loads nothing from outside (flows/intake/validation_page.py).
    """
    from flows.intake.validation_page import render_page

    labels = {c.key: _column(roster, c.field) for c in checks if c.field is not None}
    page = render_page(result, roster, problems, labels)
    docs_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(docs_dir / "index.html", page.encode("utf-8"), fsync=False)
