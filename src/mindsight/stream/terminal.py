"""A compact terminal view of the stream, for headless machines (rich).

One line per final prediction (with ``every_window=True`` also one, dimmed, per intermediate
window)::

    #12    code 17 aardvark         -> aardvark         0.410  ✓          1000 ms    3.2 ms

then problems in red (once per kind) and, at ``stop``, one summary line with the counts, the
top-1 / top-5 accuracy and the latency percentiles.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

NAME_WIDTH = 16


def _short(name: str, width: int = NAME_WIDTH) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


class TerminalView:
    """A sink printing the stream to a rich console (see the module docstring).

    ``names[i]`` names candidate ``i`` (used where an event leaves a name out); ``k`` bounds the
    ranks counted as top-k; ``every_window`` prints the growing windows too, not only the final
    one.
    """

    def __init__(self, names: Sequence[str], *, console: Console | None = None, k: int = 5,
                 every_window: bool = False) -> None:
        self.names = [str(n) for n in names]
        self.console = console if console is not None else Console(highlight=False)
        self.k = int(k)
        self.every_window = every_window
        self._lock = threading.Lock()
        self._problems: set[str] = set()
        self._events: set[int] = set()
        self._n_predictions = 0
        self._n_scored = self._n_top1 = self._n_top5 = 0
        self._latencies: list[float] = []
        self._stopped = False

    # -- the sink ----------------------------------------------------------------------------

    def publish(self, event: Mapping[str, Any]) -> None:
        """Print what ``event`` says (one line at most, the stop summary aside)."""
        kind = event.get("type")
        with self._lock:
            if kind == "start":
                self._start(event)
            elif kind == "prediction":
                self._prediction(event)
            elif kind == "reconstruction":
                self._reconstruction(event)
            elif kind == "problem":
                self._problem(event)
            elif kind == "stop":
                self._stop(event)

    def close(self) -> None:
        """Print the summary if the stream ended without a ``stop`` event."""
        with self._lock:
            if not self._stopped and self._n_predictions:
                self._stop({"type": "stop", "reason": "closed"})

    # -- lines -------------------------------------------------------------------------------

    def _print(self, text: Text | str, style: str | None = None) -> None:
        self.console.print(text, style=style, highlight=False, soft_wrap=True)

    def _start(self, event: Mapping[str, Any]) -> None:
        parts = [str(event[key]) for key in ("run", "fold", "encoder") if event.get(key)]
        if event.get("source"):
            parts.append(f"source {event['source']}")
        if event.get("sfreq"):
            parts.append(f"{float(event['sfreq']):g} Hz")
        n = event.get("n_candidates") or len(self.names)
        if n:
            parts.append(f"{n} candidates")
        windows = event.get("windows") or []
        if windows:
            parts.append(f"windows {round(1000 * min(windows))}–{round(1000 * max(windows))} ms")
        line = Text("streaming ", style="bold")
        line.append(" · ".join(parts))
        self._print(line)

    def _name(self, index: Any) -> str | None:
        if isinstance(index, (int, np.integer)) and 0 <= index < len(self.names):
            return self.names[int(index)]
        return None

    def _prediction(self, event: Mapping[str, Any]) -> None:
        final = bool(event.get("final"))
        self._n_predictions += 1
        latency = event.get("latency_ms")
        if latency is not None:
            self._latencies.append(float(latency))
        if isinstance(event.get("event"), (int, np.integer)):
            self._events.add(int(event["event"]))
        topk = list(event.get("topk") or [])
        stim = event.get("stimulus")
        ranked = [e.get("index") for e in topk]
        rank = ranked.index(stim) + 1 if stim is not None and stim in ranked else None
        if final and stim is not None:
            self._n_scored += 1
            self._n_top1 += int(rank == 1)
            self._n_top5 += int(rank is not None and rank <= min(self.k, 5))
        if not (final or self.every_window):
            return

        line = Text(f"#{event.get('event', '?')!s:<5} ", style="bold" if final else "dim")
        code = event.get("code")
        seen = f"code {code}" if code is not None else ""
        stim_name = event.get("stimulus_name") or self._name(stim)
        if stim is not None:
            seen = f"{seen} {_short(stim_name or f'#{stim}')}".strip()
        line.append(f"{seen or '?':<{NAME_WIDTH + 9}} ", style=None if final else "dim")
        if topk:
            top = topk[0]
            name = top.get("name") or self._name(top.get("index")) or f"#{top.get('index')}"
            score = top.get("score")
            line.append("-> ", style="dim")
            line.append(f"{_short(name):<{NAME_WIDTH}} ", style="cyan" if final else "dim")
            line.append(f"{score:6.3f}  " if score is not None else "     –  ",
                        style=None if final else "dim")
        else:
            line.append(f"-> {'(no ranking)':<{NAME_WIDTH}}         ", style="dim")
        if stim is None:
            line.append(f"{'·':<11}", style="dim")
        elif rank == 1:
            line.append(f"{'✓':<11}", style="bold green")
        else:
            miss = f"✗ rank {rank}" if rank is not None else "✗"
            line.append(f"{miss:<11}", style="bold red")
        window = event.get("window")
        line.append(f"{round(1000 * window):>5} ms  " if window is not None else "    ? ms  ",
                    style=None if final else "dim")
        line.append(f"{latency:6.1f} ms" if latency is not None else "     – ms", style="dim")
        self._print(line)

    def _reconstruction(self, event: Mapping[str, Any]) -> None:
        window = event.get("window")
        latency = event.get("latency_ms")
        text = f"#{event.get('event', '?')!s:<5} reconstruction"
        if window is not None:
            text += f" at {round(1000 * window)} ms"
        if latency is not None:
            text += f" ({latency:.0f} ms)"
        self._print(text, style="dim")

    def _problem(self, event: Mapping[str, Any]) -> None:
        kind = str(event.get("kind") or "problem")
        if kind in self._problems:
            return
        self._problems.add(kind)
        self._print(Text(f"problem {kind}: {event.get('message', '')}", style="bold red"))

    def _stop(self, event: Mapping[str, Any]) -> None:
        self._stopped = True
        n_events = event.get("n_events", len(self._events))
        n_predictions = event.get("n_predictions", self._n_predictions)
        top1, top5 = self._accuracy(event.get("accuracy"))
        p50, p95 = self._latency(event)
        parts = [f"{n_events} events", f"{n_predictions} predictions",
                 f"top-1 {_pct(top1)}", f"top-{min(self.k, 5)} {_pct(top5)}"]
        if p50 is not None:
            parts.append(f"latency p50 {p50:.1f} ms p95 {p95:.1f} ms" if p95 is not None
                         else f"latency p50 {p50:.1f} ms")
        line = Text(f"stop ({event.get('reason') or 'end of stream'}): ", style="bold")
        line.append(" · ".join(parts))
        self._print(line)

    def _accuracy(self, given: Any) -> tuple[float | None, float | None]:
        """Top-1 / top-5 from the stop event's ``accuracy`` dict where it has them (fractions),
        else from the final predictions this view saw."""
        own1 = self._n_top1 / self._n_scored if self._n_scored else None
        own5 = self._n_top5 / self._n_scored if self._n_scored else None
        if isinstance(given, Mapping):
            top1, top5 = given.get("top1"), given.get("top5")
            return (float(top1) if isinstance(top1, (int, float)) else own1,
                    float(top5) if isinstance(top5, (int, float)) else own5)
        return own1, own5

    def _latency(self, event: Mapping[str, Any]) -> tuple[float | None, float | None]:
        """p50 / p95 latency (ms): the stop event's ``latency_ms`` dict (``p50``, ``p95``) or its
        ``latency_p50_ms`` / ``latency_p95_ms``, else the percentiles of what this view saw."""
        given = event.get("latency_ms")
        if isinstance(given, Mapping) and given.get("p50") is not None:
            return float(given["p50"]), (None if given.get("p95") is None
                                         else float(given["p95"]))
        if event.get("latency_p50_ms") is not None:
            p95 = event.get("latency_p95_ms")
            return float(event["latency_p50_ms"]), None if p95 is None else float(p95)
        if self._latencies:
            p50, p95 = np.percentile(self._latencies, [50, 95])
            return float(p50), float(p95)
        return None, None
