"""The spine: a dropped roster becomes a workbook, letters, an outbox and run.json."""

from __future__ import annotations

import email
import functools
import json
import os
import subprocess
import sys
from concurrent.futures import Future
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import pytest

from flows.intake.demo import write_demo_roster

# Each test runs the whole flow on a Prefect server: slow (pytest --slow, as CI runs it).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _run() -> list[dict]:
    from flows.pipeline import advising_run

    return advising_run()


def _drop_demo(workdir: Path, students: int = 12, name: str = "class-2027.xlsx") -> Path:
    return write_demo_roster(workdir / "input" / name, students, seed=7)


def _add_bad_row(path: Path) -> int:
    """Append a row with an impossible Step 2 CK score; return its Excel row number."""
    wb = openpyxl.load_workbook(path)
    ws = wb["Roster"]
    row = ws.max_row + 1
    header = [c.value for c in ws[3]]
    values = dict.fromkeys(header)
    values.update({
        "Student ID": "0999999", "Last Name": "Doe", "First Name": "Jan",
        "Email": "jan@students.example.edu", "Step 1 Result": "Pass", "Step 2 CK": 320,
        "Preferred Specialty": "Pediatrics",
    })
    for col, key in enumerate(header, start=1):
        ws.cell(row=row, column=col, value=values[key])
    wb.save(path)
    return row


def test_a_dropped_roster_yields_every_output(workdir: Path) -> None:
    """One run writes the annotated workbook, a letter and an .eml per student, and run.json."""
    roster = _drop_demo(workdir)
    bad_row = _add_bad_row(roster)
    original = roster.read_bytes()

    outcomes = _run()

    assert [o.status for o in outcomes] == ["done"]
    out = workdir / "output" / "class-2027"
    run = json.loads((out / "run.json").read_text())
    counts = run["counts"]
    assert counts["rows"] == 13
    assert counts["held_with_problems"] == 1
    assert counts["evaluated"] == 12
    assert sum(counts["by_outlook_level"].values()) == 12
    assert counts["letters_written"] == 12
    assert len(list((out / "letters").glob("*.html"))) == 12
    assert len(list((out / "letters").glob("*.txt"))) == 12
    assert len(list((out / "outbox").glob("*.eml"))) == 12
    assert run["input"]["file"] == "class-2027.xlsx"
    assert set(run["timings_seconds"]) >= {"ingest", "validate", "evaluate", "letters",
                                          "delivery", "workbook"}

    # The roster left input/ unchanged, byte for byte, into processed/.
    assert not roster.exists()
    kept = list((workdir / "input" / "processed").rglob("*.xlsx"))
    assert len(kept) == 1 and kept[0].read_bytes() == original

    # The annotated workbook marks the bad row as held and lists the problem.
    wb = openpyxl.load_workbook(out / "class-2027-annotated.xlsx")
    ws = wb["Roster"]
    header = {c.value: c.column for c in ws[3] if c.value}
    assert ws.cell(bad_row, header["Letter"]).value.startswith("Held")
    problems = wb["Problems"]
    assert any("320" in str(c.value) for row in problems.iter_rows() for c in row)


def test_each_letter_states_the_students_outlook(workdir: Path) -> None:
    """The HTML letter parses and carries the outlook the workbook shows for that student."""
    _drop_demo(workdir, 6)
    _run()
    out = workdir / "output" / "class-2027"
    wb = openpyxl.load_workbook(out / "class-2027-annotated.xlsx")
    ws = wb["Roster"]
    header = {c.value: c.column for c in ws[3] if c.value}
    checked = 0
    for row in range(4, ws.max_row + 1):
        sid = ws.cell(row, header["Student ID"]).value
        outlook = ws.cell(row, header["Outlook"]).value
        if not sid or not outlook:
            continue
        html = (out / "letters" / f"{sid}.html").read_text(encoding="utf-8")
        text = _visible_text(html)
        assert outlook in text
        checked += 1
    assert checked == 6


def test_outbox_messages_are_multipart_and_keep_names_out_of_the_subject(workdir: Path) -> None:
    """Each .eml is text + HTML alternatives, with neither the student's name nor ID in it."""
    _drop_demo(workdir, 4)
    _run()
    emls = sorted((workdir / "output" / "class-2027" / "outbox").glob("*.eml"))
    assert len(emls) == 4
    for path in emls:
        msg = email.message_from_bytes(path.read_bytes())
        assert msg.get_content_type() == "multipart/alternative"
        kinds = [part.get_content_type() for part in msg.get_payload()]
        assert kinds == ["text/plain", "text/html"]
        assert msg["To"].endswith("@students.example.edu")
        assert path.stem not in msg["Subject"]


