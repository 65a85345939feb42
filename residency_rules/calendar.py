"""The application calendar: the cycle's dates, each specialty's match, and a letter's phase.

Every letter is written for the day it is sent (docs/rules.md, The application calendar). The
phase of that day, for the student's own match, picks what the plan is about. Pure: `today` is
always a parameter, never read from a clock.

| phase        | from                             | the plan is about                        |
|--------------|----------------------------------|------------------------------------------|
| preparing    | after the previous Match Day     | target, exam timing, letters, research;  |
|              |                                  | from ready_from: the day ERAS opens      |
| applying     | season_opens (ERAS opens)        | application, list; submit from           |
|              |                                  | submissions_open                         |
| interviewing | review_start (programs review)   | interviews, a failure in two sentences   |
| ranking      | the match's ranking_opens        | the rank (or preference) list            |
| match week   | the match's rank_deadline        | levels 1-2: SOAP (NRMP only); results    |
| after match  | the day after its match_day      | the Match result and its branch          |

Each specialty has its match (`nrmp` Main Match, `sf_match` for Ophthalmology, `aua` for
Urology): ranking and result dates are the match's own; ERAS's dates are shared. The dates are
third-party readings of the AAMC, NRMP, SF Match and AUA calendars, for the office to confirm.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace
from typing import Literal

from residency_rules import datafile as df

Phase = Literal["preparing", "applying", "interviewing", "ranking", "match week", "after match"]
PHASES: tuple[Phase, ...] = (
    "preparing", "applying", "interviewing", "ranking", "match week", "after match",
)
MatchKey = Literal["nrmp", "sf_match", "aua"]
MATCH_KEYS: tuple[MatchKey, ...] = ("nrmp", "sf_match", "aua")

_STALE_DAYS = 366  # review_start more than a year away or behind: the wrong cycle
# Where a copy of the data file made before these dates existed gets them from (the 2027
# cycle's spacing): ERAS opens 16 weeks before programs review, submissions 3 weeks before.
_SEASON_WEEKS_BEFORE_REVIEW = 16
_SUBMISSIONS_WEEKS_BEFORE_REVIEW = 3
_READY_MONTH_DAY = (5, 1)  # the last weeks of preparing start on 1 May
_RANKING_MONTH_DAY = (2, 1)  # NRMP ranking opens on 1 February


@dataclass(frozen=True, slots=True)
class MatchSystem:
    """One match a specialty goes through, with its own ranking and result dates."""

    key: MatchKey
    name: str  # "NRMP Main Match", "SF Match", "AUA Urology Match"
    ranking_opens: _dt.date
    rank_deadline: _dt.date
    match_day: _dt.date
    source: str
    soap: bool = False  # SOAP (positions left open, in Match Week) exists in the NRMP only
    list_name: str = "rank order list"  # what the student certifies or submits
    # Where the student applies: ERAS for the NRMP and the AUA, the SF Match's own Central
    # Application Service for Ophthalmology. A match with its own service may have its own
    # application dates; None: the cycle's (ERAS) dates.
    application: str = "ERAS"
    season_opens: _dt.date | None = None
    submissions_open: _dt.date | None = None
    review_start: _dt.date | None = None


@dataclass(frozen=True, slots=True)
class Cycle:
    """One application cycle's dates, with where they come from."""

    name: str  # e.g. "2027 Main Match"
    review_start: _dt.date  # programs start reviewing applications (ERAS)
    rank_deadline: _dt.date  # the NRMP rank order list must be certified by this day
    match_day: _dt.date  # NRMP Match Day
    source: str
    confirmed: bool = False  # False: defaults the office has not confirmed for this year
    season_opens: _dt.date | None = None  # ERAS opens: the student builds the application
    submissions_open: _dt.date | None = None  # ERAS takes submissions from this day
    ranking_opens: _dt.date | None = None  # NRMP: rank order lists can be entered
    match_week: _dt.date | None = None  # NRMP: Monday of Match Week (SOAP)
    ready_from: _dt.date | None = None  # from here the plan names the day ERAS opens
    others: tuple[MatchSystem, ...] = ()  # the matches outside the NRMP (SF Match, AUA)

    # Dates left out of an older copy of the data file follow from review_start and the
    # NRMP dates, spaced as in the 2027 cycle.
    @property
    def season(self) -> _dt.date:
        """Return the day ERAS opens for applicants (the applying phase starts)."""
        return self.season_opens or self.review_start - _dt.timedelta(
            weeks=_SEASON_WEEKS_BEFORE_REVIEW)

    @property
    def submissions(self) -> _dt.date:
        """Return the first day ERAS takes submissions."""
        return self.submissions_open or self.review_start - _dt.timedelta(
            weeks=_SUBMISSIONS_WEEKS_BEFORE_REVIEW)

    @property
    def ready(self) -> _dt.date:
        """Return the first day of the last weeks of preparing (the plan names ERAS's day)."""
        if self.ready_from is not None:
            return self.ready_from
        month, day = _READY_MONTH_DAY
        return min(_dt.date(self.season.year, month, day), self.season)

    @property
    def ranking_from(self) -> _dt.date:
        """Return the first day of NRMP ranking: 1 February of the rank deadline's year."""
        if self.ranking_opens is not None:
            return self.ranking_opens
        month, day = _RANKING_MONTH_DAY
        return min(_dt.date(self.rank_deadline.year, month, day), self.rank_deadline)

    @property
    def soap_from(self) -> _dt.date:
        """Return the Monday of Match Week, when SOAP begins (Match Day is its Friday)."""
        if self.match_week is not None:
            return self.match_week
        return self.match_day - _dt.timedelta(days=self.match_day.weekday())

    @property
    def mid_season(self) -> _dt.date:
        """Return the middle of the interview season, when few invitations become a signal."""
        return self.review_start + (self.ranking_from - self.review_start) / 2

    @property
    def nrmp(self) -> MatchSystem:
        """Return the NRMP Main Match, from this cycle's own dates (settings may move them)."""
        return MatchSystem(
            key="nrmp", name="NRMP Main Match", ranking_opens=self.ranking_from,
            rank_deadline=self.rank_deadline, match_day=self.match_day, source=self.source,
            soap=True, list_name="rank order list",
        )

    def for_match(self, key: str) -> Cycle:
        """Return this cycle as a student of that match sees it: its own application dates.

        Every date the plan reads (the season, submissions, review) is then the student's own
        service's; the NRMP's dates stay as they are (the NRMP and the AUA share ERAS's).
        """
        match = self.system(key)
        if match.key == "nrmp":
            return self
        return replace(
            self,
            season_opens=match.season_opens or self.season,
            submissions_open=match.submissions_open or self.submissions,
            review_start=match.review_start or self.review_start,
        )

    def system(self, key: str) -> MatchSystem:
        """Return the match a specialty goes through; the NRMP when the key is unknown here."""
        for other in self.others:
            if other.key == key:
                return other
        return self.nrmp

    def over(self, today: _dt.date, key: str = "nrmp") -> bool:
        """Say whether the match has ended for this cycle: its Match Day is behind us."""
        return today > self.system(key).match_day


