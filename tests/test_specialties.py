"""The specialty table: the packaged data, aliases, "did you mean", and the checks on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from residency_rules.errors import RulesError
from residency_rules.specialties import SpecialtyTable, load_default_table, normalise, parse_table
from tests.support.specialty_files import (
    ORIGIN,
    PACKAGED,
    changed,
)

# docs/rules.md, The specialty table, written out: name, tier, solid, excellent,
# NRMP (Q1, median, Q3, unmatched).
SPEC_TABLE = [
    ("Family Medicine", "less", 240, 250, (233, 244, 254, 230)),
    ("Psychiatry", "less", 240, 250, (236, 247, 256, 234)),
    ("Pediatrics", "less", 240, 250, (239, 249, 259, 243)),
    ("Internal Medicine", "less", 240, 250, (243, 254, 262, 233)),
    ("Neurology", "less", 240, 250, (242, 252, 261, 232)),
    ("PM&R", "less", 240, 250, (241, 251, 259, 237)),
    ("Pathology", "less", 240, 250, (240, 247, 258, 237)),
    ("Child Neurology", "less", 240, 250, (240, 251, 260, None)),
    ("Radiation Oncology", "less", 240, 250, (238, 251, 261, None)),
    ("Emergency Medicine", "moderate", 245, 255, (240, 249, 258, 229)),
    ("Anesthesiology", "moderate", 245, 255, (247, 255, 263, 239)),
    ("Obstetrics and Gynecology", "moderate", 245, 255, (244, 253, 261, 245)),
    ("Medicine-Pediatrics", "moderate", 245, 255, (246, 255, 262, 249)),
    ("General Surgery", "high", 250, 260, (245, 255, 262, 238)),
    ("Diagnostic Radiology", "high", 250, 260, (249, 257, 265, 242)),
    ("Interventional Radiology", "high", 250, 260, (246, 255, 264, 252)),
    ("Internal Medicine (competitive academic)", "high", 250, 260, None),
    ("Dermatology", "hyper", 255, 265, (251, 258, 266, 252)),
    ("Orthopaedic Surgery", "hyper", 255, 265, (250, 259, 266, 251)),
    ("Plastic Surgery", "hyper", 255, 265, (250, 259, 265, 251)),
    ("Otolaryngology", "hyper", 255, 265, (250, 261, 266, 249)),
    ("Neurological Surgery", "hyper", 255, 265, (249, 256, 264, 244)),
    ("Vascular Surgery", "hyper", 255, 265, (248, 256, 264, 235)),
    ("Thoracic Surgery", "hyper", 255, 265, (256, 260, 265, 257)),
    ("Urology", "hyper", 255, 265, None),
    ("Ophthalmology", "hyper", 255, 265, None),
]




def test_packaged_table_carries_version_cycle_and_every_specialty(table: SpecialtyTable) -> None:
    """It loads the packaged file with its version and exactly the specialties of the spec."""
    assert table.version == "2026.1"
    assert "2027" in table.cycle
    assert [s.name for s in table.specialties] == [row[0] for row in SPEC_TABLE]


@pytest.mark.parametrize(("name", "tier", "solid", "excellent", "nrmp"), SPEC_TABLE)
def test_each_specialty_matches_the_spec(
    table: SpecialtyTable,
    name: str,
    tier: str,
    solid: int,
    excellent: int,
    nrmp: tuple[int, int, int, int | None] | None,
) -> None:
    """Each specialty has the tier, marks and NRMP figures of docs/rules.md, The specialty table."""
    spec = table.get(name)
    assert (spec.tier, spec.solid, spec.excellent) == (tier, solid, excellent)
    got = (spec.nrmp_q1, spec.nrmp_median, spec.nrmp_q3, spec.nrmp_unmatched_median)
    assert got == (nrmp if nrmp is not None else (None, None, None, None))
    assert spec.source.startswith(("article", "assigned"))


def test_sources_cite_the_nrmp_table_and_the_article(table: SpecialtyTable) -> None:
    """The file cites NRMP Charting Outcomes 2026 Table 5 and the article by its title."""
    sources = table.rules.sources
    assert "NRMP Charting Outcomes in the Match 2026, Table 5" in sources["nrmp"]
    assert "US MD seniors who matched to their preferred specialty" in sources["nrmp"]
    assert "Can a Strong Step 2 CK Compensate for a Mediocre Step 1 Pass?" in sources["article"]


def test_rules_numbers_come_from_the_file(table: SpecialtyTable) -> None:
    """The rules' numbers are data: passing scores, offsets, impact, trend, timing, mix."""
    rules = table.rules
    assert (rules.failing_score, rules.failing_score_before) == (218, 214)
    assert rules.failing_score_since.isoformat() == "2025-07-01"
    assert rules.borderline_below_solid == 5
    assert rules.marginal_step1_below == 210
    assert (rules.impact_clean, rules.impact_failure, rules.impact_hyper) == (80, 60, 40)
    assert (rules.trend_upward_at_least, rules.trend_stable_under) == (15, 5)
    assert rules.timing_weeks == 4
    assert [(m.reach, m.solid, m.safety) for m in (rules.mix[lv] for lv in (5, 4, 3, 2, 1))] == [
        (25, 50, 25), (20, 50, 30), (15, 40, 45), (10, 30, 60), (5, 25, 70),
    ]


