"""The `advising` command: parse, act through the stage packages, report; errors end here.

Heavy imports (Prefect, GX, pandas) stay inside the commands that need them, so `--help` and
`advising demo` start quickly, and the temporary Prefect server starts before Prefect imports.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from flows.errors import AdvisingError
from flows.outcome import RosterOutcome, RosterStatus, exit_status
from flows.report import describe
from flows.runtime import apply_prefect_defaults
from flows.settings import (
    check_folders,
    folder_problems,
    load_offices,
    load_settings,
    load_table,
    table_notice,
    unknown_settings,
)

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


def _version() -> str:
    """Name the installed version and the packaged rules' version (what support asks first)."""
    from importlib.metadata import PackageNotFoundError, version

    from residency_rules.specialties import load_default_table

    try:
        product = version("residency-advising")
    except PackageNotFoundError:
        product = "not installed"
    return f"advising {product}, rules {load_default_table().version}"


class _Version(argparse.Action):
    """--version, worked out only when asked (the rules' table is read then, not at start)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(_version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Describe every subcommand so `--help` alone teaches how to use the tool."""
    parser = argparse.ArgumentParser(
        prog="advising",
        description="Residency advising: turn the office's Excel roster into an annotated "
        "workbook and one advising letter per student.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the product's version and its rules' version, and exit")
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
    run.add_argument("--dry-run", action="store_true",
                     help="do everything but send and record, on copies: print what would go "
                     "to whom (counts and student IDs); input/ and output/ stay as they are")

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

    docs = sub.add_parser(
        "docs", help="list the documents shipped with this installation, or print one",
        description="List README and the rules document with where they are on this machine, "
        "or print one: `advising docs rules | less`.",
    )
    docs.add_argument("name", nargs="?", help="readme or rules")

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

    approve = sub.add_parser(
        "approve",
        help="approve a roster's waiting letters, so the next run sends them",
        description="Approve the letters of ROSTER that wait for the office (ADVISING_APPROVAL: "
        "read output/<roster>/review.html first). The ledger records who approved which letter "
        "and when; the next run sends exactly those, once. A letter that changes after its "
        "approval waits again. The roster goes back into the input folder for that run.",
    )
    approve.add_argument("roster", help="the roster's file name, e.g. class-2027.xlsx")
    approve.add_argument("--only", nargs="+", default=(), metavar="STUDENT_ID",
                         help="approve only these students' letters; the rest keep waiting")
    approve.add_argument("--hold", nargs="+", default=(), metavar="STUDENT_ID",
                         help="hold these students instead: nothing goes to them until released")
    hold = sub.add_parser("hold", help="hold students: no letter goes to them until released",
                          description="Hold students (by ID): the workbook and the review page "
                          "say so, and nothing is sent to them until `advising release`.")
    hold.add_argument("students", nargs="+", metavar="STUDENT_ID")
    release = sub.add_parser(
        "release", help="release held students (and their uncertain letters)",
        description="Release students held with `advising hold`, and letters of theirs whose "
        "sending was interrupted (after the relay's log shows they did not arrive).")
    release.add_argument("students", nargs="+", metavar="STUDENT_ID")
    test = sub.add_parser(
        "send-test", help="send one student's letter to the office, marked as a test",
        description="Send the latest letter of one student of ROSTER to an office address "
        "(ADVISING_OFFICE_EMAIL or an allowed domain), its subject marked as a test. It is not "
        "the student's delivery: nothing is recorded. In outbox mode the .eml is written under "
        "output/.advising/test/.")
    test.add_argument("roster", help="the roster's file name")
    test.add_argument("student", metavar="STUDENT_ID")
    test.add_argument("--to", required=True, metavar="ADDRESS", help="the office's address")

    again = sub.add_parser(
        "resend", help="send a student's last letter again (they deleted it), once",
        description="Send the last letter delivered to one student of ROSTER again, once per "
        "command, to the address in the roster; the ledger records it as a resend.")
    again.add_argument("roster", help="the roster's file name")
    again.add_argument("student", metavar="STUDENT_ID")

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
    specialties.add_argument("--data-file", action="store_true",
                             help="print the data file shipped with this version (TOML), to "
                             "start an office copy or to copy a table into one")
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
    if args.command in ("run", "check", "serve", "deploy"):
        for warning in unknown_settings():  # a misspelt setting would be silently ignored
            print(f"advising {args.command}: warning: {warning}", file=sys.stderr)

    try:
        if args.command in ("run", "check", "serve", "deploy"):
            _say_table_notice(args.command)
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


