"""The nightly flow: every roster in the drop folder, through each stage, as Prefect tasks.

Tasks are stages (ingest, validate, evaluate, render, deliver, write); per-student work is
batched inside them, never a task of its own. Logs carry counts and student IDs only.

What Prefect sees is what IT sees: each task run is named for its roster, an exception reaches
Prefect only as its type, the roster file and the student ID (run_record.stage_guard), and a
run that needs attention ends Failed with a message naming the rosters and why.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed
from prefect.utilities.annotations import quote

from flows import drop_folder, intake
from flows.delivery import (
    DeliveryReport,
    Ledger,
    deliver,
    resolve_smtp_password,
)
from flows.delivery.office_note import send_office_note
from flows.delivery.smtp import UnrecordedSends
from flows.files import (
    no_space,
    roster_output_dir,
    sha256_file,
    student_file_stem,
)
from flows.intake import Roster
from flows.letters import Letter, LetterSummary, RenderPool, render_letters, with_bodies
from flows.letters.batches import LETTER_BATCH, batch_bounds, render_in_turn
from flows.letters.hold import held_after_match
from flows.run_record import (
    RosterOutcome,
    RosterStatus,
    StageCrash,
    count_roster,
    crash_outcome,
    cycle_record,
    disk_full_message,
    fingerprint,
    ledger_path,
    load_table,
    plain_reason,
    record_crash,
    run_verdict,
    settle_if_unchanged,
    stage_guard,
    write_run_json,
    write_run_summary,
)
from flows.runtime import gc_paused, gc_skips_old, quiet_anticipated_failures
from flows.settings import Settings, load_settings
from flows.workbook import LetterCell, annotated_path, write_annotated
from residency_rules.calendar import stale
from residency_rules.errors import AdvisingError, RosterError
from residency_rules.records import Evaluation, StudentRecord
from residency_rules.rules import evaluate_all
from residency_rules.specialties import SpecialtyTable


class RunIncomplete(AdvisingError):
    """A roster needs attention; the Failed state's data, so a direct call raises it.

    Carries every roster's outcome, for the CLI's summary. Returned inside a Failed state
    rather than raised: raised, Prefect's flow engine would log it with a traceback.
    """

    def __init__(self, message: str, outcomes: Sequence[RosterOutcome] = ()) -> None:
        super().__init__(message)  # one argument, so it pickles like any exception
        self.outcomes = list(outcomes)


T = TypeVar("T")


def _as_is(value: T) -> T:
    """Hand a large argument to a task without Prefect walking it (see the note below).

    Prefect unwraps quote() before the task runs, so the task receives the value itself; the
    cast tells the type checker so.
    """
    return cast(T, quote(value))


# Stage tasks: each a few lines calling the domain or an I/O module. No caching: inputs are
# large in-memory records, and a nightly run must always look at today's file. Large
# arguments go through _as_is (Prefect's quote()): otherwise Prefect walks every record of
# every argument looking for upstream futures, which cost more than the stages themselves at
# 100k students.
# Each task run is named for its roster ("ingest: cohort-b.xlsx"), and each body runs inside
# stage_guard, so an unexpected exception reaches Prefect stripped of what it quoted.
@task(name="ingest", task_run_name="ingest: {path.name}", cache_policy=NO_CACHE)
def ingest_stage(path: Path, settings: Settings, table: SpecialtyTable) -> Roster | State:
    """Read the roster workbook into normalised records and row problems.

    An unreadable roster ends the task in a state named Rejected that holds its RosterError:
    the stage did its job (it found why the file cannot be read), and a rejection is an
    everyday event the flow reports in one line; a raised error would be logged by Prefect's
    task engine with a traceback.
    """
    with stage_guard("ingest", path, settings.output_dir):
        try:
            return intake.ingest(path, settings, table)
        except RosterError as exc:
            return Completed(name="Rejected", message=plain_reason(str(exc)), data=exc)


@task(name="validate", task_run_name="validate: {roster.source.name}", cache_policy=NO_CACHE)
def validate_stage(
    roster: Roster, settings: Settings, table: SpecialtyTable, docs_dir: Path
) -> Roster:
    """Run the Great Expectations suite and hold every row with a problem."""
    with stage_guard("validate", roster.source, settings.output_dir):
        return intake.validate(roster, settings, table, docs_dir)


@task(name="evaluate", task_run_name="evaluate: {roster.source.name}", cache_policy=NO_CACHE)
def evaluate_stage(roster: Roster, settings: Settings, table: SpecialtyTable) -> list[Evaluation]:
    """Apply the outlook rules to every row that passed validation."""
    with stage_guard("evaluate", roster.source, settings.output_dir), gc_paused():
        return evaluate_all(
            roster.records, table, cycle=settings.cycle(table), today=settings.run_date()
        )


@task(name="render letters", task_run_name="render letters: {source.name}",
      cache_policy=NO_CACHE)
def render_stage(
    source: Path,
    records: list[StudentRecord],
    by_id: dict[str, Evaluation],
    table: SpecialtyTable,
    settings: Settings,
    previous: dict[str, LetterSummary],
    letters_dir: Path,
    pool: RenderPool | None,
) -> list[Letter]:
    """Render a batch of letters to disk first, so sending is a separate, resumable step."""
    with stage_guard("render letters", source, settings.output_dir):
        if pool is None:
            return render_letters(records, by_id, table, settings, previous, letters_dir)
        return pool.submit(records, by_id, table, settings, previous, letters_dir).result()


@task(name="deliver", task_run_name="deliver: {source.name}", cache_policy=NO_CACHE)
def deliver_stage(
    source: Path, letters: list[Letter], settings: Settings, ledger: Ledger, outbox_dir: Path
) -> DeliveryReport:
    """Hand the letters to the outbox or the relay; the ledger skips what was already sent."""
    with stage_guard("deliver", source, settings.output_dir):
        return deliver(letters, settings, ledger, outbox_dir, resolve_smtp_password(settings))


@task(name="write workbook", task_run_name="write workbook: {roster.source.name}",
      cache_policy=NO_CACHE)
def workbook_stage(
    roster: Roster,
    evaluations: list[Evaluation],
    report: DeliveryReport,
    settings: Settings,
    out_path: Path,
    notice: str = "",
) -> None:
    """Write the office's workbook back with annotations, a Summary and a Problems sheet."""
    with stage_guard("write workbook", roster.source, settings.output_dir):
        _write_workbook(roster, evaluations, report, out_path, notice, settings)


