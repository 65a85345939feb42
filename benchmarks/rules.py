"""Time evaluate_all on synthetic students: `python -m benchmarks.rules [count] [runs]`.

A measurement, not a test: the figure to reach is 100,000 students well under 2 s.
"""

from __future__ import annotations

import datetime as _dt
import random
import statistics
import sys
import time

from residency_rules.records import CLERKSHIPS, Grade, LetterStrength, StudentRecord
from residency_rules.rules import evaluate_all
from residency_rules.specialties import SpecialtyTable, load_default_table

_GRADES: tuple[Grade | None, ...] = ("H", "HP", "HP", "P", "P", "P", "F", None, None)
_LETTERS: tuple[LetterStrength | None, ...] = ("strong", "average", "weak", None)


def synthetic(count: int, table: SpecialtyTable, seed: int = 2026) -> list[StudentRecord]:
    """Make students with the spread a real roster has: blanks, failures, every specialty."""
    rng = random.Random(seed)
    names = table.names()
    records: list[StudentRecord] = []
    for i in range(count):
        roll = rng.random()
        result = "pass" if roll < 0.93 else ("fail" if roll < 0.97 else "not taken")
        attempts = 1
        if result == "pass" and rng.random() < 0.06:
            attempts = rng.choice((2, 2, 2, 3))
        score = None if rng.random() < 0.18 else max(190, min(285, int(rng.gauss(247, 14))))
        exam = _dt.date(2026, 4, 1) + _dt.timedelta(days=rng.randrange(0, 200))
        records.append(
            StudentRecord(
                student_id=f"{i:06d}",
                name=f"Student {i}",
                email=None,
                step1_result=result,  # type: ignore[arg-type]  # one of the three literals
                step1_attempts=attempts,
                specialty=rng.choice(names),
                step1_score=rng.randrange(190, 260) if rng.random() < 0.05 else None,
                step1_margin=rng.choice(("marginal", "comfortable", None, None)),
                step2_score=score,
                step2_date=exam if rng.random() < 0.8 else None,
                clerkships=tuple((c, rng.choice(_GRADES)) for c in CLERKSHIPS),
                research_count=rng.choice((0, 1, 2, 5, None)),
                letters=rng.choice(_LETTERS),
                row=i + 2,
            )
        )
    return records


def main(argv: list[str]) -> int:
    """Print the time for each run and the median."""
    count = int(argv[0]) if argv else 100_000
    runs = int(argv[1]) if len(argv) > 1 else 5
    table = load_default_table()
    records = synthetic(count, table)
    times: list[float] = []
    for run in range(runs):
        start = time.perf_counter()
        evaluations = evaluate_all(
            records, table, review_start=_dt.date(2026, 9, 23), today=_dt.date(2026, 6, 1)
        )
        times.append(time.perf_counter() - start)
        note = " (cold caches)" if run == 0 else ""
        print(f"run {run + 1}: {count} students in {times[-1]:.3f} s{note}")
    assert len(evaluations) == count
    per = statistics.median(times) / count * 1e6
    print(f"median {statistics.median(times):.3f} s = {per:.1f} us per student")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
