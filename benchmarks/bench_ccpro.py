"""Benchmark: CognitionCapturerPro's multimodal conditioning against image-only, on the demo data.

Trains the ``ccpro`` preset (image, text, edge and depth heads on one trunk, fused; seed 003's
reconstruction half) on the demo preset of the simulator with 3 seeds, evaluates retrieval per
modality and fused, then reconstructs each seed's test images with the built-in generator twice
*in the same job*: conditioned on the fused embedding (+ the text head's nearest training caption,
which the built-in generator ignores) and on the image head's embedding alone. Both share the
fold, the test trials, the low-level pathway, the generator and the seed, so they differ only in
the conditioning. Every available metric is recorded, mean ± sd over the seeds.

The demo preset has no depth model offline: the depth modality is skipped with a note (recorded).

Usage: ``python benchmarks/bench_ccpro.py [--out runs/bench-ccpro] [--data data/sim-demo]
[--epochs 40] [--seeds 0 1 2] [--prior/--no-prior]``; results in ``benchmarks/results/ccpro.json``
(``ccpro-no-prior.json`` with ``--no-prior``) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.config import load_preset  # noqa: E402
from mindsight.evaluate import evaluate_run  # noqa: E402
from mindsight.generate.reconstruct import ReconstructConfig, reconstruct_run  # noqa: E402
from mindsight.run import Run  # noqa: E402
from mindsight.simulate import preset, simulate  # noqa: E402
from mindsight.train import train_run  # noqa: E402

# the preset on the demo data, as the demo adapts the blur-prior preset (mindsight/demo.py)
DEMO_OVERRIDES = ["data.subjects=[1]", "model.image_model=efficientnet-lite0", "data.scaler=whiten",
                  "train.batch_size=64"]
SHOWN = ("pixcorr", "ssim", "lite0_2way", "alexnet2", "alexnet5", "inception", "clip", "clip_score",
         "clip_score_vit_h14", "effnet", "swav")


def mean_sd(values: list[float | None]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
            "n": len(vals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-ccpro"))
    ap.add_argument("--data", type=Path, default=Path("data/sim-demo"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--prior", action=argparse.BooleanOptionalAction, default=None,
                    help="diffusion prior for both conditionings (default: reconstruct's default)")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides (section.key=value)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    simulate(args.data, preset("demo"))
    cfg = load_preset("ccpro").override(
        DEMO_OVERRIDES + [f"data.eeg={args.data / 'Preprocessed_data_250Hz'}", f"data.images={args.data / 'images'}",
                          f"train.seeds={list(args.seeds)}", f"train.epochs={args.epochs}", *args.set])
    train_run(cfg, args.out, resume=True)
    t_train = time.perf_counter() - t0
    metrics = evaluate_run(args.out, single_trial=False)
    run = Run.open(args.out, device="cpu")
    suffix = "-no-prior" if args.prior is False else ""
    recs: dict[str, dict[str, Any]] = {}
    for fold in run.folds:
        rc = ReconstructConfig(generator="builtin", fold=fold.name, seed=fold.seed, prior=args.prior)
        recs[fold.name] = reconstruct_run(run, rc, out=args.out / "reconstruction" / f"builtin{suffix}-{fold.name}")
    conds = ("reconstructed", "image_only", "upper_bound", "chance", "blurry")
    table = {c: {m: mean_sd([r["metrics"].get(c, {}).get(m) for r in recs.values()]) for m in SHOWN}
             for c in conds}
    report = {
        "config": cfg.to_dict(), "seeds": list(args.seeds), "train_seconds": round(t_train, 1),
        "retrieval": {"top1": metrics["top1"], "top5": metrics["top5"], "modalities": metrics.get("modalities"),
                      "per_fold": [{k: f.get(k) for k in ("fold", "top1", "top5")} for f in metrics["folds"]],
                      "notes": metrics["protocol"].get("modality_notes")},
        "reconstruction": table,
        "per_fold": {k: {c: {m: r["metrics"].get(c, {}).get(m) for m in SHOWN} for c in conds}
                     for k, r in recs.items()},
        "conditioning": {k: {c: v["conditioning"] for c, v in r.get("conditions", {}).items()}
                         for k, r in recs.items()},
        "captions_example": {k: (r.get("conditions", {}).get("reconstructed", {}).get("captions") or [])[:5]
                             for k, r in recs.items()},
        "reasons": next(iter(recs.values()))["metrics"]["reconstructed"].get("reasons"),
    }
    write(f"ccpro{suffix}", report)
    print("\n| metric | multimodal (fused) | image only | upper bound | chance |\n|---|---|---|---|---|")
    for m in SHOWN:
        cells = []
        for c in ("reconstructed", "image_only", "upper_bound", "chance"):
            v = table[c][m]
            cells.append("—" if v is None else f"{v['mean']:.3f} ± {v['sd']:.3f}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print("\nretrieval (mean over seeds):", json.dumps(report["retrieval"]["modalities"], indent=1))


if __name__ == "__main__":
    main()
