"""Delivery: outbox and a real SMTP server on 127.0.0.1, through the ledger, exactly once."""

from __future__ import annotations

import email
import email.policy
import os
import pickle
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from flows.delivery import resolve_smtp_password
from flows.delivery.ledger import Ledger
from flows.delivery.mime import PACKED_LINE, MessageBuilder, keeps_lines, pack_lines
from flows.errors import DeliveryError, SettingsError
from flows.letters import Letter, render_letters
from flows.outcome import LetterOutcome, LetterStatus, tally
from flows.settings import PROJECT_ROOT, check_settings
from residency_rules.specialties import SpecialtyTable
from tests.support.delivery import (
    deliver_now,
    make_letters,
    smtp_settings,
)
from tests.support.letters import (
    XSS_NAME,
    _no_advising_env,  # noqa: F401 - autouse: no ADVISING_* from the developer's shell
    check_html,
    make_evaluation,
    make_settings,
    make_student,
)
from tests.support.smtp_sink import (
    Faults,
    Sink,
    make_self_signed,
    running_sink,
    server_tls_context,
)

pytestmark = pytest.mark.usefixtures("_no_advising_env")






@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A fresh ledger under the test's output folder."""
    with Ledger(tmp_path / "output" / "ledger.sqlite") as led:
        yield led


def parse(data: bytes) -> EmailMessage:
    """Parse a message the strict way a modern client would."""
    msg = email.message_from_bytes(data, policy=email.policy.SMTP)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_well_formed(data: bytes, letter: Letter) -> EmailMessage:
    """multipart/alternative with exactly text + HTML equal to the letter; short lines."""
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert not any(p.get("Content-Disposition") for p in msg.walk())  # nothing attached
    assert list(msg.iter_attachments()) == []
    plain, html = parts
    # Line ends are CRLF on the wire; the text itself is the letter's.
    assert plain.get_content().replace("\r\n", "\n") == letter.text
    # The HTML goes as ASCII: non-ASCII characters as character references, the same text.
    # Short lines are packed: a line break may have become a space, which HTML reads the same.
    sent_html = html.get_content().replace("\r\n", "\n")
    ascii_html = letter.html.encode("ascii", "xmlcharrefreplace").decode("ascii")
    assert sent_html.replace("\n", " ") == ascii_html.replace("\n", " ")
    assert sent_html.count("\n") < ascii_html.count("\n") / 4
    assert check_html(sent_html).plain == check_html(letter.html).plain
    assert str(msg["To"]) == letter.to
    assert str(msg["Subject"]) == letter.subject
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith(">")
    assert msg["Date"] is not None
    return msg


def count_by_recipient(sink: Sink) -> dict[str, int]:
    """How many messages each recipient got."""
    return dict(sink.handler.per_recipient())


# --- outbox -----------------------------------------------------------------------------------


