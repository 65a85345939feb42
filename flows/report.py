"""What a run says it did: the console's lines and the Prefect artifact, from the outcomes.

Both are composed from the typed RosterOutcome (its counts and digest), never from a file a
stage wrote. Counts, file names and student IDs only: no name, score or grade.
"""

from __future__ import annotations

from collections.abc import Sequence

from flows.outcome import RosterOutcome, RosterStatus, run_verdict
from residency_rules.specialties import SpecialtyTable

# How the console names what became of a roster.
STATUS_WORDS = {
    RosterStatus.DONE: "processed",
    RosterStatus.UNCHANGED: "unchanged",
    RosterStatus.REJECTED: "REJECTED",
    RosterStatus.BUSY: "skipped",
    RosterStatus.FAILED: "STOPPED",
    RosterStatus.WAITING: "waiting",
    RosterStatus.SKIPPED: "skipped",
}

# How the artifact and the log name what delivery did: nothing is sent in outbox mode.
DELIVERED = {"outbox": "written to outbox", "smtp": "emailed"}


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
                f"outbox: {c.outbox_written} new .eml files, "
                f"{c.emails_unchanged} unchanged (nothing is sent in outbox mode)"
            )
        skipped = c.emails_skipped
        lines = [
            f"{head}: {c.rows} students, {c.evaluated} evaluated, "
            f"{c.at_risk} at risk (the Summary lists them), {c.held_with_problems} "
            "held: see the Problems sheet",
            f"  letters: {c.letters_written} written; {mail}"
            + (f"; {skipped} without a usable address" if skipped else ""),
            f"  results: {outcome.output}/  (roster {outcome.message})",
        ]
        if outcome.columns:
            lines.insert(2, f"  {outcome.columns}")
        if c.held_for_reason:
            lines.append(
                f"  held back: {c.held_for_reason} letters for a reason of their own (no Match "
                "result yet, or held by the office): the Letter column says which")
        if c.waiting:
            lines.append(
                f"  approval: {c.waiting} new or changed letters wait for the office: read "
                f"{outcome.output}/review.html, then `advising approve {name}`")
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


def run_artifact(
    outcomes: Sequence[RosterOutcome], delivery: str, table: SpecialtyTable
) -> str:
    """Compose the per-run summary table Prefect shows: counts only, never names or scores.

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
                     c.delivered, c.emails_unchanged, c.emails_failed, see]
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
    return "\n".join(lines)


def _cell(value: object) -> str:
    """Put a value in a markdown table cell: one line, no column break."""
    return " ".join(str(value).split()).replace("|", "\\|")
