"""The specialty table: tiers, Step 2 CK marks, NRMP figures and aliases, read from data."""

from __future__ import annotations

import datetime as _dt
import difflib
import functools
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from residency_rules import datafile as df
from residency_rules.calendar import (
    MATCH_KEYS,
    Cycle,
    InterviewTargets,
    parse_cycle,
    parse_interviews,
)
from residency_rules.errors import RulesError
from residency_rules.explain import when
from residency_rules.records import Specialty, Tier
from residency_rules.rulebook import TIERS, Rules, parse_rules

PACKAGED_FILE = "specialties.toml"

NrmpStatus = Literal["unchecked", "checked"]
NRMP_STATUSES: tuple[NrmpStatus, ...] = ("unchecked", "checked")
# How letters and the workbook name NRMP figures nobody has compared with the report.
APPROXIMATE_NRMP = (
    "approximate NRMP figures (entered by hand, not yet checked against the report)"
)

# Characters dropped before matching a name, beyond anything that is not a letter or digit.
_AMPERSAND = str.maketrans({"&": " and "})


def normalise(text: str) -> str:
    """Reduce a specialty name to its matching key: no case, spaces, punctuation or accents."""
    folded = unicodedata.normalize("NFKD", text.translate(_AMPERSAND)).casefold()
    return "".join(ch for ch in folded if ch.isalnum())


def _default_rules() -> Rules:
    return load_default_table().rules


@dataclass(frozen=True)
class SpecialtyTable:
    """The specialties and the rules that read them, checked once when loaded."""

    version: str  # rules version string, carried by every evaluation
    specialties: tuple[Specialty, ...]
    cycle: str = ""
    rules: Rules = field(default_factory=_default_rules, repr=False, compare=False)
    # The NRMP block as a whole: "unchecked" (typed by hand) until imported from the report.
    nrmp_status: NrmpStatus = "unchecked"
    nrmp_checked_on: _dt.date | None = None
    nrmp_report: str = ""  # how a checked block is cited, e.g. "NRMP Charting Outcomes 2026, ..."
    families: tuple[str, ...] = ()  # the family names a specialty may have
    family_source: str = ""
    # The application calendar's dates and the interview targets (docs/rules.md, The
    # application calendar).
    calendar: Cycle | None = None
    interviews: InterviewTargets | None = field(default=None, repr=False, compare=False)
    # Tables an office's older copy lacked, taken from the packaged file (fill_from_package).
    filled: tuple[str, ...] = ()
    _by_name: Mapping[str, Specialty] = field(init=False, repr=False, compare=False)
    _by_key: Mapping[str, Specialty] = field(init=False, repr=False, compare=False)
    # Per-table precomputation the rules build once (sentences, score ladders); see rules.py.
    cache: dict[str, object] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        by_name = {s.name: s for s in self.specialties}
        by_key: dict[str, Specialty] = {}
        for spec in self.specialties:
            for name in (spec.name, *spec.aliases):
                key = normalise(name)
                other = by_key.get(key)
                if other is not None and other.name != spec.name:
                    raise RulesError(
                        f'specialty table: "{name}" names both {other.name} and {spec.name}. '
                        f"Fix: keep it on one of them only."
                    )
                by_key[key] = spec
        # Frozen: the indexes are built once here and never change.
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_by_key", by_key)

    def get(self, name: str) -> Specialty:
        """Return the specialty with this canonical name; KeyError if there is none."""
        return self._by_name[name]

    def resolve(self, text: str) -> Specialty | None:
        """Return the specialty a roster cell names (canonical name or alias), or None."""
        return self._by_key.get(normalise(text))

    def suggest(self, text: str) -> str | None:
        """Return the canonical name closest to an unknown one, for a "did you mean"."""
        key = normalise(text)
        if not key:
            return None
        found = self._by_key.get(key)
        if found is not None:
            return found.name
        close = difflib.get_close_matches(key, list(self._by_key), n=1, cutoff=0.6)
        if close:
            return self._by_key[close[0]].name
        # A cell like "Emergency Medicine residency" holds a whole name: prefer the longest.
        inside = [k for k in self._by_key if len(k) >= 4 and k in key]
        return self._by_key[max(inside, key=len)].name if inside else None

    def names(self) -> tuple[str, ...]:
        """List the canonical names in table order, e.g. for a roster dropdown."""
        return tuple(s.name for s in self.specialties)

    def in_tier(self, tier: Tier) -> tuple[Specialty, ...]:
        """List the specialties of one tier in table order."""
        return tuple(s for s in self.specialties if s.tier == tier)