def test_outbox_writes_one_well_formed_eml_per_letter(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """Default mode: <id>.eml, multipart/alternative, nothing attached, ID in the ledger."""
    letters = make_letters(tmp_path, table, 3)
    outbox = tmp_path / "outbox"
    report = deliver_now(letters, make_settings(), ledger, outbox)
    assert tally(report) == {LetterStatus.OUTBOX: 3}
    for letter in letters:
        msg = assert_well_formed((outbox / f"{letter.student_id}.eml").read_bytes(), letter)
        assert str(msg["Reply-To"]) == "rosa.ortiz@school.edu"
        assert msg["Auto-Submitted"] == "auto-generated"
        assert "S0" not in str(msg["Subject"]) and "Ana Lima" not in str(msg["Subject"])
        (entry,) = ledger.entries(letter.student_id)
        assert entry.status == "sent" and entry.message_id == msg["Message-ID"]
        assert entry.content_hash == letter.content_hash
    assert sorted(p.name for p in outbox.iterdir()) == ["S000.eml", "S001.eml", "S002.eml"]


def test_outbox_rerun_with_nothing_changed_writes_nothing(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """An unchanged letter is not written again, even on another day."""
    outbox = tmp_path / "outbox"
    deliver_now(make_letters(tmp_path, table, 3), make_settings(), ledger, outbox)
    for path in outbox.iterdir():
        path.unlink()
    tomorrow = render_letters(
        [make_student(f"S{i:03d}") for i in range(3)],
        {f"S{i:03d}": make_evaluation(f"S{i:03d}") for i in range(3)},
        table, make_settings(today=date(2026, 11, 25)), {}, tmp_path / "letters",
    )
    report = deliver_now(tomorrow, make_settings(today=date(2026, 11, 25)), ledger, outbox)
    assert tally(report) == {LetterStatus.UNCHANGED: 3}
    assert report["S000"].when.startswith("20")
    assert list(outbox.iterdir()) == []


def test_changed_letter_goes_out_again_with_a_new_message_id_and_says_what_changed(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """New score: a new letter (new Message-ID) that names the change; back again: sent again."""
    outbox = tmp_path / "outbox"
    first = make_letters(tmp_path, table, 1, score=248)
    deliver_now(first, make_settings(), ledger, outbox)
    previous = ledger.previous_summaries(["S000"])
    assert previous["S000"].score == 248 and previous["S000"].sent_on is not None
    second = render_letters(
        [make_student("S000", step2_score=256)],
        {"S000": make_evaluation("S000", step2_score=256, level=5, label="Very competitive")},
        table, make_settings(), previous, tmp_path / "letters",
    )
    assert "Your Step 2 CK on file changed from 248 to 256." in second[0].changes
    report = deliver_now(second, make_settings(), ledger, outbox)
    assert tally(report) == {LetterStatus.OUTBOX: 1}
    # Back to the first letter: it differs from the last one sent, so it goes out again.
    report = deliver_now(first, make_settings(), ledger, outbox)
    assert tally(report) == {LetterStatus.OUTBOX: 1}
    ids = [e.message_id for e in ledger.entries("S000")]
    assert len(ids) == 3 and len(set(ids)) == 3


def test_addresses_missing_outside_or_malformed_are_skipped(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """Only addresses in the allowed domains get mail; header injection is impossible."""
    records = [
        make_student("A1", email=None),
        make_student("A2", email="someone@gmail.com"),
        make_student("A3", email="x@school.edu\r\nBcc: victim@evil.com"),
        make_student("A4", email="ok@med.school.edu"),
    ]
    letters = render_letters(
        records, {r.student_id: make_evaluation(r.student_id) for r in records}, table,
        make_settings(), {}, tmp_path / "letters",
    )
    outbox = tmp_path / "outbox"
    report = deliver_now(letters, make_settings(), ledger, outbox)
    assert {sid: o.status for sid, o in report.items()} == {
        "A1": LetterStatus.NO_ADDRESS,
        "A2": LetterStatus.OUTSIDE_DOMAINS,
        "A3": LetterStatus.BAD_ADDRESS,
        "A4": LetterStatus.OUTBOX,
    }
    assert [p.name for p in outbox.iterdir()] == ["A4.eml"]
    assert ledger.entries("A3") == []


def test_outbox_with_no_allowed_domains_accepts_any_address(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """An empty allowed list means any domain, in outbox mode (smtp refuses it at start)."""
    letters = make_letters(tmp_path, table, 1, email="s@gmail.com")
    report = deliver_now(letters, make_settings(allowed_email_domains=()), ledger, tmp_path / "o")
    assert tally(report) == {LetterStatus.OUTBOX: 1}


SUBJECT = "Zoë's residency advising letter · an update from the Office of Student Affairs"


def test_long_html_lines_are_encoded_so_relays_accept_them(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """A 5,000-character HTML line goes out as quoted-printable; headers fold under 78."""
    builder = MessageBuilder("Office", "advising@school.edu")
    html = "<p>" + "word " * 1000 + "</p>\n" + "é" * 2000
    data = builder.build(
        to="s@school.edu", reply_to=None, subject=SUBJECT, text="hi\n",
        html=html, message_id="<x@school.edu>", date="Tue, 24 Nov 2026 02:00:00 -0500",
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    msg = parse(data)
    assert str(msg["Subject"]) == SUBJECT
    assert list(msg.iter_parts())[1].get_content().replace("\r\n", "\n") == html


def test_html_lines_are_packed_but_never_inside_pre() -> None:
    """Packing joins template lines up to 990 characters, and leaves <pre> letters alone."""
    builder = MessageBuilder("Office", "advising@school.edu")
    lines = [f"<p style='margin:0'>line {i} of the letter</p>" for i in range(200)]

    def sent(html: str) -> tuple[str, str]:
        data = builder.build(
            to="s@school.edu", reply_to=None, subject="Letter", text="Dear Ana,\nhi.\n",
            html=html, message_id="<x@school.edu>", date="Tue, 24 Nov 2026 02:00:00 -0500",
        )
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))
        text, page = parse(data).iter_parts()
        assert text["Content-Transfer-Encoding"] == "7bit"
        assert text.get_content().replace("\r\n", "\n") == "Dear Ana,\nhi.\n"
        return page["Content-Transfer-Encoding"], page.get_content().replace("\r\n", "\n")

    cte, body = sent("\n".join(lines))
    assert cte == "7bit"
    assert body.split("\n") != lines and body.replace("\n", " ") == " ".join(lines)
    # Greedy: each line is short of the width by less than one template line (< 50 here).
    assert len(body.split("\n")) <= -(-len(" ".join(lines)) // (PACKED_LINE - 50))
    assert all(len(line) <= PACKED_LINE for line in body.split("\n"))
    kept = "<pre>\n" + "\n".join(lines) + "\n</pre>"
    assert sent(kept) == ("7bit", kept)


@pytest.mark.parametrize(
    ("html", "kept"),
    [
        (b"<PRE>\nx</PRE>", True),
        (b"<p>a</p>\n<Textarea rows=3>", True),
        (b"<div style='White-Space :\n pre-wrap'>", True),
        (b"<xmp>", True),
        (b"td { white-space: nowrap; }\n<p>pre</p>", False),
        (b"<prefix-tag>\n<p>white-space</p>", False),
        (b"<p>&lt;pre&gt; as text</p>", False),
    ],
)
def test_letters_whose_line_breaks_are_content_are_recognised(html: bytes, kept: bool) -> None:
    """<pre> and kin in any case, or white-space: pre*; the letter CSS's nowrap is not one."""
    assert keeps_lines(html) is kept


def test_pack_lines_keeps_a_line_longer_than_the_width_whole() -> None:
    """A 995-character line fits SMTP's 998 as it is: never cut, its neighbours still packed."""
    long = b"x" * 995
    packed = pack_lines(b"a\nb\n" + long + b"\nc\nd")
    assert packed == b"a b\r\n" + long + b"\r\nc d"


def test_a_text_part_that_is_not_ascii_goes_quoted_printable() -> None:
    """7bit is for ASCII only: an accented name keeps the text part in quoted-printable."""
    builder = MessageBuilder("Office", "advising@school.edu")
    data = builder.build(
        to="s@school.edu", reply_to=None, subject="Letter", text="Dear Zoë,\n",
        html="<p>Dear Zo&#235;,</p>", message_id="<x@school.edu>",
        date="Tue, 24 Nov 2026 02:00:00 -0500",
    )
    text, _ = parse(data).iter_parts()
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text.get_content().replace("\r\n", "\n") == "Dear Zoë,\n"


@pytest.mark.parametrize("announced", [True, False])
def test_accented_text_goes_8bit_only_to_a_relay_that_announced_8bitmime(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger, announced: bool
) -> None:
    """BODY=8BITMIME and an 8bit text part where allowed; quoted-printable and 7-bit elsewhere."""
    letters = make_letters(tmp_path, table, 2, name="Zoë Lima")
    assert "Zoë" in letters[0].text
    with running_sink(Faults(no_8bitmime=not announced)) as sink:
        report = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(report) == {LetterStatus.SENT: 2}
        for received in sink.received:
            (letter,) = [lt for lt in letters if lt.to == received.rcpt_tos[0]]
            assert_well_formed(received.data, letter)
            text, _ = parse(received.data).iter_parts()
            if announced:
                assert received.mail_options == ("BODY=8BITMIME",)
                assert text["Content-Transfer-Encoding"] == "8bit"
            else:
                assert received.mail_options == ()
                assert text["Content-Transfer-Encoding"] == "quoted-printable"
                assert received.data.isascii()


def test_a_plain_mail_merge_fails_where_this_succeeds(tmp_path: Path) -> None:
    """Sent as-is (like a plain mail-merge tool), a long HTML line is refused by the relay."""
    with running_sink() as sink, smtplib.SMTP(sink.host, sink.port) as client:
        raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>" + b"x" * 2000 + b"</p>\r\n"
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("a@school.edu", ["b@school.edu"], raw)
        assert refused.value.smtp_code == 500  # "Line too long"


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mail_from": "not an address"}, "ADVISING_MAIL_FROM"),
        ({"mail_from": "a@school.edu, b@school.edu"}, "ADVISING_MAIL_FROM"),
        ({"reply_to": "advising at school"}, "ADVISING_REPLY_TO"),
        ({"allowed_email_domains": ("@@",)}, "ADVISING_ALLOWED_EMAIL_DOMAINS"),
        ({"delivery": "smtp", "smtp_host": "relay.school.edu", "mail_from": "a@school.edu",
          "smtp_username": "advising"}, "no password"),
        ({"delivery": "smtp", "smtp_host": "relay.school.edu", "mail_from": "a@school.edu",
          "smtp_username": "advising", "smtp_password": "pw", "smtp_security": "none"},
         "unencrypted"),
        ({"delivery": "smtp", "smtp_host": "relay.school.edu:25", "mail_from": "a@school.edu"},
         "ADVISING_SMTP_HOST"),
        ({"delivery": "smtp", "smtp_host": "relay.school.edu", "mail_from": "a@school.edu",
          "smtp_password": "pw"}, "ADVISING_SMTP_USERNAME is blank"),
    ],
)
def test_bad_delivery_settings_fail_at_start_saying_which_and_how(
    overrides: dict[str, Any], message: str
) -> None:
    """Each mistake names the ADVISING_* variable and what to write instead."""
    settings = make_settings(**overrides)
    with pytest.raises(SettingsError, match=message):
        check_settings(settings)


def test_smtp_needs_allowed_domains_at_start() -> None:
    """SMTP with no allowed domains is refused when the settings load (flows/settings.py)."""
    from flows.settings import load_settings

    with pytest.raises(SettingsError, match="ADVISING_ALLOWED_EMAIL_DOMAINS"):
        load_settings(_env_file=None, delivery="smtp", smtp_host="relay", mail_from="a@b.edu")


def test_password_comes_from_the_environment_and_only_for_smtp() -> None:
    """The SecretStr is used as is; outbox mode never looks for a password."""
    smtp = make_settings(delivery="smtp", smtp_host="relay.school.edu", mail_from="a@school.edu",
                         smtp_username="u", smtp_password="s3cret")
    assert resolve_smtp_password(smtp) == "s3cret"
    assert resolve_smtp_password(make_settings(smtp_password_block="nope")) is None
    assert "s3cret" not in repr(smtp)


@pytest.mark.slow
def test_unloadable_secret_block_is_a_settings_error(prefect_harness: None) -> None:
    """A Secret block that does not exist fails with the setting's name and the fix."""
    settings = make_settings(delivery="smtp", smtp_host="relay.school.edu",
                             mail_from="a@school.edu", smtp_username="u",
                             smtp_password_block="no-such-block")
    with pytest.raises(SettingsError, match="ADVISING_SMTP_PASSWORD_BLOCK.*no-such-block"):
        resolve_smtp_password(settings)


@pytest.mark.slow
def test_password_from_a_prefect_secret_block(prefect_harness: None) -> None:
    """ADVISING_SMTP_PASSWORD_BLOCK names a Secret block; its value is the password."""
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    Secret(value=SecretStr("from-the-block")).save("advising-smtp-test", overwrite=True)
    settings = make_settings(delivery="smtp", smtp_host="relay.school.edu",
                             mail_from="a@school.edu", smtp_username="u",
                             smtp_password_block="advising-smtp-test")
    assert resolve_smtp_password(settings) == "from-the-block"


# --- SMTP against a real server ---------------------------------------------------------------


def test_smtp_sends_each_letter_once_over_one_connection(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """All letters through one session; the relay gets well-formed messages; re-run sends none."""
    letters = make_letters(tmp_path, table, 25)
    with running_sink() as sink:
        report = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(report) == {LetterStatus.SENT: 25}
        assert sink.handler.connections == 1
        by_id = {m.message_id: m for m in sink.received}
        for letter in letters:
            (entry,) = ledger.entries(letter.student_id)
            assert entry.status == "sent" and entry.channel == "smtp"
            received = by_id[entry.message_id]
            assert received.rcpt_tos == (letter.to,)
            assert received.mail_from == "advising@school.edu"
            msg = assert_well_formed(received.data, letter)
            assert str(msg["From"]) == "Office of Student Affairs <advising@school.edu>"
        again = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(again) == {LetterStatus.UNCHANGED: 25}
        assert sink.handler.connections == 1  # nothing to send: no connection at all
        assert set(count_by_recipient(sink).values()) == {1}
    assert not (tmp_path / "outbox").exists()


def test_outbox_then_smtp_still_emails_every_student(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """Letters only written to the outbox were never emailed: switching to smtp sends them."""
    letters = make_letters(tmp_path, table, 3)
    deliver_now(letters, make_settings(), ledger, tmp_path / "outbox")
    with running_sink() as sink:
        report = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
    assert tally(report) == {LetterStatus.SENT: 3}


def test_temporary_failures_are_retried_and_permanent_ones_recorded(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """451 twice then OK: sent in the same run. 550: recorded, the others go on."""
    letters = make_letters(tmp_path, table, 10)
    faults = Faults(temp_fail={"s002@school.edu": 2, "s005@school.edu": 99},
                    perm_fail={"s007@school.edu"})
    with running_sink(faults) as sink:
        report = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert report["S002"] == LetterOutcome(LetterStatus.SENT)
        assert report["S005"] == LetterOutcome(LetterStatus.FAILED,
                                               "451 4.3.0 Try again later (4 tries)")
        assert report["S007"] == LetterOutcome(LetterStatus.FAILED, "550 5.1.1 Mailbox unavailable")
        assert tally(report) == {LetterStatus.SENT: 8, LetterStatus.FAILED: 2}
        assert sink.handler.connections == 1
        # The relay recovers; the next run sends only what is missing.
        sink.handler.heal()
        again = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(again) == {LetterStatus.SENT: 2, LetterStatus.UNCHANGED: 8}
        assert count_by_recipient(sink) == {lt.to: 1 for lt in letters}
    (entry,) = ledger.entries("S005")  # the retried letter kept its Message-ID
    assert entry.status == "sent" and entry.attempts == 5


def test_dropped_connections_are_reopened_and_nothing_is_sent_twice(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """A relay that drops the session or says 421: reconnect, resend what was not taken."""
    letters = make_letters(tmp_path, table, 30)
    faults = Faults(drop_every_nth_mail=7, close_every_nth_mail=11)
    with running_sink(faults) as sink:
        report = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(report) == {LetterStatus.SENT: 30}
        assert sink.handler.connections > 1
        assert count_by_recipient(sink) == {lt.to: 1 for lt in letters}


def test_a_large_batch_uses_several_sessions_and_mails_each_student_once(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """250 letters, 3 sessions at once, a relay that drops, closes, defers and refuses."""
    letters = make_letters(tmp_path, table, 250)
    faults = Faults(drop_every_nth_mail=37, close_every_nth_mail=53,
                    temp_fail={"s010@school.edu": 1, "s200@school.edu": 2},
                    perm_fail={"s123@school.edu"})
    with running_sink(faults) as sink:
        settings = smtp_settings(sink, smtp_connections=3)
        report = deliver_now(letters, settings, ledger, tmp_path / "outbox")
        assert tally(report) == {LetterStatus.SENT: 249, LetterStatus.FAILED: 1}
        assert report["S123"] == LetterOutcome(LetterStatus.FAILED, "550 5.1.1 Mailbox unavailable")
        assert report["S200"] == LetterOutcome(LetterStatus.SENT)
        assert sink.handler.connections >= 3 + 250 // 53  # 3 sessions, reopened after closes
        expected = {lt.to: 1 for lt in letters if lt.to != "s123@school.edu"}
        assert count_by_recipient(sink) == expected
        for received in sink.received:
            (letter,) = [lt for lt in letters if lt.to == received.rcpt_tos[0]]
            assert_well_formed(received.data, letter)
    statuses = Counter(e.status for lt in letters for e in ledger.entries(lt.student_id))
    assert statuses == {"sent": 249, "failed": 1}


def test_a_letter_the_relay_drops_three_times_fails_for_this_run_with_one_warning(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """A relay that drops the connection at every MAIL FROM: each letter is tried three times,
    then failed for this run (the next run tries again), with one WARNING naming the ID."""
    letters = make_letters(tmp_path, table, 2)
    with running_sink(Faults(drop_every_nth_mail=1)) as sink, \
            caplog.at_level("WARNING", logger="flows.delivery.smtp"):
        report = deliver_now(letters, smtp_settings(sink, smtp_connections=1), ledger,
                             tmp_path / "outbox")
        assert not sink.received
    assert {sid: (o.status, o.detail.endswith(", 3 times")) for sid, o in report.items()} == {
        "S000": (LetterStatus.FAILED, True), "S001": (LetterStatus.FAILED, True)}
    warned = [r.getMessage() for r in caplog.records if "given up for this run" in r.getMessage()]
    assert warned == [f"Student {sid}: the relay dropped the connection 3 times; given up for "
                      "this run" for sid in ("S000", "S001")]
    assert Counter(e.status for lt in letters for e in ledger.entries(lt.student_id))[
        "failed"] == 2


def test_a_relay_allowing_one_session_gets_everything_through_it(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """The extra sessions are refused with 421 at EHLO: the first one sends every letter."""
    letters = make_letters(tmp_path, table, 220)
    with running_sink(Faults(sessions_allowed=1)) as sink:
        report = deliver_now(letters, smtp_settings(sink, smtp_connections=3), ledger,
                         tmp_path / "outbox")
        assert tally(report) == {LetterStatus.SENT: 220}
        assert sink.handler.connections == 3  # two refused
        assert count_by_recipient(sink) == {lt.to: 1 for lt in letters}


def test_drop_after_data_is_uncertain_and_never_sent_twice(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """The relay takes the message and the line breaks before its reply: at-most-once."""
    letters = make_letters(tmp_path, table, 6)
    faults = Faults(drop_after_data={"s003@school.edu"})
    with running_sink(faults) as sink:
        report = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(report) == {LetterStatus.SENT: 5, LetterStatus.UNCERTAIN: 1}
        assert report["S003"].message_id and not report["S003"].when
        again = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(again) == {LetterStatus.UNCHANGED: 5, LetterStatus.UNCERTAIN: 1}
        assert again["S003"].when and again["S003"].message_id == report["S003"].message_id
        # After a re-run every student has exactly one letter.
        assert count_by_recipient(sink) == {lt.to: 1 for lt in letters}
        # The office checked the relay log and wants it sent after all.
        assert ledger.release_uncertain(["S003"]) == 1
        third = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(third) == {LetterStatus.SENT: 1, LetterStatus.UNCHANGED: 5}
        assert count_by_recipient(sink)["s003@school.edu"] == 2


_KILLED_RUN = """
import pickle, sys
from pathlib import Path
from flows.delivery import deliver
from flows.delivery.ledger import Ledger
letters, settings = pickle.loads(Path(sys.argv[1]).read_bytes())
with Ledger(Path(sys.argv[2])) as ledger:
    deliver(letters, settings, ledger, Path(sys.argv[3]))
"""


@pytest.mark.slow
def test_run_killed_between_data_and_ledger_update_does_not_mail_twice(
    tmp_path: Path, table: SpecialtyTable
) -> None:
    """SIGKILL while the relay holds an accepted message: the next run sends the rest only."""
    letters = make_letters(tmp_path, table, 8)
    faults = Faults(hold_after_data={"s004@school.edu"})
    ledger_path = tmp_path / "output" / "ledger.sqlite"
    with running_sink(faults) as sink:
        settings = smtp_settings(sink)
        job = tmp_path / "job.pickle"
        job.write_bytes(pickle.dumps((letters, settings)))
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILLED_RUN, str(job), str(ledger_path), str(tmp_path / "o")],
            cwd=PROJECT_ROOT, env=env,
        )
        try:
            assert sink.handler.holding.wait(30), "the relay never got the held message"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        sink.handler.release_held()
        with Ledger(ledger_path) as ledger:
            report = deliver_now(letters, settings, ledger, tmp_path / "o")
            assert report["S004"].status is LetterStatus.UNCERTAIN and report["S004"].when
            assert tally(report) == {LetterStatus.SENT: 8 - 5, LetterStatus.UNCHANGED: 4,
                                     LetterStatus.UNCERTAIN: 1}
            assert [e.status for e in ledger.entries("S004")] == ["uncertain"]
        assert count_by_recipient(sink) == {lt.to: 1 for lt in letters}


def test_relay_refusing_the_sender_stops_with_the_setting_to_fix(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """A 5xx to MAIL FROM would fail every letter alike: stop, name ADVISING_MAIL_FROM."""
    letters = make_letters(tmp_path, table, 3)
    with running_sink(Faults(refuse_sender=True)) as sink:
        with pytest.raises(DeliveryError, match="refuses the sender.*ADVISING_MAIL_FROM"):
            deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert [e.status for e in ledger.entries("S000")] == ["queued"]
        sink.handler.heal()
        report = deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        assert tally(report) == {LetterStatus.SENT: 3}
        assert count_by_recipient(sink) == {lt.to: 1 for lt in letters}


def test_rate_limit_spaces_the_messages(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """send_rate_per_minute=600: one message every 0.1 s at most."""
    letters = make_letters(tmp_path, table, 6)
    with running_sink() as sink:
        start = time.monotonic()
        report = deliver_now(letters, smtp_settings(sink, send_rate_per_minute=600), ledger,
                         tmp_path / "outbox")
        elapsed = time.monotonic() - start
    assert tally(report) == {LetterStatus.SENT: 6} and elapsed >= 0.5


def test_unreachable_relay_fails_at_start_and_sends_nothing(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """Nobody listening: DeliveryError naming host:port; the next run sends everything."""
    letters = make_letters(tmp_path, table, 2)
    with running_sink() as sink:
        settings = smtp_settings(sink)
    with pytest.raises(DeliveryError, match=f"127.0.0.1:{sink.port}.*Nothing was sent"):
        deliver_now(letters, settings, ledger, tmp_path / "outbox")
    assert [e.status for e in ledger.entries("S000")] == ["queued"]
    with running_sink() as again:
        report = deliver_now(letters, smtp_settings(again), ledger, tmp_path / "outbox")
    assert tally(report) == {LetterStatus.SENT: 2} and len(again.received) == 2


def test_advisor_reply_to_and_office_fallback_in_the_message(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """Reply-To: the advisor inside the allowed domains, else the office's address."""
    records = [make_student("R1"), make_student("R2", advisor_email="adv@elsewhere.org"),
               make_student("R3", name=XSS_NAME)]
    letters = render_letters(
        records, {r.student_id: make_evaluation(r.student_id) for r in records}, table,
        make_settings(), {}, tmp_path / "letters",
    )
    with running_sink() as sink:
        deliver_now(letters, smtp_settings(sink), ledger, tmp_path / "outbox")
        got = {m.rcpt_tos[0]: parse(m.data) for m in sink.received}
    assert str(got["r1@school.edu"]["Reply-To"]) == "rosa.ortiz@school.edu"
    assert str(got["r2@school.edu"]["Reply-To"]) == "advising@school.edu"
    hostile = got["r3@school.edu"]
    assert XSS_NAME not in str(hostile["Subject"]) and "R3" not in str(hostile["Subject"])
    assert set(hostile.keys()) == {
        "From", "To", "Reply-To", "Subject", "Date", "Message-ID", "MIME-Version",
        "Auto-Submitted", "Content-Type",
    }


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (skipped without `cryptography`)."""
    pytest.importorskip("cryptography")
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_and_login(
    mode: str, certificate: tuple[Path, Path], tmp_path: Path, table: SpecialtyTable,
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STARTTLS and implicit TLS with a login; the certificate is checked (SSL_CERT_FILE)."""
    cert, key = certificate
    letters = make_letters(tmp_path, table, 3)
    context = server_tls_context(cert, key)
    with running_sink(tls=context, implicit_tls=mode == "tls", login=("advising", "pw")) as sink:
        settings = smtp_settings(sink, smtp_security=mode, smtp_username="advising",
                                 smtp_password="pw")
        # Untrusted certificate: refused, with the fix.
        monkeypatch.setenv("SSL_CERT_FILE", str(key.parent / "missing.pem"))
        with pytest.raises(DeliveryError, match="certificate is not trusted"):
            deliver_now(letters, settings, ledger, tmp_path / "outbox")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        wrong = smtp_settings(sink, smtp_security=mode, smtp_username="advising",
                              smtp_password="wrong")
        with pytest.raises(DeliveryError, match="refused the login.*'advising'"):
            deliver_now(letters, wrong, ledger, tmp_path / "outbox")
        report = deliver_now(letters, settings, ledger, tmp_path / "outbox", smtp_password="pw")
        assert tally(report) == {LetterStatus.SENT: 3} and len(sink.received) == 3


def test_starttls_required_but_not_offered(
    tmp_path: Path, table: SpecialtyTable, ledger: Ledger
) -> None:
    """A relay without STARTTLS is refused rather than sent to in clear."""
    letters = make_letters(tmp_path, table, 1)
    with running_sink() as sink:
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            deliver_now(letters, smtp_settings(sink, smtp_security="starttls"), ledger,
                    tmp_path / "outbox")
        assert sink.received == []


def test_tls_is_available_to_the_relay_client() -> None:
    """The Python the product runs on was built with TLS."""
    assert ssl.OPENSSL_VERSION
