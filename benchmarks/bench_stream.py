"""Benchmark: live decoding of the simulator's raw recording replayed at real speed on LSL.

The demo dataset (preset ``demo``) is simulated with its raw layout as well (1000 Hz, 63
channels + stim row, in volts, one stimulus every 200 ms); ATM and the demo's blur-prior method
(multi-level blur) are trained on its NICE/ATM release as ``make demo`` trains them. For each,
``mindsight replay`` streams the raw test session from a separate process (as an amplifier
would) and ``mindsight.stream`` decodes it on one torch thread, with growing windows every
100 ms up to the epoch's end: latency from a window's last sample to its prediction (p50 / p95
/ max), predictions per second sustained, samples and stimuli lost, and the live accuracy
against the offline single-trial accuracy of the same trials (cut by ``mne.Epochs`` from the
same recording). Optionally a screenshot of the live page (``--screenshot``, needs Chromium).

Usage: ``python benchmarks/bench_stream.py [--duration 60]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from common import write  # noqa: E402

from mindsight.config import RunConfig  # noqa: E402
from mindsight.demo import DEMO_CONFIG, DEMO_METHOD, method_config  # noqa: E402


def prepare(data: Path, runs: Path, cache: str | None) -> dict[str, Path]:
    from mindsight.simulate import preset, simulate
    from mindsight.train import train_run

    simulate(data, preset("demo", layouts=["nice-atm", "raw"]), cache_dir=cache)
    cfg = RunConfig.from_dict(DEMO_CONFIG)
    cfg.data.eeg, cfg.data.images = str(data / "Preprocessed_data_250Hz"), str(data / "images")
    train_run(cfg, runs / "atm", resume=True, cache_dir=cache)
    train_run(method_config(cfg), runs / DEMO_METHOD, resume=True, cache_dir=cache)
    return {"atm": runs / "atm", DEMO_METHOD: runs / DEMO_METHOD}


def offline_ranks(run_dir: Path, recording: Path, duration: float, scale: float, cache: str | None):
    """(codes, ranks) of every complete epoch of the replayed part, cut offline by mne.Epochs."""
    import mne

    from mindsight.run import Run
    from mindsight.stream.candidates import Candidates
    from mindsight.stream.pipeline import offline_epochs, pipeline_for_run
    from mindsight.stream.replay import read_raw

    run = Run.open(run_dir, device="cpu", cache_dir=cache)
    fold = run.folds[0]
    raw = read_raw(recording, duration=duration)
    pipe = pipeline_for_run(run, fold.test_subject, raw.info["sfreq"])
    pipe.scale = scale
    events = mne.find_events(raw, stim_channel="stim", consecutive=True, verbose="error")
    events = events[events[:, 2] != 99999]
    x = offline_epochs(raw, events, pipe).astype(np.float32)
    model = run.model(fold)
    emb, _ = model.embed(torch.from_numpy(x), torch.full((len(x),), fold.test_subject))
    cand = Candidates.from_run(run, fold)
    scores = torch.nn.functional.normalize(emb, dim=1) @ cand.targets.T
    target = torch.as_tensor(events[: len(x), 2] - 1)
    ranks = (scores > scores.gather(1, target[:, None])).sum(1).numpy()
    return events[: len(x), 2].tolist(), ranks.tolist()


def screenshot_later(url: str, path: Path, delay: float) -> threading.Thread:
    from browser import find_chromium, screenshot

    def shoot() -> None:
        time.sleep(delay)
        if find_chromium() is None:
            print("no Chromium: no screenshot")
            return
        screenshot(url, path, size=(1280, 800), wait_for="document.querySelectorAll('img[data-loaded]').length >= 5")
        print(f"screenshot → {path}")

    t = threading.Thread(target=shoot, daemon=True)
    t.start()
    return t


def bench(name: str, run_dir: Path, recording: Path, duration: float, out: Path, cache: str | None,
          shot: Path | None) -> dict:
    import shutil

    from mindsight.stream.session import StreamConfig, StreamSession, add_views

    shutil.rmtree(out / name, ignore_errors=True)  # a new session
    source = f"bench-{name}"
    replay = subprocess.Popen([sys.executable, "-m", "mindsight", "-q", "replay", str(recording), "--name", source,
                               "--duration", str(duration)], stderr=subprocess.DEVNULL)
    cfg = StreamConfig(source=source, timeout=2.0, out=str(out / name), outlet=f"{source}-predictions",
                       view="web" if shot else "none", port=0, connect_timeout=30.0)
    from mindsight.stream.sinks import JsonLines, LslOutlet

    session = StreamSession(run_dir, cfg, cache_dir=cache)
    session.sinks += [JsonLines(out / name / "predictions.jsonl"), LslOutlet(cfg.outlet)]
    try:
        url = add_views(session)
        session.connect()
        if shot is not None and url:
            screenshot_later(url, shot, 20.0)
        summary = session.run_loop()
        summary["protocol"] = session.protocol()
    finally:
        session.close()
        replay.wait(timeout=30)
    lines = [json.loads(s) for s in (out / name / "predictions.jsonl").read_text().splitlines()]
    finals = [e for e in lines if e.get("type") == "prediction" and e["final"]]
    codes_on = [e["code"] for e in finals]
    codes_off, ranks_off = offline_ranks(run_dir, recording, duration, session.pipeline.scale, cache)
    shifts = [s for s in range(len(codes_off) - len(codes_on) + 1) if codes_off[s : s + len(codes_on)] == codes_on]
    same = ranks_off[shifts[0] : shifts[0] + len(codes_on)] if shifts else None
    ranks_on = [e["rank"] for e in finals]
    # steady state: windows that closed after decoding began (the first ones were waiting in the
    # LSL buffer while the session connected, and are published together as it catches up)
    preds = [e for e in lines if e.get("type") == "prediction"]
    began = preds[0]["onset"] + preds[0]["window"] + preds[0]["latency_ms"] / 1000
    steady = [e["latency_ms"] for e in preds if e["onset"] + e["window"] > began]
    final_lat = [e["latency_ms"] for e in finals]
    res = {
        "encoder": session.model.spec.encoder, "run": str(run_dir),
        "stimuli": summary["n_events"], "decoded": summary["n_final"], "predictions": summary["n_predictions"],
        "predictions_per_s": summary["predictions_per_s"], "latency_ms": summary["latency_ms"],
        "latency_final_ms": {"p50": float(np.percentile(final_lat, 50)), "p95": float(np.percentile(final_lat, 95)),
                             "max": float(np.max(final_lat))},
        "latency_steady_ms": {"p50": float(np.percentile(steady, 50)), "p95": float(np.percentile(steady, 95)),
                              "max": float(np.max(steady)), "n": len(steady)},
        "catch_up_predictions": len(preds) - len(steady),
        "compute_ms": summary["compute_ms"], "lost": summary["lost"], "problems": summary["problems"],
        "units": summary["protocol"].get("units"),
        "live_top1": float(np.mean(np.asarray(ranks_on) < 1)), "live_top5": float(np.mean(np.asarray(ranks_on) < 5)),
        "offline_same_trials_top1": None if same is None else float(np.mean(np.asarray(same) < 1)),
        "offline_same_trials_top5": None if same is None else float(np.mean(np.asarray(same) < 5)),
        "live_equals_offline": same == ranks_on,
        "offline_trials_not_received": None if not shifts else len(codes_off) - len(codes_on),
        "anytime_top1": {w: a["top1"] for w, a in summary["accuracy"].items()},
        "n_candidates": summary["protocol"]["n_candidates"],
    }
    lat = res["latency_ms"]
    st = res["latency_steady_ms"]
    print(f"{name}: steady state (after {res['catch_up_predictions']} catch-up predictions) latency p50 "
          f"{st['p50']:.1f} p95 {st['p95']:.1f} max {st['max']:.1f} ms")
    print(f"{name}: compute p50 {res['compute_ms']['p50']} p95 {res['compute_ms']['p95']} ms; "
          f"final-window latency p50 {res['latency_final_ms']['p50']:.1f} p95 {res['latency_final_ms']['p95']:.1f} ms")
    print(f"{name}: {res['decoded']} stimuli, {res['predictions']} predictions ({res['predictions_per_s']}/s), "
          f"latency p50 {lat['p50']} p95 {lat['p95']} max {lat['max']} ms, lost {res['lost']}, "
          f"live top-1 {res['live_top1']:.3f} vs offline {res['offline_same_trials_top1']}, equal {res['live_equals_offline']}")
    return res


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, r in results.items():
        ws = sorted(r["anytime_top1"], key=float)
        ax.plot([1000 * float(w) for w in ws], [100 * r["anytime_top1"][w] for w in ws], marker="o", label=name)
    n = next(iter(results.values()))["n_candidates"]
    ax.axhline(100 / n, color="grey", ls="--", lw=1, label=f"chance ({n}-way)")
    ax.set(xlabel="window end after onset (ms)", ylabel="live single-trial top-1 (%)",
           title="Anytime decoding on the replayed raw recording")
    ax.legend(frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"figure → {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/sim-stream"))
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-stream"))
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of the test session replayed per method")
    ap.add_argument("--methods", nargs="+", default=["atm", DEMO_METHOD])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG of the live page during the first method")
    ap.add_argument("--figure", type=Path, default=Path("docs/stream-anytime.png"), help="the anytime-accuracy figure")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = prepare(args.data, args.runs, args.cache_dir)
    recording = args.data / "raw_data" / "sub-01" / "ses-01" / "raw_eeg_test.npy"
    results = {}
    for i, name in enumerate(args.methods):
        results[name] = bench(name, runs[name], recording, args.duration, args.runs / "stream", args.cache_dir,
                              args.screenshot if i == 0 else None)
    figure(results, args.figure)
    write("stream", {"benchmark": "stream", "replayed_s": args.duration, "torch_threads": 1,
                     "recording": str(recording), "windows_s": "0.1 … 1.0 every 0.1", "results": results})


if __name__ == "__main__":
    main()
