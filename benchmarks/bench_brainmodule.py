"""Benchmark: training throughput of the brain module against ATM on MEG-sized epochs.

One training step = forward (both heads) + λ·CLIP + (1 − λ)·MSE loss + backward + AdamW, through
:class:`~mindsight.train.model.AlignmentModel` as ``fit`` runs it, on random 271-sensor (the CTF
names of THINGS-MEG) × 281-sample epochs (THINGS-MEG at 200 Hz) with 768-d targets and one
subject. Both encoders use their default sizes and are timed in the same run on all CPU threads,
so ``brainmodule_over_atm`` is a like-for-like ratio. Usage:
``python benchmarks/bench_brainmodule.py [--batch-size 64] [--steps 8] [--threads N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.encoders import count_parameters  # noqa: E402
from mindsight.sensors import ctf_271  # noqa: E402
from mindsight.train.model import AlignmentModel, ModelSpec  # noqa: E402

N_TIMES, SFREQ, DIM = 281, 200.0, 768


def bench(encoder: str, batch: int, steps: int, warmup: int = 2) -> dict:
    names = list(ctf_271())
    spec = ModelSpec(encoder=encoder, n_chans=len(names), n_times=N_TIMES, sfreq=SFREQ,
                     n_outputs=DIM, clip_weight=0.75, ch_names=names, subjects=[1])
    torch.manual_seed(0)
    model = AlignmentModel(spec).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, len(names), N_TIMES, generator=g)
    y = torch.randn(batch, DIM, generator=g)
    subject = torch.ones(batch, dtype=torch.long)

    def step() -> None:
        emb, txt, mse = model.heads(x, subject)
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
    return {"samples_per_s": round(steps * batch / seconds, 1),
            "step_ms": round(1000 * seconds / steps, 1),
            "n_params": count_parameters(model.encoder), "two_heads": model.two_heads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for enc in ("brainmodule", "atm"):
        results[enc] = r = bench(enc, args.batch_size, args.steps)
        print(f"{enc:11s} {r['samples_per_s']:8.1f} samples/s  {r['step_ms']:8.1f} ms/step  "
              f"({r['n_params']:,} parameters)", flush=True)
    ratio = round(results["brainmodule"]["samples_per_s"] / results["atm"]["samples_per_s"], 3)
    print(f"brainmodule / atm throughput: {ratio:.2f}")
    write("brainmodule", {
        "benchmark": "brainmodule", "batch_size": args.batch_size, "steps": args.steps,
        "threads": args.threads, "device": "cpu",
        "input": f"{len(ctf_271())} ch (CTF) x {N_TIMES} samples -> {DIM}-d, 1 subject",
        "step": "forward (both heads) + 0.75 CLIP + 0.25 MSE + backward + AdamW",
        "results": results, "brainmodule_over_atm": ratio})


if __name__ == "__main__":
    main()
