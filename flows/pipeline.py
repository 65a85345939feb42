"""The nightly flow: every roster in the drop folder, through each stage, as Prefect tasks.

Tasks are stages (ingest, validate, evaluate, render, deliver, write); per-student work is
batched inside them, never a task of its own. Logs carry counts and student IDs only.

What Prefect sees is what IT sees: each task run is named for its roster, an exception reaches
Prefect only as its type, the roster file and the student ID (run_record.stage_guard), and a
run that needs attention ends Failed with a message naming the rosters and why.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed
from prefect.utilities.annotations import quote

from flows import drop_folder, intake
from flows.approval import prune_kept_rosters, pruned_line
from flows.crash import crash_outcome, disk_full, record_crash, stage_guard
from flows.delivery import Ledger, deliver, resolve_smtp_password
from flows.delivery.dispatch import Source
from flows.delivery.ledger import ledger_path
from flows.delivery.office_note import send_office_note
from flows.delivery.smtp import UnrecordedSends
from flows.errors import AdvisingError, RosterBusy, RosterError, StageCrash
from flows.files import no_space, roster_output_dir, sha256_file
from flows.intake import Roster
from flows.intake.columns import columns_line, columns_read
from flows.letters import Letter, LetterSummary, RenderPool, render_letters
from flows.letters.batches import Batch, letters_in_batches
from flows.letters.context import format_day
from flows.letters.hold import hold_after_match
from flows.letters.review import REVIEW_NAME, write_review
from flows.outcome import (
    LetterOutcome,
    LetterStatus,
    RosterOutcome,
    RosterStatus,
    count_roster,
    roster_letters,
    run_verdict,
)
from flows.progress import Progress
from flows.report import DELIVERED, describe, run_artifact
from flows.run_record import (
    cycle_record,
    fingerprint,
    settle_if_unchanged,
    write_run_json,
    write_run_summary,
)
from flows.runtime import gc_paused, gc_skips_old, quiet_anticipated_failures
from flows.settings import Settings, load_settings, load_table
from flows.workbook import annotated_path, letter_cells, write_annotated
from residency_rules.calendar import stale
from residency_rules.records import Evaluation
from residency_rules.rules import evaluate_all
from residency_rules.specialties import SpecialtyTable


class RunIncomplete(AdvisingError):
    """A roster needs attention; the Failed state's data, so a direct call raises it.

    Carries every roster's outcome, for the CLI's summary. Returned inside a Failed state
    rather than raised: raised, Prefect's flow engine would log it with a traceback.
    """

    def __init__(self, message: str, outcomes: Sequence[RosterOutcome] = ()) -> None:
        super().__init__(message)
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
            return Completed(name="Rejected", message=exc.summary(), data=exc)


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
    records: Batch,
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
    source: Path, letters: list[Letter], settings: Settings, ledger: Ledger, out_dir: Path,
    staging: Path, origin: Source | None = None,
) -> dict[str, LetterOutcome]:
    """Hand the letters to the outbox or the relay; the ledger skips what was already sent."""
    with stage_guard("deliver", source, settings.output_dir):
        try:
            return deliver(letters, settings, ledger, out_dir / "outbox",
                           resolve_smtp_password(settings), roster=origin)
        except UnrecordedSends as exc:
            # A full disk: this run's letters are rendered again by the next one, so their
            # space goes to recording what the relay accepted.
            shutil.rmtree(staging, ignore_errors=True)
            raise exc.record_again() from None


@task(name="write workbook", task_run_name="write workbook: {roster.source.name}",
      cache_policy=NO_CACHE)
def workbook_stage(
    roster: Roster,
    evaluations: list[Evaluation],
    letters: dict[str, LetterOutcome],
    settings: Settings,
    table: SpecialtyTable,
    out_path: Path,
    notice: str = "",
) -> None:
    """Write the office's workbook back with annotations, a Summary and a Problems sheet."""
    with stage_guard("write workbook", roster.source, settings.output_dir):
        write_annotated(roster, {e.student_id: e for e in evaluations}, letter_cells(letters),
                        out_path, notice, levels=table.rules.levels)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the time spent in the block to the stage's total (stages may run in batches)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 3)


