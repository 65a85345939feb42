"""The nightly flow: every roster in the drop folder, through each stage, as Prefect tasks.

Tasks are stages (ingest, validate, evaluate, render, deliver, write); per-student work is
batched inside them, never a task of its own. Logs carry counts and student IDs only.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectConcurrentFuture
from prefect.utilities.annotations import quote

from flows import drop_folder, intake
from flows.delivery import (
    DeliveryReport,
    Ledger,
    check_delivery_settings,
    deliver,
    resolve_smtp_password,
)
from flows.delivery.office_note import send_office_note
from flows.intake import Roster
from flows.letters import Letter, LetterSummary, RenderPool, render_letters, with_bodies
from flows.letters.render import safe_filename
from flows.run_record import (
    LEDGER_NAME,
    RUN_JSON,
    RosterOutcome,
    fingerprint,
    load_table,
    settle_if_unchanged,
)
from flows.runtime import gc_paused, gc_skips_old
from flows.settings import Settings, load_settings
from flows.workbook import LetterCell, write_annotated
from residency_rules.errors import AdvisingError, RosterError
from residency_rules.records import Evaluation, StudentRecord
from residency_rules.rules import evaluate_all
from residency_rules.specialties import SpecialtyTable

LETTER_BATCH = 5000  # students rendered and delivered per batch


def batch_bounds(total: int, size: int, small_first: bool = False) -> list[tuple[int, int]]:
    """Split `total` students into batches of `size`; with small_first, a smaller first one.

    Delivery waits for the first batch, rendered here while the render process starts. When
    sending is the slow side (SMTP: ~0.8 ms a letter against ~0.35 to render), a smaller first
    batch lets it begin sooner and the process stays a batch ahead. To the outbox the two take
    about as long, and equal batches measured faster (20k: 25.5 s against 32.8 s, median of 3).
    """
    if total <= size:
        return [(0, total)] if total else []
    first = max(1, min(size, total // 10, 2000)) if small_first else size
    return [(0, first)] + [(i, min(i + size, total)) for i in range(first, total, size)]


class RunIncomplete(AdvisingError):
    """At least one roster stopped; carries every roster's outcome for the summary."""

    def __init__(self, outcomes: list[dict[str, Any]]) -> None:
        stopped = [o["file"] for o in outcomes if o["status"] == "failed"]
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
                report.status.get(sid, "Written"), f"letters/{safe_filename(sid)}.html"
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
    with Ledger(settings.output_dir / LEDGER_NAME) as ledger:

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
                _merge(report, deliver_stage(quote(letters), settings, ledger, out_dir / "outbox"))
            written += len(letters)
            del letters
    return report, written


def render_in_turn(
    count: int,
    here: Callable[[int], list[Letter]],
    there: Callable[[int], PrefectConcurrentFuture[list[Letter]]] | None,
    ahead: int = 2,
    share: bool = True,
) -> Iterator[list[Letter]]:
    """Yield every batch's letters, rendered here or by the render process, whichever is free.

    This process renders the first batch while the other one takes the last `ahead` and keeps
    that many queued, from the end. After each delivery this process takes the other's next
    batch if it is ready, else (with share) renders the next from the front itself: to the
    outbox, delivery is cheap and both processes render (a 20k run's letters and delivery
    8.6 -> 6.3 s). To a relay, sending is the slow side and this process's time is for it:
    without share, it waits for the other's batches, which then go in roster order.
    """
    todo = deque(range(count))
    away: deque[PrefectConcurrentFuture[list[Letter]]] = deque()

    def feed() -> None:
        while there is not None and todo and len(away) < ahead:
            away.append(there(todo.pop() if share else todo.popleft()))

    first = todo.popleft() if todo else None
    feed()
    if first is not None:
        yield here(first)
    while todo or away:
        if away and (not todo or not share or away[0].wrapped_future.done()):
            taken = away.popleft()
            feed()  # now, not after this batch is delivered: the other process must not idle
            yield taken.result()
        else:
            yield here(todo.popleft())