def _write_workbook(
    roster: Roster, evaluations: list[Evaluation], report: DeliveryReport, out_path: Path,
    notice: str, settings: Settings | None = None,
) -> None:
    """Give each row its letter cell (held, or the delivery status and the letter's link)."""
    by_id = {e.student_id: e for e in evaluations}
    held = roster.held_rows()
    cells: dict[str, LetterCell] = {}
    for row, sid in roster.row_ids.items():
        after_match = (held_after_match(by_id[sid], settings)
                       if settings is not None and sid in by_id else None)
        if row in held or sid not in by_id:
            cells[sid] = LetterCell("Held: see Problems", None)
        elif after_match:  # no letter rendered: the cell says why (#23)
            cells[sid] = LetterCell(after_match, None)
        else:
            cells[sid] = LetterCell(
                report.status.get(sid, "Written"), f"letters/{student_file_stem(sid)}.html"
            )
    write_annotated(roster, by_id, cells, out_path, notice)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the time spent in the block to the stage's total (stages may run in batches)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 3)


def _merge(total: DeliveryReport, part: DeliveryReport) -> None:
    """Add one batch's delivery counts and statuses to the roster's report."""
    total.sent += part.sent
    total.unchanged += part.unchanged
    total.failed += part.failed
    total.skipped += part.skipped
    total.status.update(part.status)