def _letters_and_delivery(
    source: Path,
    roster: Roster,
    evaluations: list[Evaluation],
    table: SpecialtyTable,
    settings: Settings,
    out_dir: Path,
    pool: RenderPool | None,
    timings: dict[str, float],
    sha: str,
    progress: Progress | None = None,
) -> tuple[dict[str, LetterOutcome], threading.Thread | None]:
    """Render the letters batch by batch into a staging folder, delivering each batch.

    Returns what delivery made of each letter, and the thread removing the previous letters
    folder once the new one is swapped in (the caller joins it after the workbook).
    """
    by_id = {e.student_id: e for e in evaluations}
    delivered: dict[str, LetterOutcome] = {}
    timings["letters"] = timings["delivery"] = 0.0
    # Letters are written into a hidden folder, swapped in once every batch is rendered.
    staging = drop_folder.staging_dir(out_dir / "letters")
    with Ledger(ledger_path(settings.output_dir)) as ledger:
        origin = Source(source.name, sha)
        ledger.set_waiting(origin.name, sha, (), replace=True)  # tonight's set, from scratch

        def render(batch: Batch, pool: RenderPool | None = None) -> Any:
            """Render here (pool None), or hand the batch to the render process (a future)."""
            previous = ledger.previous_summaries(r.student_id for r in batch)
            call = render_stage if pool is None else render_stage.submit
            return call(source, _as_is(batch), _as_is(by_id), _as_is(table), settings,
                        _as_is(previous), staging, _as_is(pool))

        batches = letters_in_batches(
            roster.records, staging,
            here=render,
            there=(lambda batch: render(batch, pool)) if pool is not None else None,
            size=settings.letter_batch, relay=settings.delivery == "smtp",
        )
        while True:
            with _timed(timings, "letters"):
                letters = next(batches, None)
            if letters is None:
                break
            with _timed(timings, "delivery"):
                delivered |= deliver_stage(source, _as_is(letters), settings, ledger, out_dir,
                                           staging, origin)
            if progress is not None:
                progress.count(len(delivered), sum(
                    o.status in (LetterStatus.SENT, LetterStatus.OUTBOX)
                    for o in delivered.values()), len(roster.records))
    with _timed(timings, "letters"):
        remover = drop_folder.publish_dir(staging, out_dir / "letters")
    return delivered, remover


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
    progress = Progress.start(path.name, len(roster.row_ids))
    progress.stage("read", timings["ingest"], f"{len(roster.row_ids):,} student rows")
    # The render process takes a second to start: it starts now, while validation runs.
    with (RenderPool() if len(roster.records) > settings.letter_batch else nullcontext()) as pool:
        with _timed(timings, "validate"):
            roster = validate_stage(_as_is(roster), settings, _as_is(table), out_dir / "validation")
        progress.stage("validated", timings["validate"],
                       f"{len(roster.problems):,} problems, {len(roster.held_rows()):,} rows held")
        with _timed(timings, "evaluate"):
            evaluations = evaluate_stage(_as_is(roster), settings, _as_is(table))
        progress.stage("outlooks", timings["evaluate"], f"{len(evaluations):,} students")
        set_aside()
        delivered, remover = _letters_and_delivery(path, roster, evaluations, table, settings,
                                                   out_dir, pool, timings, sha, progress)
        progress.stage("letters and delivery", timings["letters"] + timings["delivery"],
                       f"{len(delivered):,} letters")
    letters = roster_letters(roster.row_ids, roster.held_rows(),
                             {e.student_id for e in evaluations}, delivered)
    # After the Match, ADVISING_AFTER_MATCH=hold: no letter without a result (#23).
    letters = hold_after_match(letters, evaluations, settings)
    # A cycle that is over or a year off: said once to the office; the letters still go.
    cycle = settings.cycle(table)
    cycle_warning = stale(settings.run_date(), cycle) or ""
    if cycle_warning:
        logger.info("Roster %s: %s", path.name, cycle_warning)  # the CLI summary says it
    workbook = annotated_path(roster.source, out_dir)
    with _timed(timings, "workbook"):
        waiting = sum(o.status is LetterStatus.WAITING for o in letters.values())
        notes = [f"Cycle: {cycle_warning}" if cycle_warning else "",
                 f"Letters grouped for review: {REVIEW_NAME}, beside this workbook."
                 + (f" {waiting} wait for approval: advising approve {path.name}."
                    if waiting else "")]
        workbook_stage(_as_is(roster), _as_is(evaluations), _as_is(letters), settings,
                       _as_is(table), workbook, " ".join(n for n in notes if n))
    progress.stage("workbook written", timings["workbook"])
    if remover is not None:
        remover.join()
    # The review page last: the workbook's Summary already names it (#24).
    with Ledger(ledger_path(settings.output_dir)) as ledger:  # who had a letter before tonight
        sent_before = set(ledger.levels_before(letters, started.isoformat(timespec="seconds")))
    write_review(out_dir, path.name, format_day(settings.run_date()), evaluations,
                 letters, {r.student_id: r.name for r in roster.records}, sent_before)

    counts, digest = count_roster(
        rows=len(roster.row_ids), held=len(roster.held_rows()), problems=len(roster.problems),
        evaluations=evaluations, letters=letters,
    )
    ended = datetime.now().astimezone()
    write_run_json(out_dir, path.name, sha, table.version, print_fp, settings.delivery, counts,
                   timings, started, ended,
                   cycle_record(cycle, settings.run_date(), cycle_warning))
    moved = drop_folder.move_processed(path, settings.input_dir, ended)
    logger.info(
        "Roster %s: %d rows, %d evaluated, %d held, %d letters, %d %s, %d unchanged, "
        "%d failed or uncertain",
        path.name, counts.rows, counts.evaluated, counts.held_with_problems,
        counts.letters_written, counts.delivered, DELIVERED[settings.delivery],
        counts.emails_unchanged, counts.emails_failed,
    )
    return RosterOutcome(
        file=path.name, status=RosterStatus.DONE, message=f"kept in {moved.parent}",
        counts=counts, digest=digest, output=str(out_dir), workbook=str(workbook),
        delivery=settings.delivery, notice=cycle_warning,
        started=started.isoformat(timespec="seconds"), ended=ended.isoformat(timespec="seconds"),
        columns=columns_line(columns_read(roster)),
    )


