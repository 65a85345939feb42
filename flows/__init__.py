"""Orchestration and I/O: reading rosters, validation, outputs, delivery, the CLI and schedule."""
