"""The parallel plan: which lower-tier specialties to name beside the one a student wants.

An advisor suggests specialties of the same kind of work first (a dermatology applicant hears
Internal Medicine or Pathology before General Surgery), and the office's curated list for the
specialty before anything else. The rules only ever offer a step down where the score already
counts as solid (docs/rules.md, The parallel plan).
"""

from __future__ import annotations

from collections.abc import Iterable

from residency_rules.records import Specialty
from residency_rules.rulebook import TIERS


def parallel_specialties(
    specialties: Iterable[Specialty], spec: Specialty, score: int, limit: int
) -> tuple[str, ...]:
    """List lower-tier specialties where this score is already solid, best suggestion first.

    Order: the specialty's curated `parallel` list as written, then its own family, then the
    rest; within each group the closest NRMP median first (no NRMP figures: last), then name.
    """
    rank = TIERS.index(spec.tier)
    fits = [s for s in specialties if TIERS.index(s.tier) < rank and score >= s.solid]
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

    fits.sort(key=order)
    return tuple(s.name for s in fits[:limit])