def _say_table_notice(command: str) -> None:
    """Load the office's data file at start: a broken one stops here (exit 2), an older copy is
    named with what it takes from the packaged file."""
    settings = load_settings()
    if settings.specialty_table is not None:
        notice = table_notice(load_table(settings), settings)
        if notice:
            print(f"advising {command}: note: {notice}", file=sys.stderr)


def report(outcome: RosterOutcome) -> None:
    """Print a roster's lines: on stderr when it stopped (IT's mail from cron shows it)."""
    stopped = outcome.status is RosterStatus.FAILED
    print(describe(outcome), file=sys.stderr if stopped else sys.stdout)


def print_dry_run(outcomes: Sequence[RosterOutcome], delivery: str) -> None:
    """Say what a real run would do with each roster: IDs and counts, no name, no score."""
    verb = "email" if delivery == "smtp" else "write to the outbox"
    print("Dry run: nothing was sent or recorded; input/ and output/ are unchanged.")
    for o in outcomes:
        if o.status is not RosterStatus.DONE or o.counts is None:
            print(describe(o).replace(" kept in ", " (a real run would keep it in "))
            continue
        d, c = o.digest, o.counts
        print(f"{o.file}: would {verb} {len(d.delivered)} letter(s): "
              f"{', '.join(d.delivered) or 'none'}")
        if d.waiting:
            print(f"  would wait for approval: {len(d.waiting)}: {', '.join(d.waiting)}")
        print(f"  unchanged (not sent again): {c.emails_unchanged}; held: {len(d.held)}"
              + (f" ({', '.join(d.held)})" if d.held else "")
              + (f"; without a usable address: {c.emails_skipped}" if c.emails_skipped else ""))


def cmd_run(args: argparse.Namespace) -> int:
    """Process the drop folder (or every office's) once and print what became of each roster."""
    from flows.run import dry_run, run_drop_folder

    offices = args.offices
    if offices is None and not (args.input or args.output):
        offices = load_settings().offices_file
    if offices is not None and (args.input or args.output):
        raise AdvisingError("--input and --output go without --offices: each office's "
                            "folders are in the offices file")
    outcomes: list[RosterOutcome] = []
    plan = ([(o, o.settings) for o in load_offices(offices)] if offices is not None else
            [(None, load_settings(**{k: v for k, v in (("input_dir", args.input),
                                                       ("output_dir", args.output)) if v}))])
    for _, settings in plan:  # every office's folders, before any roster is touched
        check_folders(settings)
    for office, settings in plan:
        if office is not None:
            print(f"Office {office.name} ({settings.input_dir}):")
        result = dry_run(settings, office) if args.dry_run else run_drop_folder(settings, office)
        if args.dry_run:
            print_dry_run(result.outcomes, settings.delivery)
            outcomes += result.outcomes
            continue
        if result.empty:
            print(f"No roster in {settings.input_dir}/. Drop an .xlsx roster there, "
                  "or run `advising demo` to create a sample one.")
        for outcome in result.outcomes:
            report(outcome)
        if result.pruned:
            from flows.approval import pruned_line

            print(pruned_line(result.pruned, settings))
        if result.unkept:
            print(f"advising run: {result.unkept}", file=sys.stderr)
        outcomes += result.outcomes
    return exit_status(outcomes)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate one roster, print its problems, and exit 1 when there are any."""
    from flows.errors import RosterError
    from flows.intake.columns import columns_read, format_columns
    from flows.intake.validation import check_file, format_problems

    file: Path = args.file
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
    where = f"sheet '{roster.sheet}', header on row {roster.header_row}"
    columns = format_columns(columns_read(roster))
    if not roster.problems:
        print(f"{file}: {len(roster.row_ids)} students, no problems found ({where}).")
        print(columns)
        return 0
    held = len(roster.held_rows())
    print(
        f"{file}: {len(roster.row_ids)} students, {len(roster.problems)} problem(s); "
        f"{held} row(s) would be held (no letter) until fixed ({where}).\n"
    )
    print(format_problems(roster.problems))
    print()
    print(columns)
    return 1


def cmd_template(args: argparse.Namespace) -> int:
    """Write a blank roster for the office to fill in."""
    from flows.intake.template import write_template

    path: Path = args.path
    if path.exists():
        raise AdvisingError(f"{path} already exists; choose another name (nothing was overwritten)")
    settings = load_settings()
    write_template(path, load_table(settings), settings.run_date())
    print(f"Wrote a blank roster to {path}. Fill one row per student, then drop it into input/.")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    """Name the shipped documents, or print one of them."""
    from flows.docs import doc_path, listing

    if args.name is None:
        print(listing())
        return 0
    print(doc_path(args.name).read_text(encoding="utf-8"), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the synthetic roster into the drop folder."""
    from flows.intake.demo import write_demo_roster

    if args.students < 1:
        raise AdvisingError("--students must be at least 1")
    settings = load_settings()
    target = args.out or settings.input_dir / "demo-roster.xlsx"
    write_demo_roster(target, args.students, args.seed)
    if args.out is None:  # the sample's folders, so that `advising run` finds both
        settings.output_dir.mkdir(parents=True, exist_ok=True)
    print(f"Wrote {args.students} made-up students to {target}. "
          "Run `advising run` to process it.")
    return 0


