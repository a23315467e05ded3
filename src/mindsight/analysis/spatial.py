"""``mindsight analyze spatial RUN_DIR``: where on the scalp is the image's identity?

Retrieval with the channels of one brain region only (frontal, temporal, central, parietal,
occipital, as in seed 002's Fig. 8; regions come from the channel names, see
:mod:`mindsight.sensors`) and with all channels, two ways (the output says which):

- ``mask`` (evaluation only): the run's selected model sees the test data with every channel
  outside the region set to 0 after the model's input scaling (its channel centre);
- ``retrain``: a fresh model per region, fitted on that region's channels of the training data
  (validation concepts select it, as in ``train``).

Channel importance is occlusion with the run's model: how much the true image's similarity
margin (its cosine minus the mean cosine of the other candidates) drops, averaged over test
items, when that channel alone is zeroed. It is drawn as an MNE topomap. A permutation band
(shuffled test labels) marks what top-1 chance can reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindsight.analysis.base import ANALYSES, Analysis, Mode, Summary, check_mode, mode_option
from mindsight.analysis.common import neutral_input
from mindsight.analysis.temporal import retrieval_scores
from mindsight.evaluate.retrieval import similarity
from mindsight.output import progress_bar
from mindsight.run import Run
from mindsight.sensors import regions as channel_regions
from mindsight.train.data import trial_tensors


def margin(emb: torch.Tensor, feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per test item: cosine with its own image minus the mean cosine with the others."""
    sim = similarity(emb, feats)
    own = sim.gather(1, target[:, None].to(sim.device))[:, 0]
    others = (sim.sum(1) - own) / max(sim.shape[1] - 1, 1)
    return (own - others).cpu()


def channel_importance(model, x: torch.Tensor, subject: torch.Tensor, feats: torch.Tensor,
                       target: torch.Tensor) -> np.ndarray:
    """Drop of the mean similarity margin when each channel alone is zeroed (occlusion)."""
    base = margin(model.embed(x, subject)[0], feats, target).mean()
    zero = neutral_input(model, x)  # (1, n_chans, 1): what the model's scaler maps to 0
    out = np.empty(x.shape[1])
    for c in range(x.shape[1]):
        xc = x.clone()
        xc[:, c] = zero[:, c]
        out[c] = float(base - margin(model.embed(xc, subject)[0], feats, target).mean())
    return out


@ANALYSES.register("spatial")
class Spatial(Analysis):
    """Retrieval with the channels of one brain region only, and a topomap of channel importance."""

    name = "spatial"
    description = "Retrieval with the channels of one brain region only, and a topomap of channel importance."

    @dataclass
    class Options:
        mode: Mode = mode_option(what="region")
        permutations: int = field(default=200, metadata={"help": "Label permutations for the significance band."})
        encoder: str | None = field(default=None, metadata={"help": "retrain: encoder per region [the run's]."})
        epochs: int | None = field(default=None, metadata={"help": "retrain: maximum epochs per region [the run's]."})
        seed: int = field(default=0, metadata={"help": "Seed of the permutations and of retrained models."})

        def __post_init__(self) -> None:
            self.mode = check_mode(self.mode, "spatial")

    def compute(self, run: Run, options: Options) -> dict[str, Any]:
        """Per-region retrieval and channel importance for the run's first fold."""
        from mindsight.analysis.common import setup
        from mindsight.train.run import fit_recording

        mode, seed, n_permutations, device = options.mode, options.seed, options.permutations, run.device
        s = setup(run, mode, options.encoder, options.epochs)
        fold, feats, test, t = s.fold, s.feats, s.test, s.t
        train_rec, train_table, wcfg = s.train_rec, s.train_table, s.retrain_cfg
        groups = channel_regions(test.ch_names)
        model = s.model
        result: dict[str, Any] = {
            "analysis": "spatial", "fold": fold.name,
            "mode": ("evaluation only: the run's model, channels outside the region set to 0 "
                     "(after input scaling)" if mode == "mask"
                     else f"retrained per region ({wcfg.model.encoder}, validation selection)"),
            "importance": "occlusion with the run's model: drop of the mean similarity margin "
                          "(true image's cosine minus the others' mean) when one channel is zeroed",
            "n_permutations": n_permutations,
            "chance_top1": 1.0 / len(feats), "chance_top5": min(1.0, 5.0 / len(feats)),
            "regions": {},
        }
        index = {c: i for i, c in enumerate(test.ch_names)}
        jobs = [*groups.items(), ("all", list(test.ch_names))]
        for region, chans in progress_bar(jobs, desc=f"spatial analysis ({mode})"):
            if mode == "mask":
                x = neutral_input(model, t.x).expand_as(t.x).clone()  # other channels: scaled to 0
                keep = [index[c] for c in chans]
                x[:, keep] = t.x[:, keep]
                emb, _ = model.embed(x, t.subject)
            elif region == "all":
                m, _ = fit_recording(wcfg, train_rec, train_table, seed=seed, device=device,
                                     modalities=s.retrain_modalities)
                emb, _ = m.embed(t.x, t.subject)
            else:
                m, _ = fit_recording(wcfg, train_rec.pick(chans), train_table, seed=seed,
                                     device=device, modalities=s.retrain_modalities)
                tt = trial_tensors(test.pick(chans), len(feats))
                emb, _ = m.embed(tt.x, tt.subject)
            targets = feats if mode == "mask" else s.targets(m)
            scores, _ = retrieval_scores(emb, targets, t.image, n_permutations, seed)
            result["regions"][region] = {"channels": list(chans), "n_channels": len(chans), **scores}
        importance = channel_importance(model, t.x.to(device), t.subject, feats, t.image)
        result["channel_importance"] = dict(zip(test.ch_names, importance.round(6).tolist(), strict=True))
        ranked = sorted(groups, key=lambda r: result["regions"][r]["top1"], reverse=True)
        result["best_region"] = ranked[0]
        return result

    def figure(self, run: Run, result: dict[str, Any], path: Path) -> Path:
        spec = run.model(run.folds[0]).spec  # the channels and rate the importance map was computed on
        return plot_spatial(result, tuple(result["channel_importance"]), spec.sfreq, path)

    def summary(self, result: dict[str, Any]) -> Summary:
        rows = [{"region": name, "channels": str(v["n_channels"]), "top-1 (%)": f"{100 * v['top1']:.1f}",
                 "top-5 (%)": f"{100 * v['top5']:.1f}", "null 95 % (%)": f"{100 * v['null95']:.1f}"}
                for name, v in result["regions"].items()]
        return Summary(title=f"{result['mode']} (chance top-1 {100 * result['chance_top1']:.1f} %)",
                       columns=["region", "channels", "top-1 (%)", "top-5 (%)", "null 95 % (%)"], rows=rows)


