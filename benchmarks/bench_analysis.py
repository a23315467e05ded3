"""Benchmark: time of the full temporal and spatial analyses on the demo run.

Runs on ``runs/demo`` (``make demo`` writes it, and so does this script when it is missing: ATM on the demo preset, 100 test concepts,
63 channels × 250 samples):

- ``analyze temporal`` (mask mode, 100 ms windows, 25 ms stride, 200 permutations): 75 sliding and
  growing windows, each a pass of the run's model over the 100 averaged test epochs;
- ``analyze temporal --mode retrain --encoder ridge`` with 200 ms windows at a 100 ms stride;
- ``analyze spatial`` (mask mode: 5 regions + all, plus 63 occlusions for the importance map).

Usage: ``python benchmarks/bench_analysis.py [--run runs/demo]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.analysis import analyze_spatial, analyze_temporal  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    args = ap.parse_args()
    if not (args.run / "config.yaml").is_file():  # what `make demo` writes
        from mindsight.demo import run_demo

        run_demo(args.run, Path("data/sim-demo"))
    with tempfile.TemporaryDirectory() as tmp:  # analyses write into the run: work on a copy
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("reconstruction", "*.png"))
        results = {}
        for name, fn in (
            ("temporal_mask", lambda: analyze_temporal(run, n_permutations=200)),
            ("temporal_retrain_ridge", lambda: analyze_temporal(run, mode="retrain", encoder="ridge",
                                                                length=0.2, stride=0.1, n_permutations=200)),
            ("spatial_mask", lambda: analyze_spatial(run, n_permutations=200)),
        ):
            t0 = time.perf_counter()
            r = fn()
            seconds = time.perf_counter() - t0
            n = len(r.get("sliding", [])) + len(r.get("growing", [])) or len(r["regions"])
            results[name] = {"seconds": round(seconds, 2), "windows_or_regions": n,
                             "peak_or_best": r.get("peak") or r.get("best_region")}
            print(name, results[name])
    write("analysis", {"benchmark": "analysis", "run": str(args.run), "results": results})


if __name__ == "__main__":
    main()
