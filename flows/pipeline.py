"""The nightly flow: every roster in the drop folder, through each stage, as Prefect tasks.

Tasks are stages (ingest, validate, evaluate, render, deliver, write); per-student work is
batched inside them, never a task of its own. Logs carry counts and student IDs only.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows import drop_folder, intake
from flows.delivery import (
    DeliveryReport,
    Ledger,
    check_delivery_settings,
    deliver,
    resolve_smtp_password,
)
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
from flows.run_record import (
    RosterOutcome,
    RosterStatus,
    count_roster,
    fingerprint,
    ledger_path,
    load_table,
    record_crash,
    settle_if_unchanged,
    write_run_json,
    write_run_summary,
)
from flows.runtime import gc_paused, gc_skips_old
from flows.settings import Settings, load_settings
from flows.workbook import LetterCell, annotated_path, write_annotated
from residency_rules.errors import AdvisingError, RosterError
from residency_rules.records import Evaluation, StudentRecord
from residency_rules.rules import evaluate_all
from residency_rules.specialties import SpecialtyTable


class RunIncomplete(AdvisingError):
    """At least one roster stopped; carries every roster's outcome for the summary."""

    def __init__(self, outcomes: list[RosterOutcome]) -> None:
        stopped = [o.file for o in outcomes if o.status is RosterStatus.FAILED]
        super().__init__(f"{len(stopped)} roster(s) stopped: {', '.join(stopped)}")
        self.outcomes = outcomes


# Stage tasks: each a few lines calling the domain or an I/O module. No caching: inputs are
# large in-memory records, and a nightly run must always look at today's file. Large
# arguments are passed quote()d: otherwise Prefect walks every record of every argument
# looking for upstream futures, which cost more than the stages themselves at 100k students.
@task(name="ingest", cache_policy=NO_CACHE)
def ingest_stage(path: Path, settings: Settings, table: SpecialtyTable) -> Roster:
    """Read the roster workbook into normalised records and row problems."""
    return intake.ingest(path, settings, table)


@task(name="validate", cache_policy=NO_CACHE)
def validate_stage(
    roster: Roster, settings: Settings, table: SpecialtyTable, docs_dir: Path
) -> Roster:
    """Run the Great Expectations suite and hold every row with a problem."""
    return intake.validate(roster, settings, table, docs_dir)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_stage(roster: Roster, settings: Settings, table: SpecialtyTable) -> list[Evaluation]:
    """Apply the outlook rules to every row that passed validation."""
    with gc_paused():
        return evaluate_all(
            roster.records, table, review_start=settings.review_start, today=settings.run_date()
        )


@task(name="render letters", cache_policy=NO_CACHE)
def render_stage(
    records: list[StudentRecord],
    by_id: dict[str, Evaluation],
    table: SpecialtyTable,
    settings: Settings,
    previous: dict[str, LetterSummary],
    letters_dir: Path,
    pool: RenderPool | None,
) -> list[Letter]:
    """Render a batch of letters to disk first, so sending is a separate, resumable step."""
    if pool is None:
        return render_letters(records, by_id, table, settings, previous, letters_dir)
    return pool.submit(records, by_id, table, settings, previous, letters_dir).result()


@task(name="deliver", cache_policy=NO_CACHE)
def deliver_stage(
    letters: list[Letter], settings: Settings, ledger: Ledger, outbox_dir: Path
) -> DeliveryReport:
    """Hand the letters to the outbox or the relay; the ledger skips what was already sent."""
    return deliver(letters, settings, ledger, outbox_dir, resolve_smtp_password(settings))


@task(name="write workbook", cache_policy=NO_CACHE)
def workbook_stage(
    roster: Roster,
    evaluations: list[Evaluation],
    report: DeliveryReport,
    out_path: Path,
) -> None:
    """Write the office's workbook back with annotations, a Summary and a Problems sheet."""
    by_id = {e.student_id: e for e in evaluations}
    held = roster.held_rows()
    cells: dict[str, LetterCell] = {}
    for row, sid in roster.row_ids.items():
        if row in held or sid not in by_id:
            cells[sid] = LetterCell("Held: see Problems", None)
        else:
            cells[sid] = LetterCell(
                report.status.get(sid, "Written"), f"letters/{student_file_stem(sid)}.html"
            )
    write_annotated(roster, by_id, cells, out_path)


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
            args = (quote(batch), quote(by_id), quote(table), settings, quote(previous),
                    staging)
            if elsewhere is None:
                return render_stage(*args, None)
            return render_stage.submit(*args, quote(elsewhere))

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
                    part = deliver_stage(quote(letters), settings, ledger, out_dir / "outbox")
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
    try:
        with _timed(timings, "ingest"):
            roster = ingest_stage(path, settings, quote(table))
    except RosterError as exc:
        target = drop_folder.move_rejected(path, settings.input_dir, started, exc.problems)
        logger.warning("Roster %s rejected: moved to %s", path.name, target)
        return RosterOutcome(path.name, RosterStatus.REJECTED, str(exc), None, str(target))
    # The render process takes a second to start: it starts now, while validation runs.
    with (RenderPool() if len(roster.records) > LETTER_BATCH else nullcontext()) as pool:
        with _timed(timings, "validate"):
            roster = validate_stage(quote(roster), settings, quote(table), out_dir / "validation")
        with _timed(timings, "evaluate"):
            evaluations = evaluate_stage(quote(roster), settings, quote(table))
        set_aside()
        # Letters are written into a hidden folder, swapped in once every batch is rendered.
        staging = drop_folder.staging_dir(out_dir / "letters")
        report, written = _letters_and_delivery(
            roster.records, evaluations, table, settings, staging, out_dir, pool, timings
        )
    with _timed(timings, "letters"):
        remover = drop_folder.publish_dir(staging, out_dir / "letters")
    with _timed(timings, "workbook"):
        workbook_stage(quote(roster), quote(evaluations), quote(report),
                       annotated_path(roster, out_dir))
    if remover is not None:
        remover.join()

    counts = count_roster(roster, evaluations, report, written)
    ended = datetime.now().astimezone()
    write_run_json(out_dir, path.name, sha, table.version, print_fp, settings.delivery, counts,
                   timings, started, ended)
    moved = drop_folder.move_processed(path, settings.input_dir, ended)
    logger.info(
        "Roster %s: %d rows, %d evaluated, %d held, %d letters, %d sent, %d unchanged, %d failed",
        path.name, counts.rows, counts.evaluated, counts.held_with_problems,
        counts.letters_written, counts.emails_sent, counts.emails_unchanged, counts.emails_failed,
    )
    return RosterOutcome(path.name, RosterStatus.DONE, f"kept in {moved.parent}", counts,
                         str(out_dir), settings.delivery)


