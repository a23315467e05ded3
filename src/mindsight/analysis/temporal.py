"""``mindsight analyze temporal RUN_DIR``: when does the EEG carry the image's identity?

Retrieval accuracy for sliding windows (default 100 ms, stride 25 ms) and growing windows
[start of the epoch, t] (seed 002, Benchetrit et al.), two ways, and the output says which:

- ``mask`` (evaluation only): the run's selected model sees the test EEG with every sample
  outside the window set to 0 after the model's input scaling (its channel centre: no information);
- ``retrain``: a fresh model per window, fitted on the training EEG cropped to that window
  (validation concepts select it, as in ``train``); the test EEG is cropped the same way.

A permutation test gives the significance band: the test images' labels are shuffled
``n_permutations`` times and the 95th percentile of top-1 under that null is reported per
window. Per test concept, the sliding window where its image ranks best is its best window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindsight.analysis.base import ANALYSES, Analysis, Mode, Summary, check_mode, mode_option
from mindsight.errors import DataFormatError
from mindsight.evaluate.retrieval import ranks, similarity, topk
from mindsight.output import progress_bar
from mindsight.run import Run
from mindsight.train.data import trial_tensors


def make_windows(times: np.ndarray, kind: str, length: float = 0.1, stride: float = 0.025,
                 tmin: float | None = None, tmax: float | None = None) -> list[tuple[float, float]]:
    """(start, end) windows in seconds inside [tmin, tmax] (default: the whole epoch)."""
    t0, t1 = float(times[0]), float(times[-1])
    lo, hi = (t0 if tmin is None else tmin), (t1 if tmax is None else tmax)
    eps = 1e-6
    if lo < t0 - eps or hi > t1 + eps or hi <= lo:
        raise DataFormatError(f"analysis window [{lo:.3f}, {hi:.3f}] s is not inside the epoch "
                              f"[{t0:.3f}, {t1:.3f}] s")
    if length <= 0 or stride <= 0:
        raise DataFormatError(f"window length and stride must be positive, got {length} and {stride} s")
    if kind == "sliding":
        if length > hi - lo + eps:
            raise DataFormatError(f"a {length:.3f} s window does not fit in [{lo:.3f}, {hi:.3f}] s")
        starts = np.arange(lo, hi - length + eps, stride)
        return [(round(float(s), 6), round(float(s + length), 6)) for s in starts]
    if kind == "growing":  # [0, t] when the epoch contains the onset, else [epoch start, t]
        start = 0.0 if lo <= 0.0 < hi else lo
        ends = np.arange(start + stride, hi + eps, stride)
        return [(round(start, 6), round(float(e), 6)) for e in ends]
    raise DataFormatError(f"unknown window kind {kind!r}; use 'sliding' or 'growing'")


def _null95(sim: torch.Tensor, target: torch.Tensor, n_permutations: int, seed: int) -> float:
    """95th percentile of top-1 when the queries' true images are shuffled."""
    g = torch.Generator().manual_seed(seed)
    best = sim.argmax(1).cpu()
    tgt = target.cpu()
    hits = [float((best == tgt[torch.randperm(len(tgt), generator=g)]).float().mean())
            for _ in range(n_permutations)]
    return float(np.percentile(hits, 95))


def retrieval_scores(emb: torch.Tensor, feats: torch.Tensor, target: torch.Tensor, n_permutations: int,
            seed: int) -> tuple[dict[str, float], torch.Tensor]:
    sim = similarity(emb, feats)
    rank = ranks(sim, target.to(sim.device)).cpu()
    return ({"top1": topk(rank, 1), "top5": topk(rank, 5),
             "null95": _null95(sim, target, n_permutations, seed)}, rank)