def parse_table(text: str, origin: str) -> SpecialtyTable:
    """Parse and check a specialty/rules data file; raise RulesError naming origin and entry."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(
            f"{origin}: this is not a valid TOML file ({exc}). "
            "Fix: compare it with the packaged specialties.toml; text needs quotes, "
            "lists need [brackets]."
        ) from exc
    filled = () if origin == PACKAGED_ORIGIN else fill_from_package(doc)
    top = df.Where(origin, "top of the file")
    version = df.text(doc, "version", top, 'add a version line, e.g. version = "2026.1"')
    cycle = df.text(doc, "cycle", top, 'add the match cycle, e.g. cycle = "2027 Main Match"')
    rules = parse_rules(doc, origin)
    calendar = parse_cycle(doc, origin)
    interviews = parse_interviews(doc, origin)
    entries = doc.get("specialty")
    if not isinstance(entries, list) or not entries:
        raise top.error(
            "there are no [[specialty]] entries", "add one [[specialty]] block per specialty"
        )
    families, family_source = _families(doc, origin)
    specialties = tuple(
        _specialty(entry, i, origin, families) for i, entry in enumerate(entries, start=1)
    )
    _check_names(specialties, origin)
    _check_parallel(specialties, origin)
    _check_matches(specialties, calendar, origin)
    status, checked_on, report = _nrmp_block(doc, origin)
    return SpecialtyTable(
        version=version,
        specialties=specialties,
        cycle=cycle,
        rules=rules,
        nrmp_status=status,
        nrmp_checked_on=checked_on,
        nrmp_report=report,
        families=families,
        family_source=family_source,
        calendar=calendar,
        interviews=interviews,
        filled=filled,
    )


# What later versions added to the data file, where an office's older copy may lack it: the
# packaged table (or key) is used for each missing one, and the office is told
# (SpecialtyTable.filled). The office's own numbers are never replaced. Left alone: the
# specialties, the [nrmp] block (its absence means "unchecked") and the dates inside an office's
# [calendar] (those left out follow from its own review_start).
_ADDED_TABLES = ("calendar", "interviews", "families", "plan", "levels")
_ADDED_MATCHES = ("sf_match", "aua")
# Keys added to tables an office's copy has: (table, subtable or "", key).
_ADDED_KEYS = (("rules", "", "exam"), ("rules", "", "study"), ("rules", "parallel", "min_level"),
               ("mix", "", "example_programs"))
# Keys a [[specialty]] entry gained; taken from the packaged entry of the same name.
_ADDED_SPECIALTY_KEYS = ("family", "match", "parallel", "parallel_source")


def fill_from_package(doc: dict[str, object]) -> tuple[str, ...]:
    """Add to an office's parsed copy what later versions added; name what was added.

    An office that copied the data file a version ago keeps its own numbers and starts on the
    upgrade with the packaged [plan] or [levels] instead of a refusal at start.
    """
    packaged = tomllib.loads(packaged_text())
    filled: list[str] = []

    def take(into: dict[str, object], source: Mapping[str, object], key: str, label: str
             ) -> None:
        if key not in into and key in source:
            into[key] = source[key]
            filled.append(label)

    for name in _ADDED_TABLES:
        take(doc, packaged, name, f"[{name}]")
    calendar, theirs = doc.get("calendar"), packaged.get("calendar")
    if isinstance(calendar, dict) and isinstance(theirs, Mapping) and "[calendar]" not in filled:
        for key in _ADDED_MATCHES:
            take(calendar, theirs, key, f"[calendar.{key}]")
    for name, sub, key in _ADDED_KEYS:
        mine, source = doc.get(name), packaged.get(name)
        if sub:
            mine = mine.get(sub) if isinstance(mine, dict) else None
            source = source.get(sub) if isinstance(source, Mapping) else None
        if isinstance(mine, dict) and isinstance(source, Mapping):
            where = f"{name}.{sub}" if sub else name
            value = source.get(key)
            take(mine, source, key, f"[{where}.{key}]" if isinstance(value, Mapping)
                 else f"{key} in [{where}]")
    ours = {e.get("name"): e for e in packaged.get("specialty", []) if isinstance(e, Mapping)}
    entries = doc.get("specialty")
    for entry in entries if isinstance(entries, list) else []:
        packaged_entry = ours.get(entry.get("name")) if isinstance(entry, dict) else None
        if isinstance(entry, dict) and packaged_entry is not None:
            for key in _ADDED_SPECIALTY_KEYS:
                label = f"{key} in the [[specialty]] entries"
                if key not in entry and key in packaged_entry:
                    entry[key] = packaged_entry[key]
                    if label not in filled:
                        filled.append(label)
    return tuple(filled)


_YEAR = re.compile(r"\b(20\d\d)\b")


def nrmp_match_year(table: SpecialtyTable) -> str:
    """Return the Match the NRMP figures describe, e.g. "the 2026 Match", from the report's
    name (the shipped report and an imported one name their year)."""
    found = _YEAR.search(table.nrmp_report or "") or _YEAR.search(table.rules.sources["nrmp"])
    return f"the {found.group(1)} Match" if found else "the latest Match"


def nrmp_for_students(table: SpecialtyTable) -> str:
    """Say, in a student's words, how far the NRMP figures can be trusted: the office's check.

    Letters say "not yet checked by your office against the report" while the block is
    unchecked, and name the report and the day once the office checked it.
    """
    if table.nrmp_status == "checked" and table.nrmp_checked_on is not None:
        return f"{table.nrmp_report}, checked by your office on {when(table.nrmp_checked_on)}"
    return "NRMP figures, not yet checked by your office against the report"


def nrmp_citation(table: SpecialtyTable) -> str:
    """Name the NRMP figures as honestly as the table allows: approximate until checked.

    The one wording letters and the workbook use, so no output cites a report table for
    figures nobody compared with it.
    """
    if table.nrmp_status == "checked" and table.nrmp_checked_on is not None:
        return f"{table.nrmp_report}, checked on {when(table.nrmp_checked_on)}"
    return APPROXIMATE_NRMP


def _nrmp_block(doc: Mapping[str, object], origin: str) -> tuple[NrmpStatus, _dt.date | None, str]:
    """Read [nrmp]; a copy made before the block existed counts as unchecked."""
    found = doc.get("nrmp")
    if found is None:
        return "unchecked", None, ""
    top = df.Where(origin, "top of the file")
    fix = 'write [nrmp] with status = "unchecked" (or "checked" and checked_on = YYYY-MM-DD)'
    block = df.table(doc, "nrmp", top, fix)
    where = df.Where(origin, "[nrmp]")
    status = df.text(block, "status", where, 'write status = "unchecked" or "checked"')
    if status not in NRMP_STATUSES:
        raise where.error(
            f'the status "{status}" is unknown',
            'write "unchecked", or run `advising specialties --import FILE.csv` to check them',
        )
    report = df.text(
        block, "report", where, 'name the report, e.g. report = "NRMP Charting Outcomes 2026"'
    )
    checked_on: _dt.date | None = None
    if status == "checked":
        checked_on = df.day(
            block, "checked_on", where,
            "write the day the figures were checked, e.g. checked_on = 2026-12-01, or "
            'status = "unchecked"',
        )
    elif "checked_on" in block:
        raise where.error(
            "checked_on is given but the status is unchecked",
            'remove checked_on, or write status = "checked" if the figures were checked',
        )
    return ("checked" if status == "checked" else "unchecked"), checked_on, report


def _families(doc: Mapping[str, object], origin: str) -> tuple[tuple[str, ...], str]:
    """Read [families]; a copy made before families existed has none (no family preference)."""
    if "families" not in doc:
        return (), ""
    top = df.Where(origin, "top of the file")
    block = df.table(doc, "families", top, "write [families] with names = [...] and source")
    where = df.Where(origin, "[families]")
    names = df.texts(block, "names", where, 'list the families, e.g. names = ["surgical"]')
    source = df.text(block, "source", where, 'say where the grouping comes from, e.g. "design"')
    return names, source


PACKAGED_ORIGIN = f"residency_rules/data/{PACKAGED_FILE}"


def packaged_text() -> str:
    """Return the data file shipped inside the package (the base of an office's first copy)."""
    # The one place residency_rules reads a file: the data shipped inside the package.
    return resources.files("residency_rules").joinpath("data", PACKAGED_FILE).read_text("utf-8")


@functools.cache
def load_default_table() -> SpecialtyTable:
    """Load the packaged data file once; it is checked like any office-edited copy."""
    return parse_table(packaged_text(), PACKAGED_ORIGIN)


def _specialty(entry: object, index: int, origin: str, families: tuple[str, ...]) -> Specialty:
    if not isinstance(entry, Mapping):
        raise df.Where(origin, f"specialty entry {index}").error(
            "it is not a table", "start each specialty with a [[specialty]] line"
        )
    raw_name = entry.get("name")
    label = f'"{raw_name}"' if isinstance(raw_name, str) and raw_name.strip() else "(no name)"
    where = df.Where(origin, f"specialty entry {index} {label}")
    name = df.text(entry, "name", where, 'add name = "..." with the specialty\'s full name')
    tier = df.text(entry, "tier", where, 'add tier = "less", "moderate", "high" or "hyper"')
    if tier not in TIERS:
        raise where.error(
            f'the tier "{tier}" is unknown', 'use one of "less", "moderate", "high" or "hyper"'
        )
    score_fix = "use a Step 2 CK score 1-300"
    solid = df.integer(entry, "solid", where, score_fix, low=1, high=300)
    excellent = df.integer(entry, "excellent", where, score_fix, low=1, high=300)
    if solid >= excellent:
        raise where.error(
            f"solid ({solid}) is not below excellent ({excellent})",
            "solid is the lower mark, e.g. solid = 245 and excellent = 255",
        )
    source = df.text(
        entry, "source", where, 'say where the tier and marks come from, e.g. source = "article"'
    )
    alias_fix = 'list other names in quotes, e.g. aliases = ["EM"] (or [] for none)'
    aliases = df.texts(entry, "aliases", where, alias_fix)
    q1 = median = q3 = unmatched = None
    if "nrmp" in entry:
        fix = (
            "write nrmp = { q1 = .., median = .., q3 = .., unmatched_median = .. } "
            "from NRMP Table 5"
        )
        nrmp = df.table(entry, "nrmp", where, fix)
        inner = where.child("nrmp")
        q1 = df.integer(nrmp, "q1", inner, fix, low=1, high=300)
        median = df.integer(nrmp, "median", inner, fix, low=1, high=300)
        q3 = df.integer(nrmp, "q3", inner, fix, low=1, high=300)
        unmatched = df.optional_integer(nrmp, "unmatched_median", inner, fix, low=1, high=300)
        if not q1 <= median <= q3:
            raise inner.error(
                f"q1 {q1}, median {median}, q3 {q3} are out of order",
                "copy the three figures again from NRMP Table 5 (q1 <= median <= q3)",
            )
    family = ""
    if "family" in entry or families:
        family = df.text(
            entry, "family", where, f'add family = "..." (one of {", ".join(families)})'
        )
        if families and family not in families:
            raise where.error(
                f'the family "{family}" is not in [families]',
                f'use one of {", ".join(families)}, or add it to [families].names',
            )
    parallel: tuple[str, ...] = ()
    parallel_source = ""
    if "parallel" in entry:
        parallel = df.texts(
            entry, "parallel", where,
            'list specialty names in quotes, e.g. parallel = ["Pathology"]',
        )
        parallel_source = df.text(
            entry, "parallel_source", where,
            'say who chose the list, e.g. parallel_source = "office-curated default"',
        )
    match = "nrmp"
    if "match" in entry:
        match = df.text(entry, "match", where, 'write match = "nrmp", "sf_match" or "aua"')
        if match not in MATCH_KEYS:
            raise where.error(
                f'the match "{match}" is unknown', 'use "nrmp", "sf_match" or "aua"'
            )
    return Specialty(
        name=name,
        tier=tier,  # narrowed to Tier by the check against TIERS above
        solid=solid,
        excellent=excellent,
        source=source,
        aliases=aliases,
        nrmp_q1=q1,
        nrmp_median=median,
        nrmp_q3=q3,
        nrmp_unmatched_median=unmatched,
        family=family,
        parallel=parallel,
        parallel_source=parallel_source,
        match=match,
    )


def _check_matches(
    specialties: tuple[Specialty, ...], calendar: Cycle, origin: str
) -> None:
    """Refuse a specialty whose match has no dates in [calendar]: its letters need them."""
    known = {m.key for m in calendar.others} | {"nrmp"}
    for index, spec in enumerate(specialties, start=1):
        if spec.match not in known:
            raise df.Where(origin, f'specialty entry {index} "{spec.name}"').error(
                f'its match "{spec.match}" has no dates',
                f"add a [calendar.{spec.match}] table with name, ranking_opens, rank_deadline, "
                "match_day and source (see the packaged specialties.toml)",
            )


def _check_parallel(specialties: tuple[Specialty, ...], origin: str) -> None:
    """Refuse a curated parallel list naming an unknown specialty or one not of a lower tier."""
    by_key = {normalise(s.name): s for s in specialties}
    for index, spec in enumerate(specialties, start=1):
        where = df.Where(origin, f'specialty entry {index} "{spec.name}", parallel')
        for name in spec.parallel:
            other = by_key.get(normalise(name))
            if other is None or other.name != name:
                raise where.error(
                    f'"{name}" is not the name of a specialty in this file',
                    "write each specialty's full name as in its name = line",
                )
            if TIERS.index(other.tier) >= TIERS.index(spec.tier):
                raise where.error(
                    f'{name} is of the {other.tier} tier, not lower than {spec.tier}',
                    "list only specialties of a lower tier: a parallel plan is a step down",
                )


def _check_names(specialties: tuple[Specialty, ...], origin: str) -> None:
    """Refuse a name or alias that would match two specialties: the roster would be ambiguous."""
    owner: dict[str, tuple[str, str]] = {}  # key -> (canonical name, spelling that claimed it)
    seen: set[str] = set()
    for index, spec in enumerate(specialties, start=1):
        where = df.Where(origin, f'specialty entry {index} "{spec.name}"')
        if spec.name in seen:
            raise where.error(
                f'the specialty "{spec.name}" appears twice', "merge the two entries into one"
            )
        seen.add(spec.name)
        for name in (spec.name, *spec.aliases):
            key = normalise(name)
            if not key:
                raise where.error(f'"{name}" has no letters or digits', "remove it or spell it out")
            claimed = owner.setdefault(key, (spec.name, name))
            # The same key twice within one specialty ("OB/GYN", "OBGYN") is harmless.
            if claimed[0] != spec.name:
                raise where.error(
                    f'"{name}" is already used by "{claimed[0]}" (as "{claimed[1]}"); '
                    "names match without case, spaces or punctuation",
                    f'remove "{name}" from one of the two',
                )


# ---------------------------------------------------------------------------------------------
# The table as the office reads it (`advising specialties`)
# ---------------------------------------------------------------------------------------------

_PLAIN_SOURCES = ("article", "assigned")


def describe_table(table: SpecialtyTable, read_from: str) -> str:
    """Lay the table out for an advisor: every figure with where it comes from and its status."""
    sources = table.rules.sources
    lines = [
        f"Specialty table version {table.version} ({table.cycle})",
        f"Read from: {read_from}",
        "",
    ]
    if table.nrmp_status == "checked" and table.nrmp_checked_on is not None:
        lines += [
            f"NRMP figures: CHECKED: imported on {when(table.nrmp_checked_on)} from the office's "
            "copy of the report.",
            f'Cited as "{nrmp_citation(table)}"; letters say "{nrmp_for_students(table)}".',
        ]
    else:
        lines += [
            "NRMP figures: NOT CHECKED. They were typed in by hand and have not been compared "
            "with the report;",
            f'the workbook calls them "{nrmp_citation(table)}" and letters say '
            f'"{nrmp_for_students(table)}".',
            "To check them, type the figures from your copy of the report into a CSV file "
            "(columns: specialty, q1, median, q3, unmatched median)",
            "and run: advising specialties --import FILE.csv",
        ]
    heads = ("Specialty", "Tier", "Solid", "Excellent", "From", "NRMP Q1/median/Q3",
             "Unmatched", "Family")
    rows = [heads]
    for s in table.specialties:
        nrmp = "-" if s.nrmp_median is None else f"{s.nrmp_q1}/{s.nrmp_median}/{s.nrmp_q3}"
        unmatched = "-" if s.nrmp_unmatched_median is None else str(s.nrmp_unmatched_median)
        origin = next((p for p in _PLAIN_SOURCES if s.source.startswith(p)), s.source)
        rows.append((s.name, s.tier, str(s.solid), str(s.excellent), origin, nrmp, unmatched,
                     s.family or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    numeric = {2, 3, 6}
    lines.append("")
    for row in rows:
        cells = [
            c.rjust(w) if i in numeric and row is not heads else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    checked = table.nrmp_status == "checked" and table.nrmp_checked_on is not None
    status = (
        f"imported on {when(table.nrmp_checked_on)} from the office's copy of the report"
        if checked and table.nrmp_checked_on is not None
        else "NOT CHECKED, typed in by hand"
    )
    lines += [
        "",
        "Where the figures come from",
        "  Tier, Solid, Excellent (column From):",
        *(f'    {key}: {sources[key]}' for key in _PLAIN_SOURCES if key in sources),
        *(
            f"    {s.name}: {s.source}"
            for s in table.specialties
            if s.source not in _PLAIN_SOURCES
        ),
        f"  NRMP figures ({status}): "
        + (table.nrmp_report if checked else sources.get("nrmp", table.nrmp_report)),
        "    Unmatched = the median of applicants who did not match; - = no figure.",
    ]
    if table.family_source:
        lines.append(f"  Family: {table.family_source}")
    curated = [s for s in table.specialties if s.parallel]
    if curated:
        lines.append(
            "  Parallel plan, suggested first (only where the student's score is already solid):"
        )
        lines += [
            f"    {s.name}: {', '.join(s.parallel)} ({s.parallel_source})" for s in curated
        ]
    return "\n".join(lines)
