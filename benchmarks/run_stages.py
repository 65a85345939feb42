"""`advising run`, exactly as the console script runs it, plus a peak-memory reading per stage.

The benchmark starts this in a subprocess instead of the `advising` script when it wants the
memory of each stage: it wraps `flows.pipeline._timed` (the context manager that already times
each stage into run.json), when the CLI imports the pipeline, so that each stage also resets the
kernel's peak-RSS mark on entry and reads it on exit. Nothing else changes: the same imports
in the same order, so the run takes as long as `advising run` does. Linux only
(/proc/self/clear_refs, /proc/self/status); elsewhere, and if the pipeline stops having
`_timed`, the run goes on without the memory figures.

Environment: BENCH_STAGE_MEMORY=<file> receives the JSON; BENCH_PROFILE=<file.html> profiles the
whole run with pyinstrument (a text copy goes beside it, <file>.txt).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

_HWM = re.compile(r"^VmHWM:\s+(\d+) kB", re.M)
_RSS = re.compile(r"^VmRSS:\s+(\d+) kB", re.M)


def _status() -> tuple[int, int]:
    """Return (current RSS, peak RSS) of this process in bytes."""
    text = Path("/proc/self/status").read_text()
    rss, hwm = _RSS.search(text), _HWM.search(text)
    return (int(rss.group(1)) * 1024 if rss else 0, int(hwm.group(1)) * 1024 if hwm else 0)


def _reset_peak() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def wrap_timer(pipeline: ModuleType, stages: dict[str, dict[str, Any]]) -> bool:
    """Wrap the pipeline's stage timer so each stage records its memory too."""
    original = getattr(pipeline, "_timed", None)
    if original is None or not Path("/proc/self/status").exists():
        return False

    @contextmanager
    def timed_with_memory(timings: dict[str, float], stage: str) -> Iterator[None]:
        rss_before, peak_before = _status()
        reset = _reset_peak()
        start = time.perf_counter()
        try:
            with original(timings, stage):
                yield
        finally:
            rss_after, peak = _status()
            stages[stage] = {
                "seconds": round(time.perf_counter() - start, 3),
                "rss_before": rss_before,
                "rss_after": rss_after,
                # With the reset, the peak during this stage; without, the peak of the run so far.
                "peak": peak if reset else max(peak, peak_before),
                "peak_is_per_stage": reset,
            }

    pipeline._timed = timed_with_memory  # type: ignore[attr-defined]
    return True


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Wrap flows.pipeline's timer the moment the CLI imports it, and not before.

    Importing the pipeline here, ahead of the CLI, would import Prefect before the CLI has
    started its temporary server and set PREFECT_API_URL: the run would then start a second
    server and take seconds longer than `advising run` does. So this waits for the CLI's own
    import, exactly where it happens.
    """

    def __init__(self, stages: dict[str, dict[str, Any]]) -> None:
        self.stages = stages
        self.hooked = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name != "flows.pipeline":
            return None
        sys.meta_path.remove(self)  # once, and no recursion into ourselves
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run_module = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            self.hooked = wrap_timer(module, self.stages)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def main() -> int:
    """Run `advising run` in this process; write the per-stage memory when asked to."""
    from flows import cli

    stages: dict[str, dict[str, Any]] = {}
    out = os.environ.get("BENCH_STAGE_MEMORY")
    profile_path = os.environ.get("BENCH_PROFILE")
    finder = _WrapOnImport(stages)
    sys.meta_path.insert(0, finder)
    profiler = None
    if profile_path:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.005)
        profiler.start()
    try:
        status = cli.entry(["run", *sys.argv[1:]])  # ends as the console script does
    finally:
        if profiler is not None and profile_path:
            profiler.stop()
            Path(profile_path).write_text(profiler.output_html(), encoding="utf-8")
            Path(profile_path).with_suffix(".txt").write_text(
                profiler.output_text(unicode=True, color=False, show_all=False),
                encoding="utf-8",
            )
        if out:
            rss, peak = _status()
            Path(out).write_text(
                json.dumps({"hooked": finder.hooked, "stages": stages, "end_rss": rss}, indent=2),
                encoding="utf-8",
            )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
