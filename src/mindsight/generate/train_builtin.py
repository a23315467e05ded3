"""Train the built-in generator from scratch on rendered OpenMoji stimuli (``mindsight train-generator``).

1. Render every concept the generator may see (all but the reserved ~15 % that the simulator
   uses as test concepts, :func:`mindsight.simulate.stimuli.is_reserved`) in a few exemplars,
   and embed each picture with the conditioning image model (EfficientNet-Lite0, offline).
2. Fit the autoencoder (64 px ↔ 4 × 16 × 16) with L1 + MSE on pixels.
3. Fit the latent U-Net with the v-prediction diffusion loss, dropping the embedding 10 % of the
   time (classifier-free guidance), keeping an exponential moving average of its weights.

Everything lives in one work folder: the rendered set (``data.safetensors``), a resumable
checkpoint (``last.safetensors``, replaced atomically every ``checkpoint_every`` steps) and the
result (``builtin.safetensors``: EMA weights in float16 + config + training record).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mindsight.errors import ConfigError
from mindsight.generate.networks import BuiltinConfig, ConvAutoencoder, LatentUNet
from mindsight.generate.schedule import CosineSchedule
from mindsight.output import logger, progress_bar
from mindsight.train.checkpoint import (
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_state,
    save_tensors,
    set_rng_state,
)
from mindsight.train.distributed import World, ddp


@dataclass
class GeneratorTrainConfig:
    """How the built-in generator is trained (recorded in its weight file)."""

    model: BuiltinConfig = field(default_factory=BuiltinConfig)
    exemplars: int = 3  # pictures per concept (skin tones, then scaled/moved/rotated copies)
    render_size: int = 128  # as the simulator's demo images, before embedding
    max_concepts: int | None = None  # None: every non-reserved concept
    ae_steps: int = 1200
    diffusion_steps: int = 8000
    batch_size: int = 64
    lr: float = 1e-3
    ema: float = 0.999
    cond_dropout: float = 0.1
    checkpoint_every: int = 250
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GeneratorTrainConfig:
        raw = dict(raw)
        raw["model"] = BuiltinConfig.from_dict(raw.get("model", {}))
        return cls(**raw)


def build_training_set(work: Path, cfg: GeneratorTrainConfig,
                       device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images uint8 (n, 3, s, s), embeddings (n, d), concept names); cached in ``work``."""
    from PIL import Image

    from mindsight.embed import load_image_embedder
    from mindsight.simulate.stimuli import is_reserved, openmoji_concepts, render

    path = work / "data.safetensors"
    key = {"exemplars": cfg.exemplars, "render_size": cfg.render_size, "max_concepts": cfg.max_concepts,
           "image_size": cfg.model.image_size, "embedding_model": cfg.model.embedding_model, "seed": cfg.seed}
    if path.is_file():
        tensors, meta = load_tensors(path)
        if meta.get("key") == key:
            return tensors["images"], tensors["embeddings"], meta["concepts"]
    concepts = [c for c in openmoji_concepts() if not is_reserved(c.name)]
    if cfg.max_concepts is not None:
        concepts = concepts[: cfg.max_concepts]
    embedder = load_image_embedder(cfg.model.embedding_model, device=device)
    jobs = [(c, e) for c in concepts for e in range(cfg.exemplars)]
    images, embeddings, names = [], [], []
    size = cfg.model.image_size
    bar = progress_bar(total=len(jobs), desc="rendering + embedding stimuli", unit="img")
    for start in range(0, len(jobs), 64):
        batch = [render(c, e, cfg.render_size, cfg.seed) for c, e in jobs[start : start + 64]]
        embeddings.append(torch.from_numpy(np.asarray(embedder.embed_images(batch), dtype=np.float32)))
        small = [np.asarray(im.resize((size, size), Image.BICUBIC)) for im in batch]
        images.append(torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).contiguous())
        names += [c.name for c, _ in jobs[start : start + 64]]
        bar.update(len(batch))
    bar.close()
    out = torch.cat(images), torch.cat(embeddings), names
    save_tensors(path, {"images": out[0], "embeddings": out[1]}, {"key": key, "concepts": names})
    return out


