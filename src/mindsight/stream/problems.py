"""What can go wrong with a live stream, each kind reported once and counted.

A live session runs for an hour; a problem that repeats every chunk must not flood the log,
and one that happened once must still be visible at the end. :class:`Problems` logs the first
occurrence of each kind as one line (and sends it to the sinks as a ``problem`` event), counts
every occurrence, and hands the counts to the summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from mindsight.output import logger

# kind -> what it means (the README lists them)
KINDS = {
    "dropped-samples": "samples missing between two received ones (filled with the last value; "
                       "predictions whose window holds them are flagged 'gap')",
    "clock-jump": "the stream's timestamps jumped backwards or forwards by more than --max-gap",
    "stream-stopped": "no samples for --timeout seconds",
    "marker-without-data": "a stimulus marker outside the received data (before the buffer or "
                           "after the stream stopped); its epoch is lost",
    "channels": "the stream's channels differ from the run's (extra ones are ignored)",
    "units": "the live data's amplitude differs from the training data's by a power of 1000",
    "unknown-code": "a marker code that names no candidate image (decoded, scored as unknown)",
    "late-buffer": "a stimulus whose epoch starts before the oldest received sample (shown before "
                   "the stream connected, or out of --buffer); lost",
}


class Problems:
    """Report each kind of problem once (``logger.warning`` + a ``problem`` event); count all."""

    def __init__(self, publish: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}
        self._publish = publish

    def report(self, kind: str, message: str, count: int = 1) -> None:
        if kind not in KINDS:
            raise KeyError(f"unknown problem kind {kind!r}")
        self.counts[kind] += count
        if kind in self.first:
            return
        self.first[kind] = message
        logger.warning("%s (%s; reported once, counted in the summary)", message, kind)
        if self._publish is not None:
            self._publish({"type": "problem", "kind": kind, "message": message})

    def summary(self) -> dict[str, Any]:
        return {kind: {"count": n, "first": self.first[kind]} for kind, n in self.counts.items()}
