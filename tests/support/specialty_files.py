"""The packaged specialties.toml as text, and an office's one edit of it (for import tests)."""


from __future__ import annotations

from importlib import resources

PACKAGED = (
    resources.files("residency_rules").joinpath("data", "specialties.toml").read_text("utf-8")
)


ORIGIN = "office/specialties.toml"


def changed(old: str, new: str) -> str:
    """Return the packaged file text with one edit, as an office might make it."""
    assert old in PACKAGED, old
    return PACKAGED.replace(old, new, 1)

