"""The `advising` command: a thin edge over the flows; the one place errors become messages."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Prefect reads these when it is imported, so they are set before any Prefect import below.
# pyproject.toml's [tool.prefect] holds the same for runs started from the project folder.
PREFECT_DEFAULTS = {
    # The temporary server's telemetry job logs "database is locked" on SQLite.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The default batch of 1 loses task runs at shutdown, with CancelledError tracebacks.
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "1000",
    # Keep the console for our own short summary; Prefect's records still go to its API.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}

EPILOG = """\
Settings come from ADVISING_* environment variables or a .env file in the current folder
(see README.md): delivery (outbox or smtp), the SMTP relay, allowed email domains, the date
programs start reviewing applications, the nightly schedule.
"""


def _prefect_defaults(verbose: bool) -> None:
    for key, value in PREFECT_DEFAULTS.items():
        if verbose and key.endswith(("CONSOLE_LEVEL", "SERVER_LOGGING_LEVEL")):
            continue
        os.environ.setdefault(key, value)


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
        "Needs no Prefect server: a temporary one starts and stops with the run.",
    )
    run.add_argument("--input", type=Path, help="drop folder to read (default: input/)")
    run.add_argument("--output", type=Path, help="folder for the results (default: output/)")
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
    _prefect_defaults(getattr(args, "verbose", False))
    from residency_rules.errors import AdvisingError

    try:
        return int(COMMANDS[args.command](args))
    except AdvisingError as exc:
        print(f"advising {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advising: stopped; the next run resumes where this one ended.", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    """Process the drop folder once and print a short human summary."""
    import gc

    from flows.commands import run_once

    code = run_once(args.input, args.output)
    # The process ends next: the interpreter's last full collection would walk every object of
    # Prefect, GX and pandas only to free memory the system takes back anyway (~1 s).
    gc.freeze()
    return code


def cmd_check(args: argparse.Namespace) -> int:
    """Validate one file and print its problems as a table."""
    from flows.commands import check

    return check(args.file)


def cmd_template(args: argparse.Namespace) -> int:
    """Write the blank roster template."""
    from flows.commands import template

    return template(args.path)


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the synthetic demo roster."""
    from flows.commands import demo

    return demo(args.students, args.out, args.seed)


def cmd_specialties(args: argparse.Namespace) -> int:
    """Print the specialty table, or import the NRMP figures."""
    from flows.commands import specialties

    return specialties(args.import_file, args.report)


def cmd_serve(args: argparse.Namespace) -> int:
    """Register and serve the nightly deployment."""
    from flows.commands import serve

    return serve()


def cmd_uncertain(args: argparse.Namespace) -> int:
    """List or release letters whose delivery is uncertain."""
    from flows.commands import uncertain

    return uncertain(args.release, args.release_all)


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "template": cmd_template,
    "demo": cmd_demo,
    "uncertain": cmd_uncertain,
    "specialties": cmd_specialties,
    "serve": cmd_serve,
}

if __name__ == "__main__":
    sys.exit(main())
