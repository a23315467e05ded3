"""Benchmark: a volt-scale release trains to the accuracy of its whitened twin.

The simulator writes the raw 1000 Hz release of the demo preset (in volts, as the real raw
THINGS-EEG2 files are); ``mindsight preprocess --variant nice-atm`` turns it into two releases:
MVNN-whitened (the published pipeline, ≈ unit scale) and ``--mvnn none`` (still in volts,
≈ 1e-5). The same recipes train on both (subject 1, validation selection) and are scored on
the 100 unseen test concepts. On the whitened release the scaler is compared with none (the
published setting); with the input scaler (the default) the volt release trains like its
whitened twin, and with ``data.scaler: none`` it is refused with its amplitude instead of
training to chance. ``whiten`` fits MVNN's whitener on the training trials at training time.

Usage: ``python benchmarks/bench_scale.py [--out data/sim-scale] [--encoders atm nice ridge]
[--seeds 0] [--epochs 20] [--conditions volts:whiten ...]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.config import RunConfig  # noqa: E402
from mindsight.demo import DEMO_CONFIG  # noqa: E402
from mindsight.embed.features import image_features  # noqa: E402
from mindsight.errors import DataFormatError  # noqa: E402
from mindsight.evaluate.run import evaluate_fold  # noqa: E402
from mindsight.io.datasets import read_images, read_recording  # noqa: E402
from mindsight.preprocess import VARIANTS, preprocess_subject  # noqa: E402
from mindsight.simulate import preset, simulate  # noqa: E402
from mindsight.train.run import fit_recording  # noqa: E402
from mindsight.train.scaler import typical_amplitude  # noqa: E402

CONDITIONS = ("whitened:none", "whitened:robust", "volts:robust", "volts:none", "volts:whiten",
              "whitened:whiten")


def releases(out: Path) -> dict[str, Path]:
    """Simulate the demo preset with its raw release, then preprocess it twice."""
    simulate(out / "sim", preset("demo", layouts=["raw"]))
    made = {}
    for name, mvnn in (("whitened", "epochs"), ("volts", None)):
        made[name] = out / name
        cfg = VARIANTS["nice-atm"].with_overrides(mvnn=mvnn)
        preprocess_subject(out / "sim" / "raw_data", 1, made[name], cfg)
    return made


def score(release: Path, images: Path, encoder: str, scaler: str, seed: int, epochs: int) -> dict:
    cfg = RunConfig.from_dict(DEMO_CONFIG).override([f"model.encoder={encoder}", f"data.scaler={scaler}",
                                                     f"train.epochs={epochs}"])
    imgs = read_images(release, images)
    train = read_recording(release, 1, "train", imgs)
    test = read_recording(release, 1, "test", imgs)
    feats = image_features(imgs["train"], cfg.model.image_model)
    test_feats = torch.from_numpy(image_features(imgs["test"], cfg.model.image_model).features)
    t0 = time.perf_counter()
    try:
        model, info = fit_recording(cfg, train, feats, seed=seed)
    except DataFormatError as exc:
        return {"refused": str(exc)}
    m, _ = evaluate_fold(model, test, test_feats, None, single_trial=False)
    return {"top1": m["top1"], "top5": m["top5"], "epoch": info.get("best_epoch", 0),
            "train_s": round(time.perf_counter() - t0, 1),
            "amplitude": typical_amplitude(train.data[:200].reshape(-1))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/sim-scale"))
    ap.add_argument("--encoders", nargs="+", default=["atm", "nice", "ridge"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS),
                    help="release:scaler pairs, e.g. volts:whiten")
    args = ap.parse_args()
    made = releases(args.out)
    images = args.out / "sim" / "images"
    rows = []
    for encoder in args.encoders:
        for seed in args.seeds:
            for name, scaler in (c.split(":") for c in args.conditions):
                r = {"encoder": encoder, "seed": seed, "release": name, "scaler": scaler,
                     **score(made[name], images, encoder, scaler, seed, args.epochs)}
                rows.append(r)
                shown = (f"refused: {r['refused'][:90]}…" if "refused" in r else
                         f"top-1 {100 * r['top1']:.1f} %, top-5 {100 * r['top5']:.1f} % "
                         f"(amplitude {r['amplitude']:.2g}, {r['train_s']} s)")
                print(f"{encoder:6s} seed {seed} {name:8s} scaler {scaler:6s}: {shown}", flush=True)
    tag = "" if args.conditions == list(CONDITIONS) else "-" + "-".join(c.replace(":", "_") for c in args.conditions)
    write(f"scale{tag}", {"benchmark": "scale", "preset": "demo", "epochs": args.epochs, "rows": rows})


if __name__ == "__main__":
    main()
