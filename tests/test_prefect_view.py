"""What IT sees in Prefect: truthful run states, legible names, and nothing personal, ever."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from flows.crash import stage_guard
from flows.errors import AdvisingError, DeliveryError, RosterError, StageCrash, StudentFailed
from flows.intake.demo import HEADERS, demo_rows, write_demo_roster
from flows.outcome import RosterCounts, RosterOutcome, RosterStatus, exit_status, run_verdict
from tests.support.processes import VENV_BIN, free_port, healthy, stop_group, wait_for
from tests.support.stage_faults import STAGES

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"


def _done(**counts: Any) -> RosterOutcome:
    base = {"rows": 10, "evaluated": 10, "letters_written": 10, "emails_sent": 10}
    return RosterOutcome(file="a.xlsx", status=RosterStatus.DONE,
                         counts=RosterCounts(**{**base, **counts}))


def test_a_good_night_exits_0_and_anything_needing_attention_exits_1() -> None:
    """Delivered, unchanged or held rows: 0. Rejected, stopped, failed, nobody reached: 1."""
    fine = [
        _done(),
        _done(emails_sent=0, emails_unchanged=10),
        _done(rows=12, held_with_problems=2),
        RosterOutcome(file="b.xlsx", status=RosterStatus.WAITING, message="still being copied"),
        RosterOutcome(file="c.xlsx", status=RosterStatus.BUSY,
                      message="another run is processing it"),
    ]
    assert exit_status(fine) == 0 and run_verdict(fine) is None
    needy = {
        "rejected": RosterOutcome(file="r.xlsx", status=RosterStatus.REJECTED,
                                  reason="not a workbook",
                                  problems="/in/rejected/r.xlsx.problems.txt"),
        "stopped": RosterOutcome(file="s.xlsx", status=RosterStatus.FAILED, reason="disk full"),
        "failed": _done(emails_sent=7, emails_failed=3),
        "nobody": _done(rows=20000, evaluated=0, held_with_problems=20000, letters_written=0,
                        emails_sent=0),
    }
    for case, outcome in needy.items():
        assert exit_status([*fine, outcome]) == 1, case
    verdict = run_verdict([*fine, *needy.values()])
    assert verdict is not None
    assert verdict.startswith("4 of 9 rosters need attention: ")
    assert "r.xlsx rejected (not a workbook); see /in/rejected/r.xlsx.problems.txt" in verdict
    assert "s.xlsx stopped (disk full)" in verdict
    assert "3 letters failed or uncertain" in verdict
    assert "no student could get a letter: 20000 of 20000 held" in verdict


def test_a_reason_keeps_what_is_wrong_and_drops_quoted_details() -> None:
    """Prefect gets what is wrong and where; the library's detail and the fix stay out."""
    error = RosterError("x.xlsx is damaged or was not copied completely",
                        "save it again from Excel and drop it again",
                        detail="Bad magic number for file header")
    assert str(error) == ("x.xlsx is damaged or was not copied completely (Bad magic number "
                          "for file header); save it again from Excel and drop it again")
    assert error.summary() == "x.xlsx is damaged or was not copied completely"
    placed = RosterError("the sheet could not be read", "save it again", detail="row 7: 'Ana'",
                         file="x.xlsx", sheet="Roster")
    assert placed.summary() == "x.xlsx, sheet 'Roster': the sheet could not be read"


def test_errors_keep_their_fields_through_pickling() -> None:
    """Prefect and the render process pickle errors: what, fix and where survive the trip."""
    import pickle

    error = RosterError("no header row", "add one", problems=["line"], file="x.xlsx", row=3)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is RosterError and str(back) == str(error)
    assert (back.what, back.fix, back.file, back.row, back.problems) == (
        "no header row", "add one", "x.xlsx", 3, ["line"])


def test_a_stage_bug_reaches_prefect_as_type_file_and_student_id_only(tmp_path: Path) -> None:
    """The message names the stage, roster and student; the traceback is in error.log (600)."""
    roster = tmp_path / "input" / "cohort-b.xlsx"
    with pytest.raises(StageCrash) as caught:
        with stage_guard("render letters", roster, tmp_path / "output"):
            bug = KeyError("Kwame Dubois <k1@students.example.edu> 251")
            raise StudentFailed("0100001", bug)
    crash = caught.value
    text = str(crash)
    assert text.startswith("cohort-b.xlsx, student 0100001: render letters stopped by an "
                           "unexpected KeyError; the details are in ")
    assert (crash.file, crash.student_id, crash.kind) == ("cohort-b.xlsx", "0100001", "KeyError")
    assert "Dubois" not in text and "k1@" not in text and "251" not in text
    assert crash.__suppress_context__ and crash.__cause__ is None
    log = tmp_path / "output" / "cohort-b" / "error.log"
    assert crash.log == str(log)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert "Kwame Dubois" in log.read_text()  # the whole story, for the office's eyes