def cmd_uncertain(args: argparse.Namespace) -> int:
    """List the uncertain letters, or release some or all of them to be sent again."""
    from flows.delivery.ledger import Ledger, ledger_path

    settings = load_settings(**({"output_dir": args.output} if args.output else {}))
    path = ledger_path(settings.output_dir)
    if not path.is_file():
        print("No letter has been delivered yet: nothing is uncertain.")
        return 0
    with Ledger(path) as ledger:
        if args.release_all or args.release:
            count = ledger.release_uncertain(None if args.release_all else args.release)
            if count == 0 and not args.release_all:
                print("Nothing released: no letter of these students is uncertain; nothing "
                      "changed.")
                return 1
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


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a roster's waiting letters (the ledger records who and when)."""
    from flows.approval import approve

    done = approve(load_settings(), args.roster, only=tuple(args.only), hold=tuple(args.hold))
    print(f"Approved {len(done.approved)} letter(s) of {args.roster}: the next run sends them.")
    if done.held:
        print(f"Held {len(done.held)} student(s): {', '.join(done.held)}.")
    if done.left_waiting:
        print(f"Still waiting: {len(done.left_waiting)} letter(s).")
    if done.queued is not None:
        print(f"The roster is in {done.queued.parent} for the next run (`advising run` sends "
              "now).")
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    """Hold students: no letter until released."""
    from flows.approval import hold_students

    added, before = hold_students(load_settings(), tuple(args.students))
    if added:
        print(f"Held {len(added)} student(s): {', '.join(added)}. Nothing goes to them until "
              "`advising release`.")
    if before:
        print(f"Already held: {', '.join(before)}.")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Release held students and their uncertain letters; say when there was nothing to do."""
    from flows.approval import release_students

    held, uncertain = release_students(load_settings(), tuple(args.students))
    if held:
        print(f"Released {len(held)} held student(s): {', '.join(held)}; the next run sends "
              "their letters.")
    if uncertain:
        print(f"Released {uncertain} uncertain letter(s): the next run sends them.")
    rest = [sid for sid in args.students if sid not in held]
    if not held and not uncertain:
        print(f"Nothing to release: {', '.join(args.students)} neither held nor uncertain; "
              "nothing changed.")
        return 1
    if rest and not uncertain:
        print(f"Not held: {', '.join(rest)} (nothing changed for them).")
    return 0


def cmd_send_test(args: argparse.Namespace) -> int:
    """Send one letter to the office, marked as a test."""
    from flows.approval import send_test

    settings = load_settings()
    path = send_test(settings, args.roster, args.student, args.to)
    if path is not None:
        print(f"Wrote the test letter to {path} (outbox mode: nothing was sent).")
    else:
        print(f"Sent the test letter for {args.student} to {args.to}.")
    return 0


def cmd_resend(args: argparse.Namespace) -> int:
    """Send one student's last letter again, recorded as a resend."""
    from flows.approval import resend

    path = resend(load_settings(), args.roster, args.student)
    if path is not None:
        print(f"Wrote the letter again to {path} (outbox mode: nothing was sent).")
    else:
        print(f"Sent {args.student}'s last letter again; the ledger records the resend.")
    return 0