def _letters_and_delivery(
    source: Path,
    records: list[StudentRecord],
    evaluations: list[Evaluation],
    table: SpecialtyTable,
    settings: Settings,
    staging: Path,
    out_dir: Path,
    pool: RenderPool | None,
    timings: dict[str, float],
) -> tuple[DeliveryReport, int]:
    """Render and deliver the letters batch by batch; return the delivery report and count."""
    by_id = {e.student_id: e for e in evaluations}
    report = DeliveryReport()
    written = 0
    timings["letters"] = timings["delivery"] = 0.0
    # Batches bound memory (a rendered letter is ~12 KB: 1.2 GB for 100,000 at once).
    bounds = batch_bounds(len(records), LETTER_BATCH, settings.delivery == "smtp")
    batches = [records[a:b] for a, b in bounds]
    with Ledger(ledger_path(settings.output_dir)) as ledger:

        def render(k: int, elsewhere: RenderPool | None) -> Any:
            batch = batches[k]
            previous = ledger.previous_summaries(r.student_id for r in batch)
            args = (source, _as_is(batch), _as_is(by_id), _as_is(table), settings,
                    _as_is(previous), staging)
            if elsewhere is None:
                return render_stage(*args, None)
            return render_stage.submit(*args, _as_is(elsewhere))

        rendered = render_in_turn(
            len(batches),
            here=lambda k: render(k, None),
            there=(lambda k: render(k, pool)) if pool is not None else None,
            share=settings.delivery != "smtp",
        )
        while True:
            with _timed(timings, "letters"):
                letters = next(rendered, None)
                if letters is None:
                    break
                # Read here: in a worker thread, each read would wait for the GIL afresh.
                letters = with_bodies(letters, staging)
            with _timed(timings, "delivery"):
                try:
                    part = deliver_stage(source, _as_is(letters), settings, ledger,
                                         out_dir / "outbox")
                except UnrecordedSends as exc:
                    # A full disk: this run's letters are rendered again by the next one, so
                    # their space goes to recording what the relay accepted.
                    shutil.rmtree(staging, ignore_errors=True)
                    raise exc.record_again() from None
                _merge(report, part)
            written += len(letters)
            del letters
    return report, written


def process_roster(
    path: Path, settings: Settings, table: SpecialtyTable, print_fp: str,
    set_aside: Callable[[], None] = lambda: None,
) -> RosterOutcome:
    """Run one roster through every stage, under its lock; outputs land atomically.

    set_aside is called once the roster is evaluated: what lives from then on to the end
    (records, evaluations) may be kept out of garbage collection (runtime.gc_skips_old).
    """
    logger = get_run_logger()
    started = datetime.now().astimezone()
    out_dir = roster_output_dir(settings.output_dir, path)
    timings: dict[str, float] = {}
    sha = sha256_file(path)
    settled = settle_if_unchanged(path, settings, print_fp, sha)
    if settled is not None:
        logger.info("Roster %s unchanged since its last run: nothing to do", path.name)
        return settled

    drop_folder.sweep_temporary(out_dir)
    with _timed(timings, "ingest"):
        roster = ingest_stage(path, settings, _as_is(table))
    if isinstance(roster, State):  # Rejected: it holds the RosterError
        return _reject(path, settings, started, roster.result())
    # The render process takes a second to start: it starts now, while validation runs.
    with (RenderPool() if len(roster.records) > LETTER_BATCH else nullcontext()) as pool:
        with _timed(timings, "validate"):
            roster = validate_stage(_as_is(roster), settings, _as_is(table), out_dir / "validation")
        with _timed(timings, "evaluate"):
            evaluations = evaluate_stage(_as_is(roster), settings, _as_is(table))
        set_aside()
        # Letters are written into a hidden folder, swapped in once every batch is rendered.
        staging = drop_folder.staging_dir(out_dir / "letters")
        report, written = _letters_and_delivery(
            path, roster.records, evaluations, table, settings, staging, out_dir, pool, timings
        )
    with _timed(timings, "letters"):
        remover = drop_folder.publish_dir(staging, out_dir / "letters")
    # A cycle that is over or a year off: said once to the office; the letters still go.
    cycle = settings.cycle(table)
    cycle_warning = stale(settings.run_date(), cycle) or ""
    if cycle_warning:
        logger.info("Roster %s: %s", path.name, cycle_warning)  # the CLI summary says it
    with _timed(timings, "workbook"):
        workbook_stage(_as_is(roster), _as_is(evaluations), _as_is(report), settings,
                       annotated_path(roster.source, out_dir),
                       f"Cycle: {cycle_warning}" if cycle_warning else "")
    if remover is not None:
        remover.join()

    counts = count_roster(roster, evaluations, report, written)
    ended = datetime.now().astimezone()
    write_run_json(out_dir, path.name, sha, table.version, print_fp, settings.delivery, counts,
                   timings, started, ended,
                   cycle_record(cycle, settings.run_date(), cycle_warning))
    moved = drop_folder.move_processed(path, settings.input_dir, ended)
    logger.info(
        "Roster %s: %d rows, %d evaluated, %d held, %d letters, %d %s, %d unchanged, "
        "%d failed or uncertain",
        path.name, counts.rows, counts.evaluated, counts.held_with_problems,
        counts.letters_written, counts.emails_sent, DELIVERED[settings.delivery],
        counts.emails_unchanged, counts.emails_failed,
    )
    return RosterOutcome(path.name, RosterStatus.DONE, f"kept in {moved.parent}", counts,
                         str(out_dir), settings.delivery, cycle_warning)


