"""The application calendar: the cycle's dates and the phase a letter is written in.

Every letter is written for the day it is sent (docs/rules.md, The application calendar). The
phase of that day picks what the plan is about. Pure: `today` is always a parameter, never read
from a clock.

| phase        | from                           | the plan is about                              |
|--------------|--------------------------------|------------------------------------------------|
| preparing    | after the previous Match Day   | the target, Step 2 CK timing, letters, research |
| applying     | 10 weeks before review_start   | the application, the program list, the score    |
| interviewing | review_start                   | interviews, a failure in two sentences |
| ranking      | 1 February                     | the rank order list, the deadline              |
| match week   | rank_deadline                  | levels 1-2: ready for SOAP with the advisor    |

After Match Day the configured cycle is over: the phase is `preparing` for the next cycle, whose
dates are not known yet (`Cycle.over`), so letters speak of it only in general terms.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Literal

from residency_rules import datafile as df

Phase = Literal["preparing", "applying", "interviewing", "ranking", "match week"]
PHASES: tuple[Phase, ...] = ("preparing", "applying", "interviewing", "ranking", "match week")

APPLYING_WEEKS = 10  # the applying phase starts this long before programs start reviewing
_RANKING_MONTH_DAY = (2, 1)  # the ranking phase starts on 1 February
_STALE_DAYS = 366  # review_start more than a year away or behind: the wrong cycle


@dataclass(frozen=True, slots=True)
class Cycle:
    """One Main Match cycle's dates, with where they come from."""

    name: str  # e.g. "2027 Main Match"
    review_start: _dt.date  # programs start reviewing applications (ERAS)
    rank_deadline: _dt.date  # the rank order list must be certified by this day
    match_day: _dt.date
    source: str
    confirmed: bool = False  # False: defaults the office has not confirmed for this year

    @property
    def applying_from(self) -> _dt.date:
        """Return the first day of the applying phase."""
        return self.review_start - _dt.timedelta(weeks=APPLYING_WEEKS)

    @property
    def ranking_from(self) -> _dt.date:
        """Return the first day of the ranking phase: 1 February of the rank deadline's year."""
        month, day = _RANKING_MONTH_DAY
        return min(_dt.date(self.rank_deadline.year, month, day), self.rank_deadline)

    @property
    def mid_season(self) -> _dt.date:
        """Return the middle of the interview season, when few invitations become a signal."""
        return self.review_start + (self.ranking_from - self.review_start) / 2

    @property
    def soap_from(self) -> _dt.date:
        """Return the Monday of Match Week, when SOAP begins (Match Day is its Friday)."""
        return self.match_day - _dt.timedelta(days=self.match_day.weekday())

    def over(self, today: _dt.date) -> bool:
        """Say whether the cycle has ended: Match Day is behind us."""
        return today > self.match_day


def phase(today: _dt.date, cycle: Cycle) -> Phase:
    """Return the phase of the application calendar that `today` falls in."""
    if cycle.over(today) or today < cycle.applying_from:
        return "preparing"
    if today < cycle.review_start:
        return "applying"
    if today < cycle.ranking_from:
        return "interviewing"
    if today < cycle.rank_deadline:
        return "ranking"
    return "match week"


def stale(today: _dt.date, cycle: Cycle) -> str | None:
    """Say in one sentence why the configured cycle is not the one letters should be for.

    None when it fits: the office is told, the letters still go (the office decides).
    """
    if cycle.over(today):
        return (
            f"The configured cycle ({cycle.name}) ended on Match Day, "
            f"{cycle.match_day.isoformat()}: letters speak of the next cycle only in general "
            "terms until its dates are set (ADVISING_REVIEW_START, ADVISING_RANK_DEADLINE, "
            "ADVISING_MATCH_DAY, or [calendar] in the specialty table)."
        )
    gap = (cycle.review_start - today).days
    if gap > _STALE_DAYS or -gap > _STALE_DAYS:
        way = "more than a year away" if gap > 0 else "more than a year ago"
        return (
            f"The configured review start ({cycle.review_start.isoformat()}) is {way}: check "
            "that the dates are this cycle's (ADVISING_REVIEW_START, or [calendar] in the "
            "specialty table)."
        )
    return None


def check(cycle: Cycle, where: str) -> Cycle:
    """Refuse dates out of order: review start, then rank deadline, then Match Day."""
    if not cycle.review_start < cycle.rank_deadline <= cycle.match_day:
        raise df.Where(where, "[calendar]").error(
            f"the dates are out of order (review_start {cycle.review_start}, rank_deadline "
            f"{cycle.rank_deadline}, match_day {cycle.match_day})",
            "programs start reviewing before the rank deadline, which is before Match Day",
        )
    return cycle


def parse_cycle(doc: df.Table, origin: str) -> Cycle:
    """Read and check the [calendar] table of a parsed data file."""
    where = df.Where(origin, "[calendar]")
    fix = "copy the [calendar] table from the packaged specialties.toml"
    found = df.table(doc, "calendar", df.Where(origin, "top of the file"), fix)
    date_fix = "write the date unquoted, e.g. review_start = 2026-09-23"
    cycle = Cycle(
        name=df.text(found, "cycle", where, 'name the cycle, e.g. cycle = "2027 Main Match"'),
        review_start=df.day(found, "review_start", where, date_fix),
        rank_deadline=df.day(found, "rank_deadline", where, date_fix),
        match_day=df.day(found, "match_day", where, date_fix),
        source=df.text(found, "source", where, "say where the dates come from"),
        confirmed=df.flag(found, "confirmed", where, "write confirmed = true once checked"),
    )
    return check(cycle, origin)


@dataclass(frozen=True, slots=True)
class InterviewTargets:
    """Interview invitations by mid-season below which the plan adds programs (office's numbers)."""

    default: int
    by_specialty: dict[str, int]
    source: str

    def target(self, specialty: str) -> int:
        """Return the target for a specialty, the default when the office set none."""
        return self.by_specialty.get(specialty, self.default)


def parse_interviews(doc: df.Table, origin: str) -> InterviewTargets:
    """Read and check the [interviews] table of a parsed data file."""
    where = df.Where(origin, "[interviews]")
    fix = "copy the [interviews] table from the packaged specialties.toml"
    found = df.table(doc, "interviews", df.Where(origin, "top of the file"), fix)
    count_fix = "use a number of interview invitations, e.g. default = 10"
    default = df.integer(found, "default", where, count_fix, low=1, high=100)
    per: dict[str, int] = {}
    if "target" in found:
        targets = df.table(found, "target", where, 'write target = { "Dermatology" = 12 }')
        for name in targets:
            per[str(name)] = df.integer(targets, name, where.child("target"), count_fix,
                                        low=1, high=100)
    source = df.text(found, "source", where, "say who set these numbers and from what")
    return InterviewTargets(default, per, source)
