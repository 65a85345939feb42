"""Run-time plumbing: the temporary Prefect server, the nightly schedule, garbage-collector pauses,
and the filter that keeps Prefect's failure records to one plain line.

The temporary server for one `advising run` is started before anything imports Prefect.

Prefect starts the same server itself when no PREFECT_API_URL is set, but only after the run
has imported the server's code into our own process (4 s of CPU) and then waited for it, so
the start-up cost is paid twice in a row. Launching it first, as a subprocess, lets it start
on the other core while this process imports Great Expectations and reads the roster.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

from flows.errors import AdvisingError, StageCrash

# Prefect reads these when it is imported: the CLI and the tests apply them before any Prefect
# import. The one place they are set.
PREFECT_DEFAULTS = {
    # The temporary server's telemetry job logs "database is locked" on SQLite.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The default batch of 1 loses task runs at shutdown, with CancelledError tracebacks.
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "1000",
    # Keep the console for our own short summary; Prefect's records still go to its API.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


def apply_prefect_defaults(verbose: bool = False) -> None:
    """Set Prefect's defaults for this product, unless the environment already sets them.

    verbose keeps Prefect's own console logging (`advising run -v`).
    """
    for key, value in PREFECT_DEFAULTS.items():
        if verbose and key.endswith(("CONSOLE_LEVEL", "SERVER_LOGGING_LEVEL")):
            continue
        os.environ.setdefault(key, value)


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


# Settings that would point the temporary server at another server's database or profile.
_NOT_FOR_TEMPORARY = ("PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL",
                      "PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_PROFILE",
                      "PREFECT_PROFILES_PATH")


class TemporaryServer:
    """A Prefect API server on 127.0.0.1 that lives as long as this object.

    Its home (database, profiles) is the product's own folder, `home`, whatever PREFECT_HOME
    or a database URL in the environment says: a run without PREFECT_API_URL never writes
    into a configured Prefect server's database. The database stays there between nightly
    runs, so only the first run creates it (several seconds).
    """

    def __init__(self, home: Path) -> None:
        spec = find_spec("prefect")
        if spec is None or spec.origin is None:
            raise AdvisingError("Prefect is not installed: run pip install -e . again")
        self._app_dir = str(Path(spec.origin).parent.parent)
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home = home
        self.log = home / "server.log"
        # This process too: Prefect reads PREFECT_HOME (profiles, local storage) when imported.
        os.environ["PREFECT_HOME"] = str(home)
        for key in _NOT_FOR_TEMPORARY:
            os.environ.pop(key, None)
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
            "PREFECT_HOME": str(self.home),
        }
        for key in _NOT_FOR_TEMPORARY:
            env.pop(key, None)
        # What the server prints (a shutdown race on a loaded machine prints a traceback) goes
        # to its log, the last run's only, never to the console IT and cron read.
        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
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
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
                # The database holds run parameters and log lines: readable by this account only.
                umask=0o077,
            )
        finally:
            os.close(log)

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
                    f"(exit {self._proc.returncode}); its log {self.log} says why; check that "
                    f"{self.home} is writable"
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


class _AnticipatedFailures(logging.Filter):
    """Keep Prefect's failure records to one plain line for what the product anticipated.

    Prefect's task engine logs "Task run failed with exception" with the traceback for every
    task that raises, before the flow can say anything. The product's own errors
    (AdvisingError: a full disk, a relay that refuses) are reported by the flow in one line
    and kept in the task run's Failed state: the task engine's record of them is dropped.
    A StageCrash (a bug, already written to error.log and stripped of what it quoted) keeps
    its line, without the traceback, which would show only the guard's frames. The flow
    engine's record of an AdvisingError (a wrong setting) keeps its line, without traceback.
    """

    def __init__(self, drop_anticipated: bool) -> None:
        super().__init__()
        self.drop_anticipated = drop_anticipated

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, AdvisingError):
            return True
        if self.drop_anticipated and not isinstance(exc, StageCrash):
            return False
        record.exc_info = None
        record.exc_text = None
        return True


def quiet_anticipated_failures() -> None:
    """Install the filter on Prefect's task-run and flow-run loggers, once per process."""
    for name, drop in (("prefect.task_runs", True), ("prefect.flow_runs", False)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _AnticipatedFailures) for f in logger.filters):
            logger.addFilter(_AnticipatedFailures(drop))


@contextmanager
def gc_skips_old() -> Iterator[Callable[[], None]]:
    """Keep the objects alive now out of the cyclic collector's full walks, for one roster.

    Rendering allocates enough to start a full collection every few thousand letters, and each
    one walked every object of Prefect, GX and pandas and every record: 1.5-3 s of a 20k run's
    main process (perf: gc_collect_main). Those objects live for the whole roster and hold no
    garbage cycles to find, so gc.freeze() sets them aside; the callable yielded sets aside
    what is alive when it is called (the records and evaluations, once evaluated). Unfrozen
    afterwards, so a process that runs the flow again collects what is left over as usual;
    objects are still freed by reference counts. A process that froze objects of its own
    manages them: then nothing is frozen or unfrozen here.
    """
    if gc.get_freeze_count():
        yield lambda: None
        return
    gc.freeze()
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cycle collector while a loop allocates many acyclic objects.

    Evaluating a roster allocates a few hundred thousand objects that hold no cycles; without
    the pause the collector rescans the growing list again and again (about a third of the
    evaluation's time).
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()