def _reject(path: Path, settings: Settings, started: datetime, exc: RosterError) -> RosterOutcome:
    """Move an unreadable roster to input/rejected/ with its .problems.txt; one WARNING line."""
    target = drop_folder.move_rejected(path, settings.input_dir, started, exc.problems).resolve()
    problems = target.with_name(target.name + ".problems.txt")
    reason = exc.summary()
    get_run_logger().warning(
        "Roster %s rejected (%s): moved to %s; see %s", path.name, reason, target, problems
    )
    return RosterOutcome(file=path.name, status=RosterStatus.REJECTED, message=str(exc),
                         output=str(target), reason=reason, problems=str(problems))


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
    Returns the outcomes; when a roster needs attention (outcome.RosterOutcome.attention),
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
    outcomes = [_one_drop(drop, settings, table, print_fp)
                for drop in drop_folder.scan(settings.input_dir, settings.quiet_seconds)]
    done = [o for o in outcomes if o is not None]
    create_markdown_artifact(run_artifact(done, settings.delivery, table),
                             key="advising-run-summary",
                             description="Rosters processed in this run (counts only)")
    # Counts and IDs to ADVISING_OFFICE_EMAIL, if set.
    send_office_note(done, settings, table.rules.levels)
    if (unkept := write_run_summary(settings.output_dir, done)) is not None:
        get_run_logger().warning("%s", unkept)
    _print_when_deployed(done)
    # A served schedule runs this flow, not `advising run`: it prunes here (the CLI did first).
    if pruned := prune_kept_rosters(settings, date.today()):
        get_run_logger().info("%s", pruned_line(pruned, settings))
    verdict = run_verdict(done)
    if verdict is not None:
        # Failed, so IT sees it in Prefect; the outcomes ride along for the CLI's summary.
        return Failed(message=verdict, data=RunIncomplete(verdict, done))
    return done


