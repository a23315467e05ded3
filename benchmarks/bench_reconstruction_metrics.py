"""Benchmark: scoring 200 reconstruction pairs with the field's image metrics.

Seen images are crops of scikit-image's bundled photographs, reconstructions are blurred and noisy
copies, written as PNG files and scored through ``evaluate_folders``' steps: loading (resize to
256), PixCorr and SSIM on all pairs for real; two-way identification on features of the real
sizes (AlexNet(2) is 184,512-d); and every learned backbone built as the protocol builds it, with
random weights (the real ones cannot be downloaded offline; the compute is the same). On a CPU the
backbones are timed on ``--backbone-pairs`` pairs and scaled to ``--pairs`` (``--full`` runs them
all). Usage: ``python benchmarks/bench_reconstruction_metrics.py [--pairs 200] [--device auto]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from mindsight.evaluate import reconstruction as R  # noqa: E402


def make_pairs(n: int, folder: Path, seed: int = 0) -> None:
    import skimage.data as data
    from PIL import Image

    photos = [getattr(data, name)() for name in
              ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")]
    rng = np.random.default_rng(seed)
    (folder / "seen").mkdir(parents=True)
    (folder / "gen").mkdir()
    for i in range(n):
        p = photos[i % len(photos)]
        size = int(rng.integers(160, min(p.shape[:2])))
        y, x = rng.integers(0, p.shape[0] - size + 1), rng.integers(0, p.shape[1] - size + 1)
        crop = p[y : y + size, x : x + size]
        Image.fromarray(crop).save(folder / "seen" / f"{i:04d}.png")
        t = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
        t = F.interpolate(F.avg_pool2d(t, 5, 1, 2), size=(512, 512), mode="bilinear")
        t = (t + 0.08 * torch.randn(t.shape, generator=torch.Generator().manual_seed(i))).clamp(0, 1)
        Image.fromarray((t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) \
            .save(folder / "gen" / f"{i:04d}.png")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--backbone-pairs", type=int, default=8,
                    help="pairs the learned backbones are timed on (then scaled to --pairs)")
    ap.add_argument("--full", action="store_true", help="run the backbones on all pairs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    from mindsight.embed.base import resolve_device

    device = resolve_device(args.device)
    n = args.pairs
    report: dict = {"benchmark": "reconstruction_metrics", "pairs": n, "device": device, "seconds": {}}
    sec = report["seconds"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_pairs(n, folder)
        pairs, sec["match_folders"] = timed(R.match_folders, folder / "seen", folder / "gen")
        (seen, gen), sec["load_images"] = timed(lambda: (R.load_images([s for s, _ in pairs]),
                                                         R.load_images([g for _, g in pairs])))
    report["pixcorr"], sec["pixcorr"] = timed(R.pixcorr, seen, gen)
    report["ssim"], sec["ssim"] = timed(R.ssim, seen, gen)
    g = torch.Generator().manual_seed(0)
    dims = {"alexnet2": 192 * 31 * 31, "alexnet5": 256 * 15 * 15, "inception": 2048, "clip": 768}
    for k, d in dims.items():
        fs = torch.randn(n, d, generator=g)
        fg = fs + 3 * torch.randn(n, d, generator=g)
        _, sec[f"two_way_math_{k}"] = timed(R.two_way_identification, fs, fg)
    m = args.pairs if args.full else min(args.backbone_pairs, n)
    report["backbone_pairs_timed"] = m
    report["backbones"] = {}
    for name in R.BACKBONE_FEATURES:
        bb, build = timed(R.load_backbone, name, device, True)
        R.extract_features(bb, seen[:1])  # warm-up
        _, run = timed(lambda bb=bb: (R.extract_features(bb, seen[:m], args.batch_size),
                                      R.extract_features(bb, gen[:m], args.batch_size)))
        if device == "cuda":
            torch.cuda.synchronize()
        per_image = run / (2 * m)
        report["backbones"][name] = {"build_s": round(build, 2), "per_image_s": round(per_image, 4),
                                     f"features_{n}_pairs_s": round(per_image * 2 * n, 1),
                                     "scaled": m < n}
        print(f"{name:16s} build {build:6.1f} s, {per_image * 1000:8.1f} ms/image → "
              f"{per_image * 2 * n:8.1f} s for {n} pairs{' (scaled)' if m < n else ''}")
        R.clear_backbone_cache()
    sec = {k: round(v, 3) for k, v in sec.items()}
    report["seconds"] = sec
    standard = [b for b in R.BACKBONE_FEATURES if b != "clip_vit_h14"]
    report["total_standard_metrics_s"] = round(
        sec["load_images"] + sec["pixcorr"] + sec["ssim"]
        + sum(report["backbones"][b][f"features_{n}_pairs_s"] for b in standard), 1)
    for k, v in sec.items():
        print(f"{k:24s} {v:8.3f} s")
    print(f"pixcorr {report['pixcorr']:.3f}, ssim {report['ssim']:.3f}; all nine standard metrics for "
          f"{n} pairs on {device}: ~{report['total_standard_metrics_s']:.0f} s")
    write("reconstruction_metrics", report)


if __name__ == "__main__":
    main()
