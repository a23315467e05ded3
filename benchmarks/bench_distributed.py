"""Benchmark: training throughput against the number of processes (torch.distributed).

On a CPU machine (what CI and this VM have): ATM on the demo data (subject 1, 'subsets'
trials, batch 32 per process: the global batch grows with the processes) for ``--epochs``
epochs, with 1, 2, … gloo processes sharing the cores (``--parallel model``); trials per second
from each epoch's time in ``fold.json`` (the first epoch left out when there are several).
On a GPU machine the same with one process per GPU (NCCL). Usage:
``python benchmarks/bench_distributed.py [--processes 1 2] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.config import RunConfig  # noqa: E402
from mindsight.demo import DEMO_CONFIG  # noqa: E402
from mindsight.train import train_run  # noqa: E402
from mindsight.train.distributed import launch, train_worker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/sim-stream"))  # bench_stream.py makes the same
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-distributed"))
    args = ap.parse_args()
    from mindsight.simulate import preset, simulate

    simulate(args.data, preset("demo", layouts=["nice-atm", "raw"]))
    cfg = RunConfig.from_dict(DEMO_CONFIG)
    cfg.data.eeg, cfg.data.images = str(args.data / "Preprocessed_data_250Hz"), str(args.data / "images")
    cfg.train.epochs, cfg.train.patience = args.epochs, None
    results = {}
    for n in args.processes:
        out = args.out / f"p{n}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        if n == 1:
            train_run(cfg, out)
        else:
            launch(train_worker, n, cfg.to_dict(), str(out), False, None, "model")
        wall = time.perf_counter() - t0
        info = json.loads(next((out / "folds").iterdir()).joinpath("fold.json").read_text())
        secs = [h["seconds"] for h in info["history"]]
        per_epoch = float(np.mean(secs[1:] if len(secs) > 1 else secs))
        results[n] = {"trials_per_s": round(info["n_train_trials"] / per_epoch, 1),
                      "epoch_s": round(per_epoch, 2), "global_batch": cfg.train.batch_size * n,
                      "wall_s": round(wall, 1), "n_train_trials": info["n_train_trials"]}
        print(f"{n} process(es): {results[n]['trials_per_s']} trials/s ({per_epoch:.2f} s per epoch, "
              f"global batch {cfg.train.batch_size * n}), wall {wall:.0f} s")
    base = results[args.processes[0]]["trials_per_s"]
    for r in results.values():
        r["speed_up"] = round(r["trials_per_s"] / base, 2)
    write("distributed", {"benchmark": "distributed", "encoder": "atm", "epochs": args.epochs,
                          "per_process_batch": cfg.train.batch_size, "results": results})


if __name__ == "__main__":
    main()