def _print_when_deployed(done: list[RosterOutcome]) -> None:
    """Under `advising serve` or a worker, print each roster's summary lines, as `advising
    run` does: IT reads them in the journal (journalctl -u advising) without Prefect's UI."""
    from prefect.runtime import deployment

    if not deployment.id:
        return  # `advising run` prints them itself
    stamp = f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    for outcome in done:
        print(f"[{stamp}] {describe(outcome)}", flush=True)
    if not done:
        print(f"[{stamp}] no roster in the drop folder", flush=True)


def _one_drop(
    drop: drop_folder.DropFile, settings: Settings, table: SpecialtyTable, print_fp: str
) -> RosterOutcome | None:
    """Take one file of the drop folder through the run; None when another run finished it."""
    name = drop.path.name
    if drop.kind == "link":
        return _reject_link(drop, settings)
    if drop.kind == "skipped":
        return RosterOutcome(file=name, status=RosterStatus.SKIPPED, message=drop.reason)
    if not drop.ready:
        return RosterOutcome(file=name, status=RosterStatus.WAITING, message=drop.reason)
    logger = get_run_logger()
    try:
        with drop_folder.roster_lock(settings.output_dir, drop.path), \
                gc_skips_old() as set_aside:
            if not drop.path.exists():  # another run finished it while we waited
                return None
            return process_roster(drop.path, settings, table, print_fp, set_aside)
    except RosterBusy:
        return RosterOutcome(file=name, status=RosterStatus.BUSY,
                             message="another run is processing it")
    except StageCrash as crash:  # a stage's bug, already in error.log and stripped
        logger.error("Roster %s stopped: %s", name, crash)
        return crash_outcome(drop.path, crash)
    except AdvisingError as exc:
        logger.error("Roster %s stopped: %s", name, exc)
        return RosterOutcome(file=name, status=RosterStatus.FAILED, message=str(exc),
                             reason=exc.summary())
    except Exception as exc:  # noqa: BLE001 - one roster's bug must not stop the others
        if (full := no_space(exc)) is not None:  # not a bug: no error.log (nor room)
            logger.error("Roster %s stopped: the disk is full", name)
            error = disk_full(full, settings.output_dir)
            return RosterOutcome(file=name, status=RosterStatus.FAILED, message=str(error),
                                 reason="the disk is full")
        recorded = record_crash(drop.path, settings.output_dir, exc)
        logger.error("Roster %s stopped: %s", name, recorded)
        return crash_outcome(drop.path, recorded)


def _reject_link(drop: drop_folder.DropFile, settings: Settings) -> RosterOutcome:
    """Move a symbolic link (the link, never what it points to) to input/rejected/."""
    try:
        target = drop_folder.move_rejected(
            drop.path, settings.input_dir, datetime.now().astimezone(), [drop.reason]
        )
    except FileNotFoundError:  # another run moved it meanwhile
        return RosterOutcome(file=drop.path.name, status=RosterStatus.BUSY,
                             message="another run moved it")
    get_run_logger().warning("%s is a symbolic link: moved to %s", drop.path.name, target)
    return RosterOutcome(file=drop.path.name, status=RosterStatus.REJECTED, message=drop.reason,
                         output=str(target), reason="a symbolic link, not a roster file",
                         problems=str(target.with_name(target.name + ".problems.txt")))
