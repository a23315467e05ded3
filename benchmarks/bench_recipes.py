"""Benchmark: training recipes side by side on the demo dataset (accuracy and time).

Each recipe is a base configuration with overrides (``--set``-style assignments): ``round1``
(the demo's configuration before issue 12), ``demo`` (today's demo) or a preset file from
``configs/``; each runs for every seed on subject 1 of the demo preset (the
built-in simulator; ``mindsight simulate DIR --preset demo`` makes it, ``make demo`` too), with
the epoch chosen on validation concepts, then is scored once on the 100 unseen test concepts
(100-way, test EEG averaged over its 20 repetitions). Results go to ``benchmarks/results/`` and
print as a table: mean top-1 / top-5 over seeds with a 95 % t-interval, the chosen epochs and
the training time per seed.

Usage: ``python benchmarks/bench_recipes.py --data data/sim-demo [--recipes NAME ...]
[--seeds 0 1 2] [--epochs N]``; ``--list`` shows the recipes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write  # noqa: E402

from mindsight.config import RunConfig  # noqa: E402
from mindsight.demo import DEMO_CONFIG  # noqa: E402
from mindsight.embed.features import image_features, text_features  # noqa: E402
from mindsight.evaluate.run import evaluate_fold  # noqa: E402
from mindsight.evaluate.stats import mean_ci  # noqa: E402
from mindsight.io.datasets import read_images, read_recording  # noqa: E402
from mindsight.output import set_progress  # noqa: E402
from mindsight.train.run import fit_recording, text_model_for  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs"

# The demo's configuration before issue 12 (repetition averages, batch 256, 20 epochs): the base
# of the recipes below that change one thing at a time.
ROUND1: dict = {
    "protocol": "intra",
    "data": {"subjects": [1], "train_trials": "averaged", "val_fraction": 0.1},
    "model": {"encoder": "atm", "image_model": "efficientnet-lite0"},
    "train": {"epochs": 20, "batch_size": 256, "lr": 3.0e-4, "clip_weight": 0.9,
              "text_weight": 0.1, "patience": 5, "seeds": [0]},
}

# name → (base: 'round1', 'demo' (today's DEMO_CONFIG) or a configs/ preset, overrides)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "demo": ("demo", []),
    "demo-whiten": ("demo", ["data.scaler=whiten"]),
    "round1-demo": ("round1", []),
    "authors-atm": ("atm", ["model.image_model=efficientnet-lite0", "train.epochs=20"]),
    "averaged-b64": ("round1", ["train.batch_size=64"]),
    "averaged-b32": ("round1", ["train.batch_size=32"]),
    "averaged-b32-e40": ("round1", ["train.batch_size=32", "train.epochs=40", "train.patience=10"]),
    "atm-loss-b32": ("round1", ["train.batch_size=32", "train.clip_weight=0.99", "train.mse_weight=0",
                              "train.text_weight=0.01", "train.text_loss=clip", "train.logit_scale=raw",
                              "train.normalize_brain=false", "train.weight_decay=0.01"]),
    "averaged-b16": ("round1", ["train.batch_size=16"]),
    "averaged-b32-lr1e-3": ("round1", ["train.batch_size=32", "train.lr=1e-3"]),
    "averaged-b64-lr1e-3": ("round1", ["train.batch_size=64", "train.lr=1e-3"]),
    "subsets-b32": ("round1", ["data.train_trials=subsets", "train.batch_size=32"]),
    "subsets-b16": ("round1", ["data.train_trials=subsets", "train.batch_size=16"]),
    "subsets-b32-lr1e-3": ("round1", ["data.train_trials=subsets", "train.batch_size=32", "train.lr=1e-3"]),
    "subsets-b32-e30": ("round1", ["data.train_trials=subsets", "train.batch_size=32", "train.epochs=30",
                                 "train.patience=10"]),
    "subsets-b32-e40": ("round1", ["data.train_trials=subsets", "train.batch_size=32", "train.epochs=40",
                                 "train.patience=10"]),
    "subsets-b64-e40": ("round1", ["data.train_trials=subsets", "train.batch_size=64", "train.epochs=40",
                                 "train.patience=10"]),
    "single-b64": ("round1", ["data.train_trials=single", "train.batch_size=64"]),
    "single-b256": ("round1", ["data.train_trials=single", "train.batch_size=256"]),
}


def recipe_config(name: str, data: Path, extra: list[str]) -> RunConfig:
    base, overrides = RECIPES[name]
    if base in ("demo", "round1"):
        cfg = RunConfig.from_dict(DEMO_CONFIG if base == "demo" else ROUND1)
    else:
        cfg = RunConfig.load(CONFIGS / f"{base}.yaml")
    cfg = cfg.override([*overrides, *extra, "data.subjects=[1]"])
    cfg.data.eeg, cfg.data.images = str(data / "Preprocessed_data_250Hz"), str(data / "images")
    return cfg


def run(name: str, cfg: RunConfig, seeds: list[int], cache_dir: str | None) -> dict:
    images = read_images(cfg.data.eeg, cfg.data.images)
    train = read_recording(cfg.data.eeg, 1, "train", images, cache_dir=cache_dir)
    test = read_recording(cfg.data.eeg, 1, "test", images, cache_dir=cache_dir)
    if cfg.data.tmin is not None or cfg.data.tmax is not None:
        train, test = train.crop(cfg.data.tmin, cfg.data.tmax), test.crop(cfg.data.tmin, cfg.data.tmax)
    feats = image_features(images["train"], cfg.model.image_model, cache_dir=cache_dir)
    test_feats = torch.from_numpy(image_features(images["test"], cfg.model.image_model,
                                                 cache_dir=cache_dir).features)
    text_model, text_head = text_model_for(cfg.model.image_model, cfg.model.text_model)
    texts = (text_features(images["train"].concept_names, text_model, cache_dir=cache_dir)
             if cfg.train.text_weight > 0 else None)
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        model, info = fit_recording(cfg, train, feats, texts, seed=seed, text_head=text_head,
                                    text_model=text_model)
        seconds = time.perf_counter() - t0
        m, _ = evaluate_fold(model, test, test_feats, None, single_trial=False)
        rows.append({"seed": seed, "top1": m["top1"], "top5": m["top5"], "epoch": info.get("best_epoch", 0),
                     "epochs_run": info.get("epochs_run", 0), "train_s": round(seconds, 1)})
        print(f"  {name} seed {seed}: top-1 {100 * m['top1']:.1f} %, top-5 {100 * m['top5']:.1f} %, "
              f"epoch {rows[-1]['epoch']}, {seconds:.0f} s", flush=True)
    top1, top5 = mean_ci([r["top1"] for r in rows]), mean_ci([r["top5"] for r in rows])
    return {"recipe": name, "config": cfg.to_dict(), "top1": top1, "top5": top5, "seeds": rows,
            "train_s_per_seed": round(float(np.mean([r["train_s"] for r in rows])), 1)}


def main() -> None:
    set_progress(False)  # the table is the output; no bars between its rows
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/sim-demo"))
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--set", dest="extra", action="append", default=[],
                    help="an override applied to every recipe, e.g. train.epochs=10")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for name, (base, overrides) in RECIPES.items():
            print(f"{name:14s} {base}: {' '.join(overrides) or '(as is)'}")
        return
    results = []
    for name in args.recipes:
        cfg = recipe_config(name, args.data, args.extra)
        results.append(run(name, cfg, args.seeds, args.cache_dir))
        (RESULTS / "recipes-partial.json").write_text(json.dumps(results, indent=1))
    print(f"\n{'recipe':14s} {'top-1 %':>22s} {'top-5 %':>8s} {'epochs':>10s} {'train s/seed':>12s}")
    for r in results:
        t1 = r["top1"]
        ci = (f"[{100 * t1['ci_low']:5.1f}, {100 * t1['ci_high']:5.1f}]" if t1["ci_low"] is not None
              else " " * 14)
        print(f"{r['recipe']:14s} {100 * t1['mean']:6.1f} {ci} "
              f"{100 * r['top5']['mean']:8.1f} {str([s['epoch'] for s in r['seeds']]):>10s} "
              f"{r['train_s_per_seed']:12.1f}")
    write("recipes", {"benchmark": "recipes", "data": str(args.data), "seeds": args.seeds,
                      "results": results})


if __name__ == "__main__":
    main()
