"""Benchmark: reconstruction speed on CPU and parameter counts of the prior and the generators.

- built-in generator: images per second for a batch of 32 (25 DDIM steps with classifier-free
  guidance, 64 px), from noise and img2img at strength 0.8;
- diffusion prior: embeddings per second (50 DDIM steps), 1280-d brain → 1280-d image space;
- SDXL + IP-Adapter on a GPU, when there is one and the weights are cached: images per second
  of SDXL-Turbo (4 steps, 512 px).

Usage: ``python benchmarks/bench_generate.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import rate, write  # noqa: E402

from mindsight.generate.base import load_generator  # noqa: E402
from mindsight.generate.prior import DiffusionPrior, PriorConfig  # noqa: E402

# Published sizes of the SDXL pipeline (Podell et al. 2023; h94/IP-Adapter), for the ratio the
# AVDE paper draws (the real weights cannot be loaded on machines without hub access).
SDXL_PUBLISHED = {"unet": 2_567_000_000, "text_encoders": 817_000_000, "vae": 83_650_000,
                  "ip_adapter_vit_h": 22_000_000, "image_encoder_vit_h14": 632_000_000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    gen = load_generator("builtin")
    emb = torch.rand(args.batch, gen.embedding_dim)
    init = torch.rand(args.batch, 3, 64, 64)
    results: dict = {"builtin": {
        "parameters": gen.parameter_counts(),
        "images_per_s": round(rate(lambda: gen.generate(emb, steps=25), args.batch, args.repeats), 2),
        "images_per_s_img2img_0.8": round(rate(lambda: gen.generate(emb, init_images=init, strength=0.8, steps=25),
                                                args.batch, args.repeats), 2),
        "settings": "25 DDIM steps, guidance 3 (two U-Net passes per step), 64 px",
    }}
    prior = DiffusionPrior(1280, 1280, PriorConfig())
    prior.stats = {k: torch.zeros_like(v) + (1.0 if "std" in k else 0.0) for k, v in prior.stats.items()}
    cond = torch.randn(200, 1280)
    results["prior"] = {"parameters": prior.n_parameters(),
                        "embeddings_per_s": round(rate(lambda: prior.sample(cond), 200, args.repeats), 1),
                        "settings": "50 DDIM steps, guidance 3, 1280-d"}
    total_builtin = sum(results["builtin"]["parameters"].values()) + results["prior"]["parameters"]
    total_sdxl = sum(SDXL_PUBLISHED.values())
    results["sdxl_published_parameters"] = SDXL_PUBLISHED
    results["builtin_plus_prior_vs_sdxl"] = round(total_builtin / total_sdxl, 5)
    if torch.cuda.is_available():
        try:
            turbo = load_generator("sdxl-turbo-ip-adapter", device="cuda")
            e = torch.randn(4, turbo.embedding_dim)
            results["sdxl_turbo_gpu"] = {"images_per_s": round(rate(lambda: turbo.generate(e), 4, args.repeats), 3),
                                         "parameters": turbo.parameter_counts()}
        except Exception as exc:  # weights not cached: say so in the results
            results["sdxl_turbo_gpu"] = {"error": str(exc)[:300]}
    for k, v in results.items():
        print(k, v)
    write("generate", {"benchmark": "generate", "results": results})


if __name__ == "__main__":
    main()
