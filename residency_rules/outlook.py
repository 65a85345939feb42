"""Read the outlook: the modifiers shift the band, the matrix gives the level, hyper caps it."""

from __future__ import annotations

from residency_rules.bands import BAND_DOWN, step2_band
from residency_rules.records import (
    Band,
    ClerkshipStrength,
    NextLevel,
    ScoreBand,
    Specialty,
    Step1Status,
    Tier,
)
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


def score_bands(
    spec: Specialty,
    status: Step1Status,
    clerkships: ClerkshipStrength,
    failed_attempts: int,
    package_ok: bool,
    rules: Rules,
) -> tuple[ScoreBand, ...]:
    """List every band of a score still to come, from the passing score up, with its outlook.

    Neighbouring bands with the same outlook are one range; the last is open-ended. A failing
    score's retake reads the row the failure puts it on, so every band up to the solid mark
    (and beyond) shows what a pass would bring, the at-risk ones included.
    """
    passing = rules.failing_score  # a score still to come is held to today's passing score
    edges = sorted(s for s in {passing, spec.solid - rules.borderline_below_solid, spec.solid,
                               spec.excellent} if s >= passing)
    found: list[ScoreBand] = []
    for i, low in enumerate(edges):
        high = edges[i + 1] - 1 if i + 1 < len(edges) else None
        band, _, _ = shift_band(step2_band(low, None, spec, rules), clerkships, failed_attempts)
        cell, _ = read_matrix(status, spec.tier, band, package_ok, rules)
        if found and (found[-1].level, found[-1].label) == (cell.level, cell.label):
            found[-1] = ScoreBand(found[-1].low, high, cell.level, cell.label)
        else:
            found.append(ScoreBand(low, high, cell.level, cell.label))
    return tuple(found)