def test_batches_render_in_a_second_process_and_every_student_gets_one_letter(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four students per batch: batch k+1 renders in the render process while k is sent."""
    import multiprocessing


    monkeypatch.setenv("ADVISING_LETTER_BATCH", "4")
    _drop_demo(workdir, 11)
    (outcome,) = _run()
    assert outcome.status == "done"
    assert outcome.counts.letters_written == outcome.counts.evaluated == 11
    out = workdir / "output" / "class-2027"
    htmls = sorted(p.stem for p in (out / "letters").glob("*.html"))
    emls = sorted(p.stem for p in (out / "outbox").glob("*.eml"))
    assert len(htmls) == 11 and htmls == emls
    for path in (out / "letters").glob("*.html"):
        assert path.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert multiprocessing.active_children() == []  # the render process has stopped


def test_dropping_the_same_roster_again_sends_nothing_new(workdir: Path) -> None:
    """A second run on identical content is recognised by its hash and mails nobody."""
    roster = _drop_demo(workdir, 5)
    data = roster.read_bytes()
    first = _run()
    assert first[0].counts.letters_written == 5
    roster.write_bytes(data)
    os.utime(roster, (0, 0))
    second = _run()
    assert second[0].status == "unchanged"
    emls = list((workdir / "output" / "class-2027" / "outbox").glob("*.eml"))
    assert len(emls) == 5


def test_the_cli_settles_an_identical_re_drop_without_starting_prefect_or_gx(
    workdir: Path,
) -> None:
    """`advising run` on an unchanged roster answers from run.json alone, in a fraction of a second.

    The child is pointed at a Prefect server that does not exist: had it started the flow, it
    would fail; and it must not even have imported Prefect or Great Expectations.
    """
    roster = _drop_demo(workdir, 5)
    data = roster.read_bytes()
    assert _run()[0].status == "done"
    roster.write_bytes(data)
    os.utime(roster, (0, 0))
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    code = (
        "import sys; from flows.cli import main; rc = main(['run']); "
        "print('loaded:', sorted(m for m in ('prefect', 'great_expectations') "
        "if m in sys.modules)); "
        "sys.exit(rc)"
    )
    child = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert "class-2027.xlsx: unchanged" in child.stdout
    assert "loaded: []" in child.stdout
    assert not roster.exists()
    kept = list((workdir / "input" / "processed").rglob("*.xlsx"))
    assert len(kept) == 2 and all(p.read_bytes() == data for p in kept)
    assert len(list((workdir / "output" / "class-2027" / "outbox").glob("*.eml"))) == 5


def test_a_roster_is_processed_with_its_objects_set_aside_from_gc_and_then_handed_back(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full collections skip the roster's objects while it runs; none stay frozen afterwards.

    A process that runs the flow again (a worker, this test session) must still collect what
    one roster left behind.
    """
    import gc

    from flows import pipeline

    seen: list[int] = []
    real = pipeline.render_stage.fn

    @functools.wraps(real)  # the task run's name reads the roster from the signature
    def render(*args: object, **kwargs: object) -> object:
        seen.append(gc.get_freeze_count())
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline.render_stage, "fn", render)
    _drop_demo(workdir, 4)
    assert gc.get_freeze_count() == 0  # nothing of this test session's own is frozen
    assert _run()[0].status == "done"
    assert seen and all(count > 0 for count in seen)
    assert gc.get_freeze_count() == 0
    gc.freeze()  # a process that freezes objects of its own: they are left as they are
    try:
        kept = gc.get_freeze_count()
        seen.clear()
        _drop_demo(workdir, 4, name="class-2028.xlsx")
        assert _run()[0].status == "done"
        # Neither more frozen (records would be) nor unfrozen; some frozen objects were freed.
        assert len(seen) == 1 and 0 < seen[0] <= kept and 0 < gc.get_freeze_count() <= kept
    finally:
        gc.unfreeze()


