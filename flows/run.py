"""One `advising run`: settle identical re-drops, start what the flow needs, run it once.

The CLI calls `run_drop_folder` (once, or once per office of a consortium) and prints the
outcomes it gets back. An unchanged roster is settled here, before Prefect and Great
Expectations start: a nightly re-run of the same file costs a hash, not seconds of start-up.
"""

from __future__ import annotations

import functools
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import cast

from flows.drop_folder import entries
from flows.outcome import RosterOutcome, RosterStatus
from flows.run_record import settle_unchanged_drops, write_run_summary
from flows.runtime import TemporaryServer
from flows.settings import Office, Settings


@dataclass(frozen=True)
class RunResult:
    """What one run over a drop folder did, roster by roster, for the CLI to print."""

    settings: Settings
    outcomes: list[RosterOutcome] = field(default_factory=list)
    empty: bool = False  # no roster at all in the drop folder
    unkept: str = ""  # why output/.advising/last-run.json could not be written, if so


def run_drop_folder(settings: Settings, office: Office | None = None) -> RunResult:
    """Run the flow over the drop folder once; the outcomes of every file it found.

    With an office of a consortium, its settings from the offices file go to the flow as they
    would from its deployment.
    """
    listed = entries(settings.input_dir)
    if not any(d.kind != "skipped" for d in listed):
        skipped = [RosterOutcome(file=d.path.name, status=RosterStatus.SKIPPED, message=d.reason)
                   for d in listed]
        return RunResult(settings, skipped, empty=True,
                         unkept=write_run_summary(settings.output_dir, skipped) or "")
    settled, left = settle_unchanged_drops(settings)
    if not left:
        return RunResult(settings, settled,
                         unkept=write_run_summary(settings.output_dir, settled) or "")
    server = _start_services()
    from flows.pipeline import RunIncomplete, advising_run

    if server is not None:
        # The flow's first call imports Prefect's engine (~0.3 s): here, while the server starts.
        import prefect.flow_engine  # noqa: F401

        server.wait_ready()  # stopped at exit, once Prefect has flushed its logs to it
    try:
        with _no_heartbeats(server is not None):
            # A Failed flow state raises RunIncomplete here; otherwise the flow returns the list.
            outcomes = cast(list[RosterOutcome], advising_run(
                str(settings.input_dir), str(settings.output_dir),
                office.overrides if office else None,
            ))
    except RunIncomplete as exc:
        outcomes = exc.outcomes
    return RunResult(settings, settled + outcomes)


def _no_heartbeats(temporary: bool) -> AbstractContextManager[object]:
    """Turn off flow-run heartbeats when the Prefect server lives only as long as this run.

    They tell a lasting server that a run died; a temporary one dies with the run. Their thread
    sleeps in 1 s steps and the flow waits for it at the end: half a second a run, on average.
    """
    if not temporary:
        return nullcontext()
    from prefect.settings import temporary_settings

    return temporary_settings(updates={"flows.heartbeat_frequency": None})


@functools.cache
def _start_services() -> TemporaryServer | None:
    """Start the temporary Prefect server and Great Expectations side by side.

    Both take seconds; the server starts in a subprocess on the other core while this process
    imports GX and Prefect's client. With PREFECT_API_URL set, that server is used instead;
    otherwise TemporaryServer sets it, before anything imports Prefect. Once a process: the
    offices of a consortium run one after the other on the same server.
    """
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server = TemporaryServer()
    from flows.intake.validation import warm_up

    warm_up()
    return server
