"""The documents that ship with the product, for `advising docs` and for messages to name.

A built wheel carries README.md and docs/*.md inside the package (setup.py copies them into
flows/docs/); a checkout reads them where they are. A message that says "see README" points at
a file IT has on the server, whichever way the product was installed.
"""

from __future__ import annotations

from pathlib import Path

from flows.errors import AdvisingError

_PACKAGED = Path(__file__).resolve().parent / "docs"
_CHECKOUT = Path(__file__).resolve().parent.parent

# name -> (file in a checkout, what it holds)
DOCS: dict[str, tuple[str, str]] = {
    "readme": ("README.md", "quick start, the office's day, every setting, running it nightly, "
               "a consortium, data and uninstall"),
    "rules": ("docs/rules.md", "the outlook rules, the application calendar and every letter "
              "item with its condition and source, for an advisor to review"),
    "speed": ("docs/speed.md", "the benchmark's commands and figures, the peer's configuration"),
    "development": ("docs/development.md", "how it is built (stages, the typed run, the layers), "
                    "the checks and the tests"),
}


def doc_path(name: str) -> Path:
    """Return the installed file of one document (the packaged copy in a wheel)."""
    if name not in DOCS:
        raise AdvisingError(f"no document {name!r}; the documents are {', '.join(DOCS)}")
    relative = DOCS[name][0]
    packaged = _PACKAGED / Path(relative).name
    return packaged if packaged.is_file() else _CHECKOUT / relative


def listing() -> str:
    """Name every document with where it is on this machine and what it holds."""
    lines = ["The documents of this installation (`advising docs NAME` prints one):"]
    for name, (_, holds) in DOCS.items():
        lines.append(f"  {name:<11} {doc_path(name)}\n              {holds}")
    return "\n".join(lines)