def test_heartbeats_are_off_only_when_the_server_is_temporary() -> None:
    """A temporary server dies with the run: no one would read its heartbeats; a lasting one."""
    from prefect.settings import get_current_settings

    from flows.run import _no_heartbeats

    usual = get_current_settings().flows.heartbeat_frequency
    assert usual is not None
    with _no_heartbeats(True):
        assert get_current_settings().flows.heartbeat_frequency is None
    with _no_heartbeats(False):
        assert get_current_settings().flows.heartbeat_frequency == usual
    assert get_current_settings().flows.heartbeat_frequency == usual


def test_a_roster_whose_emails_failed_is_not_settled_as_unchanged(workdir: Path) -> None:
    """A failed email must be retried, so the identical roster goes through the flow again."""
    from flows.run_record import RUN_JSON, settle_if_unchanged

    roster = _drop_demo(workdir, 3)
    data = roster.read_bytes()
    _run()
    run_json = workdir / "output" / "class-2027" / RUN_JSON
    record = json.loads(run_json.read_text())
    roster.write_bytes(data)
    os.utime(roster, (0, 0))
    from flows.settings import load_settings

    settings = load_settings()
    fp = record["fingerprint"]
    record["counts"]["emails_failed"] = 1
    run_json.write_text(json.dumps(record))
    assert settle_if_unchanged(roster, settings, fp) is None
    assert roster.read_bytes() == data
    assert settle_if_unchanged(roster, settings, "another-fingerprint") is None
    record["counts"]["emails_failed"] = 0
    run_json.write_text(json.dumps(record))
    outcome = settle_if_unchanged(roster, settings, fp)
    assert outcome is not None and outcome.status == "unchanged"
    assert not roster.exists()


def test_an_unreadable_roster_is_rejected_and_the_others_still_run(workdir: Path) -> None:
    """A file that is not a workbook goes to rejected/ with a note; the good roster runs.

    The run needs attention, so the flow run ends Failed and a direct call raises.
    """
    from flows.pipeline import RunIncomplete

    _drop_demo(workdir, 3, "good.xlsx")
    bad = workdir / "input" / "broken.xlsx"
    bad.write_bytes(b"this is not an Excel file")
    os.utime(bad, (0, 0))
    with pytest.raises(RunIncomplete) as caught:
        _run()
    outcomes = {o.file: o.status for o in caught.value.outcomes}
    assert outcomes == {"broken.xlsx": "rejected", "good.xlsx": "done"}
    rejected = list((workdir / "input" / "rejected").iterdir())
    assert any(p.name.endswith(".problems.txt") for p in rejected)
    assert any(p.read_bytes() == b"this is not an Excel file" for p in rejected)


@pytest.mark.usefixtures("warm_prefect")
@pytest.mark.slow
def test_the_cli_prints_a_short_summary_without_noise(workdir: Path) -> None:
    """`advising demo` then `advising run` end with a human summary and no traceback, on a
    machine whose two cores are busy (where Prefect's shutdown once printed a CancelledError
    from aiosqlite): what the temporary server prints goes to its own log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(workdir / ".prefect")
    cli = [sys.executable, "-m", "flows.cli"]
    demo = subprocess.run([*cli, "demo", "--students", "20"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    try:
        run = subprocess.run([*cli, "run"], cwd=workdir, env=env, capture_output=True,
                             text=True, timeout=300)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert run.returncode == 0, run.stderr
    server_log = workdir / "output" / ".advising" / "prefect" / "server.log"
    assert server_log.is_file() and server_log.stat().st_mode & 0o077 == 0
    assert "demo-roster.xlsx: processed" in run.stdout
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    assert "database is locked" not in run.stderr
    assert "CancelledError" not in run.stderr
    assert (workdir / "output" / "demo-roster" / "run.json").is_file()


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_letters_in_several_batches_are_all_counted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendering and delivery in batches write and count every student once."""

    monkeypatch.setenv("ADVISING_LETTER_BATCH", "3")
    _drop_demo(workdir, 7)
    outcome = _run()[0]
    assert outcome.counts.letters_written == 7
    assert (outcome.counts.outbox_written, outcome.counts.emails_sent) == (7, 0)
    out = workdir / "output" / "class-2027"
    assert len(list((out / "outbox").glob("*.eml"))) == 7
    wb = openpyxl.load_workbook(out / "class-2027-annotated.xlsx")
    ws = wb["Roster"]
    header = {c.value: c.column for c in ws[3] if c.value}
    statuses = [ws.cell(r, header["Letter"]).value for r in range(4, 11)]
    assert all(s and not s.startswith("Held") for s in statuses), statuses