def cmd_specialties(args: argparse.Namespace) -> int:
    """Print the specialty table, or replace its NRMP figures from the office's CSV."""
    from residency_rules.explain import when
    from residency_rules.specialties import describe_table

    if args.data_file:
        from residency_rules.specialties import packaged_text

        print(packaged_text(), end="")
        return 0
    settings = load_settings()
    if args.import_file is None:
        if args.report is not None:
            raise AdvisingError("--report goes with --import FILE.csv; nothing was changed")
        where = settings.specialty_table
        read_from = (
            f"{where} (ADVISING_SPECIALTY_TABLE)" if where is not None
            else "the table shipped with the product (ADVISING_SPECIALTY_TABLE is not set; "
            "`advising specialties --data-file` prints it, to start an office copy)"
        )
        print(describe_table(load_table(settings), read_from))
        return 0
    from flows.table_import import import_nrmp

    done = import_nrmp(settings, args.import_file, args.report)
    print(f"Imported the NRMP figures of {done.rows} specialties from {args.import_file}, "
          f"checked on {when(done.checked_on)}.")
    if done.created:
        print(f"Wrote {done.target}, the office's table, from the shipped one: version "
              f"{done.old_version} -> {done.new_version}.")
    else:
        print(f"Wrote {done.target}: version {done.old_version} -> {done.new_version} "
              f"(the previous file is kept as {done.kept}).")
    print(f'Letters now cite: "{done.citation}".')
    if args.report is None:
        print('  Another edition of the report? Import again with --report "NRMP Charting '
              'Outcomes 2027, Table 5" (its name as letters should cite it).')
    if done.dropped:
        print("No NRMP figures now for (no row in the file; letters show none for them): "
              + ", ".join(done.dropped))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Register the nightly deployment on the configured Prefect server and run its schedule."""
    from flows.deployments import serve_nightly  # imports the flow, and so Prefect

    settings = load_settings()
    check_folders(settings)
    return serve_nightly(settings)


def cmd_deploy(args: argparse.Namespace) -> int:
    """Register one deployment per office on the work pool."""
    from flows.deployments import deploy_offices  # imports the flow, and so Prefect

    path = args.offices or load_settings().offices_file
    if path is None:
        raise AdvisingError("name the offices file: --offices FILE, or ADVISING_OFFICES_FILE")
    offices = load_offices(path)
    for office in offices:  # the workers may see other disks: said, not refused, here
        for problem in folder_problems(office.settings):
            print(f"advising deploy: warning: office {office.name}: {problem} (on this machine;"
                  " the office's worker must have it)", file=sys.stderr)
    return deploy_offices(offices, args.work_pool)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "check": cmd_check,
    "template": cmd_template,
    "demo": cmd_demo,
    "docs": cmd_docs,
    "uncertain": cmd_uncertain,
    "approve": cmd_approve,
    "hold": cmd_hold,
    "release": cmd_release,
    "send-test": cmd_send_test,
    "resend": cmd_resend,
    "specialties": cmd_specialties,
    "deploy": cmd_deploy,
    "serve": cmd_serve,
}

def entry(argv: Sequence[str] | None = None) -> int:
    """The `advising` program: main(), then the process ends without tearing itself down.

    Once main() has returned and every exit handler has run (Prefect's, which flush the run's
    logs to its server; the temporary server's stop), the interpreter would still free every
    module of Prefect, GX and pandas object by object, only to give the memory back to the
    system. The handler registered here, first so that it runs last, ends the process at that
    point with main()'s status, after flushing the console and the logs.
    Only here, where the process really ends: main() called in a process that goes on (a test,
    a worker) is left as it was. An exception out of main() ends the process the usual way.
    """
    status: list[int] = []
    atexit.register(_end_now, status)
    status.append(main(argv))
    return status[0]


def _end_now(status: list[int]) -> None:
    """End the process with main()'s status, once the exit handlers registered after this one
    have run; logging's own handler was registered before (at import) and is run here."""
    if not status:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed console (a pipe whose reader left) has nothing left to show
    os._exit(status[0])


if __name__ == "__main__":
    sys.exit(entry())
