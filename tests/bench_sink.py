"""A counting SMTP sink for the benchmark, in its own process so it never shares our GIL.

It accepts every message and keeps only a count. Unlike tests/smtp_sink.py it can be asked for
the count while it runs, so one sink (one port) serves a run and its unchanged re-run, and the
benchmark still sees how many emails each sent.

Protocol on stdin/stdout: it prints ``PORT <n>`` once listening; each ``count`` line read is
answered with ``COUNT <n>``; at end of input it prints ``RECEIVED <n>`` and exits.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class _Counter:
    """aiosmtpd handler: accept everything, count it, keep nothing."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.count += 1
        return "250 OK queued"


def main() -> int:
    """Serve on 127.0.0.1 (a free port) until stdin closes."""
    from aiosmtpd.controller import Controller

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    handler = _Counter()
    # data_size_limit=None: letters with inlined CSS are large; a relay's limit is not ours to test.
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, ident="bench-sink",
        server_hostname="sink.test", data_size_limit=None,
    )
    controller.start()
    print(f"PORT {port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(f"COUNT {handler.count}", flush=True)
    controller.stop()
    print(f"RECEIVED {handler.count}", flush=True)
    return 0


class BenchSink:
    """The sink as a child process: ``with BenchSink() as sink: ... sink.count()``."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench_sink"], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self._proc.stdout is not None
        words = self._proc.stdout.readline().split()
        if len(words) != 2 or words[0] != "PORT":
            self._proc.kill()
            raise RuntimeError(f"the benchmark SMTP sink did not start (it said {words!r})")
        self.host = "127.0.0.1"
        self.port = int(words[1])
        self.pid = self._proc.pid

    def count(self) -> int:
        """Return how many messages the sink has accepted so far."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("count\n")
        self._proc.stdin.flush()
        words = self._proc.stdout.readline().split()
        return int(words[1]) if len(words) == 2 and words[0] == "COUNT" else -1

    def stop(self) -> int:
        """Stop the sink; return how many messages it accepted in all."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if self._proc.poll() is not None:
            return -1
        self._proc.stdin.close()
        words = self._proc.stdout.read().split()
        self._proc.wait(timeout=30)
        return int(words[1]) if len(words) == 2 and words[0] == "RECEIVED" else -1

    def __enter__(self) -> BenchSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