@ANALYSES.register("temporal")
class Temporal(Analysis):
    """Retrieval accuracy for sliding and growing time windows, with a permutation band."""

    name = "temporal"
    description = "Retrieval accuracy for sliding and growing time windows, with a permutation band."

    @dataclass
    class Options:
        mode: Mode = mode_option(what="window")
        length: float = field(default=0.1, metadata={"help": "Sliding window length in seconds."})
        stride: float = field(default=0.025, metadata={"help": "Window stride in seconds."})
        tmin: float | None = field(default=None, metadata={"help": "First time analysed [epoch start]."})
        tmax: float | None = field(default=None, metadata={"help": "Last time analysed [epoch end]."})
        permutations: int = field(default=200, metadata={"help": "Label permutations for the significance band."})
        encoder: str | None = field(default=None, metadata={"help": "retrain: encoder per window [the run's]."})
        epochs: int | None = field(default=None, metadata={"help": "retrain: maximum epochs per window [the run's]."})
        seed: int = field(default=0, metadata={"help": "Seed of the permutations and of retrained models."})

        def __post_init__(self) -> None:
            self.mode = check_mode(self.mode, "temporal")

    def compute(self, run: Run, options: Options) -> dict[str, Any]:
        """Sliding and growing windows for the run's first fold."""
        from mindsight.analysis.common import neutral_input, setup
        from mindsight.train.run import fit_recording

        mode, seed, n_permutations, device = options.mode, options.seed, options.permutations, run.device
        s = setup(run, mode, options.encoder, options.epochs)
        fold, images, feats, test, t = s.fold, s.images, s.feats, s.test, s.t
        train_rec, train_table, wcfg = s.train_rec, s.train_table, s.retrain_cfg
        windows = {k: make_windows(test.times, k, options.length, options.stride, options.tmin, options.tmax)
                   for k in ("sliding", "growing")}
        model = s.model if mode == "mask" else None
        result: dict[str, Any] = {
            "analysis": "temporal", "fold": fold.name,
            "mode": ("evaluation only: the run's model, samples outside the window set to 0 "
                     "(after input scaling)" if mode == "mask"
                     else f"retrained per window ({(wcfg.model.encoder)}, validation selection)"),
            "length": options.length, "stride": options.stride, "n_permutations": n_permutations,
            "chance_top1": 1.0 / len(feats), "chance_top5": min(1.0, 5.0 / len(feats)),
        }
        best_rank: dict[int, tuple[int, int]] = {}
        jobs = [(k, w) for k in ("sliding", "growing") for w in windows[k]]
        for kind in ("sliding", "growing"):
            result[kind] = []
        for kind, (start, end) in progress_bar(jobs, desc=f"temporal analysis ({mode})"):
            keep = (test.times >= start - 1e-6) & (test.times <= end + 1e-6)
            if mode == "mask":
                x = t.x.clone()  # outside the window: the value the model's scaler maps to 0
                x[..., ~torch.from_numpy(keep)] = neutral_input(model, x)
                emb, _ = model.embed(x, t.subject)
            else:
                m, _ = fit_recording(wcfg, train_rec.crop(start, end), train_table, seed=seed,
                                     device=device, modalities=s.retrain_modalities)
                tt = trial_tensors(test.crop(start, end), len(feats))
                emb, _ = m.embed(tt.x, tt.subject)
            targets = feats if mode == "mask" else s.targets(m)
            scores, rank = retrieval_scores(emb, targets, t.image, n_permutations, seed)
            result[kind].append({"start": start, "end": end, **scores})
            if kind == "sliding":  # earliest window with the best rank of each test image
                w = len(result["sliding"]) - 1
                for r, img in zip(rank.tolist(), t.image.tolist(), strict=True):
                    if img not in best_rank or r < best_rank[img][0]:
                        best_rank[img] = (r, w)
        names = images["test"].concept_names
        concept_of = images["test"].concept
        result["per_concept_best_window"] = {
            names[int(concept_of[img])]: {"start": result["sliding"][w]["start"],
                                          "end": result["sliding"][w]["end"], "rank": r}
            for img, (r, w) in sorted(best_rank.items())}
        peak = max(result["sliding"], key=lambda r: r["top1"])
        result["peak"] = {"start": peak["start"], "end": peak["end"], "top1": peak["top1"]}
        return result

    def figure(self, run: Run, result: dict[str, Any], path: Path) -> Path:
        return plot_temporal(result, path)

    def summary(self, result: dict[str, Any]) -> Summary:
        p = result["peak"]
        return Summary(lines=[result["mode"],
                              f"peak {100 * p['top1']:.1f} % top-1 in [{1000 * p['start']:.0f}, "
                              f"{1000 * p['end']:.0f}] ms (chance {100 * result['chance_top1']:.1f} %)"])


def analyze_temporal(run_dir: str | Path, *, mode: str = "mask", length: float = 0.1, stride: float = 0.025,
                     tmin: float | None = None, tmax: float | None = None, n_permutations: int = 200,
                     encoder: str | None = None, epochs: int | None = None, seed: int = 0,
                     device: str = "cpu", cache_dir: Any = None) -> dict[str, Any]:
    """Sliding and growing windows for the run's first fold → ``analysis/temporal.json`` + PNG.

    ``encoder`` and ``epochs`` override the run's settings for ``retrain`` (e.g. ``ridge`` is
    fast and accepts any window length)."""
    options = Temporal.Options(mode=mode, length=length, stride=stride, tmin=tmin, tmax=tmax,
                               permutations=n_permutations, encoder=encoder, epochs=epochs, seed=seed)
    return Temporal().run(Run.open(run_dir, device=device, cache_dir=cache_dir), options)


def plot_temporal(result: dict[str, Any], path: Path) -> Path:
    """Top-1 of sliding (at window centres) and growing windows (at their ends), with the
    permutation band and chance."""
    from mindsight.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    for kind, colour, where in (("sliding", "tab:blue", lambda r: (r["start"] + r["end"]) / 2),
                                ("growing", "tab:orange", lambda r: r["end"])):
        rows = result[kind]
        xs = [1000 * where(r) for r in rows]
        ax.plot(xs, [100 * r["top1"] for r in rows], "-", color=colour, label=f"{kind} windows")
        ax.fill_between(xs, 0, [100 * r["null95"] for r in rows], color=colour, alpha=0.12)
    ax.axhline(100 * result["chance_top1"], color="k", ls="--", lw=0.8, label="chance")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("time (ms; sliding: window centre, growing: window end)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"retrieval over time — {result['mode'].split(':')[0]} (shaded: 95 % permutation null)",
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
