"""A real SMTP server on 127.0.0.1 (aiosmtpd) with scripted faults, for tests and the benchmark.

In a test: ``with running_sink(Faults(...)) as sink:`` gives a server in a thread on a free port;
``sink.received`` lists what it accepted. For a benchmark the sink runs in its own process
(``SinkProcess``, or ``python -m tests.support.smtp_sink``) so it does not share the client's GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import ipaddress
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.I | re.M)


@dataclass(frozen=True)
class Received:
    """One message the sink accepted: the envelope and the raw bytes as the client sent them."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()  # e.g. BODY=8BITMIME

    @property
    def message_id(self) -> str:
        """Return the Message-ID header, or "" if there is none."""
        found = _MESSAGE_ID.search(self.data.split(b"\r\n\r\n", 1)[0])
        return found.group(1).decode("ascii", "replace") if found else ""


@dataclass
class Faults:
    """What the relay does wrong, so tests meet the failures a real relay produces."""

    # recipient -> how many times to answer 451 at end of DATA before accepting
    temp_fail: dict[str, int] = field(default_factory=dict)
    # recipients refused with 550 at RCPT, every time
    perm_fail: set[str] = field(default_factory=set)
    # drop the connection without a reply at every Nth MAIL FROM (0 = never)
    drop_every_nth_mail: int = 0
    # recipients whose message is received but the connection drops before the 250 reply:
    # the client cannot know whether it was delivered (the message is kept as delivered)
    drop_after_data: set[str] = field(default_factory=set)
    # answer 421 and close at every Nth MAIL FROM (0 = never): a relay limiting a session
    close_every_nth_mail: int = 0
    # recipients whose message is kept, then the reply held back until release_held(): the
    # moment a client can be killed after the relay took the message, before it heard so
    hold_after_data: set[str] = field(default_factory=set)
    # refuse every sender with 550 at MAIL FROM (a relay that does not know the office)
    refuse_sender: bool = False
    # answer 421 to the EHLO of every session after the first N (0 = never): a relay that
    # allows a client only so many sessions
    sessions_allowed: int = 0
    # leave 8BITMIME out of the EHLO reply (an old relay that takes 7-bit data only)
    no_8bitmime: bool = False


def _abort(server: SMTP) -> None:
    """Cut the connection at once, without a reply, as a crashing relay would."""
    transport = server.transport
    assert isinstance(transport, asyncio.Transport)
    transport.abort()


def _nodelay(server: SMTP) -> bool:
    """Return whether the session's socket has Nagle's algorithm off (TCP_NODELAY set)."""
    sock = server.transport.get_extra_info("socket") if server.transport else None
    try:
        return sock is not None and bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    except OSError:
        return False


