"""Delivery for tests: the real delivery with waits of milliseconds instead of minutes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flows.delivery import Ledger, deliver
from flows.delivery.smtp import Waits
from flows.letters import Letter
from flows.outcome import LetterOutcome
from flows.settings import Settings

# The backoff stays real (every retry and reconnection waits), only short.
SHORT_WAITS = Waits(retry=(0.01, 0.02, 0.04), reconnect=(0.01, 0.02), ledger=(0.0, 0.0, 0.0))


def deliver_now(
    letters: Sequence[Letter], settings: Settings, ledger: Ledger, outbox_dir: Path,
    smtp_password: str | None = None,
) -> dict[str, LetterOutcome]:
    """deliver(), with SHORT_WAITS."""
    return deliver(letters, settings, ledger, outbox_dir, smtp_password, waits=SHORT_WAITS)
