"""A consortium (#18): the offices file, `advising run --offices`, and offices on a work pool.

The work-pool test runs what a consortium runs: a real `prefect server start`, `advising
deploy`, two `prefect worker start --limit 1` processes and a real SMTP relay, all on
127.0.0.1. Every process it starts is killed at the end, also when an assertion fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import pytest

from flows.delivery.ledger import LEDGER_NAME, Ledger, ledger_path
from flows.errors import SettingsError
from flows.intake.demo import write_demo_roster
from flows.settings import load_offices
from tests.conftest import place_made_home
from tests.support import postgres
from tests.support.prefect_api import Api, free_port
from tests.support.smtp_sink import Sink, running_sink

ROOT = Path(__file__).resolve().parent.parent
ADVISING = [sys.executable, "-m", "flows.cli"]
SHARED_ID = "0100000"  # every demo roster starts its IDs here: each office has this student


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- The offices file, checked at load ------------------------------------------------------


def test_an_offices_file_gives_each_office_its_checked_settings(tmp_path: Path) -> None:
    """Relative folders are read from the file's folder; values go through Settings."""
    path = _write(tmp_path / "offices.toml", """
[[office]]
name = "north-campus"
input_dir = "north/input"
output_dir = "north/output"
school_name = "North School of Medicine"
review_start = 2026-09-30
allowed_email_domains = ["North.edu", "@med.north.edu"]

[[office]]
name = "south"
input_dir = "/srv/south/input"
output_dir = "/srv/south/output"
schedule_cron = "30 1 * * *"
schedule_timezone = "America/Chicago"
""")
    north, south = load_offices(path)
    assert north.name == "north-campus"
    assert north.settings.input_dir == tmp_path / "north" / "input"
    assert north.settings.allowed_email_domains == ("north.edu", "med.north.edu")
    assert north.settings.review_start.isoformat() == "2026-09-30"
    # What a deployment passes: only what the file set, as JSON.
    assert north.overrides == {
        "input_dir": str(tmp_path / "north" / "input"),
        "output_dir": str(tmp_path / "north" / "output"),
        "school_name": "North School of Medicine",
        "review_start": "2026-09-30",
        "allowed_email_domains": ["north.edu", "med.north.edu"],
    }
    json.dumps(north.overrides)
    assert south.settings.schedule_timezone == "America/Chicago"
    assert str(south.settings.output_dir) == "/srv/south/output"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ('name = "north"\ninput_dir = "a"\noutput_dir = "b"\nschool_nam = "X"',
         "office 'north': unknown key 'school_nam'; did you mean school_name?"),
        ('name = "north"\ninput_dir = "a"\noutput_dir = "b"\nsmtp_password = "hunter2"',
         "office 'north': smtp_password must not be in the offices file"),
        ('name = "north"\ninput_dir = "a"\noutput_dir = "b"\n\n[[office]]\nname = "North"\n'
         'input_dir = "c"\noutput_dir = "d"',
         "office 'North': name is already used by office 'north'"),
        ('name = "north"\ninput_dir = "a"\noutput_dir = "shared"\n\n[[office]]\n'
         'name = "south"\ninput_dir = "c"\noutput_dir = "shared"',
         "office 'south': output_dir"),
        ('name = "north"\ninput_dir = "a"\noutput_dir = "b"\n\n[[office]]\n'
         'name = "south"\ninput_dir = "a/south"\noutput_dir = "d"',
         "office 'south': input_dir"),
        ('name = "north campus"\ninput_dir = "a"\noutput_dir = "b"',
         "office #1: name 'north campus' must be letters, digits and single dashes"),
        ('name = "north"\ninput_dir = "a"',
         "office 'north': output_dir is missing"),
        ('name = "north"\ninput_dir = "a"\noutput_dir = "b"\nsmtp_port = 99999',
         "office 'north': smtp_port: Input should be less than or equal to 65535"),
        ('name = "north"\ninput_dir = "a"\noutput_dir = "b"\ndelivery = "smtp"',
         "office 'north': ADVISING_DELIVERY=smtp needs"),
    ],
)
def test_a_wrong_offices_file_names_the_office_and_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: str, message: str
) -> None:
    for key in list(os.environ):
        if key.startswith("ADVISING_"):
            monkeypatch.delenv(key)
    path = _write(tmp_path / "offices.toml", "[[office]]\n" + entries + "\n")
    with pytest.raises(SettingsError) as caught:
        load_offices(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_shared_folder_error_says_which_two_offices(tmp_path: Path) -> None:
    path = _write(tmp_path / "offices.toml", """
[[office]]
name = "north"
input_dir = "north/in"
output_dir = "shared/out"

[[office]]
name = "south"
input_dir = "south/in"
output_dir = "shared/out"
""")
    with pytest.raises(SettingsError, match=r"shared with office 'north' \(output_dir"):
        load_offices(path)


def test_the_cli_says_what_is_wrong_with_the_offices_file(tmp_path: Path) -> None:
    """`advising run --offices` with a missing file: one sentence, status 2, no traceback."""
    missing = tmp_path / "nowhere.toml"
    done = subprocess.run([*ADVISING, "run", "--offices", str(missing)], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{missing}: no such offices file" in done.stderr
    assert "Traceback" not in done.stderr


# --- Real processes --------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    """The environment of a machine with the product installed and nothing else set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADVISING_", "PREFECT_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _offices_toml(root: Path, sink: Sink, rosters: dict[str, tuple[int, int]],
                  slow: str = "") -> Path:
    """Write an offices file: SMTP to the sink, each office its own sender and folders."""
    blocks = []
    for name, (students, seed) in rosters.items():
        write_demo_roster(root / name / "input" / "class-2027.xlsx", students, seed)
        (root / name / "output").mkdir(parents=True, exist_ok=True)  # IT creates both
        blocks.append(f"""
[[office]]
name = "{name}"
input_dir = "{name}/input"
output_dir = "{name}/output"
school_name = "{name.title()} School of Medicine"
schedule_cron = "0 3 1 1 *"
today = 2026-11-24
quiet_seconds = 0
delivery = "smtp"
approval = "off"
smtp_host = "{sink.host}"
smtp_port = {sink.port}
smtp_security = "none"
mail_from = "advising@{name}.example.edu"
allowed_email_domains = ["students.example.edu"]
send_rate_per_minute = {300 if name == slow else 0}
""")
    return _write(root / "offices.toml", "".join(blocks))


def _per_office(sink: Sink) -> dict[str, Counter[str]]:
    """Messages the relay took, per office (its sender) and recipient."""
    counts: dict[str, Counter[str]] = {}
    for msg in list(sink.received):
        office = msg.mail_from.split("@")[1].split(".")[0]
        counts.setdefault(office, Counter()).update(msg.rcpt_tos)
    return counts


def _run_json(root: Path, office: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (root / office / "output" / "class-2027" / "run.json").read_text())
    return data


def _mailed_once_each(root: Path, office: str, sink: Sink) -> None:
    """Every letter of the office's run reached the relay exactly once, from this office."""
    counts = _per_office(sink)[office]
    assert max(counts.values()) == 1, f"{office}: a student was mailed twice"
    record = _run_json(root, office)
    assert record["status"] == "complete"
    letters = record["counts"]["letters_written"]
    assert letters > 0 and len(counts) == letters
    assert (root / office / "output" / "class-2027" / "letters" / f"{SHARED_ID}.html").is_file()
    with Ledger(ledger_path(root / office / "output")) as ledger:
        assert SHARED_ID in ledger.previous_summaries([SHARED_ID])


def test_advising_run_offices_runs_every_office_once_each_with_its_own_ledger(
    tmp_path: Path, made_prefect_home: Path,
) -> None:
    """One process, the embedded temporary server: both offices' students with one ID mailed."""
    with running_sink() as sink:
        offices = _offices_toml(tmp_path, sink, {"north": (12, 1), "south": (15, 2)})
        # The server keeps its database in the first office's results folder, made already.
        place_made_home(made_prefect_home, tmp_path / "north" / "output")
        done = subprocess.run(
            [*ADVISING, "run", "--offices", str(offices)], cwd=tmp_path,
            env=_env(PREFECT_HOME=str(tmp_path / ".prefect")),
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count("class-2027.xlsx: processed") == 2, done.stdout
        assert "Office north" in done.stdout and "Office south" in done.stdout
        for office in ("north", "south"):
            _mailed_once_each(tmp_path, office, sink)
            assert not (tmp_path / office / "input" / "class-2027.xlsx").exists()
        assert not (tmp_path / LEDGER_NAME).exists() and not (tmp_path / ".advising").exists()


class Machines:
    """The processes of the consortium test, each in its own session; all killed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[TextIO] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("w")
        self._logs.append(log)
        proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def kill_all(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the process and what it started
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        for log in self._logs:
            log.close()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Machines]:
    running = Machines(tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _taken_by(machines: Machines, run_id: str) -> str | None:
    """Return the worker that ran this run: its flow-run process's log comes through it.

    Both workers may try to submit the same run; the server lets one, and aborts the other.
    """
    found = [name for name in ("worker-1", "worker-2")
             if re.search(rf"runs/flow-run/{run_id}\b", machines.log(name))]
    return found[0] if len(found) == 1 else None


def _start_server(machines: Machines, database: str) -> Api:
    """Start `prefect server start` on 127.0.0.1 on the PostgreSQL database at `database`
    (postgresql+asyncpg://...), as a consortium runs it."""
    port = free_port()
    server_env = _env(PREFECT_HOME=str(machines.root / "server-home"), PREFECT_UI_ENABLED="0",
                      PREFECT_SERVER_ANALYTICS_ENABLED="false")
    server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database
    machines.start(
        "server",
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        server_env,
    )
    return Api(f"http://127.0.0.1:{port}/api")


def _deploy_with_two_workers(machines: Machines, api: Api, offices: Path) -> None:
    """`advising deploy` the offices on pool `schools`, then start worker-1 and worker-2
    (`--limit 1` each) and wait until the server has both heartbeats."""
    _wait(api.healthy, 150, "the Prefect server")
    env = _env(PREFECT_API_URL=api.url, PREFECT_HOME=str(machines.root / "worker-home"),
               PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="INFO")  # which worker took a run
    deployed = subprocess.run([*ADVISING, "deploy", "--work-pool", "schools", "--offices",
                               str(offices)], cwd=machines.root, env=env, capture_output=True,
                              text=True, timeout=180)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "prefect worker start --pool schools" in deployed.stdout
    workers = ("worker-1", "worker-2")
    for name in workers:
        machines.start(name, [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                              "schools", "--limit", "1", "--name", name], env)
    _wait(lambda: api.online_workers("schools") >= set(workers), 120, "both workers online")


def _finish(api: Api, machines: Machines, runs: dict[str, str]) -> None:
    """Wait for each office's run to end; it must have completed."""
    for office, run_id in runs.items():
        _wait(lambda r=run_id: api.state(r) in ("COMPLETED", "FAILED", "CRASHED"), 180,
              f"{office}'s run")
        assert api.state(run_id) == "COMPLETED", (
            machines.log("worker-1")[-3000:] + machines.log("worker-2")[-3000:])


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh database (postgresql+asyncpg URL) on ADVISING_TEST_POSTGRES_URL's server, as
    `.ci/run` starts one, or on a throwaway cluster; dropped at the end.

    Skipped when PostgreSQL cannot be had here; when the variable names a server that cannot
    be used, the test fails instead (CI must not skip it quietly).
    """
    with ExitStack() as stack:
        try:
            url, _ = stack.enter_context(postgres.postgres_server())
            database = stack.enter_context(postgres.fresh_database(url))
        except postgres.Unavailable as exc:
            if os.environ.get(postgres.URL_VARIABLE, "").strip():
                pytest.fail(str(exc))
            pytest.skip(str(exc))
        yield database


@pytest.mark.slow
def test_offices_on_a_postgresql_work_pool_run_at_once_once_each_and_survive_a_killed_worker(
    tmp_path: Path, machines: Machines, postgres_database: str
) -> None:
    """The consortium's set-up (README): Prefect's server on PostgreSQL, two workers, three
    offices. Two offices' runs overlap on the two workers and complete, each office's letters
    mailed once, what the server recorded is in PostgreSQL; then a worker is killed while the
    relay takes the third office's letters, and the survivor's run mails nobody twice. No
    process met SQLite's "database is locked". (One test for both: a server, a deployment and
    two workers cost about 20 s.)
    """
    api = _start_server(machines, postgres_database)
    with running_sink() as sink:
        offices = _offices_toml(
            tmp_path, sink, {"north": (20, 1), "south": (25, 2), "west": (30, 3)}, slow="west"
        )
        _deploy_with_two_workers(machines, api, offices)
        west = api.deployment("west")
        assert west["work_pool_name"] == "schools"
        assert west["global_concurrency_limit"]["limit"] == 1
        assert west["schedules"][0]["schedule"]["cron"] == "0 3 1 1 *"
        assert west["parameters"]["office"]["mail_from"] == "advising@west.example.edu"

        # Two offices at once: one worker each (--limit 1), each run completes once.
        runs = {office: api.start_run(office) for office in ("north", "south")}
        _finish(api, machines, runs)
        assert {_taken_by(machines, r) for r in runs.values()} == {"worker-1", "worker-2"}
        for office in ("north", "south"):
            _mailed_once_each(tmp_path, office, sink)  # the shared ID: one letter at each
        north, south = ({state: datetime.fromisoformat(at) for state, at in
                         api.state_times(runs[office]).items()} for office in ("north", "south"))
        assert north["RUNNING"] < south["COMPLETED"] and south["RUNNING"] < north["COMPLETED"], (
            "the two offices' runs did not overlap", north, south)
        ids = ",".join(f"'{run_id}'" for run_id in runs.values())  # uuids the server gave
        stored = postgres.query(postgres_database,
                                f"SELECT state_type FROM flow_run WHERE id IN ({ids})")
        assert stored == ["COMPLETED", "COMPLETED"]  # (the schedules' next runs are there too)

        # The third office: its worker is killed while the relay is taking its letters.
        first = api.start_run("west")
        _wait(lambda: len(_per_office(sink).get("west", ())) >= 5, 180, "west's delivery")
        victim = _taken_by(machines, first)
        assert victim is not None
        machines.procs[victim].send_signal(signal.SIGKILL)
        _wait(lambda: api.state(first) == "CRASHED", 120, "the killed run to be crashed")
        assert not (tmp_path / "west" / "output" / "class-2027" / "run.json").exists()
        assert (tmp_path / "west" / "input" / "class-2027.xlsx").exists()

        again = api.start_run("west")
        _wait(lambda: api.state(again) in ("COMPLETED", "FAILED", "CRASHED"), 180,
              "west's second run")
        survivor = ({"worker-1", "worker-2"} - {victim}).pop()
        assert api.state(again) == "COMPLETED", machines.log(survivor)[-3000:]
        assert _taken_by(machines, again) == survivor
        _mailed_once_each(tmp_path, "west", sink)

        assert api.finished_runs("north") == Counter({"COMPLETED": 1})
        assert api.finished_runs("south") == Counter({"COMPLETED": 1})
        assert api.finished_runs("west") == Counter({"CRASHED": 1, "COMPLETED": 1})
    for name in ("server", "worker-1", "worker-2"):
        assert "database is locked" not in machines.log(name), name
