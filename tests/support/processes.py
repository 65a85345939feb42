"""Real processes for the slow tests: wait for them, ask a Prefect server its health, stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.support.prefect_api import free_port

__all__ = ["VENV_BIN", "free_port", "healthy", "stop_group", "wait_for"]

# The venv's own scripts (prefect, advising), beside the Python running the tests.
VENV_BIN = Path(sys.executable).parent


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll predicate every half second; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def healthy(url: str) -> bool:
    """A Prefect server answers 200 on its /health endpoint at url ("..../api")."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, and its children: TERM, then KILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
