"""Operations: the nightly deployment on a real Prefect server, and logs without personal data."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

import pytest

from flows.intake.demo import demo_rows, write_demo_roster
from tests.support.processes import VENV_BIN, free_port, healthy, stop_group, wait_for


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_serve_registers_a_nightly_deployment_that_runs_on_a_real_server(workdir: Path) -> None:
    """`advising serve` registers the cron deployment; a triggered run leaves the outputs.

    The server is the session's (a real one in its own process: a fresh one costs about 10 s
    of database migrations); serve and the runs it starts are processes of their own."""
    from prefect.settings import PREFECT_API_URL

    api = str(PREFECT_API_URL.value())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(workdir / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "ADVISING_APPROVAL": "always",  # the outbox's letters wait too, for the office's approval
    })
    serve = None
    try:
        wait_for(lambda: healthy(api), 120, "the Prefect server")
        env["PREFECT_API_URL"] = api
        write_demo_roster(workdir / "input" / "nightly.xlsx", 8, seed=3)
        serve = subprocess.Popen(
            [str(VENV_BIN / "advising"), "serve"], cwd=workdir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )

        def deployment() -> dict | None:
            req = urllib.request.Request(
                api + "/deployments/name/advising-nightly/nightly", method="GET"
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return json.loads(resp.read())
            except OSError:
                return None

        wait_for(lambda: deployment() is not None, 120, "the deployment to be registered")
        dep = deployment()
        assert dep is not None
        crons = [s["schedule"].get("cron") for s in dep.get("schedules", [])]
        assert crons == ["0 2 * * *"]
        tz = [s["schedule"].get("timezone") for s in dep["schedules"]]
        assert tz == ["America/New_York"]
        # The UI shows the cron in the browser's zone: the description names the schedule's.
        assert "'0 2 * * *' in the time zone America/New_York" in dep["description"]

        run = subprocess.run(
            [str(VENV_BIN / "prefect"), "deployment", "run", "advising-nightly/nightly"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        run_json = workdir / "output" / "nightly" / "run.json"
        wait_for(run_json.is_file, 180, "the triggered run to write run.json")
        assert json.loads(run_json.read_text())["counts"]["letters_written"] == 8
        assert json.loads(run_json.read_text())["counts"]["waiting"] == 8

        # The office approves from the browser: the approve deployment, with its parameters.
        approve = subprocess.run(
            [str(VENV_BIN / "prefect"), "deployment", "run", "advising-approve/approve",
             "-p", "roster=nightly.xlsx", "-p", "approved_by=Dr. Ortiz"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
        )
        assert approve.returncode == 0, approve.stdout + approve.stderr
        ledger = workdir / "output" / ".advising" / "delivery-ledger.sqlite"

        def approvals() -> list[tuple[str, str]]:
            with sqlite3.connect(ledger) as db:
                return list(db.execute("SELECT student_id, approved_by FROM approvals"))

        wait_for(lambda: len(approvals()) == 8, 180, "the approval run to record 8 letters")
        assert {by for _, by in approvals()} == {"Dr. Ortiz (Prefect UI)"}
        assert (workdir / "input" / "nightly.xlsx").is_file()  # back for the next run
    finally:
        if serve is not None:
            stop_group(serve)


def test_serve_without_a_server_says_what_to_do(workdir: Path) -> None:
    """Without a reachable Prefect server, `advising serve` explains how to start one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
    env["ADVISING_SERVER_WAIT_SECONDS"] = "6"  # it waits for a server coming up at boot
    proc = subprocess.run(
        [str(VENV_BIN / "advising"), "serve"], cwd=workdir, env=env, capture_output=True,
        text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "prefect server start" in proc.stderr and "after 6 s" in proc.stderr
    assert "Waiting for the Prefect server" in proc.stdout  # a line each 5 s meanwhile
    assert "Traceback" not in proc.stderr


@pytest.mark.usefixtures("warm_prefect")
@pytest.mark.slow
def test_logs_carry_no_names_scores_or_grades(workdir: Path) -> None:
    """A real run's console and Prefect logs hold student IDs at most, never personal data."""
    students = 15
    write_demo_roster(workdir / "input" / "privacy.xlsx", students, seed=11)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({
        "PREFECT_HOME": str(workdir / ".prefect"),
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "DEBUG",
    })
    proc = subprocess.run(
        [str(VENV_BIN / "advising"), "run", "--verbose"], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The temporary server's database is the product's own (#26), not PREFECT_HOME's.
    assert not (workdir / ".prefect" / "prefect.db").exists()
    with sqlite3.connect(workdir / "output" / ".advising" / "prefect" / "prefect.db") as db:
        stored = "\n".join(m for (m,) in db.execute("SELECT message FROM log"))
        artifacts = [d for (d,) in db.execute(
            "SELECT data FROM artifact WHERE key = 'advising-run-summary'"
        )]
    assert "privacy.xlsx" in stored  # the flow's own records really reached Prefect
    # The run summary artifact: a table of counts per roster, and nothing personal.
    assert len(artifacts) == 1
    summary = json.loads(artifacts[0]) if artifacts[0].startswith('"') else artifacts[0]
    assert f"| privacy.xlsx | done |  | {students} | 0 | {students} |" in summary
    log = proc.stdout + proc.stderr + stored + summary
    for row in demo_rows(students, seed=11):
        for value in (row[1], row[2], row[3]):
            assert not re.search(rf"\b{re.escape(str(value))}\b", log), (
                "a student's name or address reached the log"
            )
    for grade in ("Honors", "High Pass"):
        assert grade not in log