def _reject(path: Path, settings: Settings, started: datetime, exc: RosterError) -> RosterOutcome:
    """Move an unreadable roster to input/rejected/ with its .problems.txt; one WARNING line."""
    target = drop_folder.move_rejected(path, settings.input_dir, started, exc.problems).resolve()
    problems = target.with_name(target.name + ".problems.txt")
    reason = plain_reason(str(exc))
    get_run_logger().warning(
        "Roster %s rejected (%s): moved to %s; see %s", path.name, reason, target, problems
    )
    return RosterOutcome(path.name, RosterStatus.REJECTED, str(exc), None, str(target),
                         reason=reason, problems=str(problems))


# How the artifact and the log name what delivery did: nothing is sent in outbox mode.
DELIVERED = {"outbox": "written to outbox", "smtp": "emailed"}


def _run_name() -> str:
    """Name a flow run for when it started, so the runs list reads as a calendar."""
    return f"rosters {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"


@flow(name="advising-nightly", flow_run_name=_run_name, log_prints=False)
def advising_run(
    input_dir: str | None = None,
    output_dir: str | None = None,
    office: dict[str, Any] | None = None,
) -> list[RosterOutcome] | State:
    """Process every ready roster in the drop folder once (what the nightly schedule runs).

    office holds one consortium office's settings from the offices file (JSON values, keys as
    in Settings): a deployment's parameters, checked again here through the one settings gate.
    Returns the outcomes; when a roster needs attention (run_record.RosterOutcome.attention),
    a Failed state naming the rosters instead, so monitoring that watches flow-run states sees
    what the exit status of `advising run` says. Called directly, the flow then raises
    RunIncomplete, which holds the outcomes.
    """
    quiet_anticipated_failures()
    overrides: dict[str, Any] = dict(office or {})
    if input_dir:
        overrides["input_dir"] = Path(input_dir)
    if output_dir:
        overrides["output_dir"] = Path(output_dir)
    settings = load_settings(**overrides)
    table = load_table(settings)
    print_fp = fingerprint(settings, table)
    logger = get_run_logger()
    outcomes: list[RosterOutcome] = []
    for drop in drop_folder.scan(settings.input_dir, settings.quiet_seconds):
        if drop.kind == "link":
            outcomes.append(_reject_link(drop, settings))
            continue
        if drop.kind == "skipped":
            outcomes.append(RosterOutcome(drop.path.name, RosterStatus.SKIPPED, drop.reason))
            continue
        if not drop.ready:
            outcomes.append(RosterOutcome(drop.path.name, RosterStatus.WAITING, drop.reason))
            continue
        try:
            with drop_folder.roster_lock(settings.output_dir, drop.path), \
                    gc_skips_old() as set_aside:
                if not drop.path.exists():  # another run finished it while we waited
                    continue
                outcomes.append(process_roster(drop.path, settings, table, print_fp, set_aside))
        except drop_folder.RosterBusy:
            outcomes.append(RosterOutcome(
                drop.path.name, RosterStatus.BUSY, "another run is processing it"
            ))
        except AdvisingError as exc:
            logger.error("Roster %s stopped: %s", drop.path.name, exc)
            outcomes.append(RosterOutcome(drop.path.name, RosterStatus.FAILED, str(exc),
                                          reason=plain_reason(str(exc))))
        except StageCrash as crash:  # a stage's bug, already in error.log and stripped
            logger.error("Roster %s stopped: %s", drop.path.name, crash)
            outcomes.append(crash_outcome(drop.path, crash))
        except Exception as exc:  # noqa: BLE001 - one roster's bug must not stop the others
            if (full := no_space(exc)) is not None:  # not a bug: no error.log (nor room)
                outcomes.append(_disk_full(drop.path, full, settings))
                logger.error("Roster %s stopped: the disk is full", drop.path.name)
                continue
            recorded = record_crash(drop.path, settings.output_dir, exc)
            logger.error("Roster %s stopped: %s", drop.path.name, recorded)
            outcomes.append(crash_outcome(drop.path, recorded))
    _publish_artifact(outcomes, settings.delivery, table)
    send_office_note(outcomes, settings)  # counts and IDs to ADVISING_OFFICE_EMAIL, if set
    if (unkept := write_run_summary(settings.output_dir, outcomes)) is not None:
        logger.warning("%s", unkept)
    verdict = run_verdict(outcomes)
    if verdict is not None:
        # Failed, so IT sees it in Prefect; the outcomes ride along for the CLI's summary.
        return Failed(message=verdict, data=RunIncomplete(verdict, outcomes))
    return outcomes


