"""Anytime decoding of each stimulus as its growing windows close.

For every stimulus onset the decoder waits for each window ``w`` (seconds after onset; e.g.
0.1, 0.2, …, the epoch's end) to close, cuts the samples up to it, runs them through the run's
pipeline, fills the part of the epoch still in the future with the input scaler's neutral value
(what the encoder reads as 0, as the temporal analysis masks), embeds the epoch with the run's
encoder and ranks the candidates. The prediction of the last window is the whole epoch: the
offline single-trial prediction of the same trial (``final: true``). This is Benchetrit et al.'s
growing-window analysis run live with one model; a model trained per window would do better at
short windows.

Windows that close together are embedded in one batch. Latency is measured from the LSL time
of a window's last sample to the moment its prediction is published.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mindsight.stream.candidates import Candidates
from mindsight.stream.pipeline import OnlinePipeline
from mindsight.stream.problems import Problems
from mindsight.stream.source import Event, SampleBuffer

__all__ = ["StreamDecoder", "default_windows"]


def default_windows(pipeline: OnlinePipeline, step: float = 0.1) -> list[float]:
    """Every ``step`` seconds after onset up to the epoch's end (which is always the last)."""
    ends = [round(w, 6) for w in np.arange(step, pipeline.tmax, step) if w > 0 and w < pipeline.tmax - 1e-6]
    return ends + [round(pipeline.tmax, 6)]


@dataclass
class _Pending:
    event: Event
    number: int
    windows: list[float]
    stimulus: int | None