class _Away:
    """A batch handed to the render process: done when the test says so."""

    def __init__(self, k: int, log: list[str]) -> None:
        self.k, self.log = k, log
        self.wrapped_future: Future[None] = Future()

    def result(self) -> list[int]:
        self.log.append(f"took {self.k}")
        return [self.k]


def test_batches_are_rendered_here_whenever_the_render_process_has_none_ready() -> None:
    """Each batch once; this process takes the first, the other the last ones, queued ahead."""
    from flows.letters.batches import render_in_turn

    log: list[str] = []
    away: dict[int, _Away] = {}

    def here(k: int) -> list[int]:
        log.append(f"here {k}")
        return [k]

    def there(k: int) -> _Away:
        log.append(f"away {k}")
        away[k] = _Away(k, log)
        return away[k]

    turns = render_in_turn(6, here, there, ahead=2)  # type: ignore[arg-type]
    assert next(turns) == [0]
    assert log == ["away 5", "away 4", "here 0"]  # two queued before the first renders here
    assert next(turns) == [1]  # the other process has nothing ready: render here
    away[5].wrapped_future.set_result(None)
    assert next(turns) == [5]
    assert log[-2:] == ["away 3", "took 5"]  # the next one is queued before 5 is delivered
    assert next(turns) == [2]
    assert [*turns] == [[4], [3]]  # nothing left to render here: wait for the other process
    done = [int(line.split()[1]) for line in log if line.startswith(("here", "took"))]
    assert sorted(done) == list(range(6))
    log.clear()
    turns = render_in_turn(4, here, there, ahead=2, share=False)  # type: ignore[arg-type]
    assert [*turns] == [[0], [1], [2], [3]]  # to a relay: only the first is rendered here
    assert [line for line in log if line.startswith("here")] == ["here 0"]
    assert [*render_in_turn(3, here, None)] == [[0], [1], [2]]
    assert [*render_in_turn(0, here, there)] == []  # type: ignore[arg-type]


@pytest.mark.parametrize("small_first", [True, False])
@pytest.mark.parametrize("total", [0, 1, 4, 5, 6, 11, 40, 20000, 100001])
def test_batches_cover_every_student_once_and_bound_memory(
    total: int, small_first: bool
) -> None:
    """Contiguous, no gaps or overlaps, none above the batch size; small_first: a smaller first."""
    from flows.letters.batches import batch_bounds

    size = 5000 if total > 100 else 5
    bounds = batch_bounds(total, size, small_first)
    covered = [i for a, b in bounds for i in range(a, b)]
    assert covered == list(range(total))
    assert all(0 < b - a <= size for a, b in bounds)
    if len(bounds) > 1:
        assert (bounds[0][1] - bounds[0][0] < size) == small_first


