"""What a run leaves behind (run.json), and how a later run knows a roster is unchanged since.

Kept free of Prefect and Great Expectations on purpose: `advising run` asks these questions
before it starts either, so a nightly re-run of an unchanged roster costs a file hash and a
rename instead of seconds of server and library start-up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flows import lifecycle
from flows.settings import Settings
from residency_rules.calendar import phase
from residency_rules.errors import AdvisingError
from residency_rules.specialties import SpecialtyTable, load_default_table, parse_table

LEDGER_NAME = "delivery-ledger.sqlite"
RUN_JSON = "run.json"


@dataclass
class RosterOutcome:
    """What happened to one roster, for the CLI summary and the run artifact."""

    file: str
    status: str  # "done", "unchanged", "rejected", "busy", "failed", "waiting"
    message: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    delivery: str = ""


def load_table(settings: Settings) -> SpecialtyTable:
    """Load the office's edited specialty table when configured, else the packaged one."""
    if settings.specialty_table is None:
        return load_default_table()
    path = settings.specialty_table
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AdvisingError(
            f"ADVISING_SPECIALTY_TABLE: cannot read {path} ({exc.strerror}); "
            "fix the path or unset it to use the table shipped with the product"
        ) from None
    return parse_table(text, str(path))


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
        exclude={"smtp_password", "input_dir", "output_dir", "today", "quiet_seconds"}
    )
    digest.update(json.dumps(relevant, sort_keys=True, default=str).encode())
    # The phase of the run date picks the letters' plan (DESIGN.md 4a): a re-drop in a new
    # phase is a new run; the date moving within a phase is not.
    digest.update(phase(settings.run_date(), settings.cycle(table)).encode())
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
    out_dir = settings.output_dir / path.stem
    previous = previous_run(out_dir)
    if (
        previous.get("status") != "complete"
        or previous.get("fingerprint") != print_fp
        or previous.get("counts", {}).get("emails_failed", 0) != 0
        or previous.get("input", {}).get("sha256") != (sha or lifecycle.sha256_of(path))
    ):
        return None
    moved = lifecycle.move_processed(path, settings.input_dir, datetime.now().astimezone())
    return RosterOutcome(
        path.name, "unchanged",
        f"identical to the roster processed {str(previous.get('end', ''))[:16].replace('T', ' ')}"
        f"; no letter written or sent again; roster kept in {moved.parent}",
        previous.get("counts", {}), str(out_dir), str(previous.get("delivery", "")),
    )


def settle_unchanged_drops(settings: Settings) -> tuple[list[RosterOutcome], bool]:
    """Settle every identical re-drop in the input folder without starting the flow.

    Returns the outcomes and whether anything is left for the flow to look at. Busy or
    not-yet-settled files are left in place: the flow reports them in its own words.
    """
    table = load_table(settings)
    print_fp = fingerprint(settings, table)
    outcomes: list[RosterOutcome] = []
    left = False
    for drop in lifecycle.scan(settings.input_dir, settings.quiet_seconds):
        if not drop.ready or drop.path.suffix.lower() not in lifecycle.ROSTER_SUFFIXES:
            left = True
            continue
        try:
            with lifecycle.roster_lock(settings.output_dir, drop.path.stem):
                if not drop.path.exists():  # another run finished it while we waited
                    continue
                outcome = settle_if_unchanged(drop.path, settings, print_fp)
        except lifecycle.RosterBusy:
            left = True
            continue
        if outcome is None:
            left = True
        else:
            outcomes.append(outcome)
    return outcomes, left
