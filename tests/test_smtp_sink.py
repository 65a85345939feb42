"""The test and benchmark SMTP sink behaves like a plain aiosmtpd server on the wire (#17).

Its sockets once kept Nagle's algorithm on: every session then waited about 44 ms for the
client's delayed ACK in the middle of the EHLO reply, so the mailmerge peer (a session per
message) took 54.6 s for 983 letters where a plain aiosmtpd Controller took 11.7 s.
"""

from __future__ import annotations

import smtplib

import pytest

from tests.support.smtp_sink import SinkProcess, running_sink


def _send(host: str, port: int, sessions: int) -> None:
    """Send one message per session, as mailmerge does."""
    for n in range(sessions):
        with smtplib.SMTP(host, port, local_hostname="client.test", timeout=10) as smtp:
            smtp.sendmail("advising@example.edu", [f"s{n}@students.example.edu"],
                          f"Subject: letter {n}\r\n\r\nDear student {n},\r\n")


def test_every_session_has_nagle_off() -> None:
    with running_sink() as sink:
        _send(sink.host, sink.port, 3)
        assert sink.handler.connections == 3
        assert sink.handler.nagle_sessions == 0
        assert len(sink.received) == 3
        assert sink.handler.bytes == sum(len(r.data) for r in sink.received)
        assert sink.handler.ehlo_reply[-1] == "250 HELP"


@pytest.mark.slow
def test_the_sink_process_describes_itself_and_what_it_saw() -> None:
    with SinkProcess() as sink:
        _send(sink.host, sink.port, 2)
        described = sink.describe()
        assert sink.stop() == 2
    assert described["port"] == sink.port and described["host"] == "127.0.0.1"
    assert described["options"]["server_hostname"] == "sink.test"
    seen = described["seen"]
    assert seen["messages"] == 2 and seen["sessions"] == 2
    assert seen["sessions_with_nagle"] == 0
    assert seen["ehlo_reply"][0] == "250-sink.test"
    assert seen["bytes"] > 0
