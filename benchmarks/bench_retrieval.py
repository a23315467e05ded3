"""Benchmark: retrieval of 200 queries among 100,000 candidate embeddings (target < 1 s on CPU).

Times ``mindsight.evaluate.retrieval.retrieval_metrics`` (normalisation, one similarity matrix
product per chunk, ranks, top-1/top-5, median rank) on random 1024-d float32 embeddings, and a
per-query Python loop over the same data for comparison. Usage:
``python benchmarks/bench_retrieval.py [--candidates 100000] [--dim 1024]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.evaluate.retrieval import retrieval_metrics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    cands = torch.randn(args.candidates, args.dim, generator=g)
    target = torch.randint(0, args.candidates, (args.queries,), generator=g)
    queries = cands[target] + 2.0 * torch.randn(args.queries, args.dim, generator=g)
    retrieval_metrics(queries, cands, target, k_ways=())  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        m = retrieval_metrics(queries, cands, target, k_ways=())
        times.append(time.perf_counter() - t0)
    best = min(times)
    t0 = time.perf_counter()
    for q in range(20):  # the per-query loop, on 20 queries, scaled up
        sims = torch.nn.functional.cosine_similarity(queries[q : q + 1], cands)
        int((sims > sims[target[q]]).sum())
    loop = (time.perf_counter() - t0) * args.queries / 20
    print(f"{args.queries} queries x {args.candidates:,} candidates x {args.dim}-d: "
          f"{best:.3f} s (median of {args.repeats}: {sorted(times)[len(times) // 2]:.3f} s); "
          f"per-query loop: {loop:.2f} s; top-1 {m['top1']:.3f}")
    write("retrieval", {"benchmark": "retrieval", "queries": args.queries,
                        "candidates": args.candidates, "dim": args.dim,
                        "best_s": round(best, 4), "median_s": round(sorted(times)[len(times) // 2], 4),
                        "per_query_loop_s": round(loop, 3), "top1": m["top1"]})


if __name__ == "__main__":
    main()
