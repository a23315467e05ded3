"""Live reconstruction in a background process that never delays decoding.

Generating a picture takes hundreds of milliseconds on a CPU; decoding takes a few. So the
reconstruction runs in its own process (one torch thread, so it leaves the decoder its core):
the decoder hands it each final epoch with ``submit`` (never waiting: while the worker is busy,
a newer epoch replaces the one waiting and the skipped ones are counted), and ``poll`` hands the
waiting epoch on once the worker is free and returns the finished pictures as PNG bytes.

The worker rebuilds the pipeline of ``mindsight reconstruct RUN_DIR --generator builtin``: the
built-in generator, the diffusion prior and the low-level pathway that that command fitted on
the fold's training data and cached in the fold folder (they are fitted once, offline, never on
live data; a run without them is refused with the command to run).
"""

from __future__ import annotations

import io
import multiprocessing as mp
import queue
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.errors import MissingFileError

__all__ = ["LiveReconstructor", "cached_fits"]


def cached_fits(fold_dir: Path, generator: str = "builtin") -> tuple[Path, Path | None]:
    """(prior, low-level decoder or None) fitted by ``mindsight reconstruct`` for this fold."""
    def newest(pattern: str) -> Path | None:
        files = sorted(fold_dir.glob(pattern), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None

    prior = newest("prior-*.safetensors")
    if prior is None:
        raise MissingFileError(f"{fold_dir}: no fitted diffusion prior for live reconstruction; run "
                               f"`mindsight reconstruct {fold_dir.parent.parent} --generator {generator}` "
                               "once first (it fits the prior on the training data and caches it)")
    return prior, newest(f"lowlevel-{generator}-*.safetensors")


def _png(image: Any) -> bytes:
    from PIL import Image

    arr = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _worker(run_dir: str, fold_name: str, subject: int, generator: str, steps: int | None, jobs: Any,
            results: Any, cache_dir: Any) -> None:
    import time

    import torch

    torch.set_num_threads(1)
    from mindsight.generate.base import load_generator
    from mindsight.generate.lowlevel import LowLevelDecoder
    from mindsight.generate.pipeline import ReconstructionPipeline
    from mindsight.generate.prior import DiffusionPrior
    from mindsight.run import Run

    try:
        run = Run.open(run_dir, device="cpu", cache_dir=cache_dir)
        fold = run.fold(fold_name)
        model = run.model(fold)
        fold_dir, _ = run.trained(fold)
        prior_path, low_path = cached_fits(fold_dir, generator)
        gen = load_generator(generator, device="cpu")
        prior, _ = DiffusionPrior.load(prior_path, "cpu")
        lowlevel = LowLevelDecoder.load(low_path, "cpu")[0] if low_path is not None else None
        pipe = ReconstructionPipeline(gen, prior, lowlevel, steps=steps, prior_steps=steps)
        head = "mse" if model.two_heads else "clip"
        results.put({"type": "ready"})
    except Exception as exc:  # the parent reports it as one line
        results.put({"type": "error", "message": str(exc)})
        return
    while True:
        job = jobs.get()
        if job is None:
            return
        t0 = time.perf_counter()
        x = torch.from_numpy(job["x"][None])
        with torch.no_grad():
            emb, _ = model.embed(x, torch.tensor([subject]), head=head)
            out = pipe(emb, model.scaler(x) if lowlevel is not None else None, seed=job["event"])
        results.put({"type": "reconstruction", "event": job["event"], "window": job["window"],
                     "png": _png(out.images[0]), "work_ms": round((time.perf_counter() - t0) * 1000, 1),
                     "submitted": job["submitted"]})


class LiveReconstructor:
    """``submit(prediction, epoch)`` → later ``poll()`` → reconstruction events (PNG bytes).
    ``steps``: sampling steps of the prior and the generator (default: theirs).

    The worker gets one epoch at a time. The one waiting for it is held here, in this process,
    so a newer epoch always replaces it (a bounded queue between processes cannot promise that:
    an item still in its feeder thread can be neither taken back nor overtaken)."""

    def __init__(self, run_dir: str | Path, fold_name: str, subject: int, *, generator: str = "builtin",
                 steps: int | None = None, cache_dir: Any = None, clock: Any = None) -> None:
        ctx = mp.get_context("spawn")
        self.jobs, self.results = ctx.Queue(), ctx.Queue()
        self.process = ctx.Process(target=_worker, daemon=True,
                                   args=(str(run_dir), fold_name, subject, generator, steps, self.jobs,
                                         self.results, cache_dir))
        self.process.start()
        self.skipped = 0
        self.done = 0
        self.ready = False
        self.busy = False  # the worker holds a job
        self.waiting: dict[str, Any] | None = None
        self.clock = clock

    def submit(self, prediction: dict[str, Any], x: np.ndarray, _emb: Any = None) -> None:
        if self.waiting is not None:  # older than this one: replaced
            self.skipped += 1
        self.waiting = {"event": prediction["event"], "window": prediction["window"],
                        "x": np.ascontiguousarray(x), "submitted": self.clock() if self.clock else 0.0}
        self._send()

    def _send(self) -> None:
        if self.ready and not self.busy and self.waiting is not None:
            self.jobs.put(self.waiting)
            self.waiting, self.busy = None, True

    def poll(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                msg = self.results.get_nowait()
            except queue.Empty:
                self._send()
                return out
            if msg["type"] == "ready":
                self.ready = True
            elif msg["type"] == "error":
                raise MissingFileError(f"live reconstruction: {msg['message']}")
            else:
                if self.clock:
                    msg["latency_ms"] = round((self.clock() - msg.pop("submitted")) * 1000, 1)
                self.done += 1
                self.busy = False
                out.append(msg)

    def close(self) -> None:
        self.jobs.put(None)
        self.process.join(timeout=5.0)
        if self.process.is_alive():
            self.process.terminate()
