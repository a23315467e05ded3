"""Figures of a reconstruction job: the seen | blurry | reconstructed | upper-bound grid with the
top-5 retrieved test images beside each row, and the metrics of each condition as bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindsight.plotting import pyplot, save_figure


def _show(ax: Any, image: Any, title: str | None = None, colour: str | None = None) -> None:
    from PIL import Image

    if isinstance(image, torch.Tensor):
        image = image.clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    elif isinstance(image, (str, Path)):
        image = Image.open(image).convert("RGB")
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if colour:
        for side in ax.spines.values():
            side.set_edgecolor(colour)
            side.set_linewidth(3)


def plot_reconstructions(path: str | Path, seen: list[Path], result: Any, upper: torch.Tensor,
                         top5: list[list[Path]], n: int = 8, others: dict[str, torch.Tensor] | None = None) -> Path:
    """One row per test item (``n`` spread evenly over the set): seen, blurry (if any),
    reconstructed, the ``others`` conditionings (e.g. image-only), upper bound, 5 retrieved."""
    others = others or {}
    plt = pyplot()
    rows = min(n, len(seen))
    pick = np.linspace(0, len(seen) - 1, rows).round().astype(int)
    heads = (["seen"] + (["blurry (EEG)"] if result.blurry is not None else []) + ["reconstructed (EEG)"]
             + [f"{k.replace('_', ' ')} (EEG)" for k in others] + ["true embedding"])
    cols = len(heads) + 5
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.35 * rows), dpi=110)
    axes = np.atleast_2d(axes)
    for r, i in enumerate(pick):
        panels = ([seen[i]] + ([result.blurry[i]] if result.blurry is not None else []) + [result.images[i]]
                  + [o[i] for o in others.values()] + [upper[i]])
        for c, img in enumerate(panels):
            _show(axes[r, c], img, heads[c] if r == 0 else None)
        for k, p in enumerate(top5[i]):
            _show(axes[r, len(heads) + k], p, f"retrieved {k + 1}" if r == 0 else None,
                  "tab:green" if Path(p) == Path(seen[i]) else "lightgrey")
    fig.suptitle("reconstruction from EEG (left) and retrieval among the test images (right, green: the seen image)",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


METRIC_LABELS = [("pixcorr", "PixCorr ↑"), ("ssim", "SSIM ↑"), ("alexnet2", "AlexNet(2) ↑"),
                 ("alexnet5", "AlexNet(5) ↑"), ("inception", "Inception ↑"), ("clip", "CLIP ↑"),
                 ("effnet", "EffNet-B ↓"), ("swav", "SwAV ↓"), ("clip_score", "CLIP score ↑"),
                 ("clip_score_vit_h14", "CLIP score H-14 ↑"), ("lite0_2way", "Lite0 2-way ↑")]


def plot_metrics(path: str | Path, metrics: dict[str, dict[str, Any]], keys: list[tuple[str, str]]) -> Path:
    """Bars per metric for each condition (reconstructed, upper bound, chance, …)."""
    plt = pyplot()
    keys = [(k, lab) for k, lab in keys if any(m.get(k) is not None for m in metrics.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(1.9 * len(keys), 2.6), dpi=120)
    axes = np.atleast_1d(axes)
    colours = {"reconstructed": "tab:blue", "blurry": "tab:cyan", "upper_bound": "tab:green", "chance": "tab:grey"}
    for ax, (k, label) in zip(axes, keys, strict=True):
        names = [c for c in metrics if metrics[c].get(k) is not None]
        ax.bar(range(len(names)), [metrics[c][k] for c in names], color=[colours.get(c, "tab:orange") for c in names])
        ax.set_xticks(range(len(names)), [c.replace("_", " ") for c in names], rotation=60, fontsize=7)
        ax.set_title(label, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        if k in ("alexnet2", "alexnet5", "inception", "clip") or k.endswith("_2way"):
            ax.axhline(0.5, color="k", lw=0.8, ls="--")
    fig.tight_layout()
    return save_figure(fig, path)
