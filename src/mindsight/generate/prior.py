"""Stage I: the diffusion prior p(image embedding | brain embedding) (ATM, after DALL-E 2 / MindEye).

A lightweight U-Net over vectors denoises a standardised image embedding given the brain
embedding and the diffusion time; dropping the condition 10 % of the time in training gives the
unconditional model for classifier-free guidance. It is fitted on (brain embedding, image
embedding) pairs of the training images, early-stopped on the validation concepts, and samples
with DDIM in a configurable number of steps.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mindsight.errors import DataFormatError
from mindsight.generate.schedule import CosineSchedule, timestep_embedding
from mindsight.output import progress_bar
from mindsight.train.checkpoint import load_tensors, save_tensors


@dataclass
class PriorConfig:
    """Architecture, training and sampling settings of the diffusion prior."""

    widths: list[int] = field(default_factory=lambda: [512, 256])  # U-Net levels (down, then back up)
    cond_dim: int = 256
    epochs: int = 150
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    cond_dropout: float = 0.1
    patience: int = 30
    steps: int = 50  # DDIM sampling steps
    guidance_scale: float = 3.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FiLMBlock(nn.Module):
    """LayerNorm → Linear → scale/shift by the (time + condition) embedding → SiLU."""

    def __init__(self, d_in: int, d_out: int, emb: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.linear = nn.Linear(d_in, d_out)
        self.film = nn.Linear(emb, 2 * d_out)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb).chunk(2, dim=-1)
        return F.silu(self.linear(self.norm(x)) * (1 + scale) + shift)


class PriorUNet(nn.Module):
    """v-prediction denoiser of embedding vectors: a U-Net whose levels are widths, not
    resolutions, with skip connections from each down level to its up level."""

    def __init__(self, dim: int, cond_in: int, widths: list[int], cond_dim: int = 256) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.time = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.cond = nn.Sequential(nn.LayerNorm(cond_in), nn.Linear(cond_in, cond_dim), nn.SiLU(),
                                  nn.Linear(cond_dim, cond_dim))
        self.null = nn.Parameter(torch.zeros(cond_dim))
        sizes = [dim, *widths]
        self.down = nn.ModuleList(FiLMBlock(a, b, cond_dim) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.mid = FiLMBlock(widths[-1], widths[-1], cond_dim)
        ups = list(reversed(sizes))  # e.g. 256 → 512 → dim
        self.up = nn.ModuleList(FiLMBlock(2 * a, b, cond_dim) for a, b in zip(ups[:-1], ups[1:], strict=True))
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                use_cond: torch.Tensor | None = None) -> torch.Tensor:
        c = self.cond(cond)
        if use_cond is not None:
            c = torch.where(use_cond[:, None], c, self.null.expand_as(c))
        emb = F.silu(self.time(timestep_embedding(t, self.cond_dim)) + c)
        skips = []
        h = x
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], -1), emb)
        return self.out(h)


class DiffusionPrior:
    """fit(brain embeddings, image embeddings) → sample(brain embeddings) → image embeddings.

    Both spaces are standardised per dimension with the training statistics; samples are
    mapped back to the image space's scale.
    """

    def __init__(self, dim: int, cond_dim: int, cfg: PriorConfig | None = None, device: str = "cpu") -> None:
        self.cfg = cfg or PriorConfig()
        self.dim, self.cond_in = dim, cond_dim
        self.device = device
        self.net = PriorUNet(dim, cond_dim, self.cfg.widths, self.cfg.cond_dim).to(device)
        self.schedule = CosineSchedule()
        self.stats = {k: torch.zeros(n if "x" in k else cond_dim, device=device)
                      for k, n in (("x_mean", dim), ("x_std", dim), ("c_mean", cond_dim), ("c_std", cond_dim))}
        self.history: list[dict[str, float]] = []
        self.best_epoch = -1

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def _std(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        return (x.to(self.device).float() - self.stats[f"{kind}_mean"]) / self.stats[f"{kind}_std"]

    def _loss(self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None,
              dropout: float = 0.0) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator).to(self.device)
        t = self.schedule.sample_times(len(x), generator, self.device)
        keep = torch.rand(len(x), generator=generator).to(self.device) >= dropout
        v = self.net(self.schedule.add_noise(x, noise, t), t, c, keep)
        return F.mse_loss(v, self.schedule.v_target(x, noise, t))

    def fit(self, cond: torch.Tensor, target: torch.Tensor, val_cond: torch.Tensor,
            val_target: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
        """Train on (cond → target) pairs from weights initialised with ``seed``; keep the epoch
        with the lowest validation loss (a fixed set of noises and times, so epochs are compared
        on the same draws)."""
        if len(cond) != len(target) or len(val_cond) != len(val_target):
            raise DataFormatError(f"prior: {len(cond)} conditions for {len(target)} targets "
                                  f"(validation {len(val_cond)} / {len(val_target)})")
        cfg = self.cfg
        torch.manual_seed(seed)
        # initial weights from the seed too: a fit depends on its data, config and seed only, not
        # on whatever drew random numbers before it (every conditioning of a job starts alike)
        self.net = PriorUNet(self.dim, self.cond_in, cfg.widths, cfg.cond_dim).to(self.device)
        for kind, data in (("x", target), ("c", cond)):
            data = data.to(self.device).float()
            std = data.std(0)
            self.stats[f"{kind}_mean"] = data.mean(0)
            # a floor at 5 % of the typical spread: near-constant dimensions (e.g. post-ReLU
            # features that are almost always 0 in training) must not blow up on new images
            self.stats[f"{kind}_std"] = std.clamp_min(max(1e-6, 0.05 * float(std.median())))
        x, c = self._std(target, "x"), self._std(cond, "c")
        vx, vc = self._std(val_target, "x"), self._std(val_cond, "c")
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        best, best_state, stale = float("inf"), None, 0
        bar = progress_bar(range(cfg.epochs), desc="diffusion prior", unit="epoch")
        for epoch in bar:
            self.net.train()
            order = torch.randperm(len(x)).to(self.device)
            losses = []
            for start in range(0, len(x), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                loss = self._loss(x[idx], c[idx], dropout=cfg.cond_dropout)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            sched.step()
            self.net.eval()
            with torch.no_grad():
                g = torch.Generator().manual_seed(1234)
                val = float(np.mean([self._loss(vx, vc, g).item() for _ in range(4)]))
            self.history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_loss": val})
            bar.set_postfix(loss=f"{np.mean(losses):.4f}", val=f"{val:.4f}")
            if val < best:
                best, best_state, stale, self.best_epoch = val, copy.deepcopy(self.net.state_dict()), 0, epoch
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        self.net.load_state_dict(best_state)
        self.net.eval()
        return {"best_epoch": self.best_epoch, "val_loss": best, "epochs_run": len(self.history),
                "n_train": len(x), "n_val": len(vx), "parameters": self.n_parameters()}

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, *, steps: int | None = None, guidance_scale: float | None = None,
               seed: int = 0) -> torch.Tensor:
        """Image embeddings (n, dim) in the image model's own scale for brain embeddings ``cond``."""
        if cond.dim() != 2 or cond.shape[1] != self.cond_in:
            raise DataFormatError(f"prior expects ({self.cond_in})-d brain embeddings, got {tuple(cond.shape)}")
        self.net.eval()
        g = torch.Generator().manual_seed(seed)
        z = self.schedule.sample(self.net, self._std(cond, "c"), (len(cond), self.dim),
                                 steps=steps or self.cfg.steps,
                                 guidance_scale=self.cfg.guidance_scale if guidance_scale is None else guidance_scale,
                                 generator=g)
        return z * self.stats["x_std"] + self.stats["x_mean"]

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        tensors = {**{f"net.{k}": v for k, v in self.net.state_dict().items()},
                   **{f"stats.{k}": v for k, v in self.stats.items()}}
        meta = {"config": self.cfg.to_dict(), "dim": self.dim, "cond_dim": self.cond_in,
                "history": self.history, "best_epoch": self.best_epoch, **(extra or {})}
        return save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> tuple[DiffusionPrior, dict[str, Any]]:
        tensors, meta = load_tensors(path)
        prior = cls(meta["dim"], meta["cond_dim"], PriorConfig(**meta["config"]), device)
        prior.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        prior.stats = {k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("stats.")}
        prior.history, prior.best_epoch = meta["history"], meta["best_epoch"]
        prior.net.eval()
        return prior, meta