def _disk_full(path: Path, exc: OSError, settings: Settings) -> RosterOutcome:
    """Say in one sentence that a write found the disk full, and what to do."""
    return RosterOutcome(path.name, RosterStatus.FAILED,
                         disk_full_message(exc, settings.output_dir), reason="the disk is full")


def _reject_link(drop: drop_folder.DropFile, settings: Settings) -> RosterOutcome:
    """Move a symbolic link (the link, never what it points to) to input/rejected/."""
    try:
        target = drop_folder.move_rejected(
            drop.path, settings.input_dir, datetime.now().astimezone(), [drop.reason]
        )
    except FileNotFoundError:  # another run moved it meanwhile
        return RosterOutcome(drop.path.name, RosterStatus.BUSY, "another run moved it")
    get_run_logger().warning("%s is a symbolic link: moved to %s", drop.path.name, target)
    return RosterOutcome(drop.path.name, RosterStatus.REJECTED, drop.reason, None, str(target),
                         reason="a symbolic link, not a roster file",
                         problems=str(target.with_name(target.name + ".problems.txt")))


def _publish_artifact(
    outcomes: list[RosterOutcome], delivery: str, table: SpecialtyTable
) -> None:
    """Publish a per-run summary table to Prefect: counts only, never names, scores or grades.

    Written for IT reading the Prefect UI: why a roster needs attention and which file says
    more, what delivery did in words that fit the mode, and what the levels mean.
    """
    columns = ["roster", "status", "reason", "rows", "held", "evaluated",
               "L1", "L2", "L3", "L4", "L5", "letters", DELIVERED[delivery], "unchanged",
               "failed or uncertain", "see"]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for o in outcomes:
        c = o.counts
        see = o.problems or o.output
        reason = o.attention() if o.status is RosterStatus.DONE else o.reason or o.message
        cells: list[object]
        if c is None:
            cells = [o.file, o.status, reason or "", *[""] * (len(columns) - 4), see]
        else:
            lv = c.by_outlook_level
            cells = [o.file, o.status, reason or "", c.rows, c.held_with_problems, c.evaluated,
                     *(lv.get(str(k), 0) for k in range(1, 6)), c.letters_written,
                     c.emails_sent, c.emails_unchanged, c.emails_failed, see]
        lines.append("| " + " | ".join(_cell(v) for v in cells) + " |")
    if not outcomes:
        lines.append("| (no roster in the input folder) |" + " |" * (len(columns) - 1))
    verdict = run_verdict(outcomes)
    lines[:0] = [f"**{verdict}**" if verdict else "Every roster went through.", ""]
    lines += [
        "",
        "held: rows with a problem listed on the workbook's Problems sheet (no letter). "
        + ("written to outbox: .eml files in output/<roster>/outbox; nothing is sent."
           if delivery == "outbox" else "emailed: accepted by the school's relay."),
        "",
        f"Outlook levels (rules version {table.version}):",
        *(f"- L{level}: " + "; ".join(labels)
          for level, labels in table.rules.labels_by_level().items()),
    ]
    create_markdown_artifact("\n".join(lines), key="advising-run-summary",
                             description="Rosters processed in this run (counts only)")


def _cell(value: object) -> str:
    """Put a value in a markdown table cell: one line, no column break."""
    return " ".join(str(value).split()).replace("|", "\\|")
