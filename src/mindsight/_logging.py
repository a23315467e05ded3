"""The ``mindsight`` logger: notes a user should see once (a skipped loss term, a fallback), not
errors. Silence it with ``logging.getLogger("mindsight").setLevel(logging.ERROR)``; the command
line prints its records to standard error."""

from __future__ import annotations

import logging

logger = logging.getLogger("mindsight")
logger.addHandler(logging.NullHandler())


class _NoteFormatter(logging.Formatter):
    """``note: …`` for INFO records, ``warning: …`` / ``error: …`` above."""

    def format(self, record: logging.LogRecord) -> str:
        label = "note" if record.levelno <= logging.INFO else record.levelname.lower()
        return f"{label}: {record.getMessage()}"


def enable_console(level: int = logging.INFO) -> None:
    """Print mindsight's records as ``note: ...`` lines on standard error (the CLI calls this)."""
    if any(getattr(h, "_mindsight_console", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_NoteFormatter())
    handler._mindsight_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