@flow(name="advising-nightly", log_prints=False)
def advising_run(
    input_dir: str | None = None, output_dir: str | None = None
) -> list[RosterOutcome]:
    """Process every ready roster in the drop folder once (what the nightly schedule runs)."""
    overrides: dict[str, Any] = {}
    if input_dir:
        overrides["input_dir"] = Path(input_dir)
    if output_dir:
        overrides["output_dir"] = Path(output_dir)
    settings = load_settings(**overrides)
    check_delivery_settings(settings)  # a wrong relay setting stops the run before any work
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
            outcomes.append(RosterOutcome(drop.path.name, RosterStatus.FAILED, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one roster's bug must not stop the others
            if (full := no_space(exc)) is not None:  # not a bug: no error.log (nor room)
                outcomes.append(_disk_full(drop.path, full, settings))
                logger.error("Roster %s stopped: the disk is full", drop.path.name)
                continue
            outcomes.append(record_crash(drop.path, settings.output_dir, exc))
            logger.error(
                "Roster %s stopped by an unexpected %s; see its error.log",
                drop.path.name, type(exc).__name__,
            )
    _publish_artifact(outcomes)
    if (unkept := write_run_summary(settings.output_dir, outcomes)) is not None:
        logger.warning("%s", unkept)
    if any(o.status is RosterStatus.FAILED for o in outcomes):
        # Fail the flow run, so IT sees it in Prefect, while the CLI still reports every roster.
        raise RunIncomplete(outcomes)
    return outcomes


def _disk_full(path: Path, exc: OSError, settings: Settings) -> RosterOutcome:
    """Say in one sentence that a library's write found the disk full, and what to do."""
    where = exc.filename or settings.output_dir
    return RosterOutcome(
        path.name, RosterStatus.FAILED,
        f"stopped: the disk is full ({exc.strerror or exc}, writing {where}); free space and "
        "run again: the roster stays in the input folder, no file is left half-written, and "
        "no letter already delivered goes out twice",
    )


def _reject_link(drop: drop_folder.DropFile, settings: Settings) -> RosterOutcome:
    """Move a symbolic link (the link, never what it points to) to input/rejected/."""
    try:
        target = drop_folder.move_rejected(
            drop.path, settings.input_dir, datetime.now().astimezone(), [drop.reason]
        )
    except FileNotFoundError:  # another run moved it meanwhile
        return RosterOutcome(drop.path.name, RosterStatus.BUSY, "another run moved it")
    get_run_logger().warning("%s is a symbolic link: moved to %s", drop.path.name, target)
    return RosterOutcome(drop.path.name, RosterStatus.REJECTED, drop.reason, None, str(target))


def _publish_artifact(outcomes: list[RosterOutcome]) -> None:
    """Publish a per-run summary table to Prefect: counts only, never names, scores or grades."""
    lines = [
        "| roster | status | rows | evaluated | held | L1 | L2 | L3 | L4 | L5 | letters "
        "| sent | unchanged | failed |",
        "|---" * 14 + "|",
    ]
    for o in outcomes:
        c = o.counts
        # A file name is the office's text: a "|" or a line break must not break the table.
        file = (o.file if o.file.isprintable() else repr(o.file)).replace("|", "\\|")
        if c is None:
            lines.append(f"| {file} | {o.status} |" + " |" * 12)
            continue
        lv = c.by_outlook_level
        lines.append(
            f"| {file} | {o.status} | {c.rows} | {c.evaluated} | {c.held_with_problems} | "
            + " | ".join(str(lv.get(str(k), 0)) for k in range(1, 6))
            + f" | {c.letters_written} | {c.emails_sent} | {c.emails_unchanged} "
            f"| {c.emails_failed} |"
        )
    if not outcomes:
        lines.append("| (no roster in the input folder) | | | | | | | | | | | | | |")
    create_markdown_artifact("\n".join(lines), key="advising-run-summary",
                             description="Rosters processed in this run (counts only)")