class SinkHandler:
    """aiosmtpd handler: apply the faults, then keep (or just count) each accepted message."""

    def __init__(self, faults: Faults | None = None, keep: bool = True) -> None:
        self.faults = faults or Faults()
        self.keep = keep
        self.received: list[Received] = []
        self.count = 0
        self.mail_commands = 0
        self.connections = 0
        # Sessions whose socket had Nagle on (TCP_NODELAY off): each then stalls on its
        # multi-line EHLO reply for the client's delayed ACK (see _FreePortController).
        self.nagle_sessions = 0
        self.bytes = 0  # message bytes accepted, as the client sent them
        self.ehlo_reply: list[str] = []  # the first session's EHLO reply, as the client saw it
        self._temp_left = dict(self.faults.temp_fail)
        self._dropped_after_data: set[str] = set()
        self._lock = threading.Lock()
        self.holding = threading.Event()  # set while a held message waits for release_held()
        self._release = threading.Event()

    def heal(self) -> None:
        """Stop every scripted fault: the relay works normally from now on."""
        with self._lock:
            self.faults = Faults()
            self._temp_left.clear()

    def release_held(self) -> None:
        """Let a held message's reply go (to a client that may be gone by now)."""
        self._release.set()

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Count sessions (an EHLO opens each one) so tests see the connection was reused."""
        nagle = not _nodelay(server)
        with self._lock:
            self.connections += 1
            self.nagle_sessions += nagle
            refused = 0 < self.faults.sessions_allowed < self.connections
        if refused:  # say so, then close, as a relay at its limit does
            await server.push("421 4.7.0 Too many connections from your host")
            _abort(server)
            return []
        session.host_name = hostname
        if self.faults.no_8bitmime:
            responses = [r for r in responses if "8BITMIME" not in r]
        if not self.ehlo_reply:
            self.ehlo_reply = list(responses)
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Drop or close the session on schedule, else accept the sender."""
        with self._lock:
            self.mail_commands += 1
            nth = self.mail_commands
        if self.faults.drop_every_nth_mail and nth % self.faults.drop_every_nth_mail == 0:
            _abort(server)
            return "421 dropped"  # never reaches the client
        if self.faults.close_every_nth_mail and nth % self.faults.close_every_nth_mail == 0:
            # aiosmtpd closes the session after a 421 reply.
            return "421 4.7.0 Too many messages in this session, reconnect"
        if self.faults.refuse_sender:
            return "550 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Refuse the permanently failing recipients."""
        if address in self.faults.perm_fail:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Answer 451 or drop as scripted, else keep the message."""
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        with self._lock:
            left = self._temp_left.get(rcpt, 0)
            if left:
                self._temp_left[rcpt] = left - 1
                return "451 4.3.0 Try again later"
        content = envelope.original_content or envelope.content or b""
        assert isinstance(content, bytes)
        with self._lock:
            self.count += 1
            self.bytes += len(content)
            if self.keep:
                self.received.append(
                    Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), content,
                             tuple(envelope.mail_options))
                )
            drop = rcpt in self.faults.drop_after_data and rcpt not in self._dropped_after_data
            if drop:
                self._dropped_after_data.add(rcpt)
        if drop:
            _abort(server)
        elif rcpt in self.faults.hold_after_data:
            self.holding.set()
            while not self._release.is_set():
                await asyncio.sleep(0.01)
        return "250 OK queued"

    def per_recipient(self) -> Counter[str]:
        """Count accepted messages per recipient."""
        with self._lock:
            return Counter(r for msg in self.received for r in msg.rcpt_tos)


class _FreePortController(Controller):
    """A Controller bound to a port the OS picks, so parallel test runs never collide."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
        # whose proto is IPPROTO_TCP, and accepted sockets inherit the listener's. With Nagle on,
        # the EHLO reply's 2nd to 5th lines (one write each) wait for the client's delayed ACK:
        # about 44 ms a session on loopback, which made a one-session-a-message client (the
        # mailmerge peer, 983 letters) take 54.6 s instead of 11.7 s with a plain aiosmtpd
        # Controller (#17).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._sock.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(
            self._factory_invoker, sock=self._sock, ssl=self.ssl_context, backlog=128
        )


@dataclass
class Sink:
    """A running sink: where it listens and what it has accepted."""

    host: str
    port: int
    handler: SinkHandler

    @property
    def received(self) -> list[Received]:
        """Return the accepted messages so far."""
        return self.handler.received


def _authenticator(username: str, password: str) -> Any:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == username
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return check


