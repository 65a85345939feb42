"""Intake: read the office's workbook into typed rows, then validate them with Great Expectations.

The flow calls `ingest` (file -> Roster) and `validate` (Roster -> Roster with held rows); the
blank template and the demo roster are written from here too.
"""

from flows.intake.read import ingest
from flows.intake.roster import Roster
from flows.intake.validation import validate

__all__ = ["Roster", "ingest", "validate"]
