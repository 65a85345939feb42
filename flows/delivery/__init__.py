"""Delivery: letters to the outbox folder or the school's SMTP relay, recorded in a ledger.

The flow calls `deliver`, which returns each letter's flows.outcome.LetterOutcome; the
ledger (SQLite) makes a re-run send nothing twice.
"""

from flows.delivery.dispatch import deliver, resolve_smtp_password
from flows.delivery.ledger import Ledger

__all__ = [
    "Ledger",
    "deliver",
    "resolve_smtp_password",
]