@contextmanager
def running_sink(
    faults: Faults | None = None,
    *,
    keep: bool = True,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    login: tuple[str, str] | None = None,
) -> Iterator[Sink]:
    """Run an SMTP sink on 127.0.0.1 in a thread; STARTTLS (required) or implicit TLS with tls."""
    handler = SinkHandler(faults, keep)
    kwargs: dict[str, Any] = {"server_hostname": "sink.test", "ident": "smtp-sink"}
    if tls is not None and implicit_tls:
        kwargs["ssl_context"] = tls
    elif tls is not None:
        kwargs["tls_context"] = tls
        kwargs["require_starttls"] = True
    if login is not None:
        kwargs["authenticator"] = _authenticator(*login)
        kwargs["auth_required"] = True
        # aiosmtpd only counts STARTTLS as TLS when offering AUTH; implicit TLS is TLS too.
        kwargs["auth_require_tls"] = tls is not None and not implicit_tls
    controller = _FreePortController(handler, **kwargs)
    controller.start()
    try:
        yield Sink("127.0.0.1", controller.port, handler)
    finally:
        handler.release_held()  # a held reply must not keep the server from stopping
        controller.stop()


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and its key; needs `cryptography`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "sink-cert.pem", directory / "sink-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Return the sink's TLS context for a certificate made by make_self_signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class SinkProcess:
    """The sink in a separate process (no shared GIL), counting messages; for the benchmark."""

    def __init__(self) -> None:
        self.command = [sys.executable, "-m", "tests.support.smtp_sink"]
        root = Path(__file__).resolve().parent.parent.parent
        self._proc = subprocess.Popen(
            self.command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self._proc.kill()
            raise RuntimeError(f"smtp sink did not start: {line!r}")
        self.host = "127.0.0.1"
        self.port = int(line[1])
        self.pid = self._proc.pid

    def _ask(self, command: str) -> list[str]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return self._proc.stdout.readline().split(maxsplit=1)

    def count(self) -> int:
        """Return how many messages the sink has accepted so far."""
        words = self._ask("count")
        return int(words[1]) if len(words) == 2 and words[0] == "COUNT" else -1

    def stats(self) -> dict[str, Any]:
        """Return what the sink saw so far: messages, bytes, sessions, Nagle, the EHLO reply."""
        words = self._ask("stats")
        if len(words) != 2 or words[0] != "STATS":
            return {}
        found: dict[str, Any] = json.loads(words[1])
        return found

    def describe(self) -> dict[str, Any]:
        """Return the sink's exact configuration and what it saw, so a reader can rebuild it."""
        return {
            "server": f"aiosmtpd {importlib.metadata.version('aiosmtpd')} Controller "
                      "(asyncio), in its own process",
            "handler": "tests.support.smtp_sink.SinkHandler(keep=False): counts messages and "
                       "bytes, keeps none, no faults",
            "command": " ".join(self.command),
            "pid": self.pid,
            "host": self.host,
            "port": self.port,
            "options": {**PROCESS_OPTIONS, "tls": "none", "auth": "none",
                        "TCP_NODELAY": "on (asyncio sets it on IPPROTO_TCP sockets)"},
            "seen": self.stats(),
        }

    def stop(self) -> int:
        """Stop the sink and return how many messages it accepted (-1 if already stopped)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if self._proc.poll() is not None:
            return -1
        self._proc.stdin.close()  # the sink stops when its stdin closes
        out = self._proc.stdout.read().split()
        self._proc.wait(timeout=30)
        return int(out[1]) if len(out) == 2 and out[0] == "RECEIVED" else -1

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            self.stop()


# The benchmark's sink process: main() serves with these, SinkProcess.describe() reports them.
PROCESS_OPTIONS = {"server_hostname": "sink.test", "ident": "smtp-sink"}


def main(argv: list[str] | None = None) -> int:
    """Serve until stdin closes (or SIGTERM): PORT first, COUNT <n> per "count", STATS <json>
    per "stats", RECEIVED <n> at the end."""
    argparse.ArgumentParser(description=main.__doc__).parse_args(argv)
    handler = SinkHandler(keep=False)
    controller = _FreePortController(handler, **PROCESS_OPTIONS)
    controller.start()
    print(f"PORT {controller.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def wait_stdin() -> None:
        # Each "count" line is answered mid-run, so one sink serves a run and its re-run.
        for line in sys.stdin:
            if line.strip() == "count":
                print(f"COUNT {handler.count}", flush=True)
            elif line.strip() == "stats":
                seen = {"messages": handler.count, "bytes": handler.bytes,
                        "sessions": handler.connections,
                        "sessions_with_nagle": handler.nagle_sessions,
                        "ehlo_reply": handler.ehlo_reply}
                print(f"STATS {json.dumps(seen)}", flush=True)
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    stop.wait()
    controller.stop()
    print(f"RECEIVED {handler.count}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
