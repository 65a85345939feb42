"""The `advising` command: parse, act through the stage packages, report; errors end here.

Heavy imports (Prefect, GX, pandas) stay inside the commands that need them, so `--help` and
`advising demo` start quickly, and the temporary Prefect server starts before Prefect imports.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import cast

from flows.run_record import RosterOutcome, RosterStatus, exit_status
from flows.runtime import TemporaryServer, apply_prefect_defaults, skip_final_collection
from flows.settings import Office, Settings, load_offices, load_settings
from residency_rules.errors import AdvisingError

EPILOG = """\
Settings come from ADVISING_* environment variables or a .env file in the current folder
(see README.md): delivery (outbox or smtp), the SMTP relay, allowed email domains, the date
programs start reviewing applications, the nightly schedule.
"""


RUN_EXIT_STATUS = """\
exit status (the Prefect flow run's state says the same: Completed or Failed):
  0  every letter was delivered (emailed, or written to the outbox), unchanged since the
     last one, or held for a row problem listed on the workbook's Problems sheet
  1  a roster was rejected (see input/rejected/*.problems.txt) or stopped (see its
     output/<roster>/error.log), a letter failed or is uncertain, or no student of a
     roster could get a letter (all held, e.g. ADVISING_ALLOWED_EMAIL_DOMAINS does not
     match the roster's addresses)
  2  a setting or the command line is wrong: the message says which and how to fix it
"""


def build_parser() -> argparse.ArgumentParser:
    """Describe every subcommand so `--help` alone teaches how to use the tool."""
    parser = argparse.ArgumentParser(
        prog="advising",
        description="Residency advising: turn the office's Excel roster into an annotated "
        "workbook and one advising letter per student.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="process every roster in the input folder once (what the nightly job does)",
        description="Process every roster (.xlsx/.xlsm) in the input folder once: validate it, "
        "apply the outlook rules, write output/<roster>/ (annotated workbook, letters, outbox, "
        "run.json), deliver the letters, and move the roster to input/processed/. "
        "Needs no Prefect server: a temporary one starts and stops with the run "
        "(export PREFECT_API_URL to record the run on your Prefect server instead).",
        epilog=RUN_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--input", type=Path, help="drop folder to read (default: input/)")
    run.add_argument("--output", type=Path, help="folder for the results (default: output/)")
    run.add_argument("--offices", type=Path, metavar="FILE",
                     help="a consortium: run every office of this TOML file once, one after "
                     "the other (default: ADVISING_OFFICES_FILE, if set)")
    run.add_argument("-v", "--verbose", action="store_true", help="also show Prefect's own log")

    check = sub.add_parser(
        "check",
        help="validate one roster and list its problems, changing nothing",
        description="Validate one roster without processing it: print every problem with its "
        "row, column, value and what to do. Exit status 1 when there are problems.",
    )
    check.add_argument("file", type=Path, help="the roster workbook (.xlsx or .xlsm)")

    template = sub.add_parser(
        "template",
        help="write a blank roster with the expected columns and dropdowns",
        description="Write a blank roster workbook the office can fill in: the expected headers, "
        "dropdown lists for results, specialties and grades, and an Instructions sheet.",
    )
    template.add_argument("path", type=Path, help="where to write it, e.g. roster-template.xlsx")

    demo = sub.add_parser(
        "demo",
        help="write a realistic synthetic roster into the input folder to try the product",
        description="Write a synthetic roster (made-up students: the real specialty mix, "
        "blanks, aliases, students without a Step 2 CK score, a few Step 1 failures).",
    )
    demo.add_argument("--students", type=int, default=150, help="how many students (default 150)")
    demo.add_argument("--out", type=Path, help="file to write (default: input/demo-roster.xlsx)")
    demo.add_argument("--seed", type=int, default=2027, help="random seed (same seed, same file)")

    uncertain = sub.add_parser(
        "uncertain",
        help="list letters whose sending was interrupted, and release them to be sent again",
        description="A run stopped while the relay was taking a letter (a crash, a dropped "
        "connection) cannot know whether it arrived, so that letter is never re-sent on its "
        "own. This lists them with their Message-ID: look each one up in the relay's log, and "
        "release those that did not arrive so the next run sends them.",
    )
    uncertain.add_argument("--release", nargs="+", metavar="STUDENT_ID",
                           help="send these students' letters again on the next run")
    uncertain.add_argument("--release-all", action="store_true",
                           help="send every uncertain letter again on the next run")
    uncertain.add_argument("--output", type=Path,
                           help="the output folder whose ledger to read (default: output/, "
                           "or ADVISING_OUTPUT_DIR)")

    specialties = sub.add_parser(
        "specialties",
        help="show the specialty table with its sources, or import this year's NRMP figures",
        description="Print the specialty table: tier, Step 2 CK marks, NRMP figures and family "
        "of every specialty, each with its source, and whether the NRMP figures were checked. "
        "With --import, replace the NRMP figures from a CSV typed from the office's copy of the "
        "report (columns: specialty, q1, median, q3, unmatched median); every row is checked "
        "first, and the table is written to ADVISING_SPECIALTY_TABLE with the date and a new "
        "version (the previous file is kept beside it).",
    )
    specialties.add_argument("--import", dest="import_file", type=Path, metavar="FILE.csv",
                             help="replace the NRMP figures from this CSV file")
    specialties.add_argument("--report", metavar="TEXT",
                             help='how letters cite the figures, e.g. "NRMP Charting Outcomes '
                             '2027, Table 5" (default: the table\'s current report)')

    deploy = sub.add_parser(
        "deploy",
        help="register one deployment per office of a consortium on a Prefect work pool",
        description="Read the offices file and, on the Prefect server in PREFECT_API_URL, "
        "create the process work pool if it is missing and register one deployment per "
        "office, named after it, with its cron schedule and time zone, its folders and "
        "settings, and at most one run at a time per office. Workers then take the runs: "
        "`prefect worker start --pool POOL` on any machine with the product installed and the "
        "office folders mounted at the same paths.",
    )
    deploy.add_argument("--work-pool", required=True, metavar="POOL",
                        help="the Prefect work pool (created as a process pool if missing)")
    deploy.add_argument("--offices", type=Path, metavar="FILE",
                        help="the offices file (default: ADVISING_OFFICES_FILE)")

    sub.add_parser(
        "serve",
        help="register the nightly schedule on the Prefect server and run it",
        description="Register the nightly flow with a cron schedule (ADVISING_SCHEDULE_CRON, "
        "default 02:00, in ADVISING_SCHEDULE_TIMEZONE) on the Prefect server in "
        "PREFECT_API_URL, then keep running to execute the scheduled runs.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a user mistake ends with a message and status 2, never a traceback."""
    args = build_parser().parse_args(argv)
    apply_prefect_defaults(getattr(args, "verbose", False))

    try:
        return int(COMMANDS[args.command](args))
    except AdvisingError as exc:
        print(f"advising {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advising: stopped; the next run resumes where this one ended.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`advising specialties | head`): nothing more to say to it.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


STATUS_WORDS = {
    RosterStatus.DONE: "processed",
    RosterStatus.UNCHANGED: "unchanged",
    RosterStatus.REJECTED: "REJECTED",
    RosterStatus.BUSY: "skipped",
    RosterStatus.FAILED: "STOPPED",
    RosterStatus.WAITING: "waiting",
    RosterStatus.SKIPPED: "skipped",
}


def run_once(
    input_dir: Path | None, output_dir: Path | None, office: Office | None = None
) -> int:
    """Run the flow over the drop folder once and print what happened, roster by roster.

    With an office of a consortium, its settings from the offices file go to the flow as they
    would from its deployment.
    """
    settings = office.settings if office else load_settings(
        **{k: v for k, v in (("input_dir", input_dir), ("output_dir", output_dir)) if v}
    )
    from flows.drop_folder import entries

    listed = entries(settings.input_dir)
    if not any(d.kind != "skipped" for d in listed):
        print(
            f"No roster in {settings.input_dir}/. Drop an .xlsx roster there, "
            "or run `advising demo` to create a sample one."
        )
        skipped = [RosterOutcome(d.path.name, RosterStatus.SKIPPED, d.reason) for d in listed]
        for outcome in skipped:
            report(outcome)
        _keep_summary(settings, skipped)
        return 0
    # An identical re-drop is settled here, before Prefect and GX start: seconds saved nightly.
    from flows.run_record import settle_unchanged_drops

    settled, left = settle_unchanged_drops(settings)
    for outcome in settled:
        report(outcome)
    if not left:
        _keep_summary(settings, settled)
        return 0
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
    for outcome in outcomes:
        report(outcome)
    return exit_status(settled + outcomes)


def _keep_summary(settings: Settings, outcomes: list[RosterOutcome]) -> None:
    """Write output/.advising/last-run.json when the flow (which writes it) did not start."""
    from flows.run_record import write_run_summary

    if (unkept := write_run_summary(settings.output_dir, outcomes)) is not None:
        print(f"advising run: {unkept}", file=sys.stderr)


def _no_heartbeats(temporary: bool) -> AbstractContextManager[object]:
    """Turn off flow-run heartbeats when the Prefect server lives only as long as this run.

    They tell a lasting server that a run died; a temporary one dies with the run. Their thread
    sleeps in 1 s steps and the flow waits for it at the end: half a second a run, on average.
    """
    if not temporary:
        return nullcontext()
    from prefect.settings import temporary_settings

    return temporary_settings(updates={"flows.heartbeat_frequency": None})


def run_offices(path: Path) -> int:
    """Run every office of a consortium once, one after the other, on one temporary server."""
    offices = load_offices(path)
    code = 0
    for office in offices:
        print(f"Office {office.name} ({office.settings.input_dir}):")
        code = max(code, run_once(None, None, office))
    return code


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


def report(outcome: RosterOutcome) -> None:
    """Print a roster's lines: on stderr when it stopped (IT's mail from cron shows it)."""
    stopped = outcome.status is RosterStatus.FAILED
    print(describe(outcome), file=sys.stderr if stopped else sys.stdout)


def describe(outcome: RosterOutcome) -> str:
    """Say in one or two lines what happened to a roster, for someone who is not a programmer."""
    # A name holding a line break or a control character is shown quoted: one line per file.
    name = outcome.file if outcome.file.isprintable() else repr(outcome.file)
    head = f"{name}: {STATUS_WORDS[outcome.status]}"
    c = outcome.counts
    if outcome.status is RosterStatus.UNCHANGED:
        rows = c.rows if c else 0
        return (
            f"{head}: {outcome.message}\n"
            f"  results of that run: {outcome.output}/  ({rows} students)"
        )
    if outcome.status is RosterStatus.DONE and c is not None:
        if outcome.delivery == "smtp":
            mail = (
                f"email: {c.emails_sent} sent, {c.emails_unchanged} "
                f"unchanged since the last letter, {c.emails_failed} failed"
            )
        else:
            mail = (
                f"outbox: {c.emails_sent} new .eml files, "
                f"{c.emails_unchanged} unchanged (nothing is sent in outbox mode)"
            )
        skipped = c.emails_skipped
        lines = [
            f"{head}: {c.rows} students, {c.evaluated} evaluated, "
            f"{c.at_risk} at risk (level 1-2, or pending at risk), {c.held_with_problems} "
            "held: see the Problems sheet",
            f"  letters: {c.letters_written} written; {mail}"
            + (f"; {skipped} without a usable address" if skipped else ""),
            f"  results: {outcome.output}/  (roster {outcome.message})",
        ]
        if outcome.notice:
            lines.append(f"  cycle: {outcome.notice} Letters were still written.")
        why = outcome.attention()
        if why:
            lines.append(f"  needs attention: {why}")
        return "\n".join(lines)
    if outcome.status is RosterStatus.REJECTED:
        return (f"{head}: {outcome.message}\n  moved to {outcome.output}; "
                f"why: {outcome.problems or 'the .problems.txt beside it'}")
    return f"{head}: {outcome.message}"


def check(file: Path) -> int:
    """Validate one roster, print its problems, and exit 1 when there are any."""
    from flows.intake.validation import check_file, format_problems
    from flows.run_record import load_table
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
    from flows.intake.template import write_template
    from flows.run_record import load_table

    if path.exists():
        raise AdvisingError(f"{path} already exists; choose another name (nothing was overwritten)")
    write_template(path, load_table(load_settings()))
    print(f"Wrote a blank roster to {path}. Fill one row per student, then drop it into input/.")
    return 0


def demo(students: int, out: Path | None, seed: int) -> int:
    """Write the synthetic roster into the drop folder."""
    from flows.intake.demo import write_demo_roster

    if students < 1:
        raise AdvisingError("--students must be at least 1")
    target = out or load_settings().input_dir / "demo-roster.xlsx"
    write_demo_roster(target, students, seed)
    print(
        f"Wrote {students} made-up students to {target}. "
        "Run `advising run` to process it."
    )
    return 0


def uncertain(release: list[str] | None, release_all: bool, output: Path | None = None) -> int:
    """List the uncertain letters, or release some or all of them to be sent again."""
    from flows.delivery.ledger import Ledger
    from flows.run_record import ledger_path

    path = ledger_path(load_settings(**({"output_dir": output} if output else {})).output_dir)
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


def specialties(import_file: Path | None, report: str | None) -> int:
    """Print the specialty table, or replace its NRMP figures from the office's CSV."""
    from flows.run_record import load_table
    from residency_rules.specialties import PACKAGED_ORIGIN, describe_table

    settings = load_settings()
    if import_file is None:
        if report is not None:
            raise AdvisingError("--report goes with --import FILE.csv; nothing was changed")
        where = settings.specialty_table
        read_from = (
            f"{where} (ADVISING_SPECIALTY_TABLE)" if where is not None
            else f"{PACKAGED_ORIGIN}, the table shipped with the product "
            "(ADVISING_SPECIALTY_TABLE is not set)"
        )
        print(describe_table(load_table(settings), read_from))
        return 0
    return _import_nrmp(import_file, report, settings)


def _import_nrmp(import_file: Path, report: str | None, settings: Settings) -> int:
    """Check the CSV, rewrite the office's table, keep the previous file beside it."""
    from flows.files import write_atomic
    from residency_rules.explain import when
    from residency_rules.nrmp_import import apply_nrmp_import, read_nrmp_csv
    from residency_rules.specialties import nrmp_citation, packaged_text, parse_table

    target = settings.specialty_table
    if target is None:
        # The shipped file lives inside the installed package: an update replaces it, and runs
        # would not know an office edit from ours. The office's table is its own file.
        raise AdvisingError(
            "ADVISING_SPECIALTY_TABLE is not set, so runs use the table shipped with the "
            "product, and an import never changes that file. Set it to where the office keeps "
            "its own table (for example ADVISING_SPECIALTY_TABLE=office/specialties.toml in "
            ".env): the import creates that file from the shipped table. Nothing was written."
        )
    if report is not None and not report.strip():
        raise AdvisingError("--report is blank; name the report, e.g. \"NRMP Charting "
                            "Outcomes 2027, Table 5\". Nothing was written.")
    csv_text = _read_csv(import_file)
    created = not target.exists()
    try:
        base = packaged_text() if created else target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdvisingError(
            f"ADVISING_SPECIALTY_TABLE: cannot read {target} ({exc}); fix the path or the "
            "file. Nothing was written."
        ) from None
    table = parse_table(base, str(target))
    rows = read_nrmp_csv(csv_text, str(import_file), table)
    checked_on = settings.run_date()
    result = apply_nrmp_import(base, str(target), rows, checked_on, report)
    kept = None
    if not created:
        kept = _free_name(target, result.old_version)
        write_atomic(kept, base.encode("utf-8"))
    write_atomic(target, result.text.encode("utf-8"))
    print(
        f"Imported the NRMP figures of {len(rows)} specialties from {import_file}, checked on "
        f"{when(checked_on)}."
    )
    if created:
        print(f"Wrote {target}, the office's table, from the shipped one: version "
              f"{result.old_version} -> {result.table.version}.")
    else:
        print(f"Wrote {target}: version {result.old_version} -> {result.table.version} "
              f"(the previous file is kept as {kept}).")
    print(f'Letters now cite: "{nrmp_citation(result.table)}".')
    if report is None:
        print('  Another edition of the report? Import again with --report "NRMP Charting '
              'Outcomes 2027, Table 5" (its name as letters should cite it).')
    if result.dropped:
        print(
            "No NRMP figures now for (no row in the file; letters show none for them): "
            + ", ".join(result.dropped)
        )
    return 0


def _read_csv(path: Path) -> str:
    """Read the office's CSV: UTF-8 as Excel's "CSV UTF-8" writes it, else Windows-1252."""
    if not path.is_file():
        raise AdvisingError(f"{path}: no such file; give the path of the CSV with the NRMP "
                            "figures. Nothing was written.")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _free_name(target: Path, version: str) -> Path:
    """Name the copy of the previous table after its version, never over an older copy."""
    candidate = target.with_name(f"{target.stem}.{version}{target.suffix}")
    n = 2
    while candidate.exists():
        candidate = target.with_name(f"{target.stem}.{version}-{n}{target.suffix}")
        n += 1
    return candidate


def serve() -> int:
    """Register the nightly deployment on the configured Prefect server and run its schedule."""
    from flows.runtime import serve_nightly  # imports the flow, and so Prefect

    return serve_nightly(load_settings())


def cmd_run(args: argparse.Namespace) -> int:
    """Process the drop folder (or every office's) once and print a short human summary."""
    offices = args.offices
    if offices is None and not (args.input or args.output):
        offices = load_settings().offices_file
    if offices is not None:
        if args.input or args.output:
            raise AdvisingError("--input and --output go without --offices: each office's "
                                "folders are in the offices file")
        code = run_offices(offices)
    else:
        code = run_once(args.input, args.output)
    skip_final_collection()  # the process ends next
    return code


def cmd_check(args: argparse.Namespace) -> int:
    """Validate one file and print its problems as a table."""
    return check(args.file)


def cmd_template(args: argparse.Namespace) -> int:
    """Write the blank roster template."""
    return template(args.path)


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the synthetic demo roster."""
    return demo(args.students, args.out, args.seed)


def cmd_specialties(args: argparse.Namespace) -> int:
    """Print the specialty table, or import the NRMP figures."""
    return specialties(args.import_file, args.report)


def cmd_serve(args: argparse.Namespace) -> int:
    """Register and serve the nightly deployment."""
    return serve()


def cmd_deploy(args: argparse.Namespace) -> int:
    """Register one deployment per office on the work pool."""
    from flows.runtime import deploy_offices  # imports the flow, and so Prefect

    path = args.offices or load_settings().offices_file
    if path is None:
        raise AdvisingError("name the offices file: --offices FILE, or ADVISING_OFFICES_FILE")
    return deploy_offices(load_offices(path), args.work_pool)


def cmd_uncertain(args: argparse.Namespace) -> int:
    """List or release letters whose delivery is uncertain."""
    return uncertain(args.release, args.release_all, args.output)


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "template": cmd_template,
    "demo": cmd_demo,
    "uncertain": cmd_uncertain,
    "specialties": cmd_specialties,
    "deploy": cmd_deploy,
    "serve": cmd_serve,
}

if __name__ == "__main__":
    sys.exit(main())