@dataclass
class StreamDecoder:
    """Decode stimuli from a :class:`~mindsight.stream.source.SampleBuffer`.

    ``model``: the run's :class:`~mindsight.train.model.AlignmentModel`; ``subject``: the
    subject index its subject tokens use; ``clock``: the LSL clock (``mne_lsl.lsl.local_clock``).
    """

    model: Any
    pipeline: OnlinePipeline
    candidates: Candidates
    subject: int
    windows: list[float]
    k: int = 5
    problems: Problems = field(default_factory=Problems)
    clock: Callable[[], float] = time.monotonic
    on_final: Callable[[dict[str, Any], np.ndarray, torch.Tensor], None] | None = None

    def __post_init__(self) -> None:
        self.windows = sorted(set(self.windows))
        if not self.windows or self.windows[-1] < self.pipeline.tmax - 1e-9:
            self.windows.append(self.pipeline.tmax)  # the whole epoch always closes the list
        self.pending: list[_Pending] = []
        self.n_events = 0
        self.lost_events = 0
        neutral = self.model.scaler.neutral()
        neutral = np.asarray(neutral.detach().cpu() if isinstance(neutral, torch.Tensor) else neutral,
                             dtype=np.float64)
        self.neutral = np.broadcast_to(neutral.reshape(-1, 1) if neutral.ndim else neutral,
                                       (len(self.pipeline.out_names), self.pipeline.n_times)).astype(np.float32)
        self.device = next(self.model.parameters()).device

    @torch.no_grad()
    def warm_up(self, n: int = 3) -> None:
        """The pipeline and a few forward passes on dummy input, so the first stimulus does not
        pay for lazy imports and torch's initialisation."""
        raw = np.zeros((self.pipeline.n_chans, self.pipeline.n_raw))
        self.pipeline(raw)
        self.pipeline(raw[:, : self.pipeline.end_offset(self.windows[0]) - self.pipeline.start + 1])
        x = torch.from_numpy(np.repeat(self.neutral[None], 2, axis=0)).to(self.device)
        subject = torch.full((2,), self.subject, dtype=torch.long, device=self.device)
        for _ in range(n):
            self.model.embed(x, subject)

    def add(self, events: Sequence[Event]) -> None:
        for ev in events:
            stim = self.candidates.codes.get(ev.code)
            if stim is None and self.candidates.codes:
                self.problems.report("unknown-code", f"marker code {ev.code} names none of the "
                                     f"{len(self.candidates)} candidates; decoded, scored as unknown")
            self.pending.append(_Pending(ev, self.n_events, list(self.windows), stim))
            self.n_events += 1

    def prune(self, buffer: SampleBuffer) -> None:
        """Drop (and count) stimuli whose epoch starts before the oldest buffered sample: one
        shown before the stream connected, or one the buffer no longer holds."""
        for p in list(self.pending):
            if p.event.sample + self.pipeline.start < buffer.first:
                self.pending.remove(p)
                self.lost_events += 1
                self.problems.report("late-buffer", f"stimulus {p.number} (code {p.event.code}) starts "
                                     "before the oldest received sample (before the stream connected, or "
                                     "out of --buffer); lost")

    def ready(self, buffer: SampleBuffer) -> list[tuple[_Pending, float]]:
        """(stimulus, window) pairs whose window has closed, oldest first; stimuli whose start
        is not in the buffer are dropped first (:meth:`prune`)."""
        self.prune(buffer)
        out = []
        for p in list(self.pending):
            while p.windows and p.event.sample + self.pipeline.end_offset(p.windows[0]) < buffer.n_total:
                out.append((p, p.windows.pop(0)))
            if not p.windows:
                self.pending.remove(p)
        return out

    def epochs(self, buffer: SampleBuffer, items: list[tuple[_Pending, float]]) -> tuple[np.ndarray, list[dict]]:
        """The model inputs (n, C, T) of ``items`` and each one's timing facts."""
        x = np.repeat(self.neutral[None], len(items), axis=0)
        facts = []
        for i, (p, w) in enumerate(items):
            start = p.event.sample + self.pipeline.start
            end = p.event.sample + self.pipeline.end_offset(w)
            part = self.pipeline(buffer.get(start, end + 1)[: self.pipeline.n_chans])
            x[i, :, : part.shape[1]] = part
            facts.append({"end_time": buffer.time_of(end), "gap": buffer.any_filled(start, end + 1)})
        return x, facts

    @torch.no_grad()
    def step(self, buffer: SampleBuffer) -> list[dict[str, Any]]:
        """Predictions for every window that closed since the last call."""
        items = self.ready(buffer)
        if not items:
            return []
        t0 = self.clock()
        x, facts = self.epochs(buffer, items)
        xt = torch.from_numpy(x).to(self.device)
        subject = torch.full((len(items),), self.subject, dtype=torch.long, device=self.device)
        emb, _ = self.model.embed(xt, subject)
        emb = torch.nn.functional.normalize(emb.float().cpu(), dim=1)
        scores = emb @ self.candidates.targets.T
        top = scores.topk(min(self.k, scores.shape[1]), dim=1)
        now = self.clock()
        out = []
        for i, ((p, w), fact) in enumerate(zip(items, facts, strict=True)):
            idx = top.indices[i].tolist()
            pred = {
                "type": "prediction", "event": p.number, "onset": p.event.time, "code": p.event.code,
                "stimulus": p.stimulus,
                "stimulus_name": None if p.stimulus is None else self.candidates.names[p.stimulus],
                "window": w, "final": w >= self.windows[-1],
                "topk": [{"index": j, "name": self.candidates.names[j], "score": round(float(s), 5)}
                         for j, s in zip(idx, top.values[i].tolist(), strict=True)],
                "correct": None if p.stimulus is None else idx[0] == p.stimulus,
                "rank": None if p.stimulus is None else int((scores[i] > scores[i, p.stimulus]).sum()),
                "latency_ms": round((now - fact["end_time"]) * 1000, 3),
                "compute_ms": round((now - t0) * 1000, 3),
            }
            if fact["gap"]:
                pred["gap"] = True
            out.append(pred)
            if pred["final"] and self.on_final is not None:
                self.on_final(pred, x[i], emb[i])
        return out

    def abandon(self) -> int:
        """Stimuli whose windows will never close (the stream stopped): counted as lost."""
        n = len(self.pending)
        if n:
            self.problems.report("marker-without-data", f"{n} stimulus marker(s) came without the "
                                 "data their windows need (the stream stopped); lost", count=n)
        self.lost_events += n
        self.pending = []
        return n
