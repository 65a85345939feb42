"""The settings gate (#26): every wrong setting is caught at start, nothing is ignored in silence.

Fast: load_settings and `advising check` in-process, no flow run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from flows.errors import SettingsError
from flows.settings import (
    _prefect_croniter,
    load_offices,
    load_settings,
    schedule_problems,
    unknown_settings,
)
from tests.support.workbooks import make_office_workbook


def test_a_misspelt_setting_in_dot_env_is_named_with_the_one_meant(workdir: Path) -> None:
    """The issue's case: ADVISING_DELIVER=smtp in .env ran in outbox mode without a word."""
    (workdir / ".env").write_text("ADVISING_DELIVER=smtp\nadvising_smtp_host=relay\n"
                                  "ADVISING_SCHOOL_NAME=North\n", encoding="utf-8")
    assert unknown_settings() == [
        "ADVISING_DELIVER (in .env) is not a setting of this version and is ignored; did you "
        "mean ADVISING_DELIVERY?",
    ]


def test_names_are_compared_ignoring_case_as_settings_reads_them() -> None:
    said = unknown_settings({"advising_delivery": "outbox", "Advising_Smtp_Hots": "x",
                             "ADVISING_TEST_ANYTHING": "1", "advising_test_other": "1"})
    assert said == ["Advising_Smtp_Hots is not a setting of this version and is ignored; "
                    "did you mean ADVISING_SMTP_HOST?"]


def test_check_warns_of_an_unknown_setting_and_still_checks_the_roster(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A warning, never an error: the command goes on (here to say the file is missing)."""
    monkeypatch.setenv("ADVISING_OUTPUT_DIRECTORY", "elsewhere")
    assert main(["check", str(workdir / "none.xlsx")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "advising check: warning: ADVISING_OUTPUT_DIRECTORY is not a setting of this version "
        "and is ignored; did you mean ADVISING_OUTPUT_DIR?",
        f"advising check: {workdir / 'none.xlsx'}: no such file; give the path of a roster "
        "workbook (.xlsx)",
    ]


# --- The nightly schedule: checked as Prefect checks it, before anything runs -------------------

BAD_CRON = "0 25 * * *"  # the issue's: hour 25


def test_a_malformed_cron_is_one_sentence_naming_the_setting_and_an_example(
    workdir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADVISING_SCHEDULE_CRON", BAD_CRON)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == (
        "Settings are not valid:\n  ADVISING_SCHEDULE_CRON: '0 25 * * *' is not a cron "
        "schedule; give five fields, minute hour day-of-month month day-of-week, e.g. "
        "'0 2 * * *' (every night at 02:00) or '30 1 * * 1-5' (01:30, Monday to Friday)"
    )


@pytest.mark.parametrize("command", ["run", "check"])
def test_run_and_check_stop_at_a_bad_schedule_with_status_2_touching_nothing(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    roster = workdir / "input" / "class-2027.xlsx"
    make_office_workbook(roster)
    before = roster.read_bytes()
    monkeypatch.setenv("ADVISING_SCHEDULE_CRON", BAD_CRON)
    monkeypatch.setenv("ADVISING_SCHEDULE_TIMEZONE", "America/New York")
    argv = [command] + ([str(roster)] if command == "check" else [])
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"advising {command}: Settings are not valid:",
        f"  ADVISING_SCHEDULE_CRON: {BAD_CRON!r} is not a cron schedule; give five fields, "
        "minute hour day-of-month month day-of-week, e.g. '0 2 * * *' (every night at 02:00) "
        "or '30 1 * * 1-5' (01:30, Monday to Friday)",
        "  ADVISING_SCHEDULE_TIMEZONE: 'America/New York' is not a time zone; give its IANA "
        "name, e.g. America/New_York or Europe/Paris (did you mean America/New_York?)",
    ]
    assert [p.name for p in (workdir / "input").iterdir()] == ["class-2027.xlsx"]
    assert roster.read_bytes() == before
    assert list((workdir / "output").iterdir()) == []


def test_a_schedule_that_never_comes_is_refused() -> None:
    """Prefect takes 31 February and would register a deployment that never runs."""
    assert schedule_problems("0 2 31 2 *", "UTC") == [
        "ADVISING_SCHEDULE_CRON: '0 2 31 2 *' never comes (no such date); give one that does, "
        "e.g. '0 2 * * *' (every night at 02:00) or '30 1 * * 1-5' (01:30, Monday to Friday)"
    ]
    assert schedule_problems("0 2 29 2 *", "UTC") == []  # leap years: it comes


def test_an_office_with_a_bad_schedule_is_named_in_the_offices_file(tmp_path: Path) -> None:
    """`advising deploy` and `advising run --offices` read the file through the same gate."""
    path = tmp_path / "offices.toml"
    path.write_text('[[office]]\nname = "north"\ninput_dir = "n/in"\noutput_dir = "n/out"\n'
                    'schedule_timezone = "Eastern"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"(?s)offices\.toml: office 'north': .*"
                       r"ADVISING_SCHEDULE_TIMEZONE: 'Eastern' is not a time zone.*"
                       r"did you mean US/Eastern\?"):
        load_offices(path)


CRONS = ["0 2 * * *", "30 1 * * 1-5", "@daily", "0 2 * * mon-fri", "*/15 * * * *",
         "0 2 * * * 30", "0 25 * * *", "60 2 * * *", "0 2 * *", "", "H 2 * * *", "0 2 * * 8",
         "0 2 ? * *", "0 2 L * *", "every night"]
ZONES = ["America/New_York", "UTC", "Europe/Paris", "Eastern", "utc", "America/New York", ""]


def test_the_check_agrees_with_prefects_own_cron_schedule() -> None:
    """Prefect's CronSchedule (what serve and deploy build) is the oracle, both ways."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    assert _prefect_croniter() is not None  # a Prefect that moved its parser fails here
    for cron in CRONS:
        for zone in ZONES:
            try:
                CronSchedule(cron=cron, timezone=zone or None)
                prefect_accepts = True
            except ValidationError:
                prefect_accepts = False
            ours = schedule_problems(cron, zone or "UTC")
            assert (ours == []) == prefect_accepts, (cron, zone, ours)


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("ADVISING_INPUT_DIR", "missing-share", "ADVISING_INPUT_DIR: the folder missing-share "
         "does not exist; create it (mkdir), mount the share"),
        ("ADVISING_OUTPUT_DIR", "no-results", "ADVISING_OUTPUT_DIR: the folder no-results does "
         "not exist"),
        ("ADVISING_TEMPLATES_DIR", "/nonexistent", "ADVISING_TEMPLATES_DIR: the folder "
         "/nonexistent does not exist; unset it"),
        ("ADVISING_TODAY", "12/06/2026", "ADVISING_TODAY: '12/06/2026' is not a date; write it "
         "as YYYY-MM-DD"),
        ("ADVISING_REVIEW_START", "2026-13-01", "ADVISING_REVIEW_START: '2026-13-01' is not a "
         "date"),
    ],
)
@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_missing_folder_or_a_date_in_another_form_stops_run_and_serve_at_start(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    name: str, value: str, said: str, command: str,
) -> None:
    """#26: an unmounted share was an empty night that "succeeded"; exit 2, one sentence."""
    roster = workdir / "input" / "class-2027.xlsx"
    make_office_workbook(roster)
    before = sorted(p.name for p in workdir.rglob("*"))
    monkeypatch.setenv(name, value)
    assert main([command]) == 2
    out, err = capsys.readouterr()
    assert said in err and "Traceback" not in err, err
    assert out == ""
    assert sorted(p.name for p in workdir.rglob("*")) == before  # nothing touched


