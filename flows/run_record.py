"""What a run leaves behind (run.json, last-run.json), and how a later run knows a roster is
unchanged since.

Kept free of Prefect and Great Expectations on purpose: `advising run` asks these questions
before it starts either, so a nightly re-run of an unchanged roster costs a file hash and a
rename instead of seconds of server and library start-up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flows import drop_folder
from flows.errors import AdvisingError, RosterBusy
from flows.files import product_dir, roster_output_dir, sha256_file, write_atomic
from flows.outcome import RosterCounts, RosterOutcome, RosterStatus
from flows.settings import Settings, load_table
from residency_rules.calendar import Cycle, phase, season_key
from residency_rules.specialties import SpecialtyTable

RUN_JSON = "run.json"
LAST_RUN = "last-run.json"  # in output/.advising/: every file the last run found, and its fate


def fingerprint(settings: Settings, table: SpecialtyTable) -> str:
    """Digest everything besides the roster that shapes the outputs, to recognise a no-op re-run."""
    digest = hashlib.sha256()
    # The whole table, rules included: an office may edit a label without raising `version`.
    digest.update(repr(table).encode())
    for path in sorted(settings.templates_dir.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    relevant = settings.model_dump(
        exclude={"smtp_password", "input_dir", "output_dir", "today", "quiet_seconds",
                 "letter_batch"}
    )
    digest.update(json.dumps(relevant, sort_keys=True, default=str).encode())
    # The phase of the run date, for every match, picks the letters' plan (docs/rules.md, The
    # application calendar): a re-drop in a new phase is a new run; the date moving within a
    # phase is not.
    digest.update(season_key(settings.run_date(), settings.cycle(table)).encode())
    return digest.hexdigest()[:16]


def previous_run(out_dir: Path) -> dict[str, Any]:
    """Return the roster's last run.json, or {} when there is none or it cannot be read."""
    try:
        data = json.loads((out_dir / RUN_JSON).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def settle_if_unchanged(
    path: Path, settings: Settings, print_fp: str, sha: str | None = None
) -> RosterOutcome | None:
    """Move an identical re-drop to processed/ and say so; None when the roster needs a run.

    Identical means: same bytes, same table, templates and settings, and the last run finished
    with no failed email (a failed one must be retried). The caller holds the roster's lock.
    """
    out_dir = roster_output_dir(settings.output_dir, path)
    previous = previous_run(out_dir)
    if (
        previous.get("status") != "complete"
        or previous.get("fingerprint") != print_fp
        or RosterCounts.from_json(previous.get("counts")).emails_failed != 0
        # Letters waited for approval or were held: the office may have freed them since (#24).
        or RosterCounts.from_json(previous.get("counts")).waiting != 0
        or RosterCounts.from_json(previous.get("counts")).held_for_reason != 0
        or previous.get("input", {}).get("sha256") != (sha or sha256_file(path))
    ):
        return None
    moved = drop_folder.move_processed(path, settings.input_dir, datetime.now().astimezone())
    return RosterOutcome(
        file=path.name,
        status=RosterStatus.UNCHANGED,
        message=f"identical to the roster processed "
        f"{str(previous.get('end', ''))[:16].replace('T', ' ')}; no letter written or sent "
        f"again; roster kept in {moved.parent}",
        counts=RosterCounts.from_json(previous.get("counts")),
        output=str(out_dir),
        delivery=str(previous.get("delivery", "")),
    )


def settle_unchanged_drops(settings: Settings) -> tuple[list[RosterOutcome], bool]:
    """Settle every identical re-drop in the input folder without starting the flow.

    Returns the outcomes and whether anything is left for the flow to look at. Busy or
    not-yet-settled files are left in place: the flow reports them in its own words.
    """
    table = load_table(settings)
    print_fp = fingerprint(settings, table)
    outcomes: list[RosterOutcome] = []
    skipped: list[RosterOutcome] = []
    left = False
    for drop in drop_folder.scan(settings.input_dir, settings.quiet_seconds):
        if drop.kind == "skipped":
            skipped.append(RosterOutcome(file=drop.path.name, status=RosterStatus.SKIPPED,
                                         message=drop.reason))
            continue
        if not drop.ready or drop.path.suffix.lower() not in drop_folder.ROSTER_SUFFIXES:
            left = True
            continue
        try:
            with drop_folder.roster_lock(settings.output_dir, drop.path):
                if not drop.path.exists():  # another run finished it while we waited
                    continue
                outcome = settle_if_unchanged(drop.path, settings, print_fp)
        except RosterBusy:
            left = True
            continue
        if outcome is None:
            left = True
        else:
            outcomes.append(outcome)
    # When the flow runs, it lists the skipped files itself; otherwise they are listed here.
    return (outcomes if left else outcomes + skipped), left


def cycle_record(cycle: Cycle, today: date, warning: str) -> dict[str, Any]:
    """Describe the cycle the letters were written for, for run.json."""
    return {
        "name": cycle.name,
        "review_start": cycle.review_start.isoformat(),
        "rank_deadline": cycle.rank_deadline.isoformat(),
        "match_day": cycle.match_day.isoformat(),
        "confirmed": cycle.confirmed,
        "letters_written_for": today.isoformat(),
        "phase": phase(today, cycle),
        "stale": warning,
    }


def write_run_json(
    out_dir: Path, file: str, sha: str, rules_version: str, print_fp: str, delivery: str,
    counts: RosterCounts, timings: dict[str, float], started: datetime, ended: datetime,
    cycle: dict[str, Any],
) -> None:
    """Write run.json: what ran, on which input, with which rules; the no-op check reads it."""
    record = {
        "status": "complete",
        "input": {"file": file, "sha256": sha},
        "rules_version": rules_version,
        "fingerprint": print_fp,
        "delivery": delivery,
        "cycle": cycle,
        "counts": asdict(counts),
        "timings_seconds": timings,
        "start": started.isoformat(timespec="seconds"),
        "end": ended.isoformat(timespec="seconds"),
    }
    write_atomic(out_dir / RUN_JSON, json.dumps(record, indent=2).encode("utf-8"))


def write_run_summary(output_dir: Path, outcomes: list[RosterOutcome]) -> str | None:
    """Keep the whole run's summary, one entry per file in input/, in output/.advising/.

    run.json describes one roster; this says what became of every file the run found,
    skipped ones with the reason. Returns a sentence when it cannot be written (a full disk):
    the summary on the console and in Prefect must not be lost for it.
    """
    record = {
        "end": datetime.now().astimezone().isoformat(timespec="seconds"),
        "files": [
            {"file": o.file, "status": str(o.status), "message": o.message, "output": o.output}
            for o in outcomes
        ],
    }
    try:
        write_atomic(product_dir(output_dir) / LAST_RUN,
                     json.dumps(record, indent=2).encode("utf-8"))
    except AdvisingError as exc:
        return f"the run's summary was not kept: {exc}"
    return None


