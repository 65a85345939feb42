"""Read the outlook: the modifiers shift the band, the matrix gives the level, hyper caps it."""

from __future__ import annotations

from residency_rules.bands import BAND_DOWN, step2_band
from residency_rules.records import Band, ClerkshipStrength, NextLevel, Specialty, Step1Status, Tier
from residency_rules.rulebook import Outlook, Rules

MATRIX_BAND_SET: frozenset[Band] = frozenset(("excellent", "solid", "borderline", "below"))


def shift_band(
    raw: Band, clerkships: ClerkshipStrength, failed_attempts: int
) -> tuple[Band, bool, bool]:
    """Apply the modifiers in order; return the band, whether clerkships moved it, and whether
    repeated Step 1 failures did."""
    band = raw
    clerk_moved = False
    if clerkships == "strong" and band == "borderline":
        band, clerk_moved = "solid", True
    elif clerkships == "weak" and band in ("excellent", "solid"):
        band, clerk_moved = BAND_DOWN[band], True
    repeated = failed_attempts >= 2
    if repeated:
        band = BAND_DOWN[band]
    return band, clerk_moved, repeated


def read_matrix(
    status: Step1Status, tier: Tier, band: Band, package_ok: bool, rules: Rules
) -> tuple[Outlook, bool]:
    """Return the matrix cell, capped for a hyper tier without the whole package, and whether
    the cap applied."""
    cell = rules.matrix[(status, tier, band)]
    if tier == "hyper" and not package_ok and cell.level > rules.package_cap.level:
        return rules.package_cap, True
    return cell, False


def ladder(
    spec: Specialty,
    status: Step1Status,
    clerkships: ClerkshipStrength,
    failed_attempts: int,
    package_ok: bool,
    rules: Rules,
) -> tuple[NextLevel, ...]:
    """List the lowest Step 2 CK score for each level this student could reach, all else equal.

    The level only changes where the band does, so scoring the band edges is enough.
    """
    passing = rules.failing_score  # a score still to come is held to today's passing score
    edges = {passing, spec.solid - rules.borderline_below_solid, spec.solid, spec.excellent}
    steps: list[NextLevel] = []
    best = 0
    for score in sorted(s for s in edges if s >= passing):
        band, _, _ = shift_band(step2_band(score, None, spec, rules), clerkships, failed_attempts)
        cell, _ = read_matrix(status, spec.tier, band, package_ok, rules)
        if cell.level > best:
            steps.append(NextLevel(level=cell.level, label=cell.label, score=score))
            best = cell.level
    return tuple(steps)