def test_the_products_own_errors_pass_the_guard_unchanged(tmp_path: Path) -> None:
    """An AdvisingError is already plain words: it reaches the flow as it was raised."""
    error = DeliveryError("relay:587 does not offer STARTTLS")
    with pytest.raises(DeliveryError) as caught:
        with stage_guard("deliver", tmp_path / "a.xlsx", tmp_path):
            raise error
    assert caught.value is error
    assert not (tmp_path / "a" / "error.log").exists()


def test_prefects_task_failure_records_lose_their_tracebacks() -> None:
    """The task engine's record of a product error is dropped; of a StageCrash, one line."""
    from flows.runtime import quiet_anticipated_failures

    quiet_anticipated_failures()
    quiet_anticipated_failures()  # once per logger, however often a flow starts
    tasks = logging.getLogger("prefect.task_runs")
    flows_logger = logging.getLogger("prefect.flow_runs")
    assert len([f for f in tasks.filters if type(f).__name__ == "_AnticipatedFailures"]) == 1

    def record(logger: logging.Logger, exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:  # noqa: BLE001
            return logger.makeRecord(logger.name, logging.ERROR, __file__, 1,
                                     "Task run failed with exception: %r", (exc,), sys.exc_info())

    assert not tasks.filter(record(tasks, AdvisingError("disk full")))
    crash = record(tasks, StageCrash("ingest of a.xlsx stopped by an unexpected KeyError"))
    assert tasks.filter(crash) and crash.exc_info is None
    setting = record(flows_logger, AdvisingError("ADVISING_SMTP_HOST is not set"))
    assert flows_logger.filter(setting) and setting.exc_info is None
    bug = record(tasks, RuntimeError("a bug in Prefect itself"))
    assert tasks.filter(bug) and bug.exc_info is not None


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_roster_where_no_student_can_get_a_letter_fails_the_run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All held because the allowed domain does not match: the flow run is Failed, exit 1."""
    from flows.pipeline import RunIncomplete, advising_run

    write_demo_roster(workdir / "input" / "elsewhere.xlsx", 4, seed=5)
    monkeypatch.setenv("ADVISING_ALLOWED_EMAIL_DOMAINS", "another-school.edu")
    state = advising_run(return_state=True)
    assert state.is_failed()
    assert state.message == (
        "1 of 1 roster needs attention: elsewhere.xlsx no student could get a letter: "
        "4 of 4 held for problems, 0 without a usable address"
    )
    incomplete = state.result(raise_on_failure=False)
    assert isinstance(incomplete, RunIncomplete)
    assert [o.status for o in incomplete.outcomes] == ["done"]
    assert exit_status(incomplete.outcomes) == 1


@contextmanager
def _records_given_to_prefects_handlers() -> Iterator[list[logging.LogRecord]]:
    """Collect what reaches the "prefect" logger's handlers (the console's among them)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(logging.DEBUG)
    logging.getLogger("prefect").addHandler(keep)
    try:
        yield records
    finally:
        logging.getLogger("prefect").removeHandler(keep)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_relay_without_starttls_stops_the_roster_without_a_traceback(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An anticipated relay fault: plain lines, no traceback, the roster stopped."""
    from flows.pipeline import RunIncomplete, advising_run
    from tests.support.smtp_sink import running_sink

    write_demo_roster(workdir / "input" / "relay.xlsx", 3, seed=9)
    with running_sink() as sink:  # no TLS: STARTTLS is not offered
        for key, value in {
            "DELIVERY": "smtp", "SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port),
            "SMTP_SECURITY": "starttls", "MAIL_FROM": "advising@example.edu",
            "ALLOWED_EMAIL_DOMAINS": "students.example.edu",
        }.items():
            monkeypatch.setenv(f"ADVISING_{key}", value)
        with _records_given_to_prefects_handlers() as records, \
                pytest.raises(RunIncomplete) as caught:
            advising_run()
    (outcome,) = caught.value.outcomes
    assert outcome.status == "failed" and "does not offer STARTTLS" in outcome.reason
    # What Prefect's handlers (its console and its API) were given: no traceback anywhere.
    assert [r for r in records if r.exc_info] == []
    assert not [r for r in records if "Task run failed with exception" in r.getMessage()]
    stopped = [r for r in records if "Roster relay.xlsx stopped" in r.getMessage()]
    assert len(stopped) == 1 and "does not offer STARTTLS" in stopped[0].getMessage()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_wrong_setting_fails_the_flow_run_in_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setting checked inside the flow: Failed, naming it; Prefect's record has no traceback."""
    from flows.pipeline import advising_run

    write_demo_roster(workdir / "input" / "any.xlsx", 2, seed=2)
    monkeypatch.setenv("ADVISING_MAIL_FROM", "the advising office")
    with _records_given_to_prefects_handlers() as records:
        state = advising_run(return_state=True)
    assert state.is_failed() and "ADVISING_MAIL_FROM" in str(state.message)
    assert [r for r in records if r.exc_info] == []
    assert any("ADVISING_MAIL_FROM" in r.getMessage() and r.levelno == logging.ERROR
               for r in records)
    assert (workdir / "input" / "any.xlsx").exists()  # nothing was touched


# --- A real Prefect server, and `advising run` as IT starts it by hand -----------------------


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1, shared by this module's runs; yields its API URL."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    })
    server = subprocess.Popen(
        [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
         str(port)],
        cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: healthy(api), 180, "the Prefect server")
        yield api
    finally:
        stop_group(server)


def _post(api: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        api + path, data=json.dumps(body or {}).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _advising(
    workdir: Path, api: str, *module: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run `advising run` (or a module standing in for it) against the server, like IT by hand."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_API_URL": api, "PREFECT_HOME": str(workdir / ".prefect"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
                **extra})
    command = [sys.executable, "-m", *(module or ("flows.cli", "run"))]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)


def _flow_run(api: str, flow_run_id: str | None = None) -> dict[str, Any]:
    """The newest flow run, or the one named; its logs are fetched apart."""
    runs = _post(api, "/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 1}
                 if flow_run_id is None else {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    return runs[0]


def _of_run(api: str, what: str, flow_run_id: str) -> list[dict[str, Any]]:
    return _post(api, f"/{what}/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}},
                                          "limit": 200})


@pytest.mark.slow
def test_a_drop_with_a_broken_roster_shows_a_failed_run_naming_it(
    workdir: Path, prefect_server: str
) -> None:
    """One broken, one good roster: exit 1, a Failed run naming the broken one and why."""
    broken = workdir / "input" / "not_a_zip.xlsx"
    broken.write_bytes((DATA / "not_a_zip.xlsx").read_bytes())
    os.utime(broken, (0, 0))
    write_demo_roster(workdir / "input" / "good.xlsx", 5, seed=4)

    proc = _advising(workdir, prefect_server)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    run = _flow_run(prefect_server)
    assert re.fullmatch(r"rosters \d{4}-\d\d-\d\d \d\d:\d\d \S+", run["name"])
    assert run["state"]["type"] == "FAILED"
    message = run["state"]["message"]
    assert message.startswith("1 of 2 rosters needs attention: not_a_zip.xlsx rejected (")
    assert message.endswith(".xlsx.problems.txt")
    problems = Path(message.rsplit("; see ", 1)[1])
    assert problems.is_file() and problems.parent == workdir / "input" / "rejected"

    runs = _of_run(prefect_server, "task_runs", run["id"])
    tasks = {t["name"]: t["state"]["type"] for t in runs}
    # The stage did its job (it read the file and said why not): Completed, named Rejected.
    (ingest,) = [t["state"] for t in runs if t["name"] == "ingest: not_a_zip.xlsx"]
    assert (ingest["type"], ingest["name"]) == ("COMPLETED", "Rejected")
    assert ingest["message"] in message
    for stage in ("ingest", "validate", "evaluate", "render letters", "deliver",
                  "write workbook"):
        assert tasks[f"{stage}: good.xlsx"] == "COMPLETED"

    logs = _of_run(prefect_server, "logs", run["id"])
    about_broken = [(log["level"], log["message"]) for log in logs
                    if "not_a_zip" in log["message"] and log["level"] >= logging.WARNING]
    assert len(about_broken) == 1 and about_broken[0][0] == logging.WARNING
    assert not [log for log in logs if "Traceback" in log["message"]]

    (artifact,) = [a for a in _post(prefect_server, "/artifacts/filter",
                                    {"flow_runs": {"id": {"any_": [run["id"]]}}})
                   if a["key"] == "advising-run-summary"]
    table = artifact["data"]
    assert "| roster | status | reason | rows |" in table
    assert "| written to outbox |" in table and "| sent |" not in table
    assert f"| {problems} |" in table
    assert "- L1: At risk" in table and "- L5: Very competitive" in table


@pytest.mark.slow
def test_an_exception_in_any_stage_leaves_nothing_personal_in_prefect(
    workdir: Path, prefect_server: str
) -> None:
    """Each stage meets an exception quoting a student; Prefect holds the type, file and ID."""
    seed, students = 21, 4
    row = next(r for r in demo_rows(students, seed) if isinstance(r[HEADERS.index("Step 2 CK")],
                                                               int))
    last, first, email = row[1], row[2], row[3]
    score = row[HEADERS.index("Step 2 CK")]
    secret = f"{first} {last} <{email}> scored {score} on Step 2 CK"
    for stage in STAGES:
        write_demo_roster(workdir / "input" / f"{stage.split()[0]}.xlsx", students, seed)
    write_demo_roster(workdir / "input" / "fine.xlsx", students, seed)

    proc = _advising(workdir, prefect_server, "tests.support.stage_faults",
                     ADVISING_TEST_SECRET=secret)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = _flow_run(prefect_server)
    tasks = _of_run(prefect_server, "task_runs", run["id"])
    seen = {
        "console": proc.stdout + proc.stderr,
        "logs": "\n".join(log["message"] for log in _of_run(prefect_server, "logs", run["id"])),
        "task runs": json.dumps(tasks),
        "flow run": json.dumps(run),
        "artifacts": json.dumps(_post(prefect_server, "/artifacts/filter",
                                      {"flow_runs": {"id": {"any_": [run["id"]]}}})),
    }
    assert "fine.xlsx" in seen["logs"] and "ValueError" in seen["logs"]
    for where, text in seen.items():
        for value in (first, last, email, f"scored {score}", "cell quoted by a library"):
            assert str(value) not in text, f"{value!r} reached the {where}"
        if where == "logs":  # messages only: no timestamp whose milliseconds match
            # Paths name the test's temporary folder (pytest-219/...): not a score.
            words = re.sub(r"\S*/\S*", " ", text)
            assert not re.search(rf"\b{score}\b", words), "the score reached the logs"
        assert "Traceback" not in text, f"a traceback reached the {where}"
    assert run["state"]["type"] == "FAILED"
    failed = {t["name"]: t["state"]["message"] for t in tasks if t["state"]["type"] == "FAILED"}
    # Each injected stage failed in its own roster's task run, named for it.
    assert sorted(failed) == sorted(f"{s}: {s.split()[0]}.xlsx" for s in STAGES)
    assert "render letters: render.xlsx" in failed
    assert re.search(r"render\.xlsx, student \d{7}: render letters stopped",
                     failed["render letters: render.xlsx"])
    for stage in STAGES:
        name = f"{stage.split()[0]}.xlsx"
        assert re.search(rf"{name}(, student \d{{7}})?: {stage} stopped by an unexpected "
                         "ValueError", run["state"]["message"])
        log = workdir / "output" / name.removesuffix(".xlsx") / "error.log"
        assert secret in log.read_text()  # the exception really carried the values
        assert stat.S_IMODE(log.stat().st_mode) == 0o600


@pytest.mark.slow
def test_a_wrong_setting_exits_2_before_any_run_starts(
    workdir: Path, prefect_server: str
) -> None:
    """`advising run` with a bad sender: status 2, one sentence, no traceback, and no flow run.

    The one settings gate (load_settings) refuses before Prefect is asked for anything; a
    scheduled run with the same setting fails inside the flow instead (tested in-process).
    """
    write_demo_roster(workdir / "input" / "any.xlsx", 2, seed=2)
    before = len(_post(prefect_server, "/flow_runs/filter", {"limit": 200}))

    proc = _advising(workdir, prefect_server, ADVISING_MAIL_FROM="the advising office")

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "advising run: Settings are not valid:" in proc.stderr
    assert "ADVISING_MAIL_FROM" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(_post(prefect_server, "/flow_runs/filter", {"limit": 200})) == before
    assert (workdir / "input" / "any.xlsx").exists()  # the roster waits for a fixed setting
