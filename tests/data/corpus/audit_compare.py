"""Print, per corpus roster and writer, the openxml-audit findings the annotated workbook adds.

Run from the repository root: `PYTHONPATH=. .venv/bin/python tests/data/corpus/audit_compare.py`
(about a minute). Each line: file | the input's own findings | new with the fast writer | what
they say | new with the openpyxl writer | what they say. The tests assert every count is 0; this
prints the figures for a report, and runs on an older checkout too (copy this folder and
tests/test_workbook_corpus.py into it) to show what a change fixed.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, ".")


def main() -> int:
    import flows.workbook.annotate as workbook_module
    import tests.test_workbook_corpus as corpus
    from flows.ooxml import UnsupportedWorkbook

    logging.disable(logging.WARNING)
    fast = workbook_module.write_with_xml

    def refuse(*_: object) -> None:
        raise UnsupportedWorkbook("forced")

    totals = {"xml": 0, "openpyxl": 0}
    files = {"xml": 0, "openpyxl": 0}
    for name in corpus.FILES:
        line: list[object] = [name, len(corpus.findings(str(corpus.CORPUS / name)))]
        for writer in ("xml", "openpyxl"):
            workbook_module.write_with_xml = fast if writer == "xml" else refuse  # type: ignore
            folder = Path(tempfile.mkdtemp())
            source = folder / name
            shutil.copyfile(corpus.CORPUS / name, source)
            try:
                out = corpus.annotate(source, folder / "out")[2]
                new = corpus._new_findings(corpus.CORPUS / name, out)
            except Exception as exc:  # noqa: BLE001 - a report line, not a test
                line += ["error", f"{type(exc).__name__}: {str(exc)[:80]}"]
                continue
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            totals[writer] += len(new)
            files[writer] += bool(new)
            line += [len(new), "; ".join(sorted({text[:60] for _, _, text in new}))[:150]]
        print(" | ".join(str(x) for x in line))
    print(f"new findings: {totals}; files with any: {files} of {len(corpus.FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
