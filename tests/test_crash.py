"""Faults in real processes: a run killed with SIGKILL, and two runs at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli import main
from flows.delivery.ledger import Ledger
from flows.intake.demo import write_demo_roster
from tests.support.smtp_sink import Sink, running_sink

pytestmark = pytest.mark.slow

ADVISING = [sys.executable, "-m", "flows.cli"]
STUDENTS = 40


def _env(workdir: Path, sink: Sink, rate: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({
        "PREFECT_HOME": str(workdir / ".prefect"),
        "ADVISING_DELIVERY": "smtp",
        "ADVISING_SMTP_HOST": sink.host,
        "ADVISING_SMTP_PORT": str(sink.port),
        "ADVISING_SMTP_SECURITY": "none",
        "ADVISING_MAIL_FROM": "advising@example.edu",
        "ADVISING_ALLOWED_EMAIL_DOMAINS": "students.example.edu",
        "ADVISING_SEND_RATE_PER_MINUTE": str(rate),
    })
    return env


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _outputs_are_whole(out: Path, finished: bool) -> None:
    """Every output under its final name is complete; a finished run leaves no temporary file."""
    for path in out.rglob("*"):
        if path.is_file():
            parts = path.relative_to(out).parts
            if parts[0] == ".advising":  # the product's own files: the ledger, the locks
                continue
            hidden = any(part.startswith(".") for part in parts)
            if hidden:  # a temporary file or staging folder, never read by anyone
                assert not finished, f"temporary file left behind: {path}"
                continue
            if path.suffix == ".xlsx":
                with zipfile.ZipFile(path) as zf:
                    assert zf.testzip() is None
            if path.suffix == ".json":
                json.loads(path.read_text())
            if path.suffix == ".html":
                assert path.read_text(encoding="utf-8").rstrip().endswith("</html>")


def _delivered_once(sink: Sink, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts = sink.handler.per_recipient()
    assert max(counts.values()) == 1, "a student was mailed twice"
    with Ledger(workdir / "output" / ".advising" / "delivery-ledger.sqlite") as ledger:
        uncertain = len(ledger.uncertain())  # at most the one message in flight at the kill
    capsys.readouterr()
    assert main(["uncertain"]) == (1 if uncertain else 0)
    listed = capsys.readouterr().out
    assert listed.count("@") == uncertain  # one Message-ID per uncertain letter
    assert main(["uncertain", "--release-all"]) == 0
    assert f"Released {uncertain} letter(s)" in capsys.readouterr().out
    # The one message in flight at the kill is "uncertain": never resent; it reached the relay
    # or not, depending on the moment. Every other student got exactly one letter.
    assert uncertain <= 1
    assert STUDENTS - uncertain <= len(counts) <= STUDENTS


@pytest.mark.usefixtures("warm_prefect")
@pytest.mark.parametrize("moment", ["while rendering", "mid-delivery"])
def test_a_run_killed_at_any_moment_is_completed_by_the_next(
    workdir: Path, moment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL mid-run loses nothing: the next run finishes and nobody is mailed twice."""
    roster = write_demo_roster(workdir / "input" / "killed.xlsx", STUDENTS, seed=5)
    original = roster.read_bytes()
    out = workdir / "output" / "killed"
    with running_sink() as sink:
        env = _env(workdir, sink, rate=300)  # 0.2 s a message: time to kill mid-delivery
        proc = subprocess.Popen([*ADVISING, "run"], cwd=workdir, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if moment == "while rendering":
            # Letters are written into a hidden staging folder until every one is rendered.
            reached = _wait(lambda: any(out.glob(".letters.*.tmp/*.html")), 120)
        else:
            reached = _wait(lambda: len(sink.received) >= 8, 180)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert reached, f"the run never got to {moment}"
        assert len(sink.received) < STUDENTS

        # Nothing was lost: the roster is still in input/, untouched; outputs are whole.
        assert roster.read_bytes() == original
        _outputs_are_whole(out, finished=False)

        env["ADVISING_SEND_RATE_PER_MINUTE"] = "0"
        again = subprocess.run([*ADVISING, "run"], cwd=workdir, env=env, capture_output=True,
                               text=True, timeout=300)
        assert "killed.xlsx: processed" in again.stdout, again.stdout + again.stderr
        _outputs_are_whole(out, finished=True)
        _delivered_once(sink, workdir, capsys)
    assert not roster.exists()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_two_runs_at_once_process_each_roster_once(workdir: Path) -> None:
    """The nightly run and a manual one started together never mail a student twice."""
    write_demo_roster(workdir / "input" / "together.xlsx", STUDENTS, seed=9)
    with running_sink() as sink:
        env = _env(workdir, sink, rate=0)
        procs = [
            subprocess.Popen([*ADVISING, "run"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert sorted(p.returncode for p in procs) == [0, 0], outs
        processed = sum(out.count("together.xlsx: processed") for out, _ in outs)
        assert processed == 1, outs
        counts = sink.handler.per_recipient()
        assert set(counts.values()) == {1}
        assert len(counts) == STUDENTS
    assert len(list((workdir / "input" / "processed").rglob("*.xlsx"))) == 1
