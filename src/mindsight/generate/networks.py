"""The built-in generator's two networks: a small convolutional autoencoder (64 px images ↔
4 × 16 × 16 latents) and a conditional U-Net that denoises those latents given an image
embedding. Together they are a latent diffusion model small enough to train on a CPU and
ship inside the package; :mod:`mindsight.generate.generators.builtin` wires them up.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mindsight.generate.schedule import timestep_embedding


@dataclass
class BuiltinConfig:
    """Architecture of the built-in generator (stored beside its weights)."""

    image_size: int = 64
    latent_channels: int = 4
    ae_channels: list[int] = field(default_factory=lambda: [32, 64])  # at 1/2 and 1/4 resolution
    unet_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    attention_levels: list[int] = field(default_factory=lambda: [2])  # U-Net levels with self-attention
    embedding_dim: int = 1280
    embedding_model: str = "efficientnet-lite0"
    cond_dim: int = 256

    @property
    def latent_size(self) -> int:
        return self.image_size // 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BuiltinConfig:
        return cls(**raw)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, ch // 2) or 1, ch)


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv twice with a skip; ``emb`` (optional) scales and shifts the middle."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int | None = None) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out) if emb_dim else None
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and emb is not None:
            scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class SelfAttention(nn.Module):
    def __init__(self, ch: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = _norm(ch)
        self.attn = nn.MultiheadAttention(ch, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class ConvAutoencoder(nn.Module):
    """RGB images ↔ (latent_channels, size/4, size/4), deterministic, trained with L1 + MSE.

    No convolution runs at full resolution (a strided stem in, pixel shuffles out), which keeps
    it cheap enough to train on a CPU.
    """

    def __init__(self, cfg: BuiltinConfig) -> None:
        super().__init__()
        c1, c2 = cfg.ae_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 4, stride=2, padding=1), nn.SiLU(),  # 64 → 32 px
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), ResBlock(c2, c2),  # 32 → 16
            _norm(c2), nn.SiLU(), nn.Conv2d(c2, cfg.latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.latent_channels, c2, 3, padding=1), ResBlock(c2, c2),
            nn.Conv2d(c2, 4 * c1, 3, padding=1), nn.PixelShuffle(2), nn.SiLU(),  # 16 → 32
            nn.Conv2d(c1, 3 * 4, 3, padding=1), nn.PixelShuffle(2))  # 32 → 64
        # latents are divided by this so that the diffusion model sees unit variance
        self.register_buffer("latent_scale", torch.tensor(1.0))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images * 2 - 1) / self.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((self.decoder(latents * self.latent_scale) + 1) / 2).clamp(0, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.decoder(self.encoder(images * 2 - 1)) + 1) / 2


class LatentUNet(nn.Module):
    """v-prediction U-Net over latents, conditioned on time and an image embedding (FiLM).

    ``use_cond`` False replaces the embedding with a learned null vector: the unconditional
    model of classifier-free guidance, trained by dropping the condition at random.
    """

    def __init__(self, cfg: BuiltinConfig) -> None:
        super().__init__()
        ch, d = cfg.unet_channels, cfg.cond_dim
        self.time_dim = d
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.cond_mlp = nn.Sequential(nn.LayerNorm(cfg.embedding_dim), nn.Linear(cfg.embedding_dim, d),
                                      nn.SiLU(), nn.Linear(d, d))
        self.null = nn.Parameter(torch.zeros(d))
        self.stem = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(ch):
            self.down.append(ResBlock(ch[max(i - 1, 0)], c, d))
            self.down_attn.append(SelfAttention(c) if i in cfg.attention_levels else nn.Identity())
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i + 1 < len(ch) else nn.Identity())
        self.mid1, self.mid_attn, self.mid2 = ResBlock(ch[-1], ch[-1], d), SelfAttention(ch[-1]), ResBlock(ch[-1], ch[-1], d)
        self.up = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            c_out = ch[max(i - 1, 0)]
            self.up.append(ResBlock(ch[i] * 2, c_out, d))
            self.up_attn.append(SelfAttention(c_out) if i in cfg.attention_levels else nn.Identity())
            self.upsample.append(nn.Upsample(scale_factor=2, mode="nearest") if i > 0 else nn.Identity())
        self.out = nn.Sequential(_norm(ch[0]), nn.SiLU(), nn.Conv2d(ch[0], cfg.latent_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                use_cond: torch.Tensor | None = None) -> torch.Tensor:
        c = self.cond_mlp(F.normalize(cond, dim=-1) * cond.shape[-1] ** 0.5)
        if use_cond is not None:
            c = torch.where(use_cond[:, None], c, self.null.expand_as(c))
        emb = self.time_mlp(timestep_embedding(t, self.time_dim)) + c
        h = self.stem(x)
        skips = []
        for block, attn, down in zip(self.down, self.down_attn, self.downsample, strict=True):
            h = attn(block(h, emb))
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block, attn, up in zip(self.up, self.up_attn, self.upsample, strict=True):
            h = attn(block(torch.cat([h, skips.pop()], 1), emb))
            h = up(h)
        return self.out(h)
