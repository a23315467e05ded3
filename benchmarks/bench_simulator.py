"""Benchmark: the simulator's speed, and every decoder against its ideal-observer ceiling.

1. ``speed``: time to simulate the demo preset from scratch (rendering, feature levels, EEG,
   ideal observer, writing), and the feature-extraction rate on its images.
2. ``decoders`` (``--decoders``): ATM, NICE and ridge with the demo's recipe (40 epochs, patience
   10; ``--epochs`` changes it), and the blur-prior
   methods ``ubp``, ``multiblur``, ``multiblur-evnet`` with their presets (``configs/*.yaml``;
   EfficientNet-Lite0 in place of CLIP, whitened at training time like the demo), trained on
   subject 1 of the demo preset with 3 seeds (validation-selected), evaluated on the 100-way test
   set: top-1 and top-5 with a 95 % interval over seeds, next to the ceiling, with the simulator's
   perceptual front-end on and off (``--front-end on off``), and the time each takes.

Usage: ``python benchmarks/bench_simulator.py [--decoders] [--seeds 0 1 2] [--noise 1.0]
[--encoders atm nice ridge ubp multiblur multiblur-evnet] [--front-end on off] [--work DIR]``.
An encoder ``NAME:section.key=value:...`` trains NAME with those changes (e.g.
``ubp:train.batch_size=64``).
``--work`` keeps the data, feature cache and runs (a rerun resumes); the default is a
temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.config import RunConfig, load_preset  # noqa: E402
from mindsight.demo import DEMO_CONFIG  # noqa: E402
from mindsight.evaluate import evaluate_run  # noqa: E402
from mindsight.output import set_progress  # noqa: E402
from mindsight.simulate import preset, simulate  # noqa: E402
from mindsight.simulate.features import image_levels  # noqa: E402
from mindsight.train import train_run  # noqa: E402

PRESET_METHODS = ("ubp", "multiblur", "multiblur-evnet")  # trained with configs/<name>.yaml


def decoder_config(name: str, data: Path, seeds: list[int], epochs: int | None) -> RunConfig:
    """The demo's recipe with encoder ``name``, or the preset of a blur method adapted to the
    demo data (subject 1, the offline image model, the MVNN whitener fitted at training time:
    the presets expect a whitened release)."""
    name, *extra = name.split(":")  # 'ubp:train.batch_size=64': a preset with changes
    where = [f"data.eeg={data / 'Preprocessed_data_250Hz'}", f"data.images={data / 'images'}",
             f"train.seeds={seeds}"] + extra
    if name in PRESET_METHODS:  # their own epochs
        return load_preset(name).override(
            ["data.subjects=[1]", "model.image_model=efficientnet-lite0", "data.scaler=whiten"] + where)
    epochs_set = [f"train.epochs={epochs}"] if epochs else []
    return RunConfig.from_dict(DEMO_CONFIG).override([f"model.encoder={name}"] + epochs_set + where)


def main() -> None:
    set_progress(False)  # the table is the output; no bars between its rows
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decoders", action="store_true")
    ap.add_argument("--encoders", nargs="+", default=["atm", "nice", "ridge", *PRESET_METHODS])
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs of the demo recipe (ATM, NICE; default: the demo's 40 with patience 10); presets keep theirs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--noise", type=float, default=None, help="noise scale (default: the preset's)")
    ap.add_argument("--front-end", nargs="+", choices=["on", "off"], default=["on", "off"])
    ap.add_argument("--work", type=Path, default=None, help="keep data, cache and runs here")
    ap.add_argument("--out", default=None, help="results name under benchmarks/results/")
    args = ap.parse_args()
    report: dict = {"benchmark": "simulator", "preset": "demo", "noise": args.noise}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        cache = work / "cache"  # shared: both front-end settings render the same pictures
        for fe in args.front_end:
            data = work / f"front-end-{fe}"
            t0 = time.perf_counter()
            meta = simulate(data / "data", preset("demo", noise=args.noise, front_end=fe == "on"), cache_dir=cache)
            row: dict = {"simulate_s": round(time.perf_counter() - t0, 1),
                         "ceiling_top1": meta["ceiling_top1"], "ceiling_top5": meta["ceiling_top5"]}
            report[f"front_end_{fe}"] = row
            print(f"front-end {fe}: simulate demo preset {row['simulate_s']} s (0 if it existed); "
                  f"ceiling top-1 {meta['ceiling_top1']:.3f}", flush=True)
            if fe == args.front_end[0] and not args.decoders:
                from mindsight.io.images import read_image_set

                paths = read_image_set(data / "data" / "images")["train"].paths[:256]
                t0 = time.perf_counter()
                image_levels(paths, ["x"] * len(paths))
                report["feature_levels_images_per_s"] = round(len(paths) / (time.perf_counter() - t0), 1)
            if not args.decoders:
                continue
            row["decoders"] = {}
            for enc in args.encoders:
                cfg = decoder_config(enc, data / "data", args.seeds, args.epochs)
                t0 = time.perf_counter()
                run_dir = data / enc.replace(":", "_").replace("=", "-")
                train_run(cfg, run_dir, resume=True, cache_dir=cache)
                m = evaluate_run(run_dir, cache_dir=cache, single_trial=False)
                res = {"top1": m["ci95"]["top1"], "top5": m["ci95"]["top5"],
                       "epochs_chosen": m["protocol"]["epochs_chosen"],
                       "train_eval_s": round(time.perf_counter() - t0, 1)}
                row["decoders"][enc] = res
                ci = m["ci95"]["top1"]
                print(f"  {enc:16s} top-1 {100 * ci['mean']:.1f} % [{100 * ci['ci_low']:.1f}, "
                      f"{100 * ci['ci_high']:.1f}] top-5 {100 * m['ci95']['top5']['mean']:.1f} % "
                      f"({res['train_eval_s']} s)", flush=True)
                write(args.out or "simulator-decoders", report)
    write(args.out or ("simulator-decoders" if args.decoders else "simulator"), report)


if __name__ == "__main__":
    main()
