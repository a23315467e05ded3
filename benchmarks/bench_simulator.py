"""Benchmark: the simulator's speed, and every decoder against its ideal-observer ceiling.

1. ``speed``: time to simulate the demo preset from scratch (rendering, feature levels, EEG,
   ideal observer, writing), and the feature-extraction rate on its images.
2. ``decoders`` (``--decoders``): ATM, NICE, MLP and ridge trained on subject 1 of the demo
   preset, each with 3 seeds (validation-selected), evaluated on the 100-way test set: top-1 and
   top-5 with a 95 % interval over seeds, next to the ceiling.

Usage: ``python benchmarks/bench_simulator.py [--decoders] [--epochs 20] [--seeds 0 1 2]
[--noise 1.0] [--encoders atm nice mlp ridge]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.config import RunConfig  # noqa: E402
from mindsight.demo import DEMO_CONFIG  # noqa: E402
from mindsight.evaluate import evaluate_run  # noqa: E402
from mindsight.simulate import preset, simulate  # noqa: E402
from mindsight.simulate.features import image_levels  # noqa: E402
from mindsight.train import train_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decoders", action="store_true")
    ap.add_argument("--encoders", nargs="+", default=["atm", "nice", "mlp", "ridge"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--noise", type=float, default=None, help="noise scale (default: the preset's)")
    args = ap.parse_args()
    report: dict = {"benchmark": "simulator", "preset": "demo", "noise": args.noise}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        t0 = time.perf_counter()
        meta = simulate(work / "data", preset("demo", noise=args.noise), progress=False,
                        cache_dir=work / "cache")
        report["simulate_s"] = round(time.perf_counter() - t0, 1)
        from mindsight.io.images import read_image_set

        imgs = read_image_set(work / "data" / "images")
        paths = imgs["train"].paths[:256]
        t0 = time.perf_counter()
        image_levels(paths, ["x"] * len(paths))
        report["feature_levels_images_per_s"] = round(len(paths) / (time.perf_counter() - t0), 1)
        report["ceiling_top1"], report["ceiling_top5"] = meta["ceiling_top1"], meta["ceiling_top5"]
        print(f"simulate demo preset: {report['simulate_s']} s; feature levels: "
              f"{report['feature_levels_images_per_s']} images/s; ceiling top-1 {meta['ceiling_top1']:.3f}")
        if args.decoders:
            report["decoders"] = {}
            for enc in args.encoders:
                cfg = RunConfig.from_dict(DEMO_CONFIG).override([
                    f"model.encoder={enc}", f"train.epochs={args.epochs}", f"train.seeds={args.seeds}",
                    f"data.eeg={work / 'data' / 'Preprocessed_data_250Hz'}", f"data.images={work / 'data' / 'images'}"])
                t0 = time.perf_counter()
                train_run(cfg, work / enc, progress=False, cache_dir=work / "cache")
                m = evaluate_run(work / enc, progress=False, cache_dir=work / "cache", single_trial=False)
                report["decoders"][enc] = {"top1": m["ci95"]["top1"], "top5": m["ci95"]["top5"],
                                           "train_eval_s": round(time.perf_counter() - t0, 1)}
                ci = m["ci95"]["top1"]
                print(f"{enc:6s} top-1 {100 * ci['mean']:.1f} % [{100 * ci['ci_low']:.1f}, {100 * ci['ci_high']:.1f}] "
                      f"top-5 {100 * m['ci95']['top5']['mean']:.1f} % ({report['decoders'][enc]['train_eval_s']} s)", flush=True)
    write("simulator", report)


if __name__ == "__main__":
    main()