def test_get_raises_key_error_for_an_unknown_canonical_name(table: SpecialtyTable) -> None:
    """get() takes canonical names only."""
    with pytest.raises(KeyError):
        table.get("EM")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IM", "Internal Medicine"),
        ("Internal Med", "Internal Medicine"),
        ("EM", "Emergency Medicine"),
        ("Emergency Med", "Emergency Medicine"),
        ("FM", "Family Medicine"),
        ("Family Med", "Family Medicine"),
        ("Peds", "Pediatrics"),
        ("Psych", "Psychiatry"),
        ("Neuro", "Neurology"),
        ("Gen Surg", "General Surgery"),
        ("General Surg", "General Surgery"),
        ("OB/GYN", "Obstetrics and Gynecology"),
        ("OB-GYN", "Obstetrics and Gynecology"),
        ("OBGYN", "Obstetrics and Gynecology"),
        ("Obstetrics & Gynecology", "Obstetrics and Gynecology"),
        ("Ortho", "Orthopaedic Surgery"),
        ("Orthopedic Surgery", "Orthopaedic Surgery"),
        ("ENT", "Otolaryngology"),
        ("Derm", "Dermatology"),
        ("Rads", "Diagnostic Radiology"),
        ("Radiology", "Diagnostic Radiology"),
        ("DR", "Diagnostic Radiology"),
        ("IR", "Interventional Radiology"),
        ("PM&R", "PM&R"),
        ("PMR", "PM&R"),
        ("PM & R", "PM&R"),
        ("Physical Medicine and Rehabilitation", "PM&R"),
        ("Anesthesia", "Anesthesiology"),
        ("Gas", "Anesthesiology"),
        ("Plastics", "Plastic Surgery"),
        ("Neurosurgery", "Neurological Surgery"),
        ("Vascular", "Vascular Surgery"),
        ("CT Surgery", "Thoracic Surgery"),
        ("Cardiothoracic", "Thoracic Surgery"),
        ("Path", "Pathology"),
        ("Urology", "Urology"),
        ("Ophtho", "Ophthalmology"),
        ("Med-Peds", "Medicine-Pediatrics"),
        ("Rad Onc", "Radiation Oncology"),
        ("Child Neuro", "Child Neurology"),
        ("IM academic", "Internal Medicine (competitive academic)"),
        ("Competitive IM", "Internal Medicine (competitive academic)"),
        ("Academic Internal Medicine", "Internal Medicine (competitive academic)"),
    ],
)
def test_aliases_resolve_to_the_canonical_specialty(
    table: SpecialtyTable, text: str, expected: str
) -> None:
    """Each alias the office uses names one specialty."""
    found = table.resolve(text)
    assert found is not None and found.name == expected


@pytest.mark.parametrize(
    "text", ["  emergency   medicine ", "EMERGENCY-MEDICINE", "e.m.", "Emergency_Medicine\t"]
)
def test_matching_ignores_case_spaces_and_punctuation(table: SpecialtyTable, text: str) -> None:
    """Names match however the roster cell is typed."""
    found = table.resolve(text)
    assert found is not None and found.name == "Emergency Medicine"


def test_urology_and_ophthalmology_are_two_specialties(table: SpecialtyTable) -> None:
    """The spec's "Urology, Ophthalmology" row is two hyper-tier specialties without NRMP data."""
    for name in ("Urology", "Ophthalmology"):
        spec = table.get(name)
        got = (spec.tier, spec.solid, spec.excellent, spec.nrmp_median)
        assert got == ("hyper", 255, 265, None)
    assert table.resolve("Urology, Ophthalmology") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Opthalmology", "Ophthalmology"),
        ("Dermatolgy", "Dermatology"),
        ("Emergancy Medicine", "Emergency Medicine"),
        ("Pediatircs", "Pediatrics"),
        ("Emergency Medicine residency", "Emergency Medicine"),
        ("Derm", "Dermatology"),
    ],
)
def test_suggest_offers_a_did_you_mean(table: SpecialtyTable, text: str, expected: str) -> None:
    """An unknown name gets the closest canonical name."""
    assert table.suggest(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "xyz", "Astronaut"])
