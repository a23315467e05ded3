"""``mindsight analyze repetitions RUN_DIR``: retrieval accuracy against the number of averaged
test repetitions, from 1 (a single trial: the real-time case) to all.

For each number n, ``draws`` random subsets of n repetition indices are averaged (the same
subset for every test image of a draw), so the curve does not depend on which repetitions came
first in the file; the spread over draws gives a 95 % interval. The models are the run's
selected checkpoints; only the test EEG is read, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindsight.analysis.base import ANALYSES, Analysis, Summary
from mindsight.errors import DataFormatError
from mindsight.evaluate.retrieval import retrieval_metrics
from mindsight.evaluate.run import repetition_steps
from mindsight.evaluate.stats import mean_ci
from mindsight.recording import Recording
from mindsight.run import Run
from mindsight.train.data import trial_tensors
from mindsight.train.model import AlignmentModel


def repetition_curve(model: AlignmentModel, rec: Recording, image_feats: torch.Tensor, *,
                     steps: list[int] | None = None, draws: int = 10, seed: int = 0) -> dict[str, Any]:
    """Top-1/top-5 (mean and 95 % interval over draws) for averages of n random repetitions."""
    reps = np.unique(rec.trials.repetition)
    if len(reps) == 0 or reps.min() < 0:
        raise DataFormatError("the test recording has no repetition indices; cannot draw repetitions")
    n_max = len(reps)
    steps = steps or repetition_steps(n_max)
    if max(steps) > n_max or min(steps) < 1:
        raise DataFormatError(f"repetition counts must be within 1..{n_max}, got {steps}")
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"n": [], "top1": [], "top1_ci95": [], "top5": [], "top5_ci95": [], "draws": []}
    for n in steps:
        k = 1 if n == n_max else draws  # all repetitions: one possible subset
        top1, top5 = [], []
        for _ in range(k):
            subset = rng.choice(reps, n, replace=False)
            t = trial_tensors(rec.select_repetitions(subset).average_repetitions(), len(image_feats))
            emb, _ = model.embed(t.x, t.subject)
            m = retrieval_metrics(emb, image_feats, t.image.to(emb.device), k_ways=())
            top1.append(m["top1"])
            top5.append(m["top5"])
        out["n"].append(int(n))
        out["draws"].append(k)
        for key, vals in (("top1", top1), ("top5", top5)):
            ci = mean_ci(vals)
            out[key].append(ci["mean"])
            out[f"{key}_ci95"].append([ci["ci_low"] if ci["ci_low"] is not None else ci["mean"],
                                       ci["ci_high"] if ci["ci_high"] is not None else ci["mean"]])
    out["chance_top1"] = 1.0 / len(image_feats)
    out["chance_top5"] = min(1.0, 5.0 / len(image_feats))
    return out


@ANALYSES.register("repetitions")
class Repetitions(Analysis):
    """Retrieval accuracy against the number of averaged test repetitions (1 = single trial)."""

    name = "repetitions"
    description = "Retrieval accuracy against the number of averaged test repetitions (1 = single trial)."

    @dataclass
    class Options:
        draws: int = field(default=10, metadata={"help": "Random repetition subsets per number of repetitions."})
        seed: int = field(default=0, metadata={"help": "Seed of the repetition draws."})

    def compute(self, run: Run, options: Options) -> dict[str, Any]:
        """The repetition curve of every fold, and their mean."""
        per_fold = {}
        for fold in run.folds:
            model = run.model(fold)
            feats = run.image_targets(fold)
            rec = run.recording(fold.test_subject, "test")
            per_fold[fold.name] = repetition_curve(model, rec, feats, draws=options.draws, seed=options.seed)
        first = next(iter(per_fold.values()))
        mean = {k: [float(np.mean([c[k][i] for c in per_fold.values()])) for i in range(len(first["n"]))]
                for k in ("top1", "top5")}
        return {"analysis": "repetitions", "mode": "evaluation only (the run's selected models)",
                "n": first["n"], **mean, "chance_top1": first["chance_top1"], "chance_top5": first["chance_top5"],
                "draws": options.draws, "seed": options.seed, "folds": per_fold,
                "note": "n = 1 is single-trial (real-time) decoding; each point averages a random subset "
                        "of n repetitions per draw, the same subset for every test image"}

    def figure(self, run: Run, result: dict[str, Any], path: Path) -> Path:
        return plot_repetition_curve(result, path)

    def summary(self, result: dict[str, Any]) -> Summary:
        rows = [{"repetitions": n, "top-1 (%)": f"{100 * a:.1f}", "top-5 (%)": f"{100 * b:.1f}"}
                for n, a, b in zip(result["n"], result["top1"], result["top5"], strict=True)]
        return Summary(title=f"accuracy vs. averaged test repetitions (chance top-1 "
                             f"{100 * result['chance_top1']:.1f} %)",
                       columns=["repetitions", "top-1 (%)", "top-5 (%)"], rows=rows)


def analyze_repetitions(run_dir: str | Path, *, draws: int = 10, seed: int = 0, device: str = "cpu",
                        cache_dir: Any = None) -> dict[str, Any]:
    """The repetition curve of every fold of ``run_dir`` → ``analysis/repetitions.json`` + PNG."""
    options = Repetitions.Options(draws=draws, seed=seed)
    return Repetitions().run(Run.open(run_dir, device=device, cache_dir=cache_dir), options)


def plot_repetition_curve(result: dict[str, Any], path: Path) -> Path:
    """Top-1 and top-5 with their 95 % bands per fold's mean, against n (log scale), and chance."""
    from mindsight.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=120)
    n = result["n"]
    for key, colour in (("top1", "tab:blue"), ("top5", "tab:orange")):
        ax.plot(n, [100 * v for v in result[key]], "o-", color=colour, label=key.replace("top", "top-"))
        if len(result["folds"]) == 1:
            ci = next(iter(result["folds"].values()))[f"{key}_ci95"]
            ax.fill_between(n, [100 * lo for lo, _ in ci], [100 * hi for _, hi in ci], color=colour, alpha=0.2)
        ax.axhline(100 * result[f"chance_{key}"], color=colour, ls="--", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(v) for v in n])
    ax.set_xlabel("test repetitions averaged (1 = single trial)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"retrieval vs. repetitions ({len(result['folds'])} fold(s); dashed: chance)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