def _lr(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total - warmup)))


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, rate: float) -> None:
    """One step of the exponential moving average of ``model``'s weights in ``ema``, with the
    usual warm-up (the decay grows as (1 + step) / (10 + step) up to ``rate``; 0: a copy)."""
    decay = 0.0 if rate <= 0 else min(rate, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(p, 1 - decay)


def train_builtin(work: str | Path, cfg: GeneratorTrainConfig | None = None, *, device: str = "cpu",
                  resume: bool = True, world: World | None = None) -> Path:
    """Train (or resume) the built-in generator in ``work``; returns ``work/builtin.safetensors``.
    Resuming is noted through the ``mindsight`` logger.

    With a ``world`` of several processes (:mod:`mindsight.train.distributed`) each step draws a
    global batch of ``world.size × cfg.batch_size`` (and its noise) from the seed, every process
    trains on its shard under DistributedDataParallel, and rank 0 writes: the result equals one
    process with the global batch."""
    cfg = cfg or GeneratorTrainConfig()
    world = world or World()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    images, embeddings, names = build_training_set(work, cfg, device)
    images, embeddings = images.to(device), embeddings.to(device)
    n = len(images)
    torch.manual_seed(cfg.seed)
    ae, unet = ConvAutoencoder(cfg.model).to(device), LatentUNet(cfg.model).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt_ae = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=0.0)
    opt_unet = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = CosineSchedule()
    state = {"step": 0, "ae_losses": [], "diffusion_losses": [], "seconds": 0.0}
    last = work / "last.safetensors"
    if resume and last.is_file():
        tensors, meta = load_tensors(last)
        if meta.get("config") != cfg.to_dict():
            raise ConfigError(f"{last} was written with a different training config; "
                             "use another work folder or delete it")
        for prefix, module in (("ae.", ae), ("unet.", unet), ("ema.", ema)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for prefix, opt in (("opt_ae.", opt_ae), ("opt_unet.", opt_unet)):
            optimizer_from_tensors(opt, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                   meta[prefix[:-1]])
        set_rng_state({k[4:]: v for k, v in tensors.items() if k.startswith("rng.")})
        state = meta["state"]
        logger.info("resuming generator training at step %d", state["step"])

    def checkpoint() -> None:
        tensors = {**{f"ae.{k}": v for k, v in ae.state_dict().items()},
                   **{f"unet.{k}": v for k, v in unet.state_dict().items()},
                   **{f"ema.{k}": v for k, v in ema.state_dict().items()},
                   **{f"rng.{k}": v for k, v in rng_state().items()}}
        meta: dict[str, Any] = {"config": cfg.to_dict(), "state": state}
        for prefix, opt in (("opt_ae", opt_ae), ("opt_unet", opt_unet)):
            t, m = optimizer_to_tensors(opt)
            tensors.update({f"{prefix}.{k}": v for k, v in t.items()})
            meta[prefix] = m
        save_tensors(last, tensors, meta)

    total = cfg.ae_steps + cfg.diffusion_steps
    train_ae, train_unet = (ae, unet) if world.size == 1 else (ddp(ae, world), ddp(unet, world))


    bar = progress_bar(total=total, initial=state["step"], desc="training generator", unit="step",
                       enabled=world.main)
    t0 = time.perf_counter() - state["seconds"]
    while state["step"] < total:
        step = state["step"]
        idx = world.part(torch.randint(0, n, (cfg.batch_size * world.size,)).to(device))
        x = images[idx].float() / 255
        if step < cfg.ae_steps:  # stage 1: the autoencoder
            for g in opt_ae.param_groups:
                g["lr"] = _lr(step, cfg.ae_steps, cfg.lr)
            rec = train_ae(x)
            loss = (rec - x).abs().mean() + F.mse_loss(rec, x)
            opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            opt_ae.step()
            state["ae_losses"].append(world.mean(loss))
            if step + 1 == cfg.ae_steps:  # fix the latent scale once the autoencoder is done
                with torch.no_grad():
                    sample = images[torch.randperm(n)[:512].to(device)].float() / 255
                    ae.latent_scale.fill_(float(ae.encoder(sample * 2 - 1).std()))
        else:  # stage 2: the latent diffusion model
            k = step - cfg.ae_steps
            for g in opt_unet.param_groups:
                g["lr"] = _lr(k, cfg.diffusion_steps, cfg.lr)
            with torch.no_grad():
                z = ae.encode(x)
            n_global = len(z) * world.size  # noise, times and dropout drawn for the whole global batch
            noise = world.part(torch.randn((n_global, *z.shape[1:]), dtype=z.dtype, device=z.device))
            t = world.part(schedule.sample_times(n_global, device=device))
            keep = world.part(torch.rand(n_global, device=device) >= cfg.cond_dropout)
            v = train_unet(schedule.add_noise(z, noise, t), t, embeddings[idx], keep)
            loss = F.mse_loss(v, schedule.v_target(z, noise, t))
            opt_unet.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt_unet.step()
            ema_update(ema, unet, k, cfg.ema)
            state["diffusion_losses"].append(world.mean(loss))
        state["step"] += 1
        state["seconds"] = time.perf_counter() - t0
        bar.update(1)
        if state["step"] % 50 == 0:
            recent = state["ae_losses" if state["step"] <= cfg.ae_steps else "diffusion_losses"][-50:]
            bar.set_postfix(loss=f"{np.mean(recent):.4f}")
        if world.main and (state["step"] % cfg.checkpoint_every == 0 or state["step"] == total):
            checkpoint()
    bar.close()
    path = work / "builtin.safetensors"
    if world.main:
        export_builtin(path, cfg, ae, ema, state, n_images=n, n_concepts=len(set(names)))
    world.barrier()
    return path


def export_builtin(path: Path, cfg: GeneratorTrainConfig, ae: ConvAutoencoder, unet: LatentUNet,
                   state: dict[str, Any], n_images: int, n_concepts: int) -> Path:
    """The shipped weight file: float16 weights, architecture, and how they were trained."""
    tensors = {**{f"ae.{k}": v.half() if v.is_floating_point() and v.dim() else v.float()
                  for k, v in ae.state_dict().items()},
               **{f"unet.{k}": v.half() for k, v in unet.state_dict().items()}}
    record = {
        "trained": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(state["seconds"], 1), "n_images": n_images, "n_concepts": n_concepts,
        "held_out": "the reserved ~15 % of OpenMoji concepts (mindsight.simulate.stimuli.is_reserved)",
        "final_ae_loss": float(np.mean(state["ae_losses"][-100:])) if state["ae_losses"] else None,
        "final_diffusion_loss": float(np.mean(state["diffusion_losses"][-100:])) if state["diffusion_losses"] else None,
    }
    return save_tensors(path, tensors, {"model": cfg.model.to_dict(), "training": cfg.to_dict(),
                                        "record": record})