def process_roster(
    path: Path, settings: Settings, table: SpecialtyTable, print_fp: str,
    set_aside: Callable[[], None] = lambda: None,
) -> RosterOutcome:
    """Run one roster through every stage, under its lock; outputs land atomically.

    set_aside is called once the roster is evaluated: what lives from then on to the end
    (records, evaluations) may be kept out of garbage collection (_gc_skips_old).
    """
    logger = get_run_logger()
    started = datetime.now().astimezone()
    out_dir = settings.output_dir / path.stem
    run_json = out_dir / RUN_JSON
    timings: dict[str, float] = {}
    sha = drop_folder.sha256_of(path)

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
        return RosterOutcome(path.name, "rejected", str(exc), {}, str(target))

    # The render process takes a second to start: it starts now, while validation runs.
    with (RenderPool() if len(roster.records) > LETTER_BATCH else nullcontext()) as pool:
        with _timed(timings, "validate"):
            roster = validate_stage(quote(roster), settings, quote(table), out_dir / "validation")
        with _timed(timings, "evaluate"):
            evaluations = evaluate_stage(quote(roster), settings, quote(table))
        set_aside()
        # Letters are written into a hidden folder, swapped in once every batch is rendered.
        staging = drop_folder.staging_dir(out_dir / "letters")
        report, letters_written = _letters_and_delivery(
            roster.records, evaluations, table, settings, staging, out_dir, pool, timings
        )
    with _timed(timings, "letters"):
        remover = drop_folder.publish_dir(staging, out_dir / "letters")
    with _timed(timings, "workbook"):
        workbook_stage(
            quote(roster), quote(evaluations), quote(report),
            out_dir / f"{path.stem}-annotated{path.suffix}",
        )

    if remover is not None:
        remover.join()
    levels = Counter(e.level for e in evaluations)
    held = roster.held_rows()
    counts: dict[str, Any] = {
        "rows": len(roster.row_ids),
        "evaluated": len(evaluations),
        "held_with_problems": len(held),
        "problems": len(roster.problems),
        "by_outlook_level": {str(k): levels.get(k, 0) for k in range(1, 6)},
        "letters_written": letters_written,
        "emails_sent": report.sent,
        "emails_unchanged": report.unchanged,
        "emails_failed": report.failed,
        "emails_skipped": report.skipped,
    }
    ended = datetime.now().astimezone()
    record = {
        "status": "complete",
        "input": {"file": path.name, "sha256": sha},
        "rules_version": table.version,
        "fingerprint": print_fp,
        "delivery": settings.delivery,
        "counts": counts,
        "timings_seconds": timings,
        "start": started.isoformat(timespec="seconds"),
        "end": ended.isoformat(timespec="seconds"),
    }
    drop_folder.write_atomic(run_json, json.dumps(record, indent=2).encode("utf-8"))
    moved = drop_folder.move_processed(path, settings.input_dir, ended)
    logger.info(
        "Roster %s: %d rows, %d evaluated, %d held, %d letters, %d sent, %d unchanged, %d failed",
        path.name, counts["rows"], counts["evaluated"], counts["held_with_problems"],
        counts["letters_written"], report.sent, report.unchanged, report.failed,
    )
    return RosterOutcome(
        path.name, "done", f"kept in {moved.parent}", counts, str(out_dir), settings.delivery
    )


@flow(name="advising-nightly", log_prints=False)
def advising_run(
    input_dir: str | None = None, output_dir: str | None = None
) -> list[dict[str, Any]]:
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
        if not drop.ready:
            outcomes.append(RosterOutcome(drop.path.name, "waiting", drop.reason))
            continue
        try:
            with drop_folder.roster_lock(settings.output_dir, drop.path.stem), \
                    gc_skips_old() as set_aside:
                if not drop.path.exists():  # another run finished it while we waited
                    continue
                outcomes.append(process_roster(drop.path, settings, table, print_fp, set_aside))
        except drop_folder.RosterBusy:
            outcomes.append(RosterOutcome(drop.path.name, "busy", "another run is processing it"))
        except AdvisingError as exc:
            logger.error("Roster %s stopped: %s", drop.path.name, exc)
            outcomes.append(RosterOutcome(drop.path.name, "failed", str(exc)))
        except Exception as exc:  # noqa: BLE001 - one roster's bug must not stop the others
            outcomes.append(_crashed(drop.path, settings.output_dir, exc))
            logger.error(
                "Roster %s stopped by an unexpected %s; see its error.log",
                drop.path.name, type(exc).__name__,
            )
    _publish_artifact(outcomes)
    send_office_note(outcomes, settings)  # counts and IDs to ADVISING_OFFICE_EMAIL, if set
    result = [o.__dict__ for o in outcomes]
    if any(o.status == "failed" for o in outcomes):
        # Fail the flow run, so IT sees it in Prefect, while the CLI still reports every roster.
        raise RunIncomplete(result)
    return result


def _crashed(path: Path, output_dir: Path, exc: Exception) -> RosterOutcome:
    """Keep a bug's details for IT in the roster's output folder, out of the logs.

    The traceback may quote row values, so it goes to output/ (office eyes only), never to the
    console or Prefect. The roster stays in input/ and the next run starts it again.
    """
    import traceback

    log = output_dir / path.stem / "error.log"
    details = "".join(traceback.format_exception(exc))
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    drop_folder.write_atomic(log, f"{stamp} processing {path.name}\n{details}".encode())
    return RosterOutcome(
        path.name, "failed",
        f"stopped by an unexpected error ({type(exc).__name__}); the roster stays in the input "
        f"folder for the next run. Please send {log} to IT.",
    )


def _publish_artifact(outcomes: list[RosterOutcome]) -> None:
    """Publish a per-run summary table to Prefect: counts only, never names, scores or grades."""
    lines = [
        "| roster | status | rows | evaluated | held | L1 | L2 | L3 | L4 | L5 | letters "
        "| sent | unchanged | failed |",
        "|---" * 14 + "|",
    ]
    for o in outcomes:
        c = o.counts
        lv = c.get("by_outlook_level", {})
        lines.append(
            f"| {o.file} | {o.status} | {c.get('rows', '')} | {c.get('evaluated', '')} | "
            f"{c.get('held_with_problems', '')} | "
            + " | ".join(str(lv.get(str(k), "")) for k in range(1, 6))
            + f" | {c.get('letters_written', '')} | {c.get('emails_sent', '')} | "
            f"{c.get('emails_unchanged', '')} | {c.get('emails_failed', '')} |"
        )
    if not outcomes:
        lines.append("| (no roster in the input folder) | | | | | | | | | | | | | |")
    create_markdown_artifact("\n".join(lines), key="advising-run-summary",
                             description="Rosters processed in this run (counts only)")
