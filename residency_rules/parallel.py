"""The parallel plan: which lower-tier specialties to name beside the one a student wants.

An advisor suggests specialties of the same kind of work first (a dermatology applicant hears
Internal Medicine or Pathology before General Surgery), the office's curated list for the
specialty before anything else. Each candidate is evaluated by the same rules on this
student's record, failures included, and offered only where the student would reach the
data file's `min_level` (3) or better; at most `max_listed` (3) (docs/rules.md, The parallel
plan). Never a specialty of the same or a higher tier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from residency_rules.records import Specialty
from residency_rules.rulebook import TIERS


def candidates(specialties: Iterable[Specialty], spec: Specialty, score: int) -> list[Specialty]:
    """List the lower-tier specialties in the order an advisor would try them.

    The curated `parallel` list as written, then the specialty's own family, closest NRMP
    median first (no figures: last), then name; the other families only after those (the
    caller falls back to them when none of the first fits the student).
    """
    rank = TIERS.index(spec.tier)
    lower = [s for s in specialties if TIERS.index(s.tier) < rank]
    curated = {name: i for i, name in enumerate(spec.parallel)}

    def order(s: Specialty) -> tuple[int, int, bool, int, str]:
        group = 0 if s.name in curated else 1 if spec.family and s.family == spec.family else 2
        return (
            group,
            curated.get(s.name, 0),
            s.nrmp_median is None,
            abs((s.nrmp_median or 0) - score),
            s.name,
        )

    return sorted(lower, key=order)


def parallel_specialties(
    specialties: Iterable[Specialty],
    spec: Specialty,
    score: int,
    level_for: Callable[[Specialty], int],
    limit: int,
    min_level: int,
) -> tuple[str, ...]:
    """Name at most `limit` lower-tier specialties where the student reaches `min_level`.

    `level_for` evaluates the student's own record (Step 1 and Step 2 CK history, clinical
    grades, this score) in a candidate specialty. The curated list and the student's own
    family come first; other families are offered only when none of those fits.
    """
    ordered = candidates(specialties, spec, score)
    curated = set(spec.parallel)
    near = [s for s in ordered if s.name in curated or (spec.family and s.family == spec.family)]
    far = [s for s in ordered if s not in near]
    found = [s.name for s in near if level_for(s) >= min_level][:limit]
    if not found:
        found = [s.name for s in far if level_for(s) >= min_level][:limit]
    return tuple(found)
