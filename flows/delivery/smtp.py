"""Deliver letters through the school's SMTP relay.

One session for a small batch and up to ADVISING_SMTP_CONNECTIONS for a large one (each
reopened if the relay drops it); 4xx replies are retried with a bounded backoff while the other
letters go on, 5xx are recorded per student, and the relay's rate limit is kept. Delivery is
at-most-once (see flows/delivery/ledger.py): when the connection breaks after the message was
handed over, the letter is marked uncertain, never re-sent blind.
Logs carry student IDs and SMTP codes only: never a name, an address or a score.
"""

from __future__ import annotations

import heapq
import logging
import smtplib
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass

from flows.delivery.jobs import Job, build_message, now_dates, sender, short_reply
from flows.delivery.ledger import Ledger, LedgerUnwritable, Status
from flows.delivery.mime import MessageBuilder, dot_stuff
from flows.errors import DeliveryError
from flows.outcome import LetterOutcome, LetterStatus
from flows.settings import Settings

log = logging.getLogger(__name__)

_SENT = LetterOutcome(LetterStatus.SENT)

# A letter whose transaction loses the connection this often (before DATA) is given up.
MAX_DROPS_PER_LETTER = 3


@dataclass(frozen=True)
class Waits:
    """How long delivery waits (seconds) before trying again; bounded, so a night ends.

    retry: before the 2nd, 3rd and 4th try of a letter the relay answered 4xx (other letters go
    on meanwhile; after the last, the letter is recorded as failed); reconnect: before opening
    the session again when the relay cannot be reached or drops it; ledger: before recording
    again outcomes the ledger refused (a full disk may be freed).
    """

    retry: tuple[float, ...] = (5.0, 30.0, 120.0)
    reconnect: tuple[float, ...] = (1.0, 5.0, 20.0)
    ledger: tuple[float, ...] = (0.0, 1.0, 5.0)


def _stopped(first: str, accepted: list[str], recorded: bool) -> str:
    """The sentence for a delivery stopped by the ledger: what became of accepted letters."""
    if recorded:
        kept = (f"the {len(accepted)} letter(s) the relay had accepted are recorded as sent"
                if accepted else "every letter sent is recorded")
        return (f"{first}. Delivery stopped there so that no letter goes out unrecorded; "
                f"{kept}, and the others go out on the next run")
    return (
        f"{first}. Delivery stopped there; {len(accepted)} letter(s) the relay had accepted "
        f"could not be recorded as sent (students {', '.join(accepted)}): the next run lists "
        "them as uncertain and does not send them again; they did arrive, so do not release "
        "them"
    )


class UnrecordedSends(DeliveryError):
    """Delivery stopped on a ledger refusal, with outcomes (a 250 among them) not recorded.

    The caller may free space (its own temporary files) and call record_again().
    """

    def __init__(self, first: str, ledger: Ledger, outcomes: list[tuple[int, Status, str]],
                 accepted: list[str]) -> None:
        super().__init__(_stopped(first, accepted, recorded=False))
        self.first, self.ledger, self.outcomes, self.accepted = first, ledger, outcomes, accepted

    def record_again(self) -> DeliveryError:
        """Try once more to record the outcomes; return the error to raise (self if refused)."""
        if self.outcomes:
            try:
                self.ledger.record_many(self.outcomes, attempt=False)
            except LedgerUnwritable:
                log.error("Ledger refused to record %d letters the relay accepted: %s",
                          len(self.accepted), ", ".join(self.accepted))
                return self
        return DeliveryError(_stopped(self.first, self.accepted, recorded=True))


class _Unreachable(Exception):
    """The relay cannot be reached right now (worth waiting and trying again)."""


