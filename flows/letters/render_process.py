"""A second process that renders letter batches while this one delivers the others.

Rendering is pure CPU and delivery mostly waits on the relay, but threads cannot overlap them:
a rendering thread holds the GIL and every reply the sessions wait for is then late. A process
on the other core renders batches (and writes their files) while this process sends; which
batch goes where is flows.pipeline.render_in_turn's choice. Its letters come back without
their HTML and text, which this process reads from the files (flows.letters.render.with_bodies).
Only rosters of more than one batch use it: starting it costs about a second.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from flows.letters.model import Letter, LetterSummary
from flows.letters.render import render_letters, without_bodies
from flows.settings import Settings
from residency_rules.records import Evaluation, StudentRecord
from residency_rules.specialties import SpecialtyTable


def _watch_parent() -> None:
    """Exit when the parent process dies (a killed run must not leave a renderer writing)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _ready() -> bool:
    return True


def _render(*job: Any) -> list[Letter]:
    """render_letters(*job), in the render process; the bodies go back through the files."""
    return without_bodies(render_letters(*job))


class RenderPool:
    """One rendering process, started at once so its start-up overlaps the stages before."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),  # fork is unsafe with threads
            initializer=_watch_parent,
        )
        self._pool.submit(_ready)  # start the process now, from this thread

    def submit(
        self,
        records: Sequence[StudentRecord],
        evaluations: Mapping[str, Evaluation],
        table: SpecialtyTable,
        settings: Settings,
        previous: Mapping[str, LetterSummary],
        letters_dir: Path,
    ) -> Future[list[Letter]]:
        """Render one batch in the other process; the future holds its letters (or its error).

        Their HTML and text are in letters_dir, not in memory: flows.letters.render.with_bodies.
        """
        mine = {r.student_id: evaluations[r.student_id] for r in records
                if r.student_id in evaluations}
        return self._pool.submit(
            _render, list(records), mine, table, settings, dict(previous), letters_dir
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
