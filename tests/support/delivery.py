"""Delivery for tests: the real delivery with waits of milliseconds instead of minutes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows.delivery import Ledger, deliver
from flows.delivery.smtp import Waits
from flows.letters import Letter, render_letters
from flows.outcome import LetterOutcome
from flows.settings import Settings
from residency_rules.specialties import SpecialtyTable
from tests.support.letters import make_evaluation, make_settings, make_student
from tests.support.smtp_sink import Sink

# The backoff stays real (every retry and reconnection waits), only short.
SHORT_WAITS = Waits(retry=(0.01, 0.02, 0.04), reconnect=(0.01, 0.02), ledger=(0.0, 0.0, 0.0))


def deliver_now(
    letters: Sequence[Letter], settings: Settings, ledger: Ledger, outbox_dir: Path,
    smtp_password: str | None = None,
) -> dict[str, LetterOutcome]:
    """deliver(), with SHORT_WAITS."""
    return deliver(letters, settings, ledger, outbox_dir, smtp_password, waits=SHORT_WAITS)


def make_letters(
    tmp_path: Path, table: SpecialtyTable, count: int = 12, score: int = 248, **student: Any
) -> list[Letter]:
    """Render `count` letters, students S000..., addresses s000@school.edu ..."""
    ids = [f"S{i:03d}" for i in range(count)]
    records = [make_student(sid, step2_score=score, **student) for sid in ids]
    evaluations = {sid: make_evaluation(sid, step2_score=score) for sid in ids}
    return render_letters(records, evaluations, table, make_settings(), {}, tmp_path / "letters")


def smtp_settings(sink: Sink, **overrides: Any) -> Settings:
    """Settings that point delivery at the test sink."""
    values: dict[str, Any] = {
        "delivery": "smtp",
        "smtp_host": sink.host,
        "smtp_port": sink.port,
        "smtp_security": "none",
        "mail_from": "Office of Student Affairs <advising@school.edu>",
    }
    values.update(overrides)
    return make_settings(**values)

