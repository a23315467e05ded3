"""Benchmark: training throughput of LaBraM-base (``labram``) against ATM on THINGS-EEG2 epochs.

One training step = forward + 0.9·CLIP + 0.1·MSE loss + backward + AdamW, through
:class:`~mindsight.train.model.AlignmentModel` and the optimiser ``fit`` builds (LaBraM's
layer-decay groups), on random 63-channel × 250-sample epochs at 250 Hz (LaBraM resamples them
to one 200-sample patch at 200 Hz inside its forward) with 1024-d targets. Both encoders use
their default sizes (LaBraM-base: 12 blocks, width 200; no pretrained weights) and are timed in
the same run on the same threads, so ``labram_over_atm`` is a like-for-like ratio. Usage:
``python benchmarks/bench_labram.py [--batch-size 32] [--steps 8] [--threads N]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.config import TrainConfig  # noqa: E402
from mindsight.encoders import count_parameters  # noqa: E402
from mindsight.io.things_eeg2 import CH_NAMES_63  # noqa: E402
from mindsight.train.fit import make_optimizer, optimizer_groups  # noqa: E402
from mindsight.train.model import AlignmentModel, ModelSpec  # noqa: E402

N_TIMES, SFREQ, DIM = 250, 250.0, 1024


def bench(encoder: str, batch: int, steps: int, warmup: int = 2) -> dict:
    names = list(CH_NAMES_63)
    spec = ModelSpec(encoder=encoder, n_chans=len(names), n_times=N_TIMES, sfreq=SFREQ,
                     n_outputs=DIM, clip_weight=0.9, ch_names=names)
    torch.manual_seed(0)
    model = AlignmentModel(spec).train()
    cfg = TrainConfig(lr=5e-4, weight_decay=0.05)
    opt = make_optimizer(optimizer_groups(model, cfg.lr), cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, len(names), N_TIMES, generator=g)
    y = torch.randn(batch, DIM, generator=g)

    def step() -> None:
        emb, txt, mse = model.heads(x, None)
        loss, _ = model.loss(emb, y, txt, mse_pred=mse)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    return {"trials_per_s": round(steps * batch / seconds, 1),
            "step_ms": round(1000 * seconds / steps, 1),
            "n_params": count_parameters(model.encoder), "param_groups": len(opt.param_groups)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("mindsight").setLevel(logging.ERROR)  # "trains from scratch" is expected here
    results = {}
    for enc in ("labram", "atm"):
        results[enc] = r = bench(enc, args.batch_size, args.steps)
        print(f"{enc:7s} {r['trials_per_s']:8.1f} trials/s  {r['step_ms']:8.1f} ms/step  "
              f"({r['n_params']:,} parameters, {r['param_groups']} optimiser groups)", flush=True)
    ratio = round(results["labram"]["trials_per_s"] / results["atm"]["trials_per_s"], 3)
    print(f"labram / atm throughput: {ratio:.2f}")
    write("labram", {
        "benchmark": "labram", "batch_size": args.batch_size, "steps": args.steps,
        "threads": args.threads, "device": "cpu",
        "input": f"{len(CH_NAMES_63)} ch x {N_TIMES} samples at {SFREQ:g} Hz -> {DIM}-d",
        "step": "forward + 0.9 CLIP + 0.1 MSE + backward + AdamW (fit's parameter groups)",
        "results": results, "labram_over_atm": ratio})


if __name__ == "__main__":
    main()
