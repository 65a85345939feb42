"""A temporary Prefect server for one `advising run`, started before anything imports Prefect.

Prefect starts the same server itself when no PREFECT_API_URL is set, but only after the run
has imported the server's code into our own process (4 s of CPU) and then waited for it, so
the start-up cost is paid twice in a row. Launching it first, as a subprocess, lets it start
on the other core while this process imports Great Expectations and reads the roster.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.util import find_spec
from pathlib import Path

from residency_rules.errors import AdvisingError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Have the kernel stop the server if this process is killed (SIGKILL skips atexit)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the server then outlives a killed run until it is stopped by hand


class TemporaryServer:
    """A Prefect API server on 127.0.0.1 that lives as long as this object."""

    def __init__(self) -> None:
        spec = find_spec("prefect")
        if spec is None or spec.origin is None:
            raise AdvisingError("Prefect is not installed: run pip install -e . again")
        self._app_dir = str(Path(spec.origin).parent.parent)
        # The port is fixed for the server's life: Prefect reads PREFECT_API_URL once, when it
        # is imported, so a restart must come back on the same address.
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        os.environ["PREFECT_API_URL"] = self.api_url
        self._proc = self._launch()
        # Registered before Prefect is imported, so it runs after Prefect's own exit handlers
        # (atexit is last-in, first-out) have flushed the run's logs and events to the server.
        atexit.register(self.stop)

    def _launch(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            # The same switches Prefect's own temporary server uses: no UI, ephemeral mode.
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        return subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn",
                "--app-dir", self._app_dir,
                "--factory", "prefect.server.api.server:create_app",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "error", "--lifespan", "on",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the server answers its health check, or explain why it did not start."""
        deadline = time.monotonic() + timeout
        restarts = 0
        while time.monotonic() < deadline:
            if self._proc.poll() == 3 and restarts < 3:
                # Start-up failed: another run's server was creating the same database at that
                # moment. Prefect's own launcher retries the same way.
                restarts += 1
                time.sleep(random.uniform(0.2, 1.0))
                self._proc = self._launch()
                continue
            if self._proc.poll() is not None:
                raise AdvisingError(
                    "The temporary Prefect server stopped at start "
                    f"(exit {self._proc.returncode}); run `advising run --verbose` to see why, "
                    "or check that PREFECT_HOME is writable"
                )
            try:
                with urllib.request.urlopen(self.api_url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise AdvisingError(
            f"The temporary Prefect server did not answer within {timeout:.0f} s; "
            "the machine may be overloaded: try again, or run a Prefect server and set "
            "PREFECT_API_URL"
        )

    def stop(self) -> None:
        """Stop the server (at exit, also when the run fails), so none is left behind."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
