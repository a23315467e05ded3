"""Benchmark: training throughput of the published presets on 63 channels × 250 samples.

For each preset (``configs/<name>.yaml``: ``atm`` trains single trials at batch 64, ``nice``
averaged trials at batch 1000, ``atm-e`` single trials at batch 1024) mindsight's whole training
path runs on random data of THINGS-EEG2's shape: ``fit_recording`` with the preset's model, loss,
optimiser, batch size and validation split, ``--epochs`` epochs after one warm-up epoch.
``trials/s`` = training trials per epoch / the median epoch's wall time (the epoch includes
validation, checkpoint-free bookkeeping and the progress bar's work).

``--reference DIR`` also times the authors' ATM-S in the same process: their ``ATMS`` model and
``ClipLoss`` imported from a checkout of ncclab-sustech/EEG_Image_decode (never copied here),
trained by their ``train_model`` loop's steps (DataLoader with shuffle and drop_last, forward,
0.99·image + 0.01·text loss, backward, AdamW step, ``loss.item()``, the per-batch accuracy
against the class features) on the same number of single trials at batch 64 — so the ratio of
the two numbers is measured in one run.

Usage: ``python benchmarks/bench_train.py [--presets atm nice] [--images 512] [--epochs 2]
[--reference DIR] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.config import RunConfig  # noqa: E402
from mindsight.embed.features import FeatureTable  # noqa: E402
from mindsight.recording import Recording, Trials  # noqa: E402
from mindsight.train.run import fit_recording  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs"
DIMS = {"clip-vit-h-14": 1024, "clip-vit-l-14": 768}
N_CHANS, N_TIMES, EXEMPLARS, REPS = 63, 250, 10, 4


def release(n_images: int, seed: int = 0) -> tuple[Recording, np.ndarray]:
    """Random single trials in THINGS-EEG2's layout: ``n_images`` images (10 per concept) × 4
    repetitions × 63 channels × 250 samples, whitened-like scale."""
    rng = np.random.default_rng(seed)
    image = np.repeat(np.arange(n_images), REPS)
    data = rng.standard_normal((len(image), N_CHANS, N_TIMES), dtype=np.float32)
    rec = Recording(data=data, ch_names=tuple(f"E{i}" for i in range(N_CHANS)), sfreq=250.0,
                    times=np.arange(N_TIMES) / 250.0,
                    trials=Trials.build(image, image // EXEMPLARS, 1,
                                        repetition=np.tile(np.arange(REPS), n_images)),
                    partition="train",
                    concept_names=tuple(f"c{i}" for i in range(-(-n_images // EXEMPLARS))))
    return rec, rng


def preset_throughput(name: str, n_images: int, epochs: int, device: str) -> dict:
    cfg = RunConfig.load(CONFIGS / f"{name}.yaml")
    cfg.train.epochs, cfg.train.device, cfg.train.patience = epochs + 1, device, None
    rec, rng = release(n_images)
    dim = DIMS[cfg.model.image_model]
    feats = FeatureTable(rng.standard_normal((n_images, dim), dtype=np.float32),
                         tuple(map(str, range(n_images))), cfg.model.image_model, "image", "bench")
    texts = FeatureTable(rng.standard_normal((len(rec.concept_names), dim), dtype=np.float32),
                         rec.concept_names, cfg.model.image_model, "text", "bench")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    _, info = fit_recording(cfg, rec, feats, texts if cfg.train.text_weight > 0 else None, seed=0,
                            text_head=False, text_model=cfg.model.image_model, device=device)
    total = time.perf_counter() - t0
    seconds = [h["seconds"] for h in info["history"][1:]]  # the first epoch warms up
    epoch_s = statistics.median(seconds)
    return {"trials_per_s": round(info["n_train_trials"] / epoch_s, 1), "epoch_s": round(epoch_s, 2),
            "train_trials": info["n_train_trials"], "val_trials": info["n_val_trials"],
            "batch_size": cfg.train.batch_size, "train_trials_mode": cfg.data.train_trials,
            "n_params": info["n_params"], "total_s": round(total, 1)}


def _authors_atms(checkout: Path) -> tuple[type, type]:
    """(ATMS, ClipLoss) from a checkout of EEG_Image_decode; imports their script only needs
    for data loading and logging are stubbed."""
    root = checkout / "Retrieval" if (checkout / "Retrieval").is_dir() else checkout
    for path in (root, root.parent, root.parent / "models"):
        sys.path.insert(0, str(path))
    stubs = ["clip", "wandb", "braindecode", "braindecode.models", "matplotlib", "matplotlib.pyplot",
             "tqdm", "sklearn", "sklearn.metrics", "torchvision", "torchvision.transforms",
             "eegdatasets_leaveone", "models.util", "reformer_pytorch"]
    saved = {m: sys.modules.get(m) for m in stubs}
    for m in stubs:
        sys.modules[m] = types.ModuleType(m)
    sys.modules["braindecode.models"].__dict__.update(
        dict.fromkeys(["EEGNetv4", "ATCNet", "EEGConformer", "EEGITNet", "ShallowFBCSPNet"]))
    sys.modules["eegdatasets_leaveone"].EEGDataset = None
    sys.modules["models.util"].wandb_logger = None
    sys.modules["sklearn.metrics"].confusion_matrix = None
    sys.modules["reformer_pytorch"].LSHSelfAttention = None
    try:
        script = root / "ATMS_retrieval.py"
        scope = {"__name__": "atms_reference", "__file__": str(script)}
        exec(compile(script.read_text(), str(script), "exec"), scope)  # noqa: S102
    finally:
        for m, mod in saved.items():
            if mod is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = mod
    return scope["ATMS"], scope["ClipLoss"]


def reference_throughput(checkout: Path, n_images: int, epochs: int, device: str) -> dict:
    """The authors' training step (``train_model`` of ATMS_retrieval.py) on the same data."""
    atms, clip_loss = _authors_atms(checkout)
    rec, rng = release(n_images)
    n_val = int(round(0.1 * n_images / EXEMPLARS)) * EXEMPLARS * REPS  # the same split size
    x = torch.from_numpy(np.asarray(rec.data[n_val:]))
    image = torch.from_numpy(rec.trials.image[n_val:])
    img_feats = torch.nn.functional.normalize(torch.randn(n_images, 1024), dim=1)
    txt_feats = torch.nn.functional.normalize(torch.randn(n_images // EXEMPLARS, 1024), dim=1)
    torch.manual_seed(0)
    model = atms().to(device)
    model.loss_func = clip_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, image), batch_size=64,
                                         shuffle=True, drop_last=True)
    classes = img_feats[::EXEMPLARS].to(device)
    seconds = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, correct = 0.0, 0
        for eeg, img in loader:
            eeg = eeg.to(device)
            feats = model(eeg, torch.full((len(eeg),), 1, dtype=torch.long, device=device)).float()
            scale = model.logit_scale
            loss = (0.99 * model.loss_func(feats, img_feats[img].to(device), scale)
                    + 0.01 * model.loss_func(feats, txt_feats[img // EXEMPLARS].to(device), scale))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            pred = torch.argmax(scale * feats @ classes.T, dim=1)
            correct += (pred.cpu() == img // EXEMPLARS).sum().item()
        seconds.append(time.perf_counter() - t0)
    epoch_s = statistics.median(seconds[1:])
    return {"trials_per_s": round(len(loader) * 64 / epoch_s, 1), "epoch_s": round(epoch_s, 2),
            "train_trials": len(loader) * 64, "batch_size": 64,
            "n_params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["atm", "nice"])
    ap.add_argument("--images", type=int, default=512, help="training images (× 4 repetitions)")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    ap.add_argument("--reference", type=Path, help="checkout of ncclab-sustech/EEG_Image_decode")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    results = {}
    if args.reference is not None:
        results["authors-atm"] = reference_throughput(args.reference, args.images, args.epochs,
                                                      args.device)
    for name in args.presets:
        results[name] = preset_throughput(name, args.images, args.epochs, args.device)
    for name, r in results.items():
        print(f"{name:12s} {r['trials_per_s']:9.1f} trials/s  (batch {r['batch_size']}, "
              f"{r['train_trials']} trials per epoch, {r['epoch_s']} s per epoch)")
    if "authors-atm" in results and "atm" in results:
        ratio = results["atm"]["trials_per_s"] / results["authors-atm"]["trials_per_s"]
        results["atm_over_authors"] = round(ratio, 2)
        print(f"atm preset / authors' script: {ratio:.2f}x")
    write(f"train-{args.device.split(':')[0]}-{'-'.join(args.presets)}", {
        "benchmark": "train", "images": args.images, "epochs": args.epochs, "device": args.device,
        "input": "63 ch x 250 samples", "results": results})


if __name__ == "__main__":
    main()
