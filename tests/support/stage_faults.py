"""`advising run` with an exception injected into each stage, for the privacy tests.

The roster named `<stage>.xlsx` meets, in that stage's inner function, an exception whose
message quotes a student's name, email and score (given in ADVISING_TEST_SECRET): what a bug
in a library reading a cell might say. Every other roster runs as usual. Run as
`python -m tests.support.stage_faults` from the drop folder's parent, like `advising run`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from flows import cli
from flows.runtime import apply_prefect_defaults

STAGES = ("ingest", "validate", "evaluate", "render letters", "deliver", "write workbook")


def _file_for(stage: str) -> str:
    return stage.split()[0] + ".xlsx"


def _inject(owner: Any, attr: str, stage: str, secret: str) -> None:
    """Replace owner.attr by a function that raises in the task run of the stage's roster."""
    from prefect.runtime import task_run

    original: Callable[..., Any] = getattr(owner, attr)

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if str(task_run.name).endswith(f": {_file_for(stage)}"):
            raise ValueError(f"cell quoted by a library: {secret} ({stage})")
        return original(*args, **kwargs)

    setattr(owner, attr, faulty)


def main() -> int:
    apply_prefect_defaults()
    import flows.intake
    import flows.letters.render
    import flows.pipeline

    secret = os.environ["ADVISING_TEST_SECRET"]
    _inject(flows.intake, "ingest", "ingest", secret)
    _inject(flows.intake, "validate", "validate", secret)
    _inject(flows.pipeline, "evaluate_all", "evaluate", secret)
    _inject(flows.letters.render, "_render_letter", "render letters", secret)  # per student
    _inject(flows.pipeline, "deliver", "deliver", secret)
    _inject(flows.pipeline, "write_annotated", "write workbook", secret)
    return cli.main(["run"])


if __name__ == "__main__":
    sys.exit(main())
