"""What mindsight prints: one ``logging`` logger and one progress-bar helper.

* Notes a user should see once (a skipped loss term, a fallback) go to the ``mindsight`` logger.
  Silence them with ``logging.getLogger("mindsight").setLevel(logging.ERROR)``, or send them to a
  file with any ``logging`` handler; the command line prints them to standard error.
* Progress bars come from :func:`progress_bar` only. One global switch turns them all off:
  :func:`set_progress` (``False``), the environment variable ``MINDSIGHT_PROGRESS=0``, or the
  command line's ``--quiet`` / ``--no-progress``. No library function takes its own flag.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("mindsight")
logger.addHandler(logging.NullHandler())

PROGRESS_ENV = "MINDSIGHT_PROGRESS"
_progress_setting: bool | None = None  # None: follow MINDSIGHT_PROGRESS (default on)


def set_progress(enabled: bool | None) -> None:
    """Show (``True``) or hide (``False``) every progress bar; ``None`` goes back to the
    environment variable ``MINDSIGHT_PROGRESS`` (``0``/``false``/``no``/``off`` hide them)."""
    global _progress_setting
    _progress_setting = enabled


def progress_enabled() -> bool:
    """Whether progress bars are shown now (see :func:`set_progress`)."""
    if _progress_setting is not None:
        return _progress_setting
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in ("0", "false", "no", "off", "")


def progress_bar(iterable: Iterable[Any] | None = None, *, desc: str | None = None,
                 total: int | None = None, unit: str = "it", initial: int = 0,
                 leave: bool = True, enabled: bool = True) -> Any:
    """A tqdm bar (over ``iterable``, or updated by hand with ``total``) that is silent when
    progress is off (or not ``enabled``: e.g. on every process but the first of a distributed
    run). Every long loop in mindsight draws its bar through this."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, leave=leave,
                disable=not (enabled and progress_enabled()))


def progress_callback(desc: str, unit: str = "it") -> Callable[[int, int], None] | None:
    """An ``update(done, total)`` callback drawing a bar that opens on its first call and
    closes when ``done`` reaches ``total``; ``None`` when progress is off (callers skip it)."""
    if not progress_enabled():
        return None
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = progress_bar(desc=desc, total=total, unit=unit, leave=False)
        state["bar"].n = done
        state["bar"].refresh()
        if done >= total:
            state["bar"].close()

    return update


class _NoteFormatter(logging.Formatter):
    """``note: …`` for INFO records, ``warning: …`` / ``error: …`` above."""

    def format(self, record: logging.LogRecord) -> str:
        label = "note" if record.levelno <= logging.INFO else record.levelname.lower()
        return f"{label}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the stream that was
    current when the CLI first ran: a caller that swaps standard error (a test runner, a
    notebook) then gets the notes, and a closed former stream is never written to."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class sets it; the current stderr always wins
        pass


def enable_console(level: int = logging.INFO) -> None:
    """Print mindsight's records as ``note: ...`` lines on standard error (the CLI calls this)."""
    if any(getattr(h, "_mindsight_console", False) for h in logger.handlers):
        logger.setLevel(level)
        return
    handler = _StderrHandler()
    handler.setFormatter(_NoteFormatter())
    handler._mindsight_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)


@contextmanager
def progress_scope(enabled: bool) -> Iterator[None]:
    """A block whose changes to the switch do not outlive it: inside, bars are off unless
    ``enabled`` (then as before), and :func:`set_progress` may change them; the setting in
    force before comes back afterwards. The command line runs each command in one (``--quiet``
    is ``enabled=False``), so a command's ``--no-progress`` ends with the command."""
    global _progress_setting
    before = _progress_setting
    if not enabled:
        _progress_setting = False
    try:
        yield
    finally:
        _progress_setting = before
