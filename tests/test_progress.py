"""Progress lines for long runs (#26): a line per stage on stderr, counts batch by batch."""

from __future__ import annotations

import pytest

from flows.progress import PROGRESS_FROM, Progress


def test_a_long_roster_prints_a_line_per_stage_and_the_running_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress("class-2027.xlsx", PROGRESS_FROM * 5)
    progress.stage("read", 1.23, "5,000 student rows")
    progress.count(2500, 2400)
    progress.stage("workbook written", 0.5)
    out, err = capsys.readouterr()
    assert out == ""  # the summary keeps stdout to itself
    assert err.splitlines() == [
        "class-2027.xlsx: read in 1.2 s (5,000 student rows)",
        "class-2027.xlsx: letters 2,500/5,000, delivered 2,400",
        "class-2027.xlsx: workbook written in 0.5 s",
    ]


def test_a_short_roster_off_a_terminal_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("small.xlsx", 8)
    progress.stage("read", 0.1, "8 student rows")
    progress.count(8, 8)
    assert capsys.readouterr() == ("", "")


def test_on_a_terminal_the_count_is_rewritten_in_place_and_ended_before_the_next_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress("small.xlsx", 8, live=True)
    progress.count(4, 4)
    progress.count(8, 8)
    progress.stage("letters and delivery", 2.0, "8 letters")
    err = capsys.readouterr().err
    assert err == ("\rsmall.xlsx: letters 4/8, delivered 4\rsmall.xlsx: letters 8/8, "
                   "delivered 8\nsmall.xlsx: letters and delivery in 2.0 s (8 letters)\n")
