"""Benchmark: training throughput of ATM and NICE on 63 channels × 250 samples.

For each encoder, on random data (trials × 63 × 250, 1024-d targets):

- ``loop``: mindsight's training loop (``mindsight.train.fit``) for a few epochs, including
  batch gathering, validation every epoch, resumable checkpoints and the progress bar;
- ``model``: the same number of forward + loss + backward + optimiser steps on batches that are
  already sliced, plus the same validation forward passes, i.e. the model's own cost.

``outside_share = 1 − model / loop`` is the time spent outside the model (target < 10 %).
Usage: ``python benchmarks/bench_train.py [--trials 4096] [--epochs 2] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.config import TrainConfig  # noqa: E402
from mindsight.train.data import TrialTensors  # noqa: E402
from mindsight.train.fit import Targets, fit  # noqa: E402
from mindsight.train.model import AlignmentModel, ModelSpec  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tensors(n: int, n_images: int, device: str, seed: int) -> TrialTensors:
    g = torch.Generator().manual_seed(seed)
    return TrialTensors(x=torch.randn(n, 63, 250, generator=g), image=torch.randint(0, n_images, (n,), generator=g),
                        concept=torch.zeros(n, dtype=torch.long), subject=torch.ones(n, dtype=torch.long)).to(device)


def bench(encoder: str, n: int, epochs: int, batch: int, device: str) -> dict:
    spec = ModelSpec(encoder=encoder, n_chans=63, n_times=250, sfreq=250.0, n_outputs=1024)
    cfg = TrainConfig(epochs=epochs, batch_size=batch, patience=None)
    train, val = tensors(n, n, device, 0), tensors(n // 10, n, device, 1)
    targets = Targets(images=torch.randn(n, 1024).to(device))
    torch.manual_seed(0)
    model = AlignmentModel(spec).to(device)
    with tempfile.TemporaryDirectory() as work:
        fit(model, train, val, targets, TrainConfig(epochs=1, batch_size=batch, patience=None), 0,
            workdir=None, progress=False)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        fit(model, train, val, targets, cfg, 0, workdir=Path(work), progress=False)
        sync(device)
        loop_s = time.perf_counter() - t0
    # the model's own cost: same steps, batches sliced in advance
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    batches = [(train.x[s : s + batch], train.subject[s : s + batch], targets.images[train.image[s : s + batch]])
               for s in range(0, n, batch)]
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, subj, y in batches:
            emb, txt = model(x, subj)
            loss, _ = model.loss(emb, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.embed(val.x, val.subject, batch_size=batch)  # the validation forward passes
    sync(device)
    model_s = time.perf_counter() - t0
    return {"trials_per_s": round(epochs * n / loop_s, 1), "loop_s": round(loop_s, 3),
            "model_s": round(model_s, 3), "outside_share": round(1 - model_s / loop_s, 4),
            "n_params": sum(p.numel() for p in model.encoder.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--encoders", nargs="+", default=["atm", "nice"])
    args = ap.parse_args()
    results = {}
    for enc in args.encoders:
        results[enc] = bench(enc, args.trials, args.epochs, args.batch_size, args.device)
        r = results[enc]
        print(f"{enc:5s} {r['trials_per_s']:9.1f} trials/s  outside the model: "
              f"{100 * r['outside_share']:.1f} %  ({r['n_params']:,} parameters)")
    write(f"train-{args.device.split(':')[0]}", {
        "benchmark": "train", "trials": args.trials, "epochs": args.epochs,
        "batch_size": args.batch_size, "device": args.device, "input": "63 ch x 250 samples",
        "results": results})


if __name__ == "__main__":
    main()
