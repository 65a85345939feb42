"""The office between a letter and the student (#24): review page, approval, hold, test letter.

Real parts: a demo roster written as .xlsx, real Prefect flow runs (`advising run` in this
process), the real relay path into an aiosmtpd sink on 127.0.0.1, the review page parsed.
"""

from __future__ import annotations

import email
import email.policy
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import pytest

from flows.cli import main
from flows.delivery.ledger import Ledger
from flows.intake.demo import write_demo_roster
from tests.support.smtp_sink import Sink, running_sink

OFFICE = "advising@school.edu"
STUDENTS = 12
ROSTER = "class-2027.xlsx"


class _Page(HTMLParser):
    """The review page's groups, links and every URL it names."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[str] = []
        self.links: list[str] = []
        self.urls: list[str] = []
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.urls.append(value)
        if tag == "a":
            self.links.append(dict(attrs)["href"] or "")
        self._h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._h2:
            self.groups.append(data)
            self._h2 = False


def _smtp(monkeypatch: pytest.MonkeyPatch, sink: Sink, approval: str | None) -> None:
    for key, value in {"ADVISING_DELIVERY": "smtp", "ADVISING_SMTP_HOST": sink.host,
                       "ADVISING_SMTP_PORT": str(sink.port), "ADVISING_SMTP_SECURITY": "none",
                       "ADVISING_MAIL_FROM": OFFICE, "ADVISING_OFFICE_EMAIL": OFFICE,
                       "ADVISING_ALLOWED_EMAIL_DOMAINS": "students.example.edu"}.items():
        monkeypatch.setenv(key, value)
    if approval is None:
        monkeypatch.delenv("ADVISING_APPROVAL", raising=False)  # the default: first, with smtp
    else:
        monkeypatch.setenv("ADVISING_APPROVAL", approval)


def _students(sink: Sink) -> list[str]:
    return sorted(r for m in sink.received for r in m.rcpt_tos if r != OFFICE)


def _page(workdir: Path) -> _Page:
    page = _Page()
    page.feed((workdir / "output" / "class-2027" / "review.html").read_text(encoding="utf-8"))
    return page


def _ledger(workdir: Path) -> Ledger:
    return Ledger(workdir / "output" / ".advising" / "delivery-ledger.sqlite")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_nothing_reaches_a_student_before_approval_then_exactly_the_approved_once(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    write_demo_roster(workdir / "input" / ROSTER, STUDENTS, seed=3)
    with running_sink() as sink:
        _smtp(monkeypatch, sink, None)
        assert main(["run"]) == 0
        out = capsys.readouterr().out
        assert "wait for the office" in out and f"advising approve {ROSTER}" in out
        assert _students(sink) == []  # nothing before approval (the office note may go)

        # The review page: groups add up to the letters, every link resolves, nothing external.
        page = _page(workdir)
        folder = workdir / "output" / "class-2027"
        assert (folder / "review.html").stat().st_mode & 0o077 == 0  # not world-readable
        # Student data is never readable by other users of the machine, whatever the umask:
        # the workbook, letters, validation page, run.json, the ledger (#26).
        student_data = [p for p in (workdir / "output").rglob("*")
                        if p.is_file() and "locks" not in p.parts]
        assert {p.suffix for p in student_data} >= {".xlsx", ".html", ".txt", ".json", ".sqlite"}
        assert [p for p in student_data if p.stat().st_mode & 0o007] == []
        counts = [int(g.split(": ")[-1].split(" ")[0]) for g in page.groups]
        letters = [u for u in page.links if u.startswith("letters/")]
        assert sum(counts) == len(letters) == STUDENTS
        assert all((folder / u).is_file() for u in letters)
        assert not [u for u in page.urls if "://" in u or u.startswith("//")]

        with _ledger(workdir) as ledger:
            waiting = [sid for sid, _, _ in ledger.waiting(ROSTER)]
        assert len(waiting) == STUDENTS
        held, only = waiting[0], waiting[1:4]

        # A test letter: only to the office; never recorded as the student's delivery.
        assert main(["send-test", ROSTER, held, "--to", "someone@elsewhere.org"]) == 2
        assert main(["send-test", ROSTER, held, "--to", OFFICE]) == 0
        tests = [m for m in sink.received if m.rcpt_tos == (OFFICE,)
                 and "[TEST" in email.message_from_bytes(m.data, policy=email.policy.default)
                 ["Subject"]]
        assert len(tests) == 1 and _students(sink) == []

        # Approve three, hold one: the next run sends exactly the three, once.
        assert main(["approve", ROSTER, "--only", *only, "--hold", held]) == 0
        capsys.readouterr()
        # A dry run says what the real one would send, to whom, and changes nothing.
        ledger_file = workdir / "output" / ".advising" / "delivery-ledger.sqlite"
        before = (sorted(p.name for p in (workdir / "input").iterdir()), ledger_file.read_bytes())
        assert main(["run", "--dry-run"]) == 0
        said = capsys.readouterr().out
        assert f"{ROSTER}: would email 3 letter(s): {', '.join(sorted(only))}" in said
        assert f"would wait for approval: {STUDENTS - 4}" in said
        assert _students(sink) == []
        assert (sorted(p.name for p in (workdir / "input").iterdir()),
                ledger_file.read_bytes()) == before
        assert main(["run"]) == 0
        sent = _students(sink)
        assert len(sent) == 3 == len(set(sent))
        assert main(["run"]) == 0  # a re-run sends nothing again
        assert len(_students(sink)) == 3

        # The rest, approved: each student once in all; the held one gets nothing.
        assert main(["approve", ROSTER]) == 0
        assert main(["run"]) == 0
        sent = _students(sink)
        assert len(sent) == STUDENTS - 1 == len(set(sent))

        # Released: the hold is gone, and release says when there was nothing to release.
        capsys.readouterr()
        assert main(["release", held]) == 0
        assert main(["release", held]) == 1
        assert "nothing changed" in capsys.readouterr().out
        with _ledger(workdir) as ledger:
            assert held not in ledger.held()
        # Released, it waits like any letter the office has not approved (it held it instead).
        assert main(["run"]) == 0
        with _ledger(workdir) as ledger:
            assert [sid for sid, _, _ in ledger.waiting(ROSTER)] == [held]
        assert main(["approve", ROSTER]) == 0
        assert main(["run"]) == 0
        assert len(set(_students(sink))) == STUDENTS == len(_students(sink))

        # A student deleted the letter: resent once per command, recorded as a resend.
        assert main(["resend", ROSTER, only[0]]) == 0
        resent = [r for r in _students(sink) if _students(sink).count(r) == 2]
        assert len(resent) == 2 and len(_students(sink)) == STUDENTS + 1
        with _ledger(workdir) as ledger:
            assert [e.detail for e in ledger.entries(only[0])][-1].startswith("resent by ")
        assert main(["resend", ROSTER, "9999999"]) == 2  # nothing delivered to that ID


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_always_a_letter_changed_after_approval_waits_again(
    workdir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_demo_roster(workdir / "input" / ROSTER, 4, seed=5)
    original = path.read_bytes()
    with running_sink() as sink:
        _smtp(monkeypatch, sink, "always")
        assert main(["run"]) == 0
        # The roster changes before the office approves: approval is refused.
        other = write_demo_roster(workdir / "input" / ROSTER, 4, seed=6)
        assert main(["approve", ROSTER]) == 2
        other.unlink()
        (workdir / "input" / ROSTER).write_bytes(original)
        assert main(["approve", ROSTER]) == 0
        assert main(["run"]) == 0
        assert len(_students(sink)) == 4
        # One student's specialty changes: under "always" that letter waits again, alone.
        changed = write_demo_roster(workdir / "input" / ROSTER, 4, seed=5)
        wb = openpyxl.load_workbook(changed)
        ws = wb["Roster"]
        column = [c.value for c in ws[3]].index("Preferred Specialty") + 1
        now = ws.cell(row=4, column=column).value
        ws.cell(row=4, column=column, value="Pediatrics" if now != "Pediatrics" else "Neurology")
        wb.save(changed)
        assert main(["run"]) == 0
        assert len(_students(sink)) == 4
        with _ledger(workdir) as ledger:
            assert len(ledger.waiting(ROSTER)) == 1
        assert main(["approve", ROSTER]) == 0
        assert main(["run"]) == 0
        assert len(_students(sink)) == 5


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_the_review_page_and_a_letter_pass_axe_core(
    workdir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """axe-core (WCAG 2.1 A/AA and best practice) finds nothing on the review page of a real
    run, nor on a letter; and it does find a planted fault (the check can fail)."""
    from tests.support import axe

    try:
        axe.chromium()
        axe.axe_js()
    except axe.Unavailable as exc:
        pytest.skip(str(exc))
    write_demo_roster(workdir / "input" / ROSTER, 20, seed=9)
    monkeypatch.setenv("ADVISING_APPROVAL", "always")
    assert main(["run"]) == 0
    folder = workdir / "output" / "class-2027"
    page = folder / "review.html"
    assert axe.violations(page) == []
    letter = next((folder / "letters").glob("*.html"))
    assert axe.violations(letter) == []
    planted = folder / "planted.html"
    planted.write_text(page.read_text(encoding="utf-8").replace(
        "<main>", '<main><img src="x.png"><a href="#"></a>', 1), encoding="utf-8")
    assert {v["id"] for v in axe.violations(planted)} >= {"image-alt", "link-name"}
