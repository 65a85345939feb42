"""What each CLI command does, as plain functions: the CLI parses, these act and report."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from flows.settings import load_settings
from flows.temporary_server import TemporaryServer
from residency_rules.errors import AdvisingError

STATUS_WORDS = {
    "done": "processed",
    "unchanged": "unchanged",
    "rejected": "REJECTED",
    "busy": "skipped",
    "failed": "STOPPED",
    "waiting": "waiting",
}


def run_once(input_dir: Path | None, output_dir: Path | None) -> int:
    """Run the flow over the drop folder once and print what happened, roster by roster."""
    settings = load_settings(
        **{k: v for k, v in (("input_dir", input_dir), ("output_dir", output_dir)) if v}
    )
    from flows.lifecycle import is_ignored

    folder = settings.input_dir
    if not folder.is_dir() or not any(
        p.is_file() and not is_ignored(p) for p in folder.iterdir()
    ):
        print(
            f"No roster in {settings.input_dir}/. Drop an .xlsx roster there, "
            "or run `advising demo` to create a sample one."
        )
        return 0
    # An identical re-drop is settled here, before Prefect and GX start: seconds saved nightly.
    from flows.run_record import settle_unchanged_drops

    settled, left = settle_unchanged_drops(settings)
    for outcome in settled:
        print(describe(outcome.__dict__))
    if not left:
        return 0
    server = _start_services()
    from flows.pipeline import RunIncomplete, advising_run

    if server is not None:
        # The flow's first call imports Prefect's engine (~0.3 s): here, while the server starts.
        import prefect.flow_engine  # noqa: F401

        server.wait_ready()  # stopped at exit, once Prefect has flushed its logs to it
    try:
        with _no_heartbeats(server is not None):
            outcomes = advising_run(str(settings.input_dir), str(settings.output_dir))
    except RunIncomplete as exc:
        for outcome in exc.outcomes:
            print(describe(outcome))
        return 1
    for outcome in outcomes:
        print(describe(outcome))
    return 1 if any(o["status"] == "rejected" for o in outcomes) else 0


def _no_heartbeats(temporary: bool) -> AbstractContextManager[object]:
    """Turn off flow-run heartbeats when the Prefect server lives only as long as this run.

    They tell a lasting server that a run died; a temporary one dies with the run. Their thread
    sleeps in 1 s steps and the flow waits for it at the end: half a second a run, on average.
    """
    if not temporary:
        return nullcontext()
    from prefect.settings import temporary_settings

    return temporary_settings(updates={"flows.heartbeat_frequency": None})


def _start_services() -> TemporaryServer | None:
    """Start the temporary Prefect server and Great Expectations side by side.

    Both take seconds; the server starts in a subprocess on the other core while this process
    imports GX and Prefect's client. With PREFECT_API_URL set, that server is used instead;
    otherwise TemporaryServer sets it, before anything imports Prefect.
    """
    from flows.temporary_server import TemporaryServer

    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server = TemporaryServer()
    from flows.validation import warm_up

    warm_up()
    return server


def describe(outcome: dict[str, Any]) -> str:
    """Say in one or two lines what happened to a roster, for someone who is not a programmer."""
    word = STATUS_WORDS.get(outcome["status"], outcome["status"])
    head = f"{outcome['file']}: {word}"
    c = outcome.get("counts") or {}
    if outcome["status"] == "unchanged":
        return (
            f"{head}: {outcome['message']}\n"
            f"  results of that run: {outcome['output']}/  ({c.get('rows', 0)} students)"
        )
    if outcome["status"] == "done" and c:
        levels = c.get("by_outlook_level", {})
        at_risk = levels.get("1", 0) + levels.get("2", 0) + c.get("pending_at_risk", 0)
        held = c.get("held_with_problems", 0)
        if outcome.get("delivery") == "smtp":
            mail = (
                f"email: {c.get('emails_sent', 0)} sent, {c.get('emails_unchanged', 0)} "
                f"unchanged since the last letter, {c.get('emails_failed', 0)} failed"
            )
        else:
            mail = (
                f"outbox: {c.get('emails_sent', 0)} new .eml files, "
                f"{c.get('emails_unchanged', 0)} unchanged (nothing is sent in outbox mode)"
            )
        skipped = c.get("emails_skipped", 0)
        lines = [
            f"{head}: {c.get('rows', 0)} students, {c.get('evaluated', 0)} evaluated, "
            f"{at_risk} at risk (level 1-2, or pending at risk), {held} held: see the Problems "
            "sheet",
            f"  letters: {c.get('letters_written', 0)} written; {mail}"
            + (f"; {skipped} without a usable address" if skipped else ""),
            f"  results: {outcome['output']}/  (roster {outcome['message']})",
        ]
        if c.get("cycle_warning"):
            lines.append(f"  cycle: {c['cycle_warning']} Letters were still written.")
        return "\n".join(lines)
    if outcome["status"] == "rejected":
        return f"{head}: {outcome['message']}\n  moved to {outcome['output']} with a .problems.txt"
    return f"{head}: {outcome['message']}"


def check(file: Path) -> int:
    """Validate one roster, print its problems, and exit 1 when there are any."""
    from flows.run_record import load_table
    from flows.validation import check_file, format_problems
    from residency_rules.errors import RosterError

    settings = load_settings()
    if not file.is_file():
        raise AdvisingError(f"{file}: no such file; give the path of a roster workbook (.xlsx)")
    try:
        roster = check_file(file, settings, load_table(settings))
    except RosterError as exc:
        print(f"{file}: cannot be read as a roster.")
        for problem in exc.problems:
            print(f"  - {problem}")
        return 1
    if not roster.problems:
        print(f"{file}: {len(roster.row_ids)} students, no problems found.")
        return 0
    held = len(roster.held_rows())
    print(
        f"{file}: {len(roster.row_ids)} students, {len(roster.problems)} problem(s); "
        f"{held} row(s) would be held (no letter) until fixed.\n"
    )
    print(format_problems(roster.problems))
    return 1


def template(path: Path) -> int:
    """Write a blank roster for the office to fill in."""
    from flows.run_record import load_table
    from flows.template import write_template

    if path.exists():
        raise AdvisingError(f"{path} already exists; choose another name (nothing was overwritten)")
    write_template(path, load_table(load_settings()))
    print(f"Wrote a blank roster to {path}. Fill one row per student, then drop it into input/.")
    return 0


def demo(students: int, out: Path | None, seed: int) -> int:
    """Write the synthetic roster into the drop folder."""
    from flows.demo import write_demo_roster

    if students < 1:
        raise AdvisingError("--students must be at least 1")
    target = out or load_settings().input_dir / "demo-roster.xlsx"
    write_demo_roster(target, students, seed)
    print(
        f"Wrote {students} made-up students to {target}. "
        "Run `advising run` to process it."
    )
    return 0


def uncertain(release: list[str] | None, release_all: bool) -> int:
    """List the uncertain letters, or release some or all of them to be sent again."""
    from flows.ledger import Ledger
    from flows.run_record import LEDGER_NAME

    path = load_settings().output_dir / LEDGER_NAME
    if not path.is_file():
        print("No letter has been delivered yet: nothing is uncertain.")
        return 0
    with Ledger(path) as ledger:
        if release_all or release:
            count = ledger.release_uncertain(None if release_all else release)
            print(f"Released {count} letter(s): the next run sends them.")
            return 0
        entries = ledger.uncertain()
    if not entries:
        print("No uncertain letter: every delivery finished one way or the other.")
        return 0
    print("Letters whose sending was interrupted (look up the Message-ID in the relay's log):")
    for entry in entries:
        print(f"  {entry.student_id}  {entry.message_id}  since {entry.updated_at}")
    print("Release those that did not arrive: advising uncertain --release STUDENT_ID ...")
    return 1


def serve() -> int:
    """Register the nightly deployment on the configured Prefect server and run its schedule."""
    from flows.schedule import serve_nightly

    return serve_nightly(load_settings())
