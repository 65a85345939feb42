"""One `advising run`: settle identical re-drops, start what the flow needs, run it once.

The CLI calls `run_drop_folder` (once, or once per office of a consortium) and prints the
outcomes it gets back. An unchanged roster is settled here, before Prefect and Great
Expectations start: a nightly re-run of the same file costs a hash, not seconds of start-up.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

from flows.approval import prune_kept_rosters
from flows.delivery.ledger import ledger_path
from flows.drop_folder import entries
from flows.files import roster_output_dir
from flows.outcome import RosterOutcome, RosterStatus
from flows.run_record import RUN_JSON, settle_unchanged_drops, write_run_summary
from flows.runtime import TemporaryServer
from flows.settings import Office, Settings


@dataclass(frozen=True)
class RunResult:
    """What one run over a drop folder did, roster by roster, for the CLI to print."""

    settings: Settings
    outcomes: list[RosterOutcome] = field(default_factory=list)
    empty: bool = False  # no roster at all in the drop folder
    unkept: str = ""  # why output/.advising/last-run.json could not be written, if so
    pruned: int = 0  # rosters ADVISING_KEEP_PROCESSED_DAYS deleted from input/processed/


def run_drop_folder(
    settings: Settings, office: Office | None = None, overrides: dict[str, Any] | None = None,
) -> RunResult:
    """Run the flow over the drop folder once; the outcomes of every file it found.

    With an office of a consortium, its settings from the offices file go to the flow as they
    would from its deployment; overrides (the dry run's) go on top. Old kept rosters are
    pruned first (ADVISING_KEEP_PROCESSED_DAYS), so a night with nothing new prunes too.
    """
    pruned = prune_kept_rosters(settings, date.today())  # the clock's day, not ADVISING_TODAY
    listed = entries(settings.input_dir)
    if not any(d.kind != "skipped" for d in listed):
        skipped = [RosterOutcome(file=d.path.name, status=RosterStatus.SKIPPED, message=d.reason)
                   for d in listed]
        return RunResult(settings, skipped, empty=True, pruned=pruned,
                         unkept=write_run_summary(settings.output_dir, skipped) or "")
    settled, left = settle_unchanged_drops(settings)
    if not left:
        return RunResult(settings, settled, pruned=pruned,
                         unkept=write_run_summary(settings.output_dir, settled) or "")
    server = _start_services(temporary_home(settings.output_dir))
    from flows.pipeline import RunIncomplete, advising_run

    if server is not None:
        # The flow's first call imports Prefect's engine (~0.3 s): here, while the server starts.
        import prefect.flow_engine  # noqa: F401

        server.wait_ready()  # stopped at exit, once Prefect has flushed its logs to it
    try:
        with _no_heartbeats(server is not None):
            # A Failed flow state raises RunIncomplete here; otherwise the flow returns the list.
            given = {**(office.overrides if office else {}), **(overrides or {})}
            outcomes = cast(list[RosterOutcome], advising_run(
                str(settings.input_dir), str(settings.output_dir), given or None,
            ))
    except RunIncomplete as exc:
        outcomes = exc.outcomes
    return RunResult(settings, settled + outcomes, pruned=pruned)


def _no_heartbeats(temporary: bool) -> AbstractContextManager[object]:
    """Turn off flow-run heartbeats when the Prefect server lives only as long as this run.

    They tell a lasting server that a run died; a temporary one dies with the run. Their thread
    sleeps in 1 s steps and the flow waits for it at the end: half a second a run, on average.
    """
    if not temporary:
        return nullcontext()
    from prefect.settings import temporary_settings

    return temporary_settings(updates={"flows.heartbeat_frequency": None})


def temporary_home(output_dir: Path) -> Path:
    """Where the temporary Prefect server keeps its database: the product's own folder."""
    return output_dir / ".advising" / "prefect"


_STARTED: list[TemporaryServer | None] = []  # once a process, whichever office came first


def _start_services(home: Path) -> TemporaryServer | None:
    """Start the temporary Prefect server and Great Expectations side by side.

    Both take seconds; the server starts in a subprocess on the other core while this process
    imports GX and Prefect's client. With PREFECT_API_URL set, that server is used instead;
    otherwise TemporaryServer sets it, before anything imports Prefect. Once a process: the
    offices of a consortium run one after the other on the same server.
    """
    if _STARTED:
        return _STARTED[0]
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server = TemporaryServer(home)
    from flows.intake.validation import warm_up

    warm_up()
    _STARTED.append(server)
    return server


def dry_run(settings: Settings, office: Office | None = None) -> RunResult:
    """Run everything but sending and recording, on copies: what would go to whom.

    The ready rosters, each roster's run.json and the delivery ledger are copied into a
    temporary folder, and the flow runs there with delivery to its outbox (ADVISING_APPROVAL as
    the real run would apply it, no office note): the outcomes say which letters the real run
    would send, which would wait, which are unchanged. Nothing in input/ or output/ changes;
    the copies are removed.
    """
    with tempfile.TemporaryDirectory(prefix="advising-dry-run-") as tmp:
        root = Path(tmp)
        copy = settings.model_copy(update={"input_dir": root / "input",
                                           "output_dir": root / "output"})
        copy.input_dir.mkdir()
        for drop in entries(settings.input_dir):
            if drop.kind != "skipped":
                shutil.copy2(drop.path, copy.input_dir / drop.path.name)
                record = roster_output_dir(settings.output_dir, drop.path) / RUN_JSON
                if record.is_file():
                    target = roster_output_dir(copy.output_dir, drop.path) / RUN_JSON
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(record, target)
        ledger = ledger_path(settings.output_dir)
        if ledger.is_file():
            target = ledger_path(copy.output_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(ledger)) as src, closing(sqlite3.connect(target)) as dst:
                src.backup(dst)  # reads through the WAL: the ledger as it is now
        result = run_drop_folder(copy, office, {"delivery": "outbox", "office_email": "",
                                                "approval": settings.approval_mode()})
    return RunResult(settings, result.outcomes, empty=result.empty)