@pytest.mark.slow
def test_a_cycle_that_is_over_is_reported_and_the_letters_still_go(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Match Day: one console line, a Summary line and a run.json field (#13)."""
    monkeypatch.setenv("ADVISING_TODAY", "2027-03-25")
    _drop_demo(workdir, 4)
    outcomes = _run()
    assert outcomes[0].status == "done"
    out = workdir / "output" / "class-2027"
    run = json.loads((out / "run.json").read_text())
    assert "ended on Match Day" in run["cycle"]["stale"]
    assert run["cycle"]["phase"] == "after match" and run["cycle"]["confirmed"] is False
    assert run["counts"]["letters_written"] == 4
    summary = openpyxl.load_workbook(out / "class-2027-annotated.xlsx")["Summary"]
    assert "ended on Match Day" in str(summary.cell(3, 1).value)
    from flows.report import describe

    assert "cycle: The configured cycle" in describe(outcomes[0])


@pytest.mark.slow
def test_a_re_drop_in_a_new_phase_is_a_new_letter_and_the_next_night_is_not(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same roster: December, then December again (unchanged), then February (a new season)."""
    roster = _drop_demo(workdir, 3)
    data = roster.read_bytes()
    monkeypatch.setenv("ADVISING_TODAY", "2026-12-05")
    assert _run()[0].counts.letters_written == 3
    for today, expected in (("2026-12-06", "unchanged"), ("2027-02-20", "done")):
        roster.write_bytes(data)
        os.utime(roster, (0, 0))
        monkeypatch.setenv("ADVISING_TODAY", today)
        assert _run()[0].status == expected
    out = workdir / "output" / "class-2027"
    run = json.loads((out / "run.json").read_text())
    assert run["cycle"]["phase"] == "ranking"
    assert run["counts"]["outbox_written"] >= 1  # plans changed with the season: written again
    texts = [p.read_text(encoding="utf-8") for p in (out / "letters").glob("*.txt")]
    assert any("A new season" in " ".join(t.split()) for t in texts)  # wrapped at 72


def test_one_count_for_each_thing_everywhere_it_appears(
    workdir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """#25: held rows (a duplicate ID: two rows), letters held for a reason of their own (no
    Match result after Match Day, ADVISING_AFTER_MATCH=hold), letters written to the outbox:
    the console, the Summary, run.json and the office's note give the same figures."""
    from flows.delivery.office_note import compose_note, gather_news
    from flows.report import describe
    from flows.settings import load_settings
    from residency_rules.specialties import load_default_table

    monkeypatch.setenv("ADVISING_TODAY", "2027-03-25")
    monkeypatch.setenv("ADVISING_AFTER_MATCH", "hold")
    roster = _drop_demo(workdir, students=12)
    wb = openpyxl.load_workbook(roster)
    ws = wb["Roster"]
    header = [c.value for c in ws[3]]
    result = header.index("Match Result") + 1 if "Match Result" in header else None
    if result is None:
        result = len(header) + 1
        ws.cell(row=3, column=result, value="Match Result")
    for row in range(4, ws.max_row + 1):
        ws.cell(row=row, column=result, value="Matched" if row % 2 else None)
    ws.cell(row=5, column=1, value=ws.cell(row=4, column=1).value)  # a duplicate ID: 2 rows
    wb.save(roster)

    (outcome,) = _run()
    c = outcome.counts
    assert c is not None and c.held_with_problems == 2 and c.held_for_reason > 0
    run_json = json.loads((workdir / "output" / "class-2027" / "run.json").read_text())
    counts = run_json["counts"]
    assert counts["held_with_problems"] == 2
    assert counts["held_for_reason"] == c.held_for_reason
    assert counts["outbox_written"] == c.outbox_written and counts["emails_sent"] == 0

    console = describe(outcome)
    assert "2 held: see the Problems sheet" in console
    assert f"held back: {c.held_for_reason} letters" in console
    assert "sent" not in console.replace("nothing is sent", "")

    summary = openpyxl.load_workbook(outcome.workbook)["Summary"]
    totals = {r[0]: r[1] for r in summary.iter_rows(min_row=5, max_col=2, values_only=True)
              if r[0]}
    assert totals["Rows held back (see Problems)"] == 2
    assert totals["Letters: Held back (no Match result, or the office's hold)"] == \
        c.held_for_reason
    assert totals["Letters: Written to outbox"] == c.outbox_written

    settings = load_settings()
    news = gather_news([outcome], settings, load_default_table().rules.levels)
    subject, text = compose_note(news, settings.run_date()) or ("", "")
    assert "2 rows held" in subject and f"{c.held_for_reason} letters held back" in subject
    assert "12 student rows" in text and "2 held." in text


def test_the_temporary_server_never_touches_a_configured_prefect_home(workdir: Path) -> None:
    """#26: with PREFECT_HOME (and a database URL) set to a live server's and no
    PREFECT_API_URL, `advising run` keeps its runs in output/.advising/prefect: the live
    server's home and database are not written."""
    live = workdir / "live-prefect"
    live.mkdir()
    (live / "profiles.toml").write_text(
        'active = "live"\n[profiles.live]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n',
        encoding="utf-8")
    before = sorted(p.name for p in live.rglob("*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(live)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{live}/prefect.db"
    _drop_demo(workdir, students=3)
    run = subprocess.run([sys.executable, "-m", "flows.cli", "run"], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "processed" in run.stdout
    assert sorted(p.name for p in live.rglob("*")) == before  # no prefect.db, nothing new
    home = workdir / "output" / ".advising" / "prefect"
    assert (home / "prefect.db").is_file()
    assert home.stat().st_mode & 0o077 == 0  # the product's own, not other users'
