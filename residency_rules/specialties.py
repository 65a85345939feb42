"""The specialty table: tiers, Step 2 CK marks, NRMP figures and aliases, read from data."""

from __future__ import annotations

import difflib
import functools
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from residency_rules import datafile as df
from residency_rules.calendar import Cycle, InterviewTargets, parse_cycle, parse_interviews
from residency_rules.errors import RulesError
from residency_rules.records import Specialty, Tier
from residency_rules.rulebook import TIERS, Rules, parse_rules

PACKAGED_FILE = "specialties.toml"

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
    # The application calendar's dates and the interview targets (DESIGN.md section 4a).
    calendar: Cycle | None = None
    interviews: InterviewTargets | None = field(default=None, repr=False, compare=False)
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
    specialties = tuple(_specialty(entry, i, origin) for i, entry in enumerate(entries, start=1))
    _check_names(specialties, origin)
    return SpecialtyTable(
        version=version, specialties=specialties, cycle=cycle, rules=rules, calendar=calendar,
        interviews=interviews,
    )


@functools.cache
def load_default_table() -> SpecialtyTable:
    """Load the packaged data file once; it is checked like any office-edited copy."""
    # The one place residency_rules reads a file: the data shipped inside the package.
    text = resources.files("residency_rules").joinpath("data", PACKAGED_FILE).read_text("utf-8")
    return parse_table(text, f"residency_rules/data/{PACKAGED_FILE}")


def _specialty(entry: object, index: int, origin: str) -> Specialty:
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
