"""Benchmark: loading a NICE/ATM THINGS-EEG2 subject (raw pickle of float64) into mindsight.

Writes a scaled copy of the real file (16540·scale image conditions × 4 repetitions × 63 channels
× 250 samples, float64, ``pickle.dump(protocol=4)`` as the release) and measures, each in a fresh
process:

- ``first``:  mindsight's first load (streams the pickle into the float32 cache);
- ``second``: a later load (memory-maps the cache), then touching all the data once;
- ``naive``:  what public code does: ``np.load(allow_pickle=True)`` then ``astype(float32)``.

Reported per step: wall time and the process's peak memory above its state after imports.
Usage: ``python benchmarks/bench_cache.py [--scale 0.25] [--workdir DIR]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

CH63 = [f"ch{i}" for i in range(63)]

CHILD = r"""
import json, sys, time
import numpy as np

def status_mb(key):  # VmRSS: now; VmHWM: peak of this process (ru_maxrss survives exec)
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

def rss_mb():
    return status_mb("VmRSS")
mode, root, cache = sys.argv[1:4]
from mindsight.io import read_things_eeg2
base = rss_mb()
t0 = time.perf_counter()
if mode == "naive":
    d = np.load(f"{root}/sub-01/preprocessed_eeg_training.npy", allow_pickle=True)
    x = d["preprocessed_eeg_data"].astype(np.float32)
    out = {"load_s": time.perf_counter() - t0, "rss_after_load_mb": rss_mb() - base}
else:
    rec = read_things_eeg2(root, 1, "train", cache_dir=cache)
    out = {"load_s": time.perf_counter() - t0, "rss_after_load_mb": rss_mb() - base}
    if mode == "second":
        t1 = time.perf_counter()
        total = float(np.asarray(rec.data[::1]).sum(dtype=np.float64))
        out["touch_all_s"] = time.perf_counter() - t1
out["peak_above_baseline_mb"] = status_mb("VmHWM") - base
print(json.dumps(out))
"""


def write_scaled(root: Path, scale: float) -> tuple[Path, float]:
    n_cond = 10 * max(1, round(1654 * scale))  # 1654 concepts × 10 exemplars at scale 1
    sub = root / "sub-01"
    sub.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n_cond, 4, 63, 250))
    path = sub / "preprocessed_eeg_training.npy"
    with open(path, "wb") as fh:
        pickle.dump({"preprocessed_eeg_data": data, "ch_names": CH63,
                     "times": np.round(np.arange(-50, 250) / 250, 4)}, fh, protocol=4)
    return path, path.stat().st_size / 2**20


def run_child(mode: str, root: Path, cache: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(root), str(cache)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"benchmark step {mode!r} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.1, help="fraction of a real subject (16540 conditions, 8.3 GB)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cache.json"))
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mindsight-bench-"))
    try:
        path, size_mb = write_scaled(work / "eeg", args.scale)
        cache = work / "cache"
        results = {"first": run_child("first", work / "eeg", cache),
                   "second": run_child("second", work / "eeg", cache),
                   "naive": run_child("naive", work / "eeg", cache)}
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "cache", "date": date.today().isoformat(), "machine": platform.node(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "scale": args.scale, "file_mb": round(size_mb, 1), "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    f, s, n = results["first"], results["second"], results["naive"]
    print(f"file: {size_mb:.0f} MB float64 pickle (scale {args.scale} of a THINGS-EEG2 NICE/ATM subject)")
    print("| step | wall time (s) | memory after load (MB) | peak memory (MB) | peak / file size |")
    print("|---|---|---|---|---|")
    for name, r in (("mindsight first load (convert to cache)", f), ("mindsight second load (memmap)", s),
                    ("naive np.load + astype(float32)", n)):
        print(f"| {name} | {r['load_s']:.2f} | {r['rss_after_load_mb']:.0f} | "
              f"{r['peak_above_baseline_mb']:.0f} | {r['peak_above_baseline_mb'] / size_mb:.2f} |")
    print(f"second load, touching all data once afterwards: {s['touch_all_s']:.2f} s "
          "(the peak above includes those pages, which the OS can drop at any time)")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