def test_suggest_gives_nothing_for_unrelated_text(table: SpecialtyTable, text: str) -> None:
    """Nonsense gets no suggestion rather than a wild guess."""
    assert table.resolve(text) is None
    assert table.suggest(text) is None


def test_normalise_drops_case_spaces_punctuation_and_accents() -> None:
    """The matching key is the letters and digits only, with & read as "and"."""
    assert normalise(" OB/GYN ") == normalise("ob-gyn") == "obgyn"
    assert normalise("Pédiatrics") == "pediatrics"
    assert normalise("PM&R") == normalise("PM and R")


# --- bad files: each names the file, the entry and the fix ------------------------------------


def assert_rules_error(text: str, *fragments: str) -> str:
    with pytest.raises(RulesError) as caught:
        parse_table(text, ORIGIN)
    message = str(caught.value)
    assert message.startswith(f"{ORIGIN}: ")
    assert "Fix: " in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_an_unknown_tier_is_refused() -> None:
    """A tier outside less / moderate / high / hyper names the entry and the allowed tiers."""
    text = changed('name = "Psychiatry"\ntier = "less"', 'name = "Psychiatry"\ntier = "easy"')
    message = assert_rules_error(text, 'specialty entry 2 "Psychiatry"', 'tier "easy" is unknown')
    assert '"hyper"' in message


@pytest.mark.parametrize(("solid", "excellent"), [(255, 255), (260, 255)])
def test_solid_not_below_excellent_is_refused(solid: int, excellent: int) -> None:
    """solid >= excellent names the entry and both marks."""
    old = 'name = "Emergency Medicine"\ntier = "moderate"\nsolid = 245\nexcellent = 255'
    new = old.replace("solid = 245\nexcellent = 255", f"solid = {solid}\nexcellent = {excellent}")
    assert_rules_error(
        changed(old, new),
        'specialty entry 10 "Emergency Medicine"',
        f"solid ({solid}) is not below excellent ({excellent})",
    )


def test_an_alias_shared_by_two_specialties_is_refused_after_normalisation() -> None:
    """ "o.b. gyn" on Family Medicine clashes with OB/GYN's alias, whatever the punctuation."""
    text = changed(
        'aliases = ["FM", "Family Med", "Fam Med", "Family Practice"]',
        'aliases = ["FM", "o.b. gyn"]',
    )
    assert_rules_error(
        text,
        'specialty entry 12 "Obstetrics and Gynecology"',
        '"Family Medicine"',
        '"o.b. gyn"',
    )


def test_an_alias_equal_to_another_specialty_name_is_refused() -> None:
    """An alias may not spell another specialty's canonical name."""
    text = changed('aliases = ["Psych"]', 'aliases = ["Psych", "pediatrics"]')
    assert_rules_error(text, 'specialty entry 3 "Pediatrics"', 'already used by "Psychiatry"')


def test_a_specialty_listed_twice_is_refused() -> None:
    """Two entries with one name are refused rather than silently merged."""
    text = PACKAGED + '\n[[specialty]]\nname = "Psychiatry"\ntier = "less"\nsolid = 240\n' + (
        'excellent = 250\nsource = "article"\nfamily = "medical"\naliases = []\n'
    )
    assert_rules_error(text, 'specialty entry 27 "Psychiatry"', "appears twice")


@pytest.mark.parametrize("field", ["tier", "solid", "excellent", "source", "aliases"])
def test_a_missing_field_names_the_entry_and_the_field(field: str) -> None:
    """Dropping a field from Dermatology says which entry and which field."""
    block_start = PACKAGED.index('name = "Dermatology"')
    block_end = PACKAGED.index("[[specialty]]", block_start)
    block = PACKAGED[block_start:block_end]
    kept = "\n".join(line for line in block.splitlines() if not line.startswith(f"{field} ="))
    text = PACKAGED[:block_start] + kept + "\n\n" + PACKAGED[block_end:]
    assert_rules_error(
        text, 'specialty entry 18 "Dermatology"', f'the field "{field}" is missing'
    )


def test_a_missing_name_names_the_entry_by_position() -> None:
    """An entry without a name is found by its position in the file."""
    text = changed('name = "Pathology"\n', "")
    assert_rules_error(text, "specialty entry 7 (no name)", 'the field "name" is missing')


def test_a_score_that_is_not_a_number_is_refused() -> None:
    """A mark written as text is refused with the field named."""
    old = 'name = "Pathology"\ntier = "less"\nsolid = 240'
    text = changed(old, old.replace("240", '"240"'))
    assert_rules_error(
        text, 'specialty entry 7 "Pathology"', 'the field "solid" must be a whole number'
    )


