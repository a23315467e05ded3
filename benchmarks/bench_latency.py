"""Benchmark: single-trial inference latency of ATM on one CPU thread (target < 5 ms).

One 63 × 250 epoch at a time, eval mode, ``torch.inference_mode``; median and 95th percentile
over ``--repeats`` calls after a warm-up. Usage: ``python benchmarks/bench_latency.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.encoders import build_encoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--encoders", nargs="+", default=["atm", "nice"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name in args.encoders:
        torch.manual_seed(0)
        model = build_encoder(name, n_chans=63, n_times=250, sfreq=250.0, n_outputs=1024).eval()
        x = torch.randn(1, 63, 250)
        times = []
        with torch.inference_mode():
            for _ in range(20):
                model(x)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        ms = 1000 * np.asarray(times)
        results[name] = {"median_ms": round(float(np.median(ms)), 3),
                         "p95_ms": round(float(np.percentile(ms, 95)), 3)}
        print(f"{name:5s} median {results[name]['median_ms']:.2f} ms, p95 {results[name]['p95_ms']:.2f} ms "
              "(1 thread, 63 x 250)")
    write("latency", {"benchmark": "latency", "threads": 1, "repeats": args.repeats,
                      "input": "1 x 63 ch x 250 samples", "results": results})


if __name__ == "__main__":
    main()
