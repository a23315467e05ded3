"""Train the ``builtin-var`` generator from scratch on rendered OpenMoji stimuli
(``mindsight train-generator --kind var``).

The same training set as the built-in diffusion generator (:func:`~mindsight.generate.train_builtin.build_training_set`:
every non-reserved concept in a few exemplars, embedded with EfficientNet-Lite0; the reserved
~15 % that the simulator tests on are never seen), then two stages:

a. the multi-scale VQ tokenizer (64 px ↔ an 8 × 8 latent, quantised residually at scales
   1, 2, 3, 4, 5, 6, 8): L1 + MSE on pixels plus the VQ (codebook + commitment) loss;
b. the VAR transformer on the tokenizer's tokens of every picture: next-scale prediction with
   cross-entropy, conditioned on the picture's image embedding through the linear condition map,
   the condition dropped ``cond_drop`` of the time (classifier-free guidance); an exponential
   moving average of its weights is what ships.

One work folder holds the rendered set (``data.safetensors``, shared with ``train_builtin`` when
the settings match), the resumable checkpoint (``last.safetensors``, replaced atomically every
``checkpoint_every`` steps) and the result (``builtin-var.safetensors``: float16 weights, both
architectures, the training config and a training record).

Default sizes fit the budget "≤ 40 minutes on 2 CPU cores, ≤ 20 MB shipped" (README,
"builtin-var"); :func:`train_var`'s ``stop_after`` lets a long run be cut into slices.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mindsight.errors import ConfigError
from mindsight.generate.finetune import image_tokens
from mindsight.generate.networks import BuiltinConfig
from mindsight.generate.train_builtin import (
    GeneratorTrainConfig,
    _lr,
    build_training_set,
    ema_update,
)
from mindsight.generate.var.tokenizer import MultiScaleVQVAE, TokenizerConfig
from mindsight.generate.var.transformer import VARConfig, VARTransformer
from mindsight.output import logger, progress_bar
from mindsight.train.checkpoint import (
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_state,
    save_tensors,
    set_rng_state,
)
from mindsight.train.distributed import LossStep, World, ddp

PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8)
EMBEDDING_DIMS = {"efficientnet-lite0": 1280}


def small_tokenizer() -> TokenizerConfig:
    """64 px ↔ 16 × 8 × 8, 1,024 codes, scales 1…8 (155 tokens per picture); widths 32-64."""
    return TokenizerConfig(vocab_size=1024, z_channels=16, ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1,
                           patch_nums=PATCH_NUMS, image_size=64)


def small_transformer() -> VARConfig:
    """Depth 4, width 128 (1.5 M parameters), conditioned on 1,280-d EfficientNet-Lite0 embeddings."""
    return VARConfig(depth=4, embed_dim=128, num_heads=4, vocab_size=1024, z_channels=16, patch_nums=PATCH_NUMS,
                     cond_dim=1280, cond_drop=0.1, attn_l2_norm=True)


@dataclass
class VarTrainConfig:
    """How ``builtin-var`` is trained (recorded in its weight file)."""

    tokenizer: TokenizerConfig = field(default_factory=small_tokenizer)
    transformer: VARConfig = field(default_factory=small_transformer)
    embedding_model: str = "efficientnet-lite0"
    exemplars: int = 3  # pictures per concept (as train_builtin: the rendered set is shared)
    render_size: int = 128
    max_concepts: int | None = None  # None: every non-reserved concept
    tokenizer_steps: int = 800
    var_steps: int = 1800
    tokenizer_batch_size: int = 16
    var_batch_size: int = 32
    tokenizer_lr: float = 1e-3
    var_lr: float = 1e-3
    weight_decay: float = 0.01
    ema: float = 0.998  # 0: no moving average, the last weights ship
    grad_clip: float = 2.0
    checkpoint_every: int = 250
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["tokenizer"], raw["transformer"] = self.tokenizer.to_dict(), self.transformer.to_dict()
        return json.loads(json.dumps(raw))  # tuples as lists: compares equal to a stored copy

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VarTrainConfig:
        raw = dict(raw)
        raw["tokenizer"] = TokenizerConfig.from_dict(raw.get("tokenizer", small_tokenizer().to_dict()))
        raw["transformer"] = VARConfig.from_dict(raw.get("transformer", small_transformer().to_dict()))
        return cls(**raw)

    def check(self) -> None:
        """One clear line for settings that cannot work together."""
        tok, var = self.tokenizer, self.transformer
        for key in ("vocab_size", "z_channels"):
            if getattr(tok, key) != getattr(var, key):
                raise ConfigError(f"tokenizer.{key} = {getattr(tok, key)} but transformer.{key} = "
                                  f"{getattr(var, key)}; they must be equal")
        if tuple(tok.patch_nums) != tuple(var.patch_nums):
            raise ConfigError(f"tokenizer.patch_nums {tuple(tok.patch_nums)} differ from transformer.patch_nums "
                              f"{tuple(var.patch_nums)}")
        dim = EMBEDDING_DIMS.get(self.embedding_model)
        if dim is not None and var.cond_dim != dim:
            raise ConfigError(f"transformer.cond_dim = {var.cond_dim} but {self.embedding_model} embeddings "
                              f"are {dim}-d")
        if min(self.tokenizer_steps, self.var_steps, self.tokenizer_batch_size, self.var_batch_size,
               self.checkpoint_every) < 1:
            raise ConfigError("steps, batch sizes and checkpoint_every must be ≥ 1")

    def rendering(self) -> GeneratorTrainConfig:
        """The settings of the rendered set, as :func:`build_training_set` reads them."""
        model = BuiltinConfig(image_size=self.tokenizer.image_size, embedding_model=self.embedding_model,
                              embedding_dim=self.transformer.cond_dim)
        return GeneratorTrainConfig(model=model, exemplars=self.exemplars, render_size=self.render_size,
                                    max_concepts=self.max_concepts, seed=self.seed)


def train_var(work: str | Path, cfg: VarTrainConfig | None = None, *, device: str = "cpu",
              resume: bool = True, stop_after: int | None = None, world: World | None = None) -> Path:
    """Train (or resume) ``builtin-var`` in ``work``; returns ``work/builtin-var.safetensors``.

    ``stop_after``: stop after this many steps in all (both stages counted), with a checkpoint,
    and return the path of ``last.safetensors``; a later call resumes there. Resuming is noted
    through the ``mindsight`` logger.

    With a ``world`` of several processes each step's global batch (``world.size`` × the batch
    size) and its condition dropout are drawn from the seed, every process trains on its shard
    under DistributedDataParallel, and rank 0 writes (see :func:`train_builtin`).
    """
    world = world or World()
    cfg = cfg or VarTrainConfig()
    cfg.check()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    images, embeddings, names = build_training_set(work, cfg.rendering(), device)
    embeddings = embeddings.to(device)
    n = len(images)
    torch.manual_seed(cfg.seed)
    tok = MultiScaleVQVAE(cfg.tokenizer).to(device)
    var = VARTransformer(cfg.transformer).to(device)
    ema = copy.deepcopy(var).requires_grad_(False)
    opt_tok = torch.optim.AdamW(tok.parameters(), lr=cfg.tokenizer_lr, betas=(0.9, 0.95), weight_decay=0.0)
    opt_var = torch.optim.AdamW(var.parameters(), lr=cfg.var_lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    state: dict[str, Any] = {"step": 0, "tokenizer_losses": [], "codebook_usage": [], "var_losses": [],
                             "seconds": 0.0}
    last = work / "last.safetensors"
    parts = {"tok.": tok, "var.": var, "ema.": ema}
    optimizers = {"opt_tok": opt_tok, "opt_var": opt_var}
    if resume and last.is_file():
        tensors, meta = load_tensors(last)
        if meta.get("config") != cfg.to_dict():
            raise ConfigError(f"{last} was written with a different training config; "
                              "use another work folder or delete it")
        for prefix, module in parts.items():
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name, opt in optimizers.items():
            optimizer_from_tensors(opt, {k[len(name) + 1:]: v for k, v in tensors.items()
                                         if k.startswith(name + ".")}, meta[name])
        set_rng_state({k[4:]: v for k, v in tensors.items() if k.startswith("rng.")})
        state = meta["state"]
        logger.info("resuming builtin-var training at step %d", state["step"])

    def checkpoint() -> None:
        tensors = {f"{prefix}{k}": v for prefix, module in parts.items() for k, v in module.state_dict().items()}
        tensors.update({f"rng.{k}": v for k, v in rng_state().items()})
        meta: dict[str, Any] = {"config": cfg.to_dict(), "state": state}
        for name, opt in optimizers.items():
            t, m = optimizer_to_tensors(opt)
            tensors.update({f"{name}.{k}": v for k, v in t.items()})
            meta[name] = m
        save_tensors(last, tensors, meta)

    total = cfg.tokenizer_steps + cfg.var_steps
    end = total if stop_after is None else min(total, stop_after)
    tokens: list[torch.Tensor] | None = None  # every picture's tokens, once the tokenizer is done
    bar = progress_bar(total=total, initial=state["step"], desc="training builtin-var", unit="step",
                       enabled=world.main)
    train_tok, train_loss = (tok, var.loss) if world.size == 1 else (ddp(tok, world), ddp(LossStep(var), world))


    t0 = time.perf_counter() - state["seconds"]
    while state["step"] < end:
        step = state["step"]
        stage_a = step < cfg.tokenizer_steps
        n_global = (cfg.tokenizer_batch_size if stage_a else cfg.var_batch_size) * world.size
        idx = world.part(torch.randint(0, n, (n_global,)))
        if stage_a:  # stage a: the multi-scale VQ tokenizer
            for g in opt_tok.param_groups:
                g["lr"] = _lr(step, cfg.tokenizer_steps, cfg.tokenizer_lr, warmup=min(200, cfg.tokenizer_steps // 10))
            tok.train()
            x = images[idx].to(device).float() / 255
            rec, vq_loss, usage = train_tok(x)
            loss = (rec - x).abs().mean() + F.mse_loss(rec, x) + vq_loss
            opt_tok.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tok.parameters(), cfg.grad_clip)
            opt_tok.step()
            state["tokenizer_losses"].append(world.mean(loss))
            state["codebook_usage"].append(float(usage))
        else:  # stage b: the VAR transformer on the frozen tokenizer's tokens
            if tokens is None:
                tokens = image_tokens(tok, images)
            k = step - cfg.tokenizer_steps
            for g in opt_var.param_groups:
                g["lr"] = _lr(k, cfg.var_steps, cfg.var_lr, warmup=min(200, cfg.var_steps // 10))
            var.train()
            p = var.cfg.cond_drop  # the global batch's dropout, drawn as the loss draws it
            drop = world.part(torch.rand(n_global) < p) if p > 0 else None
            loss = train_loss(embeddings[idx], [t[idx].to(device) for t in tokens], tok, drop=drop)
            opt_var.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(var.parameters(), cfg.grad_clip)
            opt_var.step()
            ema_update(ema, var, k, cfg.ema)
            state["var_losses"].append(world.mean(loss))
        state["step"] += 1
        state["seconds"] = time.perf_counter() - t0
        bar.update(1)
        if state["step"] % 50 == 0:
            recent = state["tokenizer_losses" if state["step"] <= cfg.tokenizer_steps else "var_losses"][-50:]
            bar.set_postfix(loss=f"{np.mean(recent):.4f}")
        if world.main and (state["step"] % cfg.checkpoint_every == 0 or state["step"] == end):
            checkpoint()
    bar.close()
    world.barrier()
    if state["step"] < total:
        logger.info("builtin-var training stopped at step %d of %d; run again to resume", state["step"], total)
        return last
    path = work / "builtin-var.safetensors"
    if world.main:
        export_var(path, cfg, tok, ema, state, n_images=n, n_concepts=len(set(names)))
    world.barrier()
    return path


def export_var(path: Path, cfg: VarTrainConfig, tokenizer: MultiScaleVQVAE, transformer: VARTransformer,
               state: dict[str, Any], n_images: int, n_concepts: int) -> Path:
    """The shipped weight file: float16 weights, both architectures, and how they were trained."""
    def half(v: torch.Tensor) -> torch.Tensor:
        return v.half() if v.is_floating_point() and v.dim() else v.float() if v.is_floating_point() else v

    tensors = {**{f"tokenizer.{k}": half(v) for k, v in tokenizer.state_dict().items()},
               **{f"transformer.{k}": half(v) for k, v in transformer.state_dict().items()}}
    mean = lambda key: float(np.mean(state[key][-100:])) if state[key] else None  # noqa: E731
    record = {
        "trained": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(state["seconds"], 1), "n_images": n_images, "n_concepts": n_concepts,
        "held_out": "the reserved ~15 % of OpenMoji concepts (mindsight.simulate.stimuli.is_reserved)",
        "final_tokenizer_loss": mean("tokenizer_losses"), "final_codebook_usage": mean("codebook_usage"),
        "final_var_loss": mean("var_losses"),
    }
    return save_tensors(path, tensors, {"tokenizer": cfg.tokenizer.to_dict(), "transformer": cfg.transformer.to_dict(),
                                        "embedding_model": cfg.embedding_model, "training": cfg.to_dict(),
                                        "record": record})