class _Relay:
    """One SMTP session with the relay; the caller reopens it when it breaks."""

    def __init__(self, settings: Settings, password: str | None) -> None:
        self.host = settings.smtp_host.strip()
        self.port = settings.effective_smtp_port
        self.security = settings.smtp_security
        self.username = settings.smtp_username
        self.password = password or ""
        self.timeout = settings.smtp_timeout_seconds
        self.smtp: smtplib.SMTP | None = None
        self.eight_bit = False  # the relay announced 8BITMIME (RFC 6152)

    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def open(self) -> None:
        """Connect, secure and log in; DeliveryError for what waiting cannot fix."""
        self.close()
        # The system's trusted CAs (a private CA: point SSL_CERT_FILE at it); hostname checked.
        context = ssl.create_default_context()
        smtp: smtplib.SMTP | None = None
        try:
            if self.security == "tls":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            _greet(smtp)
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        f"{self.where()} does not offer STARTTLS: set ADVISING_SMTP_SECURITY=tls "
                        "(implicit TLS, usually port 465), or none only for a relay on this server"
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
            self.eight_bit = smtp.has_extn("8bitmime")
        except smtplib.SMTPAuthenticationError as exc:
            _quietly_close(smtp)
            raise DeliveryError(
                f"{self.where()} refused the login for ADVISING_SMTP_USERNAME "
                f"{self.username!r} ({exc.smtp_code}); check the user name and the password"
            ) from None
        except smtplib.SMTPNotSupportedError:
            _quietly_close(smtp)
            raise DeliveryError(
                f"{self.where()} does not accept a login here: leave ADVISING_SMTP_USERNAME "
                "blank, or use ADVISING_SMTP_SECURITY=starttls or tls"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            _quietly_close(smtp)
            raise DeliveryError(
                f"{self.where()}: the relay's certificate is not trusted ({exc.verify_message}); "
                "use the relay's real host name, or point SSL_CERT_FILE at the school's CA"
            ) from None
        except DeliveryError:
            _quietly_close(smtp)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            _quietly_close(smtp)
            raise _Unreachable(str(exc) or type(exc).__name__) from None
        self.smtp = smtp

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                self.smtp.close()
            self.smtp = None

    def _refused(self, code: int, text: bytes, in_transaction: bool) -> tuple[str, int, str]:
        reply = text.decode("utf-8", "replace")
        if code == 421:  # the relay is closing this session: nothing was accepted
            self.drop()
            return "drop", code, reply
        if in_transaction:
            try:
                assert self.smtp is not None
                self.smtp.rset()
            except (OSError, smtplib.SMTPException):
                self.drop()
        return ("temp" if 400 <= code < 500 else "perm"), code, reply

    def drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None

    def transact(self, sender: str, rcpt: str, data: bytes) -> tuple[str, int, str]:
        """Send one message: (outcome, code, reply); sent|temp|perm|drop|uncertain|sender."""
        smtp = self.smtp
        assert smtp is not None
        try:
            # Both addresses are checked addr-specs: no need for smtplib's address parser
            # (two parses per message are a tenth of the client's time).
            body = "" if data.isascii() else " BODY=8BITMIME"  # only built so after 8BITMIME
            smtp.putcmd("mail", f"FROM:<{sender}>{body}")
            code, reply = smtp.getreply()
            if code != 250:
                if 500 <= code < 600:  # the sender is refused: every letter would be
                    self._refused(code, reply, True)
                    return "sender", code, reply.decode("utf-8", "replace")
                return self._refused(code, reply, True)
            smtp.putcmd("rcpt", f"TO:<{rcpt}>")
            code, reply = smtp.getreply()
            if code not in (250, 251):
                return self._refused(code, reply, True)
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                return self._refused(code, reply, True)
            # If this raises, the final "." never left: the relay discards the message.
            smtp.send(dot_stuff(data) + b".\r\n")
        except (OSError, smtplib.SMTPException) as exc:
            self.drop()
            return "drop", 0, str(exc) or type(exc).__name__
        try:
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException):
            # The relay may have taken the message: at-most-once, do not send it again.
            self.drop()
            return "uncertain", 0, "the connection broke after the message was handed over"
        if code == 250:
            return "sent", code, reply.decode("utf-8", "replace")
        return self._refused(code, reply, False)


def _greet(smtp: smtplib.SMTP) -> None:
    """EHLO (HELO for an old relay); a relay that will not talk now (421) is _Unreachable."""
    code, reply = smtp.ehlo()
    if code == 250:
        return
    if 500 <= code < 600:
        code, reply = smtp.helo()
        if code == 250:
            return
    raise _Unreachable(short_reply(code, reply.decode("utf-8", "replace")))


def _quietly_close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()