def test_a_templates_folder_without_the_letter_templates_is_named(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    (workdir / "mine").mkdir()
    (workdir / "mine" / "letter.html.j2").write_text("x", encoding="utf-8")
    monkeypatch.setenv("ADVISING_TEMPLATES_DIR", str(workdir / "mine"))
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "has no letter.txt.j2, subject.txt.j2, letter.css" in err, err


def test_serve_waits_for_a_prefect_server_that_comes_up_late(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#26: at boot the server takes ~9 s; serve waits (bounded), saying so, instead of failing
    in 0.2 s and tripping systemd's start limit."""
    import http.server
    import socket
    import threading
    import time

    from flows.deployments import check_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    servers: list[http.server.HTTPServer] = []

    def late() -> None:  # nothing listens on the port for the first 2.5 s
        time.sleep(2.5)
        servers.append(http.server.HTTPServer(("127.0.0.1", port), Health))
        servers[0].serve_forever()

    threading.Thread(target=late, daemon=True).start()
    started = time.monotonic()
    try:
        check_server(f"http://127.0.0.1:{port}/api", wait_seconds=30, every=1)
    finally:
        if servers:
            servers[0].shutdown()
    assert 2 <= time.monotonic() - started < 30
    said = capsys.readouterr().out
    assert f"Waiting for the Prefect server at http://127.0.0.1:{port}/api" in said


def test_serve_gives_up_after_its_wait_with_one_sentence() -> None:
    from flows.deployments import check_server

    with pytest.raises(SettingsError, match=r"No Prefect server answers at .* after 1 s\. Start"):
        check_server("http://127.0.0.1:9/api", wait_seconds=1, every=1)
