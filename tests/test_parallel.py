"""The parallel plan's choice: lower tiers only, solid scores only, curated list, family, median."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from residency_rules.errors import RulesError
from residency_rules.parallel import parallel_specialties
from residency_rules.records import Specialty
from residency_rules.specialties import load_default_table, parse_table
from tests.support.specialty_files import ORIGIN, PACKAGED, changed


def spec(name: str, tier: Any, family: str, median: int | None, **more: Any) -> Specialty:
    solid = {"less": 240, "moderate": 245, "high": 250, "hyper": 255}[tier]
    return Specialty(
        name=name, tier=tier, solid=solid, excellent=solid + 10, source="test",
        family=family, nrmp_median=median, **more,
    )


SKIN = spec("Skin", "hyper", "medical", 258)
TABLE = (
    SKIN,
    spec("Cutting", "high", "surgical", 257),  # closest median, wrong family
    spec("Pictures", "high", "hospital-based", 257),
    spec("Medicine", "less", "medical", 254),
    spec("Slides", "less", "hospital-based", 247),
    spec("Brain", "less", "medical", 252),
    spec("Academic", "high", "medical", None),
    spec("Other skin", "hyper", "medical", 258),  # same tier: never
)


def solid_level(score: int) -> Callable[[Specialty], int]:
    """A stand-in for the rules: level 3 where the score is solid, else 2."""
    return lambda other: 3 if score >= other.solid else 2


def plan(top: Specialty, score: int, limit: int = 10,
         level_for: Callable[[Specialty], int] | None = None) -> tuple[str, ...]:
    return parallel_specialties(TABLE, top, score, level_for or solid_level(score), limit, 3)


def test_the_same_family_comes_first_and_other_families_only_when_none_fits() -> None:
    """Surgery and radiology are closer to 258 but of another family: they are offered only
    when no specialty of the student's own family (or the curated list) fits."""
    assert plan(SKIN, 258) == ("Medicine", "Brain", "Academic")
    # Nothing medical fits a student the rules rate low in every medical specialty.
    medical_low = plan(SKIN, 258, level_for=lambda o: 2 if o.family == "medical" else 3)
    assert medical_low == ("Cutting", "Pictures", "Slides")


def test_a_curated_list_wins_in_its_own_order() -> None:
    curated = spec("Skin", "hyper", "medical", 258, parallel=("Slides", "Medicine"))
    assert plan(curated, 258)[:3] == ("Slides", "Medicine", "Brain")


def test_never_the_same_tier_and_never_below_the_level_the_rules_give() -> None:
    """A 245 is solid for the less tier only (the stand-in rates the rest level 2); a curated
    high-tier name is still left out, and the same tier never appears."""
    curated = spec("Skin", "hyper", "medical", 258, parallel=("Cutting", "Medicine"))
    assert plan(curated, 245) == ("Medicine", "Brain")
    assert "Other skin" not in plan(SKIN, 300)


def test_each_candidate_is_read_on_the_students_own_record() -> None:
    """The level function is asked about every candidate offered, and a candidate it rates
    under the minimum is never offered, whatever its tier or family."""
    asked: list[str] = []

    def level_for(other: Specialty) -> int:
        asked.append(other.name)
        return 2 if other.name == "Medicine" else 3

    names = plan(SKIN, 258, level_for=level_for)
    assert "Medicine" not in names and set(names) <= set(asked)


def test_the_list_is_cut_at_the_limit() -> None:
    assert plan(SKIN, 258, limit=2) == ("Medicine", "Brain")


def test_the_lowest_tier_has_no_parallel_plan() -> None:
    assert plan(TABLE[3], 300, limit=5) == ()


def test_every_packaged_specialty_has_a_known_family() -> None:
    table = load_default_table()
    assert table.family_source
    for specialty in table.specialties:
        assert specialty.family in table.families, specialty.name


def test_every_hyper_and_high_specialty_has_a_curated_list_with_its_source() -> None:
    table = load_default_table()
    for specialty in table.specialties:
        if specialty.tier in ("high", "hyper"):
            assert specialty.parallel, specialty.name
            assert specialty.parallel_source == "office-curated default"


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (
            'parallel = ["Internal Medicine", "Pathology", "Family Medicine", "Pediatrics"]',
            'parallel = ["Internal Medicine", "Plastic Surgery"]',
            "Plastic Surgery is of the hyper tier, not lower than hyper",
        ),
        (
            'parallel = ["Internal Medicine", "Pathology", "Family Medicine", "Pediatrics"]',
            'parallel = ["IM"]',
            '"IM" is not the name of a specialty in this file',
        ),
        (
            'family = "medical"\naliases = ["Derm"]',
            'family = "skin"\naliases = ["Derm"]',
            'the family "skin" is not in [families]',
        ),
    ],
)
def test_a_bad_curated_list_or_family_is_refused(old: str, new: str, fragment: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_table(changed(old, new), ORIGIN)
    message = str(caught.value)
    assert message.startswith(f'{ORIGIN}: specialty entry 18 "Dermatology"')
    assert fragment in message and "Fix: " in message


def test_a_copy_from_before_families_loads_with_the_packaged_families() -> None:
    """An office copy older than [families] and family = lines loads: each specialty the
    package knows takes the packaged family, and the office is told (table.filled)."""
    import re

    text = re.sub(r'^family = ".*"\n', "", PACKAGED, flags=re.M)
    start = text.index("[families]")
    text = text[:start] + text[text.index("# ----", start):]
    table = parse_table(text, ORIGIN)
    packaged = parse_table(PACKAGED, ORIGIN)
    assert {s.name: s.family for s in table.specialties} == \
        {s.name: s.family for s in packaged.specialties}
    assert "[families]" in table.filled and "family in the [[specialty]] entries" in table.filled