def analyze_spatial(run_dir: str | Path, *, mode: str = "mask", n_permutations: int = 200,
                    encoder: str | None = None, epochs: int | None = None, seed: int = 0,
                    device: str = "cpu", cache_dir: Any = None) -> dict[str, Any]:
    """Per-region retrieval and channel importance for the run's first fold →
    ``analysis/spatial.json`` + PNG. ``encoder``/``epochs`` override the run's for ``retrain``."""
    options = Spatial.Options(mode=mode, permutations=n_permutations, encoder=encoder, epochs=epochs,
                              seed=seed)
    return Spatial().run(Run.open(run_dir, device=device, cache_dir=cache_dir), options)


def plot_spatial(result: dict[str, Any], ch_names: tuple[str, ...], sfreq: float, path: Path) -> Path:
    """Per-region top-1 bars (with the permutation band and chance) beside the importance topomap."""
    import mne

    from mindsight.plotting import pyplot, save_figure
    from mindsight.sensors import make_info

    plt = pyplot()
    fig, (ax, ax_map) = plt.subplots(1, 2, figsize=(8, 3.4), dpi=120,
                                     gridspec_kw={"width_ratios": [1.4, 1]})
    names = list(result["regions"])
    rows = [result["regions"][n] for n in names]
    xs = np.arange(len(names))
    ax.bar(xs, [100 * r["top1"] for r in rows], color=["tab:grey" if n == "all" else "tab:blue" for n in names])
    ax.scatter(xs, [100 * r["null95"] for r in rows], marker="_", s=200, color="tab:red",
               label="95 % permutation null")
    ax.axhline(100 * result["chance_top1"], color="k", ls="--", lw=0.8, label="chance")
    ax.set_xticks(xs, [f"{n}\n({r['n_channels']})" for n, r in zip(names, rows, strict=True)], fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(result["mode"].split(":")[0].split(" (")[0], fontsize=8)
    ax.legend(fontsize=7)
    values = np.array([result["channel_importance"][c] for c in ch_names])
    with mne.utils.use_log_level("error"):
        im, _ = mne.viz.plot_topomap(values, make_info(ch_names, sfreq), axes=ax_map, show=False,
                                     cmap="RdBu_r", vlim=(-np.abs(values).max(), np.abs(values).max()))
    fig.colorbar(im, ax=ax_map, shrink=0.7, label="margin drop")
    ax_map.set_title("channel importance (occlusion)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
