"""VAR's multi-scale residual VQ-VAE: an image ↔ a pyramid of token maps (1×1, 2×2, …, 16×16).

The architecture follows FoundationVision/VAR (``models/vqvae.py``, ``basic_vae.py``,
``quant.py``) so that the official ``vae_ch160v4096z32.pth`` loads key for key; the code is
mindsight's own. How it works:

- a convolutional encoder (VQGAN-style: res blocks per level, self-attention at the lowest
  level and in the middle) maps an image in [-1, 1] to a latent ``f`` (Cvae × h × w), through a
  3×3 ``quant_conv``;
- residual quantisation over scales ``patch_nums`` (small to large): at scale k the residual
  ``f − f̂`` is area-downsampled to pn_k × pn_k, each position replaced by its nearest codebook
  entry (squared L2 distance; cosine when ``using_znorm``), the token map upsampled (bicubic) to
  h × w, passed through a 3×3 conv φ blended with its input (``quant_resi``), and added to ``f̂``.
  One codebook serves every scale; ``share_quant_resi`` convs φ are shared between the scales by
  their relative position (VAR's "partially shared φ");
- ``post_quant_conv`` and the decoder map ``f̂`` back to an image.

Training loss (VAR's): per scale β‖sg(f̂) − f‖² + ‖f̂ − sg(f)‖², averaged over the scales, with
a straight-through estimator carrying the decoder's gradient to the encoder.
Images at the public boundary are (n, 3, S, S) floats in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mindsight.config import build_dataclass
from mindsight.errors import ConfigError, DataFormatError


@dataclass
class TokenizerConfig:
    """Architecture of the tokenizer; the defaults are the official ``vae_ch160v4096z32.pth``."""

    vocab_size: int = 4096
    z_channels: int = 32  # Cvae: channels of the latent and of every codebook entry
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # downsampling factor 2 ** (len - 1)
    num_res_blocks: int = 2
    dropout: float = 0.0
    beta: float = 0.25  # commitment weight
    quant_resi: float = 0.5  # φ(h) = (1 − r)·h + r·conv(h)
    share_quant_resi: int = 4  # number of φ convs (0: one per scale, 1: one for all)
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    image_size: int = 256  # patch_nums[-1] * 2 ** (len(ch_mult) - 1)
    using_znorm: bool = False  # nearest entry by cosine instead of L2 (official: L2)

    def __post_init__(self) -> None:
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.patch_nums = tuple(int(p) for p in self.patch_nums)
        if len(self.patch_nums) < 2 or list(self.patch_nums) != sorted(set(self.patch_nums)):
            raise ConfigError(f"tokenizer patch_nums must be at least two increasing sizes, got "
                              f"{self.patch_nums}")
        if self.image_size != self.latent_size * self.downsample:
            raise ConfigError(
                f"tokenizer image_size {self.image_size} must be patch_nums[-1] × 2^(len(ch_mult)-1)"
                f" = {self.latent_size} × {self.downsample} = {self.latent_size * self.downsample}")
        for m in self.ch_mult:
            if (self.ch * m) % 32:
                raise ConfigError(f"tokenizer ch × ch_mult must be multiples of 32 (GroupNorm of 32"
                                  f" groups); ch={self.ch}, ch_mult={self.ch_mult}")
        if self.share_quant_resi < 0:
            raise ConfigError(f"tokenizer share_quant_resi must be ≥ 0, got {self.share_quant_resi}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def latent_size(self) -> int:
        return self.patch_nums[-1]

    @property
    def num_tokens(self) -> int:
        """L: tokens over all scales (680 for the official scales)."""
        return sum(p * p for p in self.patch_nums)

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["ch_mult"], raw["patch_nums"] = list(self.ch_mult), list(self.patch_nums)
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TokenizerConfig:
        return build_dataclass(cls, raw, "tokenizer config")


# -- convolutional encoder / decoder (VQGAN layout, VAR's key names) --------------------------


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm–SiLU–conv twice plus a skip (1×1 ``nin_shortcut`` when the width changes)."""

    def __init__(self, c_in: int, c_out: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the positions of a feature map (1×1 conv q, k, v)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj_out(out.transpose(1, 2).reshape(n, c, h, w))


class Downsample2x(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric pad, as VQGAN


class Upsample2x(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Middle(nn.Module):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution: res blocks (each followed by attention at the lowest resolution) and an
    optional resampler (``downsample`` in the encoder, ``upsample`` in the decoder)."""

    def __init__(self, c_in: int, c_out: int, n_blocks: int, attention: bool, dropout: float,
                 resample: str | None) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(c_in if i == 0 else c_out, c_out, dropout)
                                   for i in range(n_blocks))
        self.attn = nn.ModuleList(AttnBlock(c_out) for _ in range(n_blocks if attention else 0))
        if resample == "down":
            self.downsample = Downsample2x(c_out)
        elif resample == "up":
            self.upsample = Upsample2x(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        if hasattr(self, "upsample"):
            x = self.upsample(x)
        return x


class Encoder(nn.Module):
    """[-1, 1] image (n, 3, S, S) → features (n, Cvae, S/f, S/f), f = 2^(len(ch_mult) − 1)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, last = cfg.ch, cfg.ch_mult, len(cfg.ch_mult) - 1
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        widths = [ch] + [ch * m for m in mult]
        self.down = nn.ModuleList(
            _Level(widths[i], widths[i + 1], cfg.num_res_blocks, attention=i == last,
                   dropout=cfg.dropout, resample=None if i == last else "down")
            for i in range(len(mult)))
        self.mid = _Middle(widths[-1], cfg.dropout)
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """Latent (n, Cvae, h, w) → [-1, 1]-scaled image (n, 3, h·f, w·f), unclamped.

    ``up[i]`` works at resolution i (0 = full size), as in VQGAN, and runs from the last to the
    first; each level has ``num_res_blocks + 1`` res blocks."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, last = cfg.ch, cfg.ch_mult, len(cfg.ch_mult) - 1
        top = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, top, 3, padding=1)
        self.mid = _Middle(top, cfg.dropout)
        c_in = {i: ch * mult[i + 1] if i < last else top for i in range(len(mult))}
        self.up = nn.ModuleList(
            _Level(c_in[i], ch * mult[i], cfg.num_res_blocks + 1, attention=i == last,
                   dropout=cfg.dropout, resample=None if i == 0 else "up")
            for i in range(len(mult)))
        self.norm_out = _norm(ch * mult[0])
        self.conv_out = nn.Conv2d(ch * mult[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# -- residual quantiser ------------------------------------------------------------------------


class Phi(nn.Conv2d):
    """φ: a 3×3 conv blended with its input, (1 − r)·h + r·conv(h), applied to each upsampled
    token map to restore the detail that bicubic upsampling loses."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__(channels, channels, 3, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


def _ticks(k: int) -> np.ndarray:
    """Positions in [0, 1] of ``k`` shared φ: scale si uses the φ nearest to si / (K − 1)."""
    return np.linspace(1 / 3 / k, 1 - 1 / 3 / k, k) if k == 4 else np.linspace(1 / 2 / k, 1 - 1 / 2 / k, k)


class PhiPartiallyShared(nn.Module):
    """``share_quant_resi`` ≥ 2 φ (key ``quant_resi.qresi_ls.<i>``), picked by relative scale."""

    def __init__(self, phis: list[nn.Module]) -> None:
        super().__init__()
        self.qresi_ls = nn.ModuleList(phis)
        self.ticks = _ticks(len(phis))

    def at(self, position: float) -> nn.Module:
        return self.qresi_ls[int(np.argmin(np.abs(self.ticks - position)))]


class PhiShared(nn.Module):
    """One φ for every scale (key ``quant_resi.qresi``)."""

    def __init__(self, phi: nn.Module) -> None:
        super().__init__()
        self.qresi = phi

    def at(self, position: float) -> nn.Module:
        return self.qresi


class PhiNonShared(nn.ModuleList):
    """One φ per scale (keys ``quant_resi.<i>``)."""

    def __init__(self, phis: list[nn.Module]) -> None:
        super().__init__(phis)
        self.ticks = _ticks(len(phis))

    def at(self, position: float) -> nn.Module:
        return self[int(np.argmin(np.abs(self.ticks - position)))]


class VectorQuantizer(nn.Module):
    """The shared codebook (``embedding``), the φ convs (``quant_resi``) and the scale loop."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_nums = cfg.patch_nums
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.z_channels)

        def phi() -> nn.Module:
            return Phi(cfg.z_channels, cfg.quant_resi) if abs(cfg.quant_resi) > 1e-6 else nn.Identity()

        if cfg.share_quant_resi == 0:
            self.quant_resi: nn.Module = PhiNonShared([phi() for _ in cfg.patch_nums])
        elif cfg.share_quant_resi == 1:
            self.quant_resi = PhiShared(phi())
        else:
            self.quant_resi = PhiPartiallyShared([phi() for _ in range(cfg.share_quant_resi)])
        # per-scale codebook hits (VAR's usage statistics); kept so official files load as-is
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(cfg.patch_nums), cfg.vocab_size))

    def phi(self, si: int) -> nn.Module:
        return self.quant_resi.at(si / (len(self.patch_nums) - 1))

    def nearest(self, rest: torch.Tensor) -> torch.Tensor:
        """Codebook index of each row of ``rest`` (N, Cvae)."""
        book = self.embedding.weight.detach()
        if self.cfg.using_znorm:
            return (F.normalize(rest, dim=-1) @ F.normalize(book, dim=-1).T).argmax(dim=1)
        dist = rest.square().sum(1, keepdim=True) + book.square().sum(1) - 2 * rest @ book.T
        return dist.argmin(dim=1)

    def scale_contribution(self, si: int, idx: torch.Tensor) -> torch.Tensor:
        """Token map ``idx`` (n, pn, pn) of scale ``si`` → its term of f̂ (n, Cvae, h, w)."""
        h = self.embedding(idx).permute(0, 3, 1, 2)
        side = self.patch_nums[-1]
        if si < len(self.patch_nums) - 1:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        return self.phi(si)(h)

    def residual_tokens(self, f: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Quantise ``f`` scale by scale: (token maps (n, pn, pn), f̂ after each scale)."""
        rest, f_hat = f.detach().clone(), torch.zeros_like(f)
        tokens, partial = [], []
        n, c = f.shape[:2]
        last = len(self.patch_nums) - 1
        for si, pn in enumerate(self.patch_nums):
            small = rest if si == last else F.interpolate(rest, size=(pn, pn), mode="area")
            idx = self.nearest(small.permute(0, 2, 3, 1).reshape(-1, c)).view(n, pn, pn)
            h = self.scale_contribution(si, idx)
            f_hat = f_hat + h
            rest = rest - h.detach()
            tokens.append(idx)
            partial.append(f_hat)
        return tokens, partial


class MultiScaleVQVAE(nn.Module):
    """VAR's tokenizer: images ↔ multi-scale token maps; see the module docstring.

    Parameter names are the official checkpoint's (``encoder.*``, ``decoder.*``,
    ``quantize.embedding.weight``, ``quantize.quant_resi.*``, ``quant_conv``, ``post_quant_conv``).
    """

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, padding=1)

    # -- images ↔ latents ----------------------------------------------------------------------

    def _to_model(self, images: torch.Tensor) -> torch.Tensor:
        s = self.cfg.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (s, s):
            raise DataFormatError(f"the VAR tokenizer takes images (n, 3, {s}, {s}) in [0, 1], "
                                  f"got {tuple(images.shape)}; resize them first")
        param = self.quant_conv.weight
        return images.to(param.device, param.dtype) * 2 - 1

    def encode_latent(self, images: torch.Tensor) -> torch.Tensor:
        """The continuous latent before quantisation, (n, Cvae, h, w)."""
        return self.quant_conv(self.encoder(self._to_model(images)))

    def quantize_latent(self, f: torch.Tensor) -> torch.Tensor:
        """f̂: the multi-scale residual quantisation of ``f`` over all scales."""
        return self.quantize.residual_tokens(f)[1][-1]

    def decode_latent(self, f_hat: torch.Tensor) -> torch.Tensor:
        """(n, Cvae, h, w) → images (n, 3, S, S) in [0, 1], clamped."""
        x = self.decoder(self.post_quant_conv(f_hat))
        return ((x.clamp(-1, 1) + 1) / 2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Training step: (reconstruction on the [0, 1] scale, unclamped; VQ loss; percentage of
        the codebook hit in this batch)."""
        f = self.encode_latent(images)
        tokens, partial = self.quantize.residual_tokens(f)
        beta = self.cfg.beta
        loss = sum(beta * F.mse_loss(p.detach(), f) + F.mse_loss(p, f.detach()) for p in partial)
        loss = loss / len(partial)
        f_hat = partial[-1]
        f_st = f + (f_hat - f).detach()  # straight-through: value f̂, gradient to f
        # the codebook and φ learn through the loss's second term; the decoder sees f̂'s value
        recon = (self.decoder(self.post_quant_conv(f_st)) + 1) / 2
        hits = torch.zeros(self.cfg.vocab_size, device=f.device)
        for idx in tokens:
            hits += idx.flatten().bincount(minlength=self.cfg.vocab_size).float()
        usage = float((hits > 0).float().mean()) * 100
        return recon, loss, usage

    # -- tokens --------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_tokens(self, images: torch.Tensor) -> list[torch.Tensor]:
        """One LongTensor (n, pn²) per scale, coarse to fine."""
        tokens, _ = self.quantize.residual_tokens(self.encode_latent(images))
        return [t.flatten(1) for t in tokens]

    def _check_tokens(self, tokens: list[torch.Tensor]) -> None:
        if not 1 <= len(tokens) <= len(self.cfg.patch_nums):
            raise DataFormatError(f"expected 1 to {len(self.cfg.patch_nums)} token scales, got "
                                  f"{len(tokens)}")
        for si, t in enumerate(tokens):
            pn = self.cfg.patch_nums[si]
            if t.ndim != 2 or t.shape[1] != pn * pn:
                raise DataFormatError(f"tokens of scale {si} must be (n, {pn * pn}), got "
                                      f"{tuple(t.shape)}")

    def tokens_to_latent(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """f̂ from the first ``len(tokens)`` scales (fewer scales: a coarser image)."""
        self._check_tokens(tokens)
        f_hat = None
        for si, t in enumerate(tokens):
            pn = self.cfg.patch_nums[si]
            h = self.quantize.scale_contribution(si, t.to(self.quant_conv.weight.device).view(-1, pn, pn))
            f_hat = h if f_hat is None else f_hat + h
        return f_hat

    def decode_tokens(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        return self.decode_latent(self.tokens_to_latent(tokens))

    def teacher_inputs(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """VAR's teacher-forcing input: for scales 1..K−1, f̂ of the earlier scales area-
        downsampled to that scale, flattened: (n, L − patch_nums[0]², Cvae)."""
        if len(tokens) != len(self.cfg.patch_nums):
            raise DataFormatError(f"teacher_inputs needs all {len(self.cfg.patch_nums)} scales, "
                                  f"got {len(tokens)}")
        self._check_tokens(tokens)
        pns, inputs, f_hat = self.cfg.patch_nums, [], None
        for si in range(len(pns) - 1):
            f_hat, nxt = self.next_input(si, f_hat, tokens[si])
            inputs.append(nxt)
        return torch.cat(inputs, dim=1)

    def next_input(self, si: int, f_hat: torch.Tensor | None,
                   tokens_si: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Add scale ``si``'s tokens (n, pn²) to ``f_hat`` (None or zeros before the first);
        return (new f̂, the next scale's input (n, pn_{si+1}², Cvae), None after the last)."""
        pn = self.cfg.patch_nums[si]
        h = self.quantize.scale_contribution(si, tokens_si.view(-1, pn, pn))
        f_hat = h if f_hat is None else f_hat + h
        if si == len(self.cfg.patch_nums) - 1:
            return f_hat, None
        nxt = self.cfg.patch_nums[si + 1]
        small = F.interpolate(f_hat, size=(nxt, nxt), mode="area")
        return f_hat, small.flatten(2).transpose(1, 2)