def test_nrmp_figures_out_of_order_are_refused() -> None:
    """Q1 / median / Q3 copied in the wrong order are caught."""
    text = changed("q1 = 233, median = 244, q3 = 254", "q1 = 244, median = 233, q3 = 254")
    assert_rules_error(text, 'specialty entry 1 "Family Medicine", nrmp', "out of order")


def test_a_missing_version_is_refused() -> None:
    """The version every evaluation carries must be there."""
    text = changed('version = "2026.1"\n', "")
    assert_rules_error(text, "top of the file", '"version" is missing')


def test_invalid_toml_is_refused_with_the_file_named() -> None:
    """A syntax error names the file and says what to compare against."""
    assert_rules_error(changed('tier = "less"', "tier = less"), "not a valid TOML file")


def test_a_rule_number_without_its_source_is_refused() -> None:
    """Each rules table says where its numbers come from."""
    old = 'failing_score_since = 2025-07-01\nsource = "usmle"'
    text = changed(old, "failing_score_since = 2025-07-01")
    assert_rules_error(text, "[rules.step2]", 'the field "source" is missing')


def test_a_missing_matrix_cell_is_refused() -> None:
    """The matrix must cover every Step 1 status, tier and band."""
    cell = 'excellent = { level = 3, label = "Matchable at community programs, with explanation" }'
    text = changed(f"[matrix.failure.moderate]\n{cell}\n", "[matrix.failure.moderate]\n")
    assert_rules_error(text, "[matrix.failure.moderate]", 'the table "excellent" is missing')


def test_a_matrix_row_whose_level_rises_as_the_score_falls_is_refused() -> None:
    """A lower band may not give a higher level: a better score must never hurt."""
    old = 'below = { level = 2, label = "Apply broadly" }'
    text = changed(old, old.replace("2", "5"))
    assert_rules_error(text, "[matrix.clean.less]", "below has level 5")


def test_a_program_mix_that_does_not_add_up_is_refused() -> None:
    """Reach, solid and safety shares must add up to 100."""
    text = changed("5 = { reach = 25, solid = 50,", "5 = { reach = 30, solid = 50,")
    assert_rules_error(text, "[mix], level 5", "is 105")


def test_parse_table_accepts_the_packaged_text_under_any_origin() -> None:
    """An unedited copy of the packaged file parses to the same table."""
    assert parse_table(PACKAGED, ORIGIN) == load_default_table()


# --- an office's copy from an earlier version ----------------------------------------------

FIRST_RELEASE = Path(__file__).parent / "data" / "specialties_first_release.toml"


def test_an_office_copy_of_the_first_release_loads_with_the_packaged_new_tables(
    table: SpecialtyTable,
) -> None:
    """The first shipped data file (as an office copied it) lacks the tables added since: it
    loads, each missing one comes from the package and is named; its own numbers stay."""
    text = FIRST_RELEASE.read_text(encoding="utf-8")
    old = parse_table(text, str(FIRST_RELEASE))
    assert {"[plan]", "[levels]", "[rules.exam]", "[rules.study]", "[calendar]"} <= set(old.filled)
    assert old.rules.plan == table.rules.plan and old.rules.levels == table.rules.levels
    assert old.get("Ophthalmology").match == "sf_match"
    # An office's own number is kept, never replaced by the packaged one.
    edited = parse_table(text.replace("min_research = 1", "min_research = 3"), "edited.toml")
    assert edited.rules.package_min_research == 3 != table.rules.package_min_research
    # The packaged file itself fills nothing.
    assert table.filled == ()


def test_a_specialty_the_office_added_still_needs_its_own_family() -> None:
    """Only specialties the package knows take its new keys: the office's own is named."""
    text = FIRST_RELEASE.read_text(encoding="utf-8") + (
        '\n[[specialty]]\nname = "Sports Medicine"\ntier = "less"\nsolid = 235\n'
        'excellent = 245\naliases = []\nsource = "office"\n'
    )
    with pytest.raises(RulesError, match=r'"Sports Medicine".*"family" is missing'):
        parse_table(text, "office.toml")


def test_the_cli_names_what_an_older_copy_lacked(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`advising check` says once, at start, which tables came from the package."""
    from flows.cli import main
    from tests.support.workbooks import make_office_workbook

    roster = workdir / "class-2027.xlsx"
    make_office_workbook(roster)
    monkeypatch.setenv("ADVISING_SPECIALTY_TABLE", str(FIRST_RELEASE))
    assert main(["check", str(roster)]) in (0, 1)  # 1: the workbook's own problems listed
    err = capsys.readouterr().err
    assert "is a copy from an earlier version" in err and "[plan]" in err, err
