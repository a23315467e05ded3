"""Benchmark (GPU only): one subject's ATM epoch at the full THINGS-EEG2 scale.

66,160 single training trials of 63 × 250 (the simulator's ``things`` preset, subject 1:
1,654 concepts × 10 images × 4 repetitions), the whole dataset on the device, batch 1024
(ATM's), timed per epoch from ``fold.json`` (the first, warm-up epoch left out) for fp32, bf16
autocast + TF32 (``train.precision: auto``) and ``train.compile``; then, where the node has
several GPUs, the same epoch on 1 … N GPUs (``--parallel model``, NCCL). Target: under 5 s per
epoch on an H100/H200-class GPU. On a machine without CUDA it says so and measures nothing.

Usage: ``python benchmarks/bench_gpu.py [--epochs 3]``; run the GPU tests first with
``MINDSIGHT_TEST_GPU=1 python -m pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402


def epoch_seconds(out: Path) -> tuple[float, int]:
    info = json.loads(next((out / "folds").iterdir()).joinpath("fold.json").read_text())
    secs = [h["seconds"] for h in info["history"]]
    return float(np.mean(secs[1:] if len(secs) > 1 else secs)), info["n_train_trials"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/sim-things"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench-gpu"))
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing measured (run this script where one is)")
        return
    from mindsight.config import RunConfig
    from mindsight.simulate import preset, simulate
    from mindsight.train import train_run
    from mindsight.train.distributed import launch, train_worker

    t0 = time.perf_counter()
    simulate(args.data, preset("things", subjects=[1], layouts=["nice-atm"], dtype="float32"), device="cuda")
    print(f"data: {time.perf_counter() - t0:.0f} s")
    base = RunConfig.from_dict({
        "data": {"eeg": str(args.data / "Preprocessed_data_250Hz"), "images": str(args.data / "images"),
                 "subjects": [1], "train_trials": "single", "scaler": "whiten"},
        "model": {"encoder": "atm", "image_model": "efficientnet-lite0"},
        "train": {"epochs": args.epochs, "batch_size": 1024, "patience": None, "seeds": [0], "device": "cuda",
                  "checkpoint_seconds": 600}})
    variants = {"fp32": ["train.precision=fp32"], "bf16+tf32": ["train.precision=auto"],
                "bf16+tf32+compile": ["train.precision=auto", "train.compile=true"]}
    results: dict[str, dict] = {"gpu": torch.cuda.get_device_name(0), "single_gpu": {}, "scaling": {}}
    for name, overrides in variants.items():
        out = args.out / name
        shutil.rmtree(out, ignore_errors=True)
        train_run(base.override(overrides), out)
        secs, n = epoch_seconds(out)
        results["single_gpu"][name] = {"epoch_s": round(secs, 2), "trials": n, "trials_per_s": round(n / secs)}
        print(f"{name}: {secs:.2f} s per epoch ({n} trials, {n / secs:,.0f} trials/s; target < 5 s)")
    n_gpus = torch.cuda.device_count()
    for n in range(2, n_gpus + 1):  # the same global batch split over n GPUs
        cfg = base.override(["train.precision=auto", f"train.batch_size={1024 // n}"])
        out = args.out / f"gpus-{n}"
        shutil.rmtree(out, ignore_errors=True)
        launch(train_worker, n, cfg.to_dict(), str(out), False, None, "model")
        secs, _ = epoch_seconds(out)
        results["scaling"][n] = {"epoch_s": round(secs, 2)}
        print(f"{n} GPUs: {secs:.2f} s per epoch")
    write("gpu", {"benchmark": "gpu", **results})


if __name__ == "__main__":
    main()