def phase(today: _dt.date, cycle: Cycle, system: MatchSystem | None = None) -> Phase:
    """Return the phase of the application calendar that `today` falls in, for one match."""
    match = system or cycle.nrmp
    if today > match.match_day:
        return "after match"
    if today < cycle.season:
        return "preparing"
    if today < cycle.review_start:
        return "applying"
    if today < match.ranking_opens:
        return "interviewing"
    if today < match.rank_deadline:
        return "ranking"
    return "match week"


def season_key(today: _dt.date, cycle: Cycle) -> str:
    """Name everything of the day's calendar that changes what a letter says, for every match.

    A re-run on another day with the same key writes the same letters (exam dates apart).
    """
    marks: list[str] = [phase(today, cycle, m) for m in (cycle.nrmp, *cycle.others)]
    marks.append("ready" if today >= cycle.ready else "")
    marks.append("submitting" if today >= cycle.submissions else "")
    return "/".join(marks)


def stale(today: _dt.date, cycle: Cycle) -> str | None:
    """Say in one sentence why the configured cycle is not the one letters should be for.

    None when it fits: the office is told, the letters still go (the office decides).
    """
    if cycle.over(today):
        return (
            f"The configured cycle ({cycle.name}) ended on Match Day, "
            f"{cycle.match_day.isoformat()}: letters speak of the Match result and of the next "
            "cycle only in general terms until its dates are set (ADVISING_REVIEW_START, "
            "ADVISING_RANK_DEADLINE, ADVISING_MATCH_DAY and the other ADVISING_ dates, or "
            "[calendar] in the specialty table)."
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
    """Refuse dates out of order: ERAS opens, submissions, review, ranking, deadline, Match."""
    steps = (
        ("season_opens", cycle.season), ("submissions_open", cycle.submissions),
        ("review_start", cycle.review_start), ("ranking_opens", cycle.ranking_from),
        ("rank_deadline", cycle.rank_deadline), ("match_week", cycle.soap_from),
        ("match_day", cycle.match_day),
    )
    for (a, first), (b, then) in zip(steps, steps[1:], strict=False):
        if first > then or (a == "review_start" and first == then):
            raise df.Where(where, "[calendar]").error(
                f"the dates are out of order ({a} {first}, {b} {then})",
                "ERAS opens, then takes submissions, then programs review; then ranking opens, "
                "the rank deadline, Match Week and Match Day follow in that order",
            )
    for other in cycle.others:
        if not other.ranking_opens <= other.rank_deadline <= other.match_day:
            raise df.Where(where, f"[calendar.{other.key}]").error(
                f"the dates are out of order (ranking_opens {other.ranking_opens}, "
                f"rank_deadline {other.rank_deadline}, match_day {other.match_day})",
                "ranking opens, then the deadline, then the match day",
            )
        own = cycle.for_match(other.key)
        if not own.season <= own.submissions < own.review_start:
            raise df.Where(where, f"[calendar.{other.key}]").error(
                f"the {other.application} dates are out of order (season_opens {own.season}, "
                f"submissions_open {own.submissions}, review_start {own.review_start})",
                "the service opens, then takes submissions, then programs review",
            )
        if (other.match_day - own.season).days > _STALE_DAYS:  # own dates of a past cycle
            raise df.Where(where, f"[calendar.{other.key}]").error(
                f"the {other.application} dates (opens {own.season}) are of an earlier cycle "
                f"than the {other.name}'s match day ({other.match_day})",
                f"set the {other.name}'s dates for this cycle too, in [calendar.{other.key}] "
                "of the specialty table (ADVISING_SPECIALTY_TABLE)",
            )
        if other.ranking_opens <= own.review_start:
            raise df.Where(where, f"[calendar.{other.key}]").error(
                f"the {other.name}'s ranking opens on {other.ranking_opens}, before programs "
                f"review on {own.review_start}",
                f"set the {other.name}'s dates for this cycle too, in [calendar.{other.key}] "
                "of the specialty table (ADVISING_SPECIALTY_TABLE): ranking comes after the "
                "interview season",
            )
    return cycle


_OTHER_NAMES: dict[str, tuple[str, str, str]] = {
    "sf_match": ("SF Match", "preference list", "SF Match CAS"),
    "aua": ("AUA Urology Match", "preference list", "ERAS"),
}


def parse_cycle(doc: df.Table, origin: str) -> Cycle:
    """Read and check the [calendar] table of a parsed data file (and its other matches)."""
    where = df.Where(origin, "[calendar]")
    fix = "copy the [calendar] table from the packaged specialties.toml"
    found = df.table(doc, "calendar", df.Where(origin, "top of the file"), fix)
    date_fix = "write the date unquoted, e.g. review_start = 2026-09-23"

    def optional(key: str) -> _dt.date | None:
        return df.day(found, key, where, date_fix) if key in found else None

    others: list[MatchSystem] = []
    for key in MATCH_KEYS[1:]:
        if key not in found:
            continue
        inner = where.child(key)
        block = df.table(found, key, where, f"write [calendar.{key}] with its dates and source")
        name, list_name, service = _OTHER_NAMES[key]

        def own(date_key: str, block: df.Table = block, inner: df.Where = inner
                ) -> _dt.date | None:
            return df.day(block, date_key, inner, date_fix) if date_key in block else None

        others.append(MatchSystem(
            key=key,
            name=df.text(block, "name", inner, f'name the match, e.g. name = "{name}"'),
            ranking_opens=df.day(block, "ranking_opens", inner, date_fix),
            rank_deadline=df.day(block, "rank_deadline", inner, date_fix),
            match_day=df.day(block, "match_day", inner, date_fix),
            source=df.text(block, "source", inner, "say where the dates come from"),
            soap=False,
            list_name=list_name,
            application=(df.text(block, "application", inner,
                                 f'name where students apply, e.g. application = "{service}"')
                         if "application" in block else service),
            season_opens=own("season_opens"),
            submissions_open=own("submissions_open"),
            review_start=own("review_start"),
        ))
    cycle = Cycle(
        name=df.text(found, "cycle", where, 'name the cycle, e.g. cycle = "2027 Main Match"'),
        review_start=df.day(found, "review_start", where, date_fix),
        rank_deadline=df.day(found, "rank_deadline", where, date_fix),
        match_day=df.day(found, "match_day", where, date_fix),
        source=df.text(found, "source", where, "say where the dates come from"),
        confirmed=df.flag(found, "confirmed", where, "write confirmed = true once checked"),
        season_opens=optional("season_opens"),
        submissions_open=optional("submissions_open"),
        ranking_opens=optional("ranking_opens"),
        match_week=optional("match_week"),
        ready_from=optional("ready_from"),
        others=tuple(others),
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