def send_one(settings: Settings, password: str | None, to: str, data: bytes) -> None:
    """Send one message through the relay outside the ledger (the office's own mail).

    Raises DeliveryError, naming the relay, when it cannot be reached or does not take it.
    """
    relay = _Relay(settings, password)
    try:
        relay.open()
        assert relay.smtp is not None
        relay.smtp.sendmail(sender(settings)[1], [to], data)
    except _Unreachable as exc:
        raise DeliveryError(f"{relay.where()} cannot be reached", detail=str(exc)[:200],
                            fix="check ADVISING_SMTP_HOST and ADVISING_SMTP_PORT") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{relay.where()} did not take the message",
                            detail=type(exc).__name__) from None
    finally:
        relay.close()


LETTERS_PER_SESSION = 100  # a smaller batch does not open another session with the relay


class SmtpRun:
    """Send a batch through up to `smtp_connections` relay sessions at once.

    One session leaves the relay idle while this side waits for each reply; a few sessions
    keep it busy (real relays serve many clients at once). Each session runs in its own thread
    (socket waits release the GIL) and keeps the ledger's per-message order: its last outcome
    and its next 'sending' are committed together before the transaction. The queue, the
    retries, the rate limit, the outcomes and the ledger are shared under locks.
    """

    def __init__(
        self, settings: Settings, password: str | None, builder: MessageBuilder, ledger: Ledger,
        outcomes: dict[str, LetterOutcome], waits: Waits,
    ) -> None:
        self.settings = settings
        self.waits = waits
        self.password = password
        self.sender = sender(settings)[1]
        self.builder = builder
        self.ledger = ledger
        self.outcomes = outcomes
        rate = settings.send_rate_per_minute
        self.interval = 60.0 / rate if rate else 0.0
        self.next_slot = 0.0
        self.cond = threading.Condition()  # guards everything below, and outcomes
        self.ledger_lock = threading.Lock()
        self.queue: deque[Job] = deque()
        self.retries: list[tuple[float, int, Job]] = []  # (due, tiebreak, job)
        self.in_flight = 0
        self.live = 0
        self.error: BaseException | None = None
        # Outcomes step() could not commit (a full disk), kept here to record them once it can:
        # a letter the relay accepted (250) must end up "sent", or it would be held as uncertain.
        self.unrecorded: list[tuple[int, Status, str]] = []
        self.students: dict[int, str] = {}  # ledger row -> student ID, to name them if need be

    def run(self, jobs: list[Job]) -> None:
        self.queue.extend(jobs)
        self.students = {j.plan.row_id: j.letter.student_id for j in jobs}
        first = _Session(self, _Relay(self.settings, self.password))
        first.connect(first=True)  # unreachable: DeliveryError, nothing sent
        wanted = min(self.settings.smtp_connections,
                     1 + (len(jobs) - 1) // LETTERS_PER_SESSION)
        self.live = wanted
        threads = [
            threading.Thread(target=_Session(self, _Relay(self.settings, self.password)).work,
                             name=f"smtp-session-{n}", daemon=True)
            for n in range(1, wanted)
        ]
        for thread in threads:
            thread.start()
        first.work()
        for thread in threads:
            thread.join()
        if self.unrecorded or isinstance(self.error, LedgerUnwritable):
            raise self._ledger_failed()
        if self.error is not None:
            raise self.error

    def _ledger_failed(self) -> DeliveryError:
        """Record what the ledger refused, trying again a few times; say what became of it.

        Delivery stopped at the first refusal (a letter sent unrecorded could go out twice);
        the letters the relay had already accepted are the ones that must not be lost.
        """
        first = str(self.error) if self.error is not None else "the ledger refused a write"
        accepted = [self.students.get(row, "?") for row, status, _ in self.unrecorded
                    if status == "sent"]
        stopped = UnrecordedSends(first, self.ledger, self.unrecorded, accepted)
        for delay in self.waits.ledger:
            time.sleep(delay)
            outcome = stopped.record_again()
            if outcome is not stopped:
                return outcome
        return stopped

    # --- shared state, each under self.cond -----------------------------------------------------

    def take(self) -> Job | None:
        """Return the next job (a due retry first), or None when nothing is left or it stopped."""
        with self.cond:
            while self.error is None:
                now = time.monotonic()
                if self.retries and (not self.queue or self.retries[0][0] <= now):
                    due = self.retries[0][0]
                    if due > now:  # only retries are left: wait for the first to fall due
                        self.cond.wait(due - now)
                        continue
                    job = heapq.heappop(self.retries)[2]
                elif self.queue:
                    job = self.queue.popleft()
                elif self.in_flight:  # another session may still put its letter back
                    self.cond.wait()
                    continue
                else:
                    return None
                self.in_flight += 1
                return job
            return None

    def done(self, job: Job | None = None, again: bool = False, due: float = 0.0) -> None:
        """Finish a taken job; put it back first (again) or among the retries (due)."""
        with self.cond:
            self.in_flight -= 1
            if job is not None and again:
                self.queue.appendleft(job)
            elif job is not None:
                heapq.heappush(self.retries, (due, job.plan.row_id, job))
            self.cond.notify_all()

    def leave(self) -> list[Job]:
        """A session gives up on the relay; the last one to leave takes every letter left."""
        with self.cond:
            self.live -= 1
            self.cond.notify_all()
            if self.live > 0 or self.error is not None:
                return []
            left = [*self.queue, *(j for _, _, j in self.retries)]
            self.queue.clear()
            self.retries.clear()
            return left

    def stop(self, exc: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = exc
            self.cond.notify_all()

    def fail(self, job: Job, detail: str, uncertain: bool = False) -> None:
        """Record a letter the relay refused or may have taken (uncertain), for this run."""
        status = LetterStatus.UNCERTAIN if uncertain else LetterStatus.FAILED
        outcome = LetterOutcome(status, detail, message_id=job.plan.message_id if uncertain else "")
        with self.cond:
            self.outcomes[job.letter.student_id] = outcome

    def sent(self, job: Job) -> None:
        with self.cond:
            self.outcomes[job.letter.student_id] = _SENT

    def step(self, finished: tuple[int, Status, str] | None, starting: int | None) -> None:
        """Commit one outcome and the next 'sending'; an outcome refused is kept to retry."""
        with self.ledger_lock:
            try:
                self.ledger.step(finished, starting)
            except LedgerUnwritable:
                if finished is not None:
                    self.unrecorded.append(finished)
                raise

    def record_failed(self, jobs: list[Job], detail: str) -> None:
        with self.ledger_lock:
            self.ledger.record_many([(j.plan.row_id, "failed", detail) for j in jobs])

    def wait_for_slot(self) -> None:
        """Keep to the rate limit across every session."""
        if not self.interval:
            return
        with self.cond:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class _Session:
    """One relay session of an SmtpRun: takes letters from the shared queue until none is left."""

    def __init__(self, run: SmtpRun, relay: _Relay) -> None:
        self.run = run
        self.relay = relay
        self.dates = now_dates()
        # The outcome of the last transaction, committed together with the next 'sending'.
        self.pending: tuple[int, Status, str] | None = None
        self.unreachable = "relay unreachable"  # why the relay could not be reached, if so

    def work(self) -> None:
        run = self.run
        try:
            if self.relay.smtp is None and not self._open_extra():
                return
            while (job := run.take()) is not None:
                if self.relay.smtp is None and not self._reconnect():
                    run.done(job, again=True)
                    self._give_up(run.leave())
                    return
                self._send(job)
            run.leave()
        except BaseException as exc:  # noqa: BLE001 - re-raised by run() in the caller's thread
            run.stop(exc)
        finally:
            try:
                self._flush()
            except BaseException as exc:  # noqa: BLE001 - the same: never a thread's traceback
                run.stop(exc)
            finally:
                self.relay.close()

    def _open_extra(self) -> bool:
        """Open one more session; a relay that limits sessions per client just gets fewer."""
        try:
            self.relay.open()
            return True
        except (_Unreachable, DeliveryError) as exc:
            self._note_unreachable(exc)
            log.info("Relay %s refused another session (%s); going on with fewer",
                     self.relay.where(), self.unreachable)
            self._give_up(self.run.leave())  # the others may all have left meanwhile
            return False

    def connect(self, first: bool) -> None:
        """Open the session, waiting between tries; _Unreachable after the last one."""
        last = ""
        for delay in (0.0, *self.run.waits.reconnect):
            time.sleep(delay)
            try:
                self.relay.open()
                return
            except _Unreachable as exc:
                last = str(exc)
        if first:
            raise DeliveryError(
                f"cannot reach the SMTP relay {self.relay.where()} ({last}); check "
                "ADVISING_SMTP_HOST, ADVISING_SMTP_PORT and ADVISING_SMTP_SECURITY, and that "
                "this server may connect to it. Nothing was sent; the next run sends everything"
            )
        raise _Unreachable(last)

    def _reconnect(self) -> bool:
        try:
            self.connect(first=False)
            return True
        except _Unreachable as exc:
            self._note_unreachable(exc)
            return False

    def _note_unreachable(self, exc: Exception) -> None:
        self.unreachable = f"relay unreachable ({str(exc)[:80]})"

    def _give_up(self, left: list[Job]) -> None:
        """The relay cannot be reached again: the letters left wait for the next run."""
        if not left:
            return
        detail = self.unreachable
        log.warning("Relay %s unreachable; %d letters left for the next run",
                    self.relay.where(), len(left))
        self._flush()
        self.run.record_failed(left, detail)
        for j in left:
            self.run.fail(j, detail)

    def _flush(self) -> None:
        pending, self.pending = self.pending, None  # handed over once: run keeps a refused one
        if pending is not None:
            self.run.step(pending, None)

    def _send(self, job: Job) -> None:
        run = self.run
        letter, row_id = job.letter, job.plan.row_id
        assert letter.to is not None
        data = build_message(job, run.builder, self.dates.now(), self.relay.eight_bit)
        run.wait_for_slot()
        pending, self.pending = self.pending, None  # handed over once: run keeps a refused one
        run.step(pending, row_id)  # 'sending' is on disk before the transaction
        outcome, code, reply = self.relay.transact(run.sender, letter.to, data)
        sid = letter.student_id
        if outcome == "sender":
            self.pending = (row_id, "queued", short_reply(code, reply))
            run.done()
            raise DeliveryError(
                f"{self.relay.where()} refuses the sender {run.sender} "
                f"({short_reply(code, reply)}); "
                "check ADVISING_MAIL_FROM, and ADVISING_SMTP_USERNAME if the relay wants a "
                "login. Letters not sent yet go out on the next run"
            )
        if outcome == "sent":
            self.pending = (row_id, "sent", "")
            run.sent(job)
        elif outcome == "temp":
            job.tries += 1
            detail = short_reply(code, reply)
            if job.tries <= len(run.waits.retry):
                # Committed before another session can take the letter up again.
                self.pending = (row_id, "queued", detail)
                self._flush()
                run.done(job, due=time.monotonic() + run.waits.retry[job.tries - 1])
                log.info("Student %s: relay answered %d, trying again later", sid, code)
                return
            self.pending = (row_id, "failed", detail)
            run.fail(job, f"{detail} ({job.tries} tries)")
            log.warning("Student %s: relay answered %d %d times; given up", sid, code,
                        job.tries)
        elif outcome == "perm":
            detail = short_reply(code, reply)
            self.pending = (row_id, "failed", detail)
            run.fail(job, detail)
            log.warning("Student %s: relay refused the letter (%d)", sid, code)
        elif outcome == "drop":
            job.drops += 1
            detail = (
                "connection lost before the message was handed over "
                f"({short_reply(code, reply)})"
            )
            log.info("Student %s: the relay dropped the connection; reconnecting", sid)
            if job.drops < MAX_DROPS_PER_LETTER:
                self.pending = (row_id, "queued", detail)
                self._flush()
                run.done(job, again=True)  # nothing was delivered: send it again first
                return
            self.pending = (row_id, "failed", detail)
            run.fail(job, f"{detail}, {job.drops} times")
            log.warning("Student %s: the relay dropped the connection %d times; given up for "
                        "this run", sid, job.drops)
        else:  # uncertain
            self.pending = (row_id, "uncertain", reply)
            run.fail(job, reply, uncertain=True)
            log.warning("Student %s: delivery uncertain, not re-sent", sid)
        run.done()
