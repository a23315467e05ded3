"""Benchmark: the built-in diffusion generator and ``builtin-var`` side by side (AVDE's claim).

AVDE (seed 000) claims reconstructions comparable to diffusion pipelines' at about 10 % of their
parameters. On one trained run (default ``runs/demo``, written by ``make demo``) this reconstructs
the same 100 test images from the same EEG embeddings with:

- ``builtin``: diffusion prior → latent diffusion, img2img from the low-level pathway (the demo);
- ``builtin-var`` (AVDE): stage 2 (the VAR fine-tuned on the fold's brain embeddings), no prior,
  img2img from the low-level pathway's blurry image (its first scales);
- ``builtin-var`` + prior: the diffusion prior's image embeddings into the VAR trained on image
  embeddings (no stage 2), the same low-level pathway;

and records every available metric (with the upper bound and chance of each generator), the
parameters of each pipeline (prior + generator + low-level decoder), and images per second on
this machine (batch 32, from noise and img2img), all measured in one run.

Usage: ``python benchmarks/bench_var.py [--run runs/demo]``; results in
``benchmarks/results/var.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import rate, write  # noqa: E402

from mindsight.generate.base import load_generator  # noqa: E402
from mindsight.generate.reconstruct import ReconstructConfig, reconstruct_run  # noqa: E402

PIPELINES: dict[str, dict[str, Any]] = {
    "builtin (prior + diffusion)": {"generator": "builtin"},
    "builtin-var (AVDE stage 2)": {"generator": "builtin-var", "finetune": True, "prior": False},
    "builtin-var + prior": {"generator": "builtin-var", "finetune": False, "prior": True},
}
SHOWN = ("pixcorr", "ssim", "lite0_2way", "alexnet2", "alexnet5", "inception", "clip", "effnet", "swav")


def speed(batch: int, repeats: int) -> dict[str, Any]:
    """Images per second of each generator (its default sampling settings) and its parameters."""
    out = {}
    for name in ("builtin", "builtin-var"):
        gen = load_generator(name)
        emb = torch.rand(batch, gen.embedding_dim)
        init = torch.rand(batch, 3, gen.image_size, gen.image_size)
        out[name] = {
            "parameters": gen.parameter_counts(),
            "images_per_s": round(rate(lambda g=gen, e=emb: g.generate(e), batch, repeats), 2),
            "images_per_s_img2img_0.8": round(rate(lambda g=gen, e=emb, i=init: g.generate(
                e, init_images=i, strength=0.8), batch, repeats), 2),
        }
    return out


def pipeline_parameters(rec: dict[str, Any]) -> dict[str, int]:
    """Parameters of everything between the brain embedding and the picture."""
    parts = {"generator": sum(rec["generator"]["parameters"].values())}
    if rec.get("prior"):
        parts["prior"] = rec["prior"]["parameters"]
    if rec.get("lowlevel") and "parameters" in rec["lowlevel"]:
        parts["lowlevel"] = rec["lowlevel"]["parameters"]
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    results: dict[str, Any] = {"speed": speed(args.batch, args.repeats), "pipelines": {}}
    if not (args.run / "config.yaml").is_file():
        sys.exit(f"{args.run}: no trained run there; run `make demo` first or give --run RUN_DIR")
    for label, options in PIPELINES.items():
        out = args.run / "reconstruction" / ("bench-" + label.split(" ")[0]
                                             + ("-prior" if options.get("prior") and options["generator"] != "builtin" else ""))
        rc = ReconstructConfig(**options)
        rec = reconstruct_run(args.run, rc, out=out)
        results["pipelines"][label] = {
            "metrics": {cond: {k: m.get(k) for k in SHOWN} for cond, m in rec["metrics"].items()},
            "parameters": pipeline_parameters(rec), "timings": rec["timings"], "output": rec["output"],
            "finetune": rec.get("finetune"),
        }
    write("var", {"benchmark": "var", "run": str(args.run), "results": results})
    print(table(results))


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per pipeline and condition, the metrics measured, the parameters."""
    pipes = results["pipelines"]
    present = [k for k in SHOWN if any(m.get(k) is not None for p in pipes.values() for m in p["metrics"].values())]
    lines = ["| pipeline | condition | " + " | ".join(present) + " | parameters |",
             "|---|---|" + "---|" * (len(present) + 1)]
    for label, p in pipes.items():
        total = sum(p["parameters"].values())
        parts = " + ".join(f"{k} {v / 1e6:.2f} M" for k, v in p["parameters"].items())
        for cond, m in p["metrics"].items():
            cells = " | ".join("–" if m.get(k) is None else f"{m[k]:.3f}" for k in present)
            lines.append(f"| {label} | {cond} | {cells} | {total / 1e6:.2f} M ({parts}) |")
    lines += ["", "| generator | parameters | images/s | images/s img2img 0.8 |", "|---|---|---|---|"]
    for name, s in results["speed"].items():
        lines.append(f"| {name} | {sum(s['parameters'].values()):,} | {s['images_per_s']} | "
                     f"{s['images_per_s_img2img_0.8']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
